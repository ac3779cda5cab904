package reports

import "math/bits"

// histogram counts latencies in microseconds in log-linear buckets: exact
// below 16 µs, then 16 buckets per power of two, so a quantile read from it
// is within 1/32 (about 3 %) of the true value. Its size is fixed (about
// 2.4 KB), whatever the number of values: the report keeps one per second
// of the run instead of every operation's latency.
type histogram struct {
	counts [histogramBuckets]uint32
	total  uint64
	max    int64
}

const (
	histogramSubBits = 4
	histogramSub     = 1 << histogramSubBits
	// histogramBuckets covers values up to 2^40 µs (12 days).
	histogramBuckets = histogramSub + (40-histogramSubBits)*histogramSub
)

func histogramIndex(micros int64) int {
	if micros < 0 {
		micros = 0
	}
	if micros < histogramSub {
		return int(micros)
	}
	exponent := bits.Len64(uint64(micros)) - 1
	sub := int(micros>>(exponent-histogramSubBits)) & (histogramSub - 1)
	index := histogramSub + (exponent-histogramSubBits)*histogramSub + sub
	if index >= histogramBuckets {
		return histogramBuckets - 1
	}
	return index
}

// histogramValue is a bucket's midpoint in microseconds.
func histogramValue(index int) float64 {
	if index < histogramSub {
		return float64(index)
	}
	exponent := (index-histogramSub)/histogramSub + histogramSubBits
	sub := (index - histogramSub) % histogramSub
	width := int64(1) << (exponent - histogramSubBits)
	lower := int64(histogramSub+sub) * width
	return float64(lower) + float64(width)/2
}

func (h *histogram) add(micros int64) {
	h.counts[histogramIndex(micros)]++
	h.total++
	if micros > h.max {
		h.max = micros
	}
}

func (h *histogram) merge(other *histogram) {
	for i, n := range other.counts {
		h.counts[i] += n
	}
	h.total += other.total
	if other.max > h.max {
		h.max = other.max
	}
}

// quantile returns the q-quantile (0 < q ≤ 1) in microseconds, never above
// the largest value seen; 0 for an empty histogram.
func (h *histogram) quantile(q float64) float64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, n := range h.counts {
		seen += uint64(n)
		if seen >= rank {
			value := histogramValue(i)
			if value > float64(h.max) {
				value = float64(h.max)
			}
			return value
		}
	}
	return float64(h.max)
}
