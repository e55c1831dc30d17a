package shield

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/levee-dev/levee/internal/decide"
)

// TestBrowserPassesChallengeThroughShield: the real shield in under-attack
// mode; headless Chromium is challenged, solves the proof of work and
// reaches the origin page; a plain HTTP client without JavaScript does not.
func TestBrowserPassesChallengeThroughShield(t *testing.T) {
	if testing.Short() {
		t.Skip("real-browser test")
	}
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("%s not found: install the Debian package chromium (test.sh does) to run the browser test", chromium)
	}
	var hits atomic.Int64
	osrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><html lang="en"><title>Origin</title><h1 id="origin">Origin page</h1><p id="path">%s</p>`, r.URL.Path)
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go osrv.Serve(ln)
	defer osrv.Close()
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
challenge: {difficulty: {default: 12, modes: {under_attack: 12}}}
`, ln.Addr()))
	s.engine.SetMode(decide.ModeState{Mode: decide.UnderAttack, Until: time.Now().Add(5 * time.Minute)})
	url := "http://" + addrOf(s, 0)

	// A plain client without JavaScript never reaches the origin.
	resp, err := http.Get(url + "/article")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hits.Load() != 0 || resp.StatusCode == 200 {
		t.Fatalf("plain client: status %d, origin hits %d", resp.StatusCode, hits.Load())
	}

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/article"), chromedp.WaitVisible(chromedp.CSS("#origin"))); err != nil {
		t.Fatalf("Chromium did not get through the challenge: %v", err)
	}
	path, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#path")))
	if path != "/article" {
		t.Errorf("landed on %q, want /article", path)
	}
	t.Logf("Chromium solved the challenge and reached the origin through the shield in %v", time.Since(start).Round(time.Millisecond))
	// The clearance cookie lets the next page through without a challenge.
	before := hits.Load()
	if err := chromedp.Do(ctx, chromedp.Navigate(url+"/next"), chromedp.WaitVisible(chromedp.CSS("#origin"))); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != before+1 {
		t.Errorf("second page: origin hits %d, want %d", hits.Load(), before+1)
	}
}
