package iplist

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps iplist a leaf of the request path: it must not pull
// in the store, SQLite or any other levee package.
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
		switch {
		case dep == "github.com/levee-dev/levee/internal/iplist":
		case strings.HasPrefix(dep, "github.com/levee-dev/levee/"),
			strings.HasPrefix(dep, "modernc.org/"),
			dep == "database/sql":
			t.Errorf("iplist depends on %s; the store depends on iplist, not the other way", dep)
		}
	}
}
