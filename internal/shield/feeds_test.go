package shield

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Threat feeds through a running shield: one feed file per supported
// format, each listing distinct 127.x.y.z addresses, enforced at accept;
// a feed file edited on disk is picked up by the poller; a reload that adds
// a feed enforces it; /metrics and the status follow all of it.

// feedFiles writes one feed per format into dir and returns the config
// lines declaring them. Every feed lists addresses of its own 127.0.2x.0/24.
func feedFiles(t *testing.T, dir string) string {
	t.Helper()
	files := []struct{ name, file, text string }{
		// Plain list: an address and a CIDR, comments.
		{"plain", "local.txt", "# local block list\n127.0.20.1\n127.0.20.64/30 ; scanners\n"},
		// FireHOL .netset (detected from the header).
		{"netset", "firehol_level1.netset", "#\n# firehol_level1\n#\n# ipv4 hash:net ipset\n#\n127.0.21.0/24\n"},
		// FireHOL .ipset with CRLF line endings.
		{"ipset", "tor_exits.ipset", "# firehol ipset\r\n127.0.22.7\r\n127.0.22.9\r\n"},
		// Spamhaus DROP JSON lines, with a metadata line and an IPv4-mapped
		// CIDR (read as 127.0.23.128/25).
		{"drop-json", "drop_v4.json", `{"cidr":"127.0.23.0/25","sblid":"SBL1","rir":"test"}` + "\n" +
			`{"cidr":"::ffff:127.0.23.128/121","sblid":"SBL2","rir":"test"}` + "\n" +
			`{"type":"metadata","timestamp":1764324000,"size":100,"records":2,"copyright":"test","terms":"test"}` + "\n"},
		// Legacy Spamhaus text.
		{"drop-text", "drop.txt", "; Spamhaus DROP List 2026/11/28 - (c) 2026 The Spamhaus Project SLU\n; Last-Modified: Sat, 28 Nov 2026 08:44:09 GMT\n127.0.24.0/24 ; SBL3\n"},
	}
	var cfg strings.Builder
	cfg.WriteString("feeds:\n")
	for _, f := range files {
		path := filepath.Join(dir, f.file)
		if err := os.WriteFile(path, []byte(f.text), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&cfg, "  - {name: %s, path: %s}\n", f.name, path)
	}
	return cfg.String()
}

// refusedAtAccept reports whether a connection from src is closed before it
// gets an HTTP answer (a 403 or any other response counts as served).
func refusedAtAccept(t *testing.T, src, addr string) bool {
	t.Helper()
	c, err := dialFrom(t, src, addr)
	if err != nil {
		return true
	}
	defer c.Close()
	_, _, err = get(c, "/")
	return err != nil
}

func served(t *testing.T, src, addr string) bool {
	t.Helper()
	c, err := dialFrom(t, src, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	resp, _, err := get(c, "/")
	return err == nil && resp.StatusCode == 200
}

// eventually polls cond every 50ms for up to 5s.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); ; {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startAdminForTest serves the shield's admin API on loopback (metrics
// public) and returns its base URL.
func startAdminForTest(t *testing.T, s *Shield) string {
	t.Helper()
	addr, _, err := s.StartAdmin()
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr.String()
}

// scrape fetches /metrics and returns its samples as
// `name{label="value",...}` -> value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

func iplistSeries(m map[string]float64) []string {
	var out []string
	for k := range m {
		if strings.HasPrefix(k, "levee_iplist_") {
			out = append(out, k)
		}
	}
	return out
}

func statusOf(s *Shield) StatusReport { return s.Status().(StatusReport) }

func feedStatus(st StatusReport, name string) (FeedStatus, bool) {
	for _, f := range st.FeedLists {
		if f.Name == name {
			return f, true
		}
	}
	return FeedStatus{}, false
}

// TestFeedsEnforcedAtAcceptReloadedAndMeasured: a feed of every format
// refuses its addresses at accept while other addresses are served; a feed
// file rewritten on disk is re-read within feed_refresh; a reload adding a
// feed enforces it at once; /metrics and the status report show each
// feed's size throughout.
func TestFeedsEnforcedAtAcceptReloadedAndMeasured(t *testing.T) {
	t.Setenv("LEVEE_ADMIN_TOKEN", "")
	o := startOrigin(t)
	dir := t.TempDir()
	feeds := feedFiles(t, dir)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
admin: {address: "127.0.0.3:0", public_metrics: true}
allow: [127.0.30.1, 127.0.30.8/29]
block: [127.0.31.0/24]
feed_refresh: 100ms
%s  # more feeds
`, o.addr, feeds))
	admin := startAdminForTest(t, s)
	addr := addrOf(s, 0)

	listed := map[string]string{ // source -> feed
		"127.0.20.1":   "plain",
		"127.0.20.66":  "plain",
		"127.0.21.200": "netset",
		"127.0.22.7":   "ipset",
		"127.0.23.5":   "drop-json",
		"127.0.23.200": "drop-json", // the IPv4-mapped entry
		"127.0.24.33":  "drop-text",
	}
	before := scrape(t, admin)[`levee_decide_connections_refused_total{source="feed"}`]
	for src, feed := range listed {
		if !refusedAtAccept(t, src, addr) {
			t.Errorf("%s (listed in feed %s) was served", src, feed)
		}
	}
	for _, src := range []string{"127.0.20.2", "127.0.20.68", "127.0.22.8", "127.0.25.1", "127.0.26.1"} {
		if !served(t, src, addr) {
			t.Errorf("%s (listed nowhere) was not served", src)
		}
	}
	m := scrape(t, admin)
	if got := m[`levee_decide_connections_refused_total{source="feed"}`] - before; got != float64(len(listed)) {
		t.Errorf("connections refused by feeds: %v; want %d (refused at accept by the feeds, not by something else)", got, len(listed))
	}
	wantPrefixes := map[string]float64{"plain": 2, "netset": 1, "ipset": 2, "drop-json": 2, "drop-text": 1}
	for name, n := range wantPrefixes {
		if got, ok := m[`levee_iplist_prefixes{list="`+name+`"}`]; !ok || got != n {
			t.Errorf("levee_iplist_prefixes{list=%q} = %v (present %v); want %v", name, got, ok, n)
		}
		if m[`levee_iplist_reloads_total{list="`+name+`",result="ok"}`] < 1 || m[`levee_iplist_last_success_timestamp_seconds{list="`+name+`"}`] < float64(time.Now().Add(-time.Minute).Unix()) {
			t.Errorf("feed %s: reload metrics missing: %v", name, iplistSeries(m))
		}
	}
	st := statusOf(s)
	wantFormats := map[string]string{"plain": "plain", "netset": "netset", "ipset": "netset", "drop-json": "spamhaus-json", "drop-text": "spamhaus-text"}
	for name, format := range wantFormats {
		f, ok := feedStatus(st, name)
		if !ok || f.Format != format || float64(f.Prefixes) != wantPrefixes[name] || f.Loaded.IsZero() || f.Error != "" {
			t.Errorf("status of feed %s: %+v (found %v); want format %s, %v prefixes, a load time", name, f, ok, format, wantPrefixes[name])
		}
	}
	if st.AllowPrefixes != 2 || st.BlockPrefixes != 1 {
		t.Errorf("status: allow %d, block %d; want 2, 1", st.AllowPrefixes, st.BlockPrefixes)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Edit a feed on disk: 127.0.20.1 leaves, 127.0.20.2 and a /24 come in.
	plain := filepath.Join(dir, "local.txt")
	if err := os.WriteFile(plain, []byte("# local block list, edited\n127.0.20.2\n127.0.20.64/30\n127.0.28.0/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return refusedAtAccept(t, "127.0.20.2", addr) }) {
		t.Fatal("an address added to a feed file was still served after 5s (feed_refresh 100ms)")
	}
	if !refusedAtAccept(t, "127.0.28.9", addr) || !served(t, "127.0.20.1", addr) {
		t.Error("the edited feed file is not what is enforced")
	}
	if got := scrape(t, admin)[`levee_iplist_prefixes{list="plain"}`]; got != 3 {
		t.Errorf("after the edit: levee_iplist_prefixes{list=plain} = %v; want 3", got)
	}
	if f, _ := feedStatus(statusOf(s), "plain"); f.Prefixes != 3 {
		t.Errorf("after the edit: status %+v; want 3 prefixes", f)
	}

	// A reload adding a feed enforces it, and its metrics appear.
	extra := filepath.Join(dir, "extra.netset")
	if err := os.WriteFile(extra, []byte("# FireHOL extra\n127.0.27.0/24\n127.0.29.3\n127.0.29.4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !served(t, "127.0.27.5", addr) {
		t.Fatal("127.0.27.5 refused before its feed was configured")
	}
	cfgPath := s.opts.ConfigPath
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(data), "  # more feeds", "  - {name: extra, path: "+extra+"}", 1)
	if next == string(data) {
		t.Fatal("config marker not found")
	}
	if err := os.WriteFile(cfgPath, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if !refusedAtAccept(t, "127.0.27.5", addr) || !refusedAtAccept(t, "127.0.29.3", addr) {
		t.Error("a feed added by a reload is not enforced")
	}
	if !refusedAtAccept(t, "127.0.24.33", addr) || !refusedAtAccept(t, "127.0.20.2", addr) || !served(t, "127.0.26.1", addr) {
		t.Error("after the reload the other feeds changed")
	}
	m = scrape(t, admin)
	for name, n := range map[string]float64{"extra": 3, "plain": 3, "drop-text": 1} {
		if got, ok := m[`levee_iplist_prefixes{list="`+name+`"}`]; !ok || got != n {
			t.Errorf("after the reload: levee_iplist_prefixes{list=%q} = %v (present %v); want %v\n%v", name, got, ok, n, iplistSeries(m))
		}
	}
	if f, ok := feedStatus(statusOf(s), "extra"); !ok || f.Prefixes != 3 || f.Format != "netset" {
		t.Errorf("after the reload: status of feed extra %+v (found %v)", f, ok)
	}

	// The reloaded feeds are polled too, and their metrics follow.
	if err := os.WriteFile(extra, []byte("# FireHOL extra\n127.0.27.0/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return served(t, "127.0.29.3", addr) }) {
		t.Fatal("an address removed from a feed added by a reload was still refused after 5s")
	}
	if got := scrape(t, admin)[`levee_iplist_prefixes{list="extra"}`]; got != 1 {
		t.Errorf("after editing the added feed: levee_iplist_prefixes{list=extra} = %v; want 1", got)
	}
}

// TestFeedsAddedToAShieldStartedWithout: a shield started without feeds
// exposes no feed series; a reload that adds a feed enforces it and its
// series appear; a reload that removes it serves the address again and its
// series go away.
func TestFeedsAddedToAShieldStartedWithout(t *testing.T) {
	t.Setenv("LEVEE_ADMIN_TOKEN", "")
	o := startOrigin(t)
	dir := t.TempDir()
	feed := filepath.Join(dir, "drop.json")
	if err := os.WriteFile(feed, []byte(`{"cidr":"127.0.40.0/24","sblid":"SBL9","rir":"test"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
admin: {address: "127.0.0.3:0", public_metrics: true}
data_dir: %s
feed_refresh: 100ms
`, o.addr, dir)
	s := startShield(t, base)
	admin := startAdminForTest(t, s)
	addr := addrOf(s, 0)
	if got := iplistSeries(scrape(t, admin)); len(got) != 0 {
		t.Fatalf("feed series without feeds: %v", got)
	}
	if !served(t, "127.0.40.1", addr) {
		t.Fatal("not served before the feed")
	}
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(s.opts.ConfigPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	write(base + "feeds: [{name: spamhaus, path: " + feed + "}]\n")
	if !refusedAtAccept(t, "127.0.40.1", addr) {
		t.Error("feed added by a reload not enforced")
	}
	m := scrape(t, admin)
	if got, ok := m[`levee_iplist_prefixes{list="spamhaus"}`]; !ok || got != 1 {
		t.Errorf("after adding the feed: levee_iplist_prefixes{list=spamhaus} = %v (present %v); series %v", got, ok, iplistSeries(m))
	}
	if got := m[`levee_iplist_reloads_total{list="spamhaus",result="ok"}`]; got != 1 {
		t.Errorf("after adding the feed: reloads ok = %v; want 1", got)
	}
	if f, ok := feedStatus(statusOf(s), "spamhaus"); !ok || f.Prefixes != 1 || f.Format != "spamhaus-json" {
		t.Errorf("status after adding the feed: %+v (found %v)", f, ok)
	}

	write(base)
	if !served(t, "127.0.40.1", addr) {
		t.Error("still refused after the feed was removed")
	}
	if got := iplistSeries(scrape(t, admin)); len(got) != 0 {
		t.Errorf("series of a removed feed: %v", got)
	}
	if st := statusOf(s); len(st.FeedLists) != 0 || len(st.Feeds) != 0 {
		t.Errorf("status after removing the feed: %+v", st.FeedLists)
	}
}

// TestFeedRefreshChangeTakesEffectOnReload: a reload that changes only
// feed_refresh restarts the feed poller with the new interval.
func TestFeedRefreshChangeTakesEffectOnReload(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	feed := filepath.Join(dir, "local.txt")
	if err := os.WriteFile(feed, []byte("127.0.41.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := func(refresh string) string {
		return fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
data_dir: %s
admin: {address: "off"}
feed_refresh: %s
feeds: [{name: local, path: %s}]
`, o.addr, dir, refresh, feed)
	}
	s := startShield(t, cfg("1h"))
	addr := addrOf(s, 0)
	if !refusedAtAccept(t, "127.0.41.1", addr) || !served(t, "127.0.41.2", addr) {
		t.Fatal("feed not enforced")
	}
	if err := os.WriteFile(s.opts.ConfigPath, []byte(cfg("100ms")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(feed, []byte("127.0.41.1\n127.0.41.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { return refusedAtAccept(t, "127.0.41.2", addr) }) {
		t.Fatal("feed file change not picked up 5s after feed_refresh went from 1h to 100ms")
	}
}
