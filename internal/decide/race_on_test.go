//go:build race

package decide

// raceEnabled: the race detector makes sync.Pool drop items, so allocation
// tests do not hold.
const raceEnabled = true
