// Package coarsetime is a clock with millisecond resolution that costs one
// atomic load to read. The request path refreshes socket deadlines on every
// read and write; reading the system clock for each of those (two vDSO calls
// per time.Now on a KVM guest) showed up as several percent of the proxy's
// CPU in profiles. Deadlines need no better than a millisecond.
package coarsetime

import (
	"sync"
	"sync/atomic"
	"time"
)

// Resolution is how often the clock advances.
const Resolution = time.Millisecond

var (
	now   atomic.Int64
	start sync.Once
)

// UnixNano returns the current time in Unix nanoseconds, at most about
// Resolution behind time.Now. The first call starts the updater goroutine.
func UnixNano() int64 {
	if n := now.Load(); n != 0 {
		return n
	}
	start.Do(func() {
		now.Store(time.Now().UnixNano())
		go func() {
			t := time.NewTicker(Resolution)
			for tt := range t.C {
				now.Store(tt.UnixNano())
			}
		}()
	})
	return now.Load()
}
