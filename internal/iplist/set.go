package iplist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ListConfig declares one list file of a Set. The zero value is invalid
// (Path is required).
type ListConfig struct {
	// Name identifies the list in lookups, logs and metrics. Default: the
	// file's base name.
	Name string `yaml:"name"`
	// Path of the file. Required.
	Path string `yaml:"path"`
	// Format of the file: auto, plain, netset, spamhaus-json or
	// spamhaus-text. Default auto.
	Format string `yaml:"format"`
	// Lenient skips and counts bad lines (third-party feeds), and lets the
	// Set start while the file is missing or unreadable. Default false: a
	// bad line or a missing file fails the load with file:line.
	Lenient bool `yaml:"lenient"`
}

// SetConfig configures a Set. The zero value is a valid Set of no lists
// polled every 60s.
type SetConfig struct {
	Lists []ListConfig `yaml:"lists"`
	// Interval between checks of the files' modification time and size.
	// Default 60s; negative disables polling (Reload still works).
	Interval time.Duration `yaml:"interval"`
}

// SetDeps are the collaborators of a Set. All fields are optional; the zero
// value discards logs and registers no metrics.
type SetDeps struct {
	Logger *slog.Logger // nil: discard
	// Registerer receives the Set's metrics (nil: not registered). An owner
	// that replaces its Set (on a configuration reload) should leave it nil
	// and register one NewSetCollector that follows the Set in use.
	Registerer prometheus.Registerer
}

// Set is a group of list files compiled into one Table. It re-reads a file
// when its modification time, size or identity changes (Poll, or Run on an
// interval) or on Reload, rebuilds the table and swaps it atomically. A file
// that fails to read or parse keeps its previous contents in the table and
// the failure is logged once per change.
//
// Lookup and Contains are lock-free and allocation-free. Set is safe for
// concurrent use. The zero value is not usable; call NewSet.
type Set struct {
	cfg   SetConfig
	log   *slog.Logger
	lists []*listState

	mu     sync.Mutex // serializes loads
	snap   atomic.Pointer[Table]
	status atomic.Pointer[[]ListStatus] // published after every load
}

// listState is what a Set remembers of one file. Guarded by Set.mu.
type listState struct {
	cfg      ListConfig
	format   Format
	prefixes []netip.Prefix // last good contents
	stat     os.FileInfo    // stat of the last read (good or bad)
	lastErr  string         // last logged error, to log each failure once
	loaded   time.Time      // time of the last good read
	detected Format         // format of the last good read
	skipped  int            // bad lines skipped in the last good read
	reads    uint64         // good reads so far
	failures uint64         // failed reads so far
	skips    uint64         // bad lines skipped over all good reads
}

// ListStatus describes one list of a Set, for status pages and the admin
// API. It is a plain value.
type ListStatus struct {
	Name     string
	Path     string
	Format   string    // format of the last good read (detected if auto)
	Prefixes int       // prefixes in effect
	Skipped  int       // bad lines skipped in the last good read
	Loaded   time.Time // last good read; zero if never
	Error    string    // the last read failure, empty after a good read

	// Counters since the Set was created (a new Set starts from zero).
	Reads        uint64 // good reads
	Failures     uint64 // failed reads (missing file, bad line in a strict list, ...)
	SkippedTotal uint64 // bad lines skipped over all good reads
}

// Status returns the state of every list in declaration order. It does not
// wait for a load in progress: it returns the state published by the last
// finished one.
func (s *Set) Status() []ListStatus {
	p := s.status.Load()
	if p == nil {
		return nil
	}
	return slices.Clone(*p)
}

// publishStatus snapshots the lists' state for Status. Called with s.mu
// held.
func (s *Set) publishStatus() {
	out := make([]ListStatus, len(s.lists))
	for i, l := range s.lists {
		out[i] = ListStatus{
			Name: l.cfg.Name, Path: l.cfg.Path, Format: l.detected.String(),
			Prefixes: len(l.prefixes), Skipped: l.skipped, Loaded: l.loaded, Error: l.lastErr,
			Reads: l.reads, Failures: l.failures, SkippedTotal: l.skips,
		}
	}
	s.status.Store(&out)
}

// Interval returns the polling interval in effect (after defaults).
func (s *Set) Interval() time.Duration { return s.cfg.Interval }

// Validate checks the configuration without reading any file: every list
// has a path, a known format and a unique name.
func (c *SetConfig) Validate() error {
	_, err := c.lists()
	return err
}

// lists returns the list states for c, with names defaulted.
func (c *SetConfig) lists() ([]*listState, error) {
	var out []*listState
	names := map[string]bool{}
	for i, lc := range c.Lists {
		if lc.Path == "" {
			return nil, fmt.Errorf("iplist: lists[%d]: path is required", i)
		}
		if lc.Name == "" {
			lc.Name = filepath.Base(lc.Path)
		}
		if names[lc.Name] {
			return nil, fmt.Errorf("iplist: lists[%d]: duplicate list name %q (set name: to tell them apart)", i, lc.Name)
		}
		names[lc.Name] = true
		f, err := ParseFormat(lc.Format)
		if err != nil {
			return nil, fmt.Errorf("iplist: list %q: %w", lc.Name, err)
		}
		out = append(out, &listState{cfg: lc, format: f})
	}
	return out, nil
}

// NewSet validates cfg and loads every list. A strict list that cannot be
// read or parsed fails NewSet; a lenient list that cannot be read (a feed
// not fetched yet) is logged and starts empty until a later Poll reads it.
func NewSet(cfg SetConfig, deps SetDeps) (*Set, error) {
	if cfg.Interval == 0 {
		cfg.Interval = 60 * time.Second
	}
	s := &Set{cfg: cfg, log: deps.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	lists, err := cfg.lists()
	if err != nil {
		return nil, err
	}
	s.lists = lists
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lists {
		if err := s.read(l); err != nil {
			if !l.cfg.Lenient {
				return nil, err
			}
			// A third-party feed may not have been fetched yet: start
			// without it and pick it up when it appears.
			s.fail(l, err)
		}
	}
	s.rebuild()
	s.publishStatus()
	if err := register(deps.Registerer, NewSetCollector(func() *Set { return s })); err != nil {
		return nil, err
	}
	return s, nil
}

// Lookup reports which list contains addr. When several do, the most
// specific prefix wins; for the same prefix in several lists, the list
// declared last.
func (s *Set) Lookup(addr netip.Addr) (list string, ok bool) {
	v, ok := s.snap.Load().Lookup(addr)
	if !ok {
		return "", false
	}
	return s.lists[v].cfg.Name, true
}

// Contains reports whether any list contains addr.
func (s *Set) Contains(addr netip.Addr) bool { return s.snap.Load().Contains(addr) }

// Table returns the current table; its values index Lists.
func (s *Set) Table() *Table { return s.snap.Load() }

// Lists returns the list names in declaration order.
func (s *Set) Lists() []string {
	out := make([]string, len(s.lists))
	for i, l := range s.lists {
		out[i] = l.cfg.Name
	}
	return out
}

// Reload re-reads every file, changed or not, and swaps in the new table.
// Files that fail keep their previous contents; the joined errors are
// returned.
func (s *Set) Reload() error {
	return s.load(true)
}

// Poll re-reads the files whose modification time, size or identity changed
// since the last read, and swaps in a new table if any did. Files that fail
// keep their previous contents; the joined errors are returned.
func (s *Set) Poll() error {
	return s.load(false)
}

// Run polls every Interval until ctx is done. With a negative Interval it
// returns at once.
func (s *Set) Run(ctx context.Context) {
	if s.cfg.Interval < 0 {
		return
	}
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = s.Poll() // failures are logged
		}
	}
}

func (s *Set) load(all bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	changed := false
	for _, l := range s.lists {
		if !all {
			fi, err := os.Stat(l.cfg.Path)
			if err != nil {
				s.fail(l, fmt.Errorf("iplist: list %q: %w", l.cfg.Name, err))
				errs = append(errs, err)
				continue
			}
			if l.stat != nil && os.SameFile(fi, l.stat) && fi.ModTime().Equal(l.stat.ModTime()) && fi.Size() == l.stat.Size() {
				continue
			}
		}
		if err := s.read(l); err != nil {
			s.fail(l, err)
			errs = append(errs, err)
			continue
		}
		changed = true
	}
	if changed {
		s.rebuild()
	}
	s.publishStatus()
	return errors.Join(errs...)
}

// fail logs err for l unless it was the last error logged for l.
func (s *Set) fail(l *listState, err error) {
	l.failures++
	if msg := err.Error(); msg != l.lastErr {
		l.lastErr = msg
		s.log.Error("list reload failed; keeping its previous contents", "list", l.cfg.Name, "path", l.cfg.Path, "err", err)
	}
}

// read parses l's file and on success replaces its contents. The file's stat
// is recorded even on a parse failure, so a bad file is not re-read until it
// changes again.
func (s *Set) read(l *listState) error {
	f, err := os.Open(l.cfg.Path)
	if err != nil {
		return fmt.Errorf("iplist: list %q: %w", l.cfg.Name, err)
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return fmt.Errorf("iplist: list %q: %w", l.cfg.Name, err)
	}
	prefixes := make([]netip.Prefix, 0, len(l.prefixes))
	st, err := Parse(f, ParseOptions{Format: l.format, Lenient: l.cfg.Lenient, Name: l.cfg.Path}, func(e Entry) error {
		prefixes = append(prefixes, e.Prefix)
		return nil
	})
	if after, serr := os.Stat(l.cfg.Path); serr == nil && (!os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size()) {
		// Written while we read: leave the stat unrecorded and try again on
		// the next poll.
		return fmt.Errorf("iplist: list %q: %s changed while being read", l.cfg.Name, l.cfg.Path)
	}
	l.stat = before
	if err != nil {
		return fmt.Errorf("iplist: list %q: %w", l.cfg.Name, err)
	}
	l.prefixes = prefixes
	l.lastErr = ""
	l.loaded, l.detected, l.skipped = time.Now(), st.Format, st.Skipped
	l.reads++
	l.skips += uint64(st.Skipped)
	attrs := []any{"list", l.cfg.Name, "path", l.cfg.Path, "format", st.Format.String(), "prefixes", len(prefixes)}
	if st.Skipped > 0 {
		attrs = append(attrs, "skipped_lines", st.Skipped, "first_bad_line", st.Errors[0].Error())
	}
	for _, w := range st.Warnings {
		attrs = append(attrs, "warning", w)
	}
	s.log.Info("list loaded", attrs...)
	return nil
}

// rebuild compiles all lists' last good contents and publishes the table.
func (s *Set) rebuild() {
	var b Builder
	n := 0
	for _, l := range s.lists {
		n += len(l.prefixes)
	}
	b.Grow(n, 0)
	for i, l := range s.lists {
		for _, p := range l.prefixes {
			_ = b.Add(p, uint32(i)) // parsed prefixes are valid
		}
	}
	s.snap.Store(b.Build())
}
