package outage

import (
	"slices"
	"time"
)

// Baseline is a rolling window of latency samples with percentiles: what
// "normal" latency is for one target seen from one vantage point.
//
// The zero Baseline holds no samples and has a window of DefaultBaselineWindow.
// It is not safe for concurrent use.
type Baseline struct {
	buf    []time.Duration // ring of samples in arrival order
	next   int
	size   int
	sorted []time.Duration // the same samples, kept sorted
}

// DefaultBaselineWindow is the number of samples a Baseline keeps by default
// (one hour at a 10 s interval).
const DefaultBaselineWindow = 360

// NewBaseline returns a Baseline keeping the last size samples.
func NewBaseline(size int) *Baseline {
	if size <= 0 {
		size = DefaultBaselineWindow
	}
	return &Baseline{size: size}
}

// Add records one latency sample, evicting the oldest when the window is
// full. It keeps a sorted copy up to date (binary search and one move), so
// Quantile costs nothing and neither allocates once the window is full.
func (b *Baseline) Add(d time.Duration) {
	if b.size == 0 {
		b.size = DefaultBaselineWindow
	}
	if len(b.buf) < b.size {
		b.buf = append(b.buf, d)
	} else {
		old := b.buf[b.next]
		b.buf[b.next] = d
		b.next = (b.next + 1) % b.size
		i, _ := slices.BinarySearch(b.sorted, old)
		b.sorted = slices.Delete(b.sorted, i, i+1)
	}
	i, _ := slices.BinarySearch(b.sorted, d)
	b.sorted = slices.Insert(b.sorted, i, d)
}

// Len is the number of samples held.
func (b *Baseline) Len() int { return len(b.buf) }

// Quantile returns the q-quantile (0..1) of the held samples, 0 when empty.
func (b *Baseline) Quantile(q float64) time.Duration {
	if len(b.sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(b.sorted)-1))
	return b.sorted[max(0, min(i, len(b.sorted)-1))]
}

// Threshold returns the latency above which a sample is unusual for this
// baseline: the larger of factor times the median and the 99th percentile,
// and at least floor.
func (b *Baseline) Threshold(factor float64, floor time.Duration) time.Duration {
	t := max(time.Duration(factor*float64(b.Quantile(0.5))), b.Quantile(0.99))
	return max(t, floor)
}
