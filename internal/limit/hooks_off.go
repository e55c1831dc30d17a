//go:build !limithooks

package limit

// hooksOn is false outside builds with the limithooks tag, so the hook
// checks compile away: measured at 1M keys they cost the check about 10-15
// CPU-ns (BENCHMARKS.md, "Test hooks off the hot path").
const hooksOn = false
