package shield

import (
	"log/slog"
	"sync"
	"time"
)

// sampledLog writes at most one line per key per interval and reports how
// many were suppressed, so a flood of rejections never becomes a log flood.
type sampledLog struct {
	log      *slog.Logger
	interval time.Duration
	mu       sync.Mutex
	last     map[string]time.Time
	dropped  map[string]int
}

func newSampledLog(log *slog.Logger, interval time.Duration) *sampledLog {
	return &sampledLog{log: log, interval: interval, last: map[string]time.Time{}, dropped: map[string]int{}}
}

func (s *sampledLog) warn(key, msg string, args ...any) {
	if n, ok := s.due(key); ok {
		s.emit(n, msg, args...)
	}
}

// due reports whether a line for key may be written now, and how many were
// suppressed since the last one. Callers on hot paths check it before
// building a line's arguments, so a suppressed line costs no allocation.
func (s *sampledLog) due(key string) (suppressed int, ok bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.last[key]) < s.interval {
		s.dropped[key]++
		return 0, false
	}
	n := s.dropped[key]
	s.last[key] = now
	delete(s.dropped, key)
	if len(s.last) > 1024 { // keys are a small fixed set; guard anyway
		clear(s.last)
	}
	return n, true
}

// emit writes a line that due allowed, with its suppressed count.
func (s *sampledLog) emit(suppressed int, msg string, args ...any) {
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	s.log.Warn(msg, args...)
}
