package main

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestHistogramPercentiles records random latencies from many goroutines
// and checks every percentile the report uses against the exact one from
// the sorted values: exact below 256 ns, within 0.4% above, the maximum
// exact.
func TestHistogramPercentiles(t *testing.T) {
	var h histogram
	if h.percentile(50) != 0 || h.percentile(100) != 0 {
		t.Fatal("an empty histogram must report 0")
	}
	const callers, each = 8, 5000
	all := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 1))
			for range each {
				// Spread over 1 ns to about 100 s, log-uniformly.
				d := time.Duration(1 << r.IntN(37))
				d += time.Duration(r.Int64N(int64(d)))
				all[c] = append(all[c], d)
				h.record(d)
			}
		}()
	}
	wg.Wait()
	sorted := slices.Sorted(slices.Values(slices.Concat(all...)))
	if h.count() != uint64(len(sorted)) {
		t.Fatalf("count %d, recorded %d", h.count(), len(sorted))
	}
	for _, p := range []float64{0, 1, 50, 90, 99, 99.9, 100} {
		want := sorted[int(float64(len(sorted)-1)*p/100)]
		got := h.percentile(p)
		if p == 100 || want < histExact {
			if got != want {
				t.Errorf("p%v = %v, want exactly %v", p, got, want)
			}
			continue
		}
		if err := float64(got-want) / float64(want); err > 0.004 || err < -0.004 {
			t.Errorf("p%v = %v, want %v within 0.4%% (off by %.2f%%)", p, got, want, 100*err)
		}
	}
}

// TestHistogramBuckets checks that buckets tile the durations without gaps
// or overlaps, in order, and that each bucket's value lies in it.
func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for _, d := range []time.Duration{0, 1, 255, 256, 257, 511, 512, 1000, time.Millisecond, time.Hour, 1<<63 - 1} {
		b := bucketOf(d)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d (of %d)", d, b, prev, histBuckets)
		}
		if v := bucketValue(b); bucketOf(v) != b {
			t.Errorf("bucket %d of %d has value %d, which falls in bucket %d", b, d, v, bucketOf(v))
		}
		prev = b
	}
	for d := time.Duration(250); d < 1<<16; d++ {
		if next := bucketOf(d + 1); next != bucketOf(d) && next != bucketOf(d)+1 {
			t.Fatalf("bucketOf(%d) = %d, bucketOf(%d) = %d: a gap", d, bucketOf(d), d+1, next)
		}
	}
	if bucketOf(-5) != 0 {
		t.Errorf("a negative duration must count as 0")
	}
}
