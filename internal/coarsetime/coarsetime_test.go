package coarsetime

import (
	"testing"
	"time"
)

func TestTracksTheClock(t *testing.T) {
	for i := 0; i < 5; i++ {
		got, want := UnixNano(), time.Now().UnixNano()
		if d := time.Duration(want - got); d < -time.Millisecond || d > 50*time.Millisecond {
			t.Fatalf("coarse clock off by %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func BenchmarkUnixNano(b *testing.B) {
	for b.Loop() {
		UnixNano()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	for b.Loop() {
		time.Now()
	}
}
