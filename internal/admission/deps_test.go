package admission

import (
	"os/exec"
	"strings"
	"testing"
)

// The origin-protection building blocks sit below the data plane: they must
// not depend on the proxy or the shield.
func TestForbiddenImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH: cannot list dependencies")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"/internal/proxy", "/internal/shield"} {
			if strings.HasSuffix(dep, bad) || strings.Contains(dep, bad+"/") {
				t.Errorf("imports %s", dep)
			}
		}
	}
}
