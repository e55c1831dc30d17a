//go:build unix

package telemetry

import (
	"syscall"
	"testing"
	"time"
)

// processCPU returns the user+system CPU time the process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds "cpu-ns/op": process CPU time per operation. On a machine
// shared with other work, wall-clock ns/op also counts time the benchmark
// waited for a core; CPU time does not.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((processCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
