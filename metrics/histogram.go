// Package metrics holds the histogram that rago's rooms record latencies
// into. Counters and gauges live in the room that counts, as plain atomics;
// a latency needs a distribution, and this is the one type for it, so that
// every room's histograms share one bucket layout that exporters and charts
// can rely on. It imports nothing beyond the standard library.
//
// Recording is lock-free (two atomic adds) and never allocates: histograms
// stay on in production.
package metrics

import (
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	// FirstBound is the upper bound of the first bucket.
	FirstBound = 50 * time.Microsecond
	// Buckets is the number of finite buckets. Bucket k holds durations in
	// (FirstBound·2^(k-1), FirstBound·2^k]; bucket 0 everything up to
	// FirstBound, and one more bucket everything above the last bound
	// (FirstBound·2^18, about 13.1 s).
	Buckets = 19
)

// Bounds returns the upper bounds of the finite buckets, in increasing
// order: 50 µs, 100 µs, 200 µs, ..., about 13.1 s.
func Bounds() []time.Duration {
	b := make([]time.Duration, Buckets)
	for k := range b {
		b[k] = FirstBound << k
	}
	return b
}

// bucketOf returns the bucket index of d: the k with d in
// (FirstBound·2^(k-1), FirstBound·2^k], or Buckets when d is above every
// bound.
func bucketOf(d time.Duration) int {
	if d <= FirstBound {
		return 0
	}
	return min(bits.Len64(uint64(d-1)/uint64(FirstBound)), Buckets)
}

// Histogram is a distribution of durations. The zero value is ready to
// use; it must not be copied after first use. Safe for concurrent use.
type Histogram struct {
	counts [Buckets + 1]atomic.Uint64
	sumNs  atomic.Uint64
}

// Observe records one duration. A negative one counts as zero.
func (h *Histogram) Observe(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(d)].Add(1)
	h.sumNs.Add(uint64(d))
}

// Since records the time elapsed since start.
func (h *Histogram) Since(start time.Time) { h.Observe(time.Since(start)) }

// Snapshot returns the histogram's counts so far. Observations made while it
// runs may be in some of its fields and not yet in others; every field is
// cumulative, so the next snapshot has them.
func (h *Histogram) Snapshot() HistogramSnapshot {
	var s HistogramSnapshot
	for k := range h.counts {
		s.Counts[k] = h.counts[k].Load()
		s.Count += s.Counts[k]
	}
	s.Sum = time.Duration(h.sumNs.Load())
	return s
}

// HistogramSnapshot is a Histogram's counts at one moment.
type HistogramSnapshot struct {
	// Counts[k] is the number of durations in bucket k (see Buckets), not
	// cumulative; Counts[Buckets] those above the last bound.
	Counts [Buckets + 1]uint64
	// Count is the number of durations, the sum of Counts.
	Count uint64
	// Sum is the sum of the durations.
	Sum time.Duration
}

// Add adds o's counts to s, as for the same histogram kept by two servers.
func (s *HistogramSnapshot) Add(o HistogramSnapshot) {
	for k := range s.Counts {
		s.Counts[k] += o.Counts[k]
	}
	s.Count += o.Count
	s.Sum += o.Sum
}

// Since returns the observations made between prev, an earlier snapshot of
// the same histogram, and s: what a chart of the last interval shows.
func (s HistogramSnapshot) Since(prev HistogramSnapshot) HistogramSnapshot {
	var d HistogramSnapshot
	for k := range s.Counts {
		d.Counts[k] = s.Counts[k] - min(prev.Counts[k], s.Counts[k])
		d.Count += d.Counts[k]
	}
	d.Sum = s.Sum - min(prev.Sum, s.Sum)
	return d
}

// Mean returns the mean duration, zero for no observations.
func (s HistogramSnapshot) Mean() time.Duration {
	if s.Count == 0 {
		return 0
	}
	return s.Sum / time.Duration(s.Count)
}

// Quantile estimates the q-quantile (0 < q <= 1) by interpolating within
// its bucket, as Prometheus's histogram_quantile does; zero for no
// observations. A quantile in the last bucket is reported as the last
// bound, since that bucket has no upper bound.
func (s HistogramSnapshot) Quantile(q float64) time.Duration {
	if s.Count == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(s.Count)
	var below uint64
	for k, c := range s.Counts {
		if c == 0 || float64(below+c) < rank {
			below += c
			continue
		}
		if k == Buckets {
			return FirstBound << (Buckets - 1)
		}
		lo := time.Duration(0)
		if k > 0 {
			lo = FirstBound << (k - 1)
		}
		hi := FirstBound << k
		frac := (rank - float64(below)) / float64(c)
		return lo + time.Duration(frac*float64(hi-lo))
	}
	return FirstBound << (Buckets - 1)
}
