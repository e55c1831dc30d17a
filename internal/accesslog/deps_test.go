package accesslog

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoForbiddenImports keeps the detection packages off the data plane:
// accesslog imports telemetry, detect and incident, so its dependency list
// covers all four.
func TestNoForbiddenImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list not available: %v", err)
	}
	forbidden := []string{"internal/proxy", "internal/shield", "internal/monitor"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, "github.com/levee-dev/levee/"+f) {
				t.Errorf("accesslog depends on %s", dep)
			}
		}
	}
	if !strings.Contains(string(out), "github.com/levee-dev/levee/internal/detect") {
		t.Fatalf("go list output does not list internal/detect:\n%s", out)
	}
}
