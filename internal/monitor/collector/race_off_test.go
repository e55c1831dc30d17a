//go:build !race

package collector

// raceEnabled is true under -race, which slows everything several times.
const raceEnabled = false
