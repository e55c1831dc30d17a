package monitor

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestMonitorIsALeaf keeps the monitor independent of the shield: its
// packages may import only each other (and internal/buildinfo) from this
// module.
func TestMonitorIsALeaf(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", "github.com/levee-dev/levee/internal/monitor/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/levee-dev/levee/"
	for _, p := range strings.Fields(string(out)) {
		if !strings.HasPrefix(p, mod) {
			continue
		}
		if strings.HasPrefix(p, mod+"internal/monitor") || p == mod+"internal/buildinfo" {
			continue
		}
		t.Errorf("the monitor depends on %s: it must stay a leaf (talk to the shield over HTTP)", p)
	}
}
