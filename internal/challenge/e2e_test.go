package challenge

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// e2eSite is a loopback site in under-attack mode: every request without
// clearance is challenged; the origin counts the requests that reach it.
type e2eSite struct {
	url    string
	svc    *Service
	origin atomic.Int64
	nonce  atomic.Int64 // last proof-of-work answer: about the number of hashes tried
}

func startSite(t *testing.T, delay time.Duration) *e2eSite {
	t.Helper()
	cfg := testConfig()
	cfg.InsecureCookie = true // plain HTTP on loopback
	cfg.NoJSDelay = delay
	svc, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	site := &e2eSite{svc: svc}
	origin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/favicon.ico" {
			site.origin.Add(1)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><html lang="en"><title>Origin</title><h1 id="origin">Origin page</h1><p id="path">%s</p>`, r.URL.Path)
	})
	gate := &Gate{Service: svc, Next: origin,
		// /d/N/... asks for difficulty N, to measure solve times.
		Challenge: func(r *http.Request) (uint8, bool) {
			if rest, ok := strings.CutPrefix(r.URL.Path, "/d/"); ok {
				n, _, _ := strings.Cut(rest, "/")
				if d, err := strconv.Atoi(n); err == nil && d >= 0 && d <= 32 {
					return uint8(d), true
				}
			}
			return svc.Difficulty("under_attack", 0), true
		}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	record := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == PathVerify && r.Method == http.MethodPost && r.ParseForm() == nil {
			if n, err := strconv.ParseInt(r.PostForm.Get("n"), 10, 64); err == nil {
				site.nonce.Store(n)
			}
		}
		gate.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: record, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	site.url = "http://" + ln.Addr().String()
	return site
}

func browser(t *testing.T, timeout time.Duration) (context.Context, context.CancelFunc) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s not found: install the Debian package chromium (apt-get install -y chromium) to run the real-browser test", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(900, 720),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancelT(); cancelB(); cancelA() }
}

var clearCookies = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	_, err := cdp.Call(ctx, t, network.ClearBrowserCookies, cdp.Empty{})
	return err
})

func scripts(on bool) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: !on})
		return err
	})
}

// TestBrowserEndToEnd: headless Chromium solves the proof of work and
// reaches the origin; with JavaScript disabled it gets through the no-JS
// path after the delay; a plain HTTP client never reaches the origin.
func TestBrowserEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("real-browser test skipped in -short mode")
	}
	const delay = 2 * time.Second
	site := startSite(t, delay)
	ctx, cancel := browser(t, 50*time.Second)
	defer cancel()

	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil { // start the browser
		t.Fatal(err)
	}
	t.Run("javascript", func(t *testing.T) {
		start := time.Now()
		err := chromedp.Do(ctx,
			clearCookies,
			chromedp.Navigate(site.url+"/d/12/welcome"),
			chromedp.WaitVisible(chromedp.CSS("#origin")),
		)
		text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#path")))
		if err != nil {
			t.Fatalf("browser did not reach the origin: %v", err)
		}
		if text != "/d/12/welcome" {
			t.Errorf("landed on %q, want the page first asked for", text)
		}
		t.Logf("solved difficulty 12 and reached the origin in %v", time.Since(start).Round(time.Millisecond))
		// The cookie now clears further requests without a challenge.
		before := site.origin.Load()
		if err := chromedp.Do(ctx, chromedp.Navigate(site.url+"/again"), chromedp.WaitVisible(chromedp.CSS("#origin"))); err != nil {
			t.Fatal(err)
		}
		if site.origin.Load() != before+1 {
			t.Errorf("origin hits %d, want %d", site.origin.Load(), before+1)
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		// Difficulty 32 keeps the page in its "checking" state.
		err := chromedp.Do(ctx,
			clearCookies,
			chromedp.Navigate(site.url+"/d/32/article"),
			chromedp.WaitVisible(chromedp.CSS("#status")),
			chromedp.Sleep(300*time.Millisecond),
		)
		if err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		chromedp.Do(ctx, chromedp.Navigate("about:blank")) // stop the workers
		if err != nil {
			t.Fatal(err)
		}
		dirs := []string{t.ArtifactDir()}
		if d := os.Getenv("LEVEE_SCREENSHOT_DIR"); d != "" {
			dirs = append(dirs, d)
		}
		for _, d := range dirs {
			p := filepath.Join(d, "challenge-page.png")
			if err := os.WriteFile(p, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot of the challenge page: %s (%d bytes)", p, len(png))
		}
	})

	t.Run("nojs", func(t *testing.T) {
		start := time.Now()
		err := chromedp.Do(ctx,
			clearCookies,
			scripts(false),
			chromedp.Navigate(site.url+"/nojs-reader"),
			// The puzzle text and progress are hidden without scripts.
			chromedp.WaitVisible(chromedp.CSS("footer")),
			chromedp.WaitNotVisible(chromedp.CSS("#status")),
			chromedp.WaitVisible(chromedp.CSS("#origin")),
		)
		text, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#path")))
		chromedp.Do(ctx, scripts(true))
		if err != nil {
			t.Fatalf("browser without JavaScript did not reach the origin: %v", err)
		}
		took := time.Since(start)
		if text != "/nojs-reader" {
			t.Errorf("landed on %q", text)
		}
		if took < delay-time.Second {
			t.Errorf("no-JS path took %v, the server must enforce about %v", took, delay)
		}
		t.Logf("no-JS path reached the origin in %v", took.Round(time.Millisecond))
	})

	t.Run("plain client", func(t *testing.T) {
		before := site.origin.Load()
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
		get := func(u string) (int, string) {
			resp, err := c.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		code, body := get(site.url + "/")
		if code != 403 || !strings.Contains(body, `action="/.levee/challenge/verify"`) {
			t.Fatalf("plain client got %d, want the challenge page", code)
		}
		// Following the no-JS link at once is refused with a wait page.
		i := strings.Index(body, `href="/.levee/nojs?`)
		link := strings.ReplaceAll(body[i+6:i+6+strings.Index(body[i+6:], `"`)], "&amp;", "&")
		if code, body = get(site.url + link); code != 403 || !strings.Contains(body, "http-equiv=\"refresh\"") {
			t.Errorf("early no-JS answer: %d, want 403 with a wait page", code)
		}
		// A guessed nonce is refused.
		ci := strings.Index(body, "c=")
		chal := body[ci+2 : ci+2+chalLen]
		resp, err := c.PostForm(site.url+PathVerify, url.Values{"c": {chal}, "n": {"1"}, "r": {"/"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("wrong nonce: %d, want 403", resp.StatusCode)
		}
		// API clients get JSON.
		req, _ := http.NewRequest("GET", site.url+"/api/items", nil)
		req.Header.Set("Accept", "application/json")
		if resp, err = c.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("API client: %d %s, want 403 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if n := site.origin.Load() - before; n != 0 {
			t.Errorf("plain client reached the origin %d times", n)
		}
	})
}

// TestBrowserSolveTimes measures how long Chromium takes to pass the
// challenge at several difficulties. Opt-in (it is a measurement):
// LEVEE_SOLVE_TIMES=12,16,18,20 LEVEE_SOLVE_RUNS=5 go test -run SolveTimes -v
func TestBrowserSolveTimes(t *testing.T) {
	spec := os.Getenv("LEVEE_SOLVE_TIMES")
	if spec == "" {
		t.Skip("set LEVEE_SOLVE_TIMES=12,16,18,20 to measure solve times in Chromium")
	}
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("LEVEE_SOLVE_RUNS")); err == nil && n > 0 {
		runs = n
	}
	site := startSite(t, 2*time.Second)
	ctx, cancel := browser(t, 10*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	for _, ds := range strings.Split(spec, ",") {
		var times []time.Duration
		var hashes []int64
		for i := range runs {
			start := time.Now()
			err := chromedp.Do(ctx,
				clearCookies,
				chromedp.Navigate(fmt.Sprintf("%s/d/%s/run%d", site.url, ds, i)),
				chromedp.WaitVisible(chromedp.CSS("#origin")),
			)
			if err != nil {
				t.Fatal(err)
			}
			times = append(times, time.Since(start))
			hashes = append(hashes, site.nonce.Load()+1)
		}
		var sumT time.Duration
		var sumH int64
		for i := range times {
			sumT += times[i]
			sumH += hashes[i]
		}
		sorted := slices.Clone(times)
		slices.Sort(sorted)
		t.Logf("difficulty %s bits, %d runs: navigation to origin median %v, min %v, max %v, mean %v; hashes tried mean %d; hashes per second of wall time %.0f",
			ds, runs, sorted[len(sorted)/2].Round(time.Millisecond), sorted[0].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond),
			(sumT / time.Duration(runs)).Round(time.Millisecond), sumH/int64(runs), float64(sumH)/sumT.Seconds())
	}
}
