package metrics

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBucketsCoverFiftyMicrosecondsToTenSeconds(t *testing.T) {
	b := Bounds()
	require.Len(t, b, Buckets)
	require.Equal(t, 50*time.Microsecond, b[0])
	require.GreaterOrEqual(t, b[len(b)-1], 10*time.Second)
	require.Less(t, b[len(b)-2], 10*time.Second, "more buckets than needed")
	for k := 1; k < len(b); k++ {
		require.Equal(t, 2*b[k-1], b[k])
	}
}

func TestBucketOfPutsEachDurationUnderItsBound(t *testing.T) {
	b := Bounds()
	require.Equal(t, 0, bucketOf(0))
	require.Equal(t, 0, bucketOf(-time.Second))
	for k, bound := range b {
		require.Equal(t, k, bucketOf(bound), "bound %v", bound)
		require.Equal(t, k+1, bucketOf(bound+1), "just above %v", bound)
		if k > 0 {
			require.Equal(t, k, bucketOf(b[k-1]+1), "just above %v", b[k-1])
		}
	}
	require.Equal(t, Buckets, bucketOf(time.Hour))
	require.Equal(t, Buckets, bucketOf(time.Duration(1<<63-1)))
}

func TestSnapshotCountsSumsAndQuantiles(t *testing.T) {
	var h Histogram
	for range 90 {
		h.Observe(80 * time.Microsecond) // bucket 1: (50, 100] µs
	}
	for range 10 {
		h.Observe(3 * time.Millisecond) // bucket 6: (1.6, 3.2] ms
	}
	s := h.Snapshot()
	require.EqualValues(t, 100, s.Count)
	require.EqualValues(t, 90, s.Counts[1])
	require.EqualValues(t, 10, s.Counts[6])
	require.Equal(t, 90*80*time.Microsecond+10*3*time.Millisecond, s.Sum)
	require.Equal(t, s.Sum/100, s.Mean())

	p50 := s.Quantile(0.5)
	require.Greater(t, p50, 50*time.Microsecond)
	require.LessOrEqual(t, p50, 100*time.Microsecond)
	p99 := s.Quantile(0.99)
	require.Greater(t, p99, 1600*time.Microsecond)
	require.LessOrEqual(t, p99, 3200*time.Microsecond)
	require.Zero(t, HistogramSnapshot{}.Quantile(0.99))

	h.Observe(time.Minute)
	require.Equal(t, Bounds()[Buckets-1], h.Snapshot().Quantile(1), "the overflow bucket reports the last bound")
}

func TestSinceAndAdd(t *testing.T) {
	var h Histogram
	h.Observe(time.Millisecond)
	before := h.Snapshot()
	h.Observe(time.Second)
	h.Observe(time.Second)
	d := h.Snapshot().Since(before)
	require.EqualValues(t, 2, d.Count)
	require.Equal(t, 2*time.Second, d.Sum)
	require.EqualValues(t, 2, d.Counts[bucketOf(time.Second)])

	sum := before
	sum.Add(d)
	require.Equal(t, h.Snapshot(), sum)
	// An older snapshot taken as the newer (a restarted histogram) gives
	// no negative counts.
	require.Zero(t, before.Since(h.Snapshot()).Count)
}

// TestConcurrentObservations runs under -race: observers on several
// goroutines and a reader lose nothing.
func TestConcurrentObservations(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	const goroutines, each = 8, 1000
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				h.Observe(time.Duration(g*each+i) * time.Microsecond)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last uint64
		for range 100 {
			c := h.Snapshot().Count
			require.GreaterOrEqual(t, c, last)
			last = c
		}
	}()
	wg.Wait()
	<-done
	require.EqualValues(t, goroutines*each, h.Snapshot().Count)
}

func BenchmarkObserve(b *testing.B) {
	var h Histogram
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d += 7 * time.Microsecond
			h.Observe(d % (20 * time.Millisecond))
		}
	})
}
