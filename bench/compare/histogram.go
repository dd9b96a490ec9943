package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts latencies in fixed memory, and callers record into it
// concurrently. The harness used to keep every latency in a slice. That
// costs 8 bytes per command, and a million commands at the end of a fast
// cell, sorted and merged, is 16 MiB or more. So the harness's own memory
// grew with the throughput of the system under test, and peak RSS, which
// it reports, charged that to the faster system.
//
// Buckets are exact below 256 ns. Above that each power of two is split
// into 128 buckets, so a reported percentile (a bucket's midpoint) is
// within 0.4% of the recorded one. The maximum is kept exactly. (rago's
// metrics.Histogram doubles from bucket to bucket: fine for a dashboard,
// too coarse to compare two systems' p50s.)
type histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

const (
	histSubBits = 7                // 128 buckets per power of two
	histExact   = 2 << histSubBits // values below it have a bucket each
	histBuckets = histExact + 56<<histSubBits
)

// bucketOf returns the bucket of a non-negative duration.
func bucketOf(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < histExact {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1 // v>>shift is in [128, 256)
	return histExact + (shift-1)<<histSubBits + int(v>>shift) - 1<<histSubBits
}

// bucketValue returns the midpoint of bucket i.
func bucketValue(i int) time.Duration {
	if i < histExact {
		return time.Duration(i)
	}
	i -= histExact
	shift := i>>histSubBits + 1
	lo := uint64(i&(1<<histSubBits-1)+1<<histSubBits) << shift
	return time.Duration(lo + 1<<shift/2)
}

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(d)].Add(1)
	h.n.Add(1)
	for m := h.max.Load(); int64(d) > m && !h.max.CompareAndSwap(m, int64(d)); m = h.max.Load() {
	}
}

// count returns how many latencies were recorded.
func (h *histogram) count() uint64 { return h.n.Load() }

// percentile returns the p-th percentile by nearest rank (the value at
// position (n-1)*p/100 in sorted order), 0 if nothing was recorded; the
// 100th is the exact maximum. Not to be called while callers record.
func (h *histogram) percentile(p float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if p >= 100 {
		return time.Duration(h.max.Load())
	}
	rank := uint64(float64(n-1) * p / 100)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen > rank {
			return min(bucketValue(i), time.Duration(h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}
