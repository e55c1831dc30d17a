package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/levee-dev/levee/internal/admin"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/shield"
)

func init() {
	register(command{name: "status", summary: "show a running shield's state (admin API)", run: runStatus})
	register(command{name: "reload", summary: "make a running shield re-read its configuration", run: runReload})
}

// adminFlags are the flags every admin-API command shares.
type adminFlags struct {
	cfgPath, addr, tokenFile *string
	jsonOut                  *bool
}

func addAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{
		cfgPath:   fs.String("c", "", "the shield's configuration file (to find the admin address and token)"),
		addr:      fs.String("admin", "", "admin API address (default from -c, else 127.0.0.1:9901)"),
		tokenFile: fs.String("token-file", "", "admin token file (default $LEVEE_ADMIN_TOKEN, else <data dir>/admin.token)"),
		jsonOut:   fs.Bool("json", false, "print JSON"),
	}
}

func (f adminFlags) client() (*admin.Client, error) {
	cfg := &config.Config{}
	if *f.cfgPath != "" {
		c, err := config.Load(*f.cfgPath)
		if err != nil {
			return nil, err
		}
		cfg = c
	}
	cfg.Defaults()
	addr := cfg.Admin.Address
	if *f.addr != "" {
		addr = *f.addr
	}
	tf := cfg.Admin.TokenFile
	if *f.tokenFile != "" {
		tf = *f.tokenFile
	}
	tok, err := admin.LoadToken(cfg.Admin.TokenEnv, tf, false)
	if err != nil {
		return nil, err
	}
	return admin.NewClient(addr, tok), nil
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "[--admin ADDR] [--json]", stderr)
	af := addAdminFlags(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	var st shield.StatusReport
	if err := c.Do("GET", "/v1/status", nil, &st); err != nil {
		return err
	}
	if *af.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "version\t%s\n", st.Version)
	fmt.Fprintf(tw, "uptime\t%s\n", st.Uptime)
	fmt.Fprintf(tw, "mode\t%s\n", st.Mode)
	fmt.Fprintf(tw, "listeners\t%v\n", st.Listeners)
	if st.FloodListeners > 0 {
		fmt.Fprintf(tw, "connection flood\t%d listener(s) refusing 64+ connections/s, more than admitted (raw accept)\n", st.FloodListeners)
	}
	fmt.Fprintf(tw, "open connections\t%d\n", st.OpenConnections)
	fmt.Fprintf(tw, "tracked addresses\t%d\n", st.TrackedAddrs)
	fmt.Fprintf(tw, "reloads\t%d\n", st.Reloads)
	fmt.Fprintf(tw, "bans\t%d\n", st.Bans)
	fmt.Fprintf(tw, "limit table\t%d/%d keys, %d MiB, %d active evictions\n",
		st.LimitTable.Live, st.LimitTable.Slots, st.LimitTable.Bytes>>20, st.LimitTable.Evictions)
	fmt.Fprintf(tw, "allow list\t%s\n", plural(st.AllowPrefixes, "entry", "entries"))
	fmt.Fprintf(tw, "block list\t%s\n", plural(st.BlockPrefixes, "entry", "entries"))
	switch {
	case len(st.FeedLists) > 0:
		for _, f := range st.FeedLists {
			fmt.Fprintf(tw, "feed %s\t%s\n", f.Name, feedLine(f, time.Now()))
		}
	case len(st.Feeds) > 0: // a shield from before feed details
		fmt.Fprintf(tw, "feeds\t%v\n", st.Feeds)
	}
	if st.LastReloadError != "" {
		fmt.Fprintf(tw, "last reload error\t%s\n", st.LastReloadError)
	}
	if len(st.RestartPending) > 0 {
		fmt.Fprintf(tw, "needs a restart\t%s (changed since start; running with the start values)\n", strings.Join(st.RestartPending, ", "))
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tUPSTREAM\tHEALTHY\tEJECTED\tINFLIGHT\tCONNS\tBREAKER")
	for _, s := range st.Sites {
		br := s.Breaker
		if br == "" {
			br = "-"
		}
		for _, u := range s.Upstreams {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\t%d\t%s\n", s.Name, u.Addr, u.Healthy, u.Ejected, u.Inflight, u.Conns, br)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Rules) > 0 {
		rules := append([]shield.RuleView(nil), st.Rules...)
		sort.SliceStable(rules, func(i, j int) bool { return rules[i].Hits > rules[j].Hits })
		fmt.Fprintln(stdout)
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RULE	ACTION	HITS")
		for i, r := range rules {
			if i == 10 {
				break
			}
			act := r.Action
			if r.DryRun {
				act += " (dry run)"
			}
			if r.Runtime {
				act += " [" + r.Source + "]"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Name, act, r.Hits)
		}
		return tw.Flush()
	}
	return nil
}

// feedLine renders one feed of `levee status`: its size, format, when it was
// last read and its current error.
func feedLine(f shield.FeedStatus, now time.Time) string {
	line := plural(f.Prefixes, "prefix", "prefixes")
	if f.Format != "" && f.Format != "auto" {
		line += " (" + f.Format + ")"
	}
	if f.Loaded.IsZero() {
		line += ", never loaded"
	} else {
		line += fmt.Sprintf(", loaded %s ago (%s)", now.Sub(f.Loaded).Truncate(time.Second), f.Loaded.UTC().Format(time.RFC3339))
	}
	if f.Skipped > 0 {
		line += ", " + plural(f.Skipped, "bad line", "bad lines") + " skipped"
	}
	if f.Error != "" {
		line += "; last read failed: " + f.Error
	}
	return line
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func runReload(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reload", "[--admin ADDR]", stderr)
	af := addAdminFlags(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	if err := c.Do("POST", "/v1/reload", nil, nil); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "reloaded")
	var st shield.StatusReport
	if err := c.Do("GET", "/v1/status", nil, &st); err == nil && len(st.RestartPending) > 0 {
		fmt.Fprintf(stdout, "these settings keep their start values until a restart: %s\n", strings.Join(st.RestartPending, ", "))
	}
	return nil
}

// adminSub is the common start of a command with admin-API subcommands
// (`levee ban add ...`): it splits off the subcommand and prepares its flag
// set with the admin flags. usage prints text and returns errUsage.
type adminSub struct {
	name  string
	fs    *flag.FlagSet
	af    adminFlags
	usage func() error
}

func newAdminSub(cmd string, args []string, stderr io.Writer, usageText string) (*adminSub, []string, error) {
	usage := func() error {
		fmt.Fprintln(stderr, usageText+"\n\nCommon flags: -c FILE, --admin ADDR, --token-file FILE.")
		return errUsage
	}
	if len(args) == 0 {
		return nil, nil, usage()
	}
	fs := newFlagSet(cmd+" "+args[0], "...", stderr)
	return &adminSub{name: args[0], fs: fs, af: addAdminFlags(fs), usage: usage}, args[1:], nil
}
