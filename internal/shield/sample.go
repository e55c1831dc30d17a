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
	now := time.Now()
	s.mu.Lock()
	if now.Sub(s.last[key]) < s.interval {
		s.dropped[key]++
		s.mu.Unlock()
		return
	}
	n := s.dropped[key]
	s.last[key] = now
	delete(s.dropped, key)
	if len(s.last) > 1024 { // keys are a small fixed set; guard anyway
		clear(s.last)
	}
	s.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	s.log.Warn(msg, args...)
}
