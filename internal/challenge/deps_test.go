package challenge

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps challenge below the data plane: it must not import the
// proxy, the shield or any other levee package, so that they can import it.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH; cannot list dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/levee-dev/levee/") && dep != "github.com/levee-dev/levee/internal/challenge" {
			t.Errorf("challenge depends on %s; the data plane imports challenge, not the other way", dep)
		}
	}
}
