package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// cluster is one system's 3 replicas, started and with a leader. Every
// harness implements it the same way from the caller's side: propose
// returns only once the command is committed and applied on the leader.
type cluster interface {
	// propose replicates cmd and waits until the leader applied it. The
	// harness may not keep cmd after it returns.
	propose(ctx context.Context, cmd []byte) error
	// applied is how many commands the leader's state machine applied:
	// the smoke test checks it against what the callers counted.
	applied() uint64
	close() error
}

// cellResult is what one system did in one cell (payload, callers): the
// child process prints it as JSON for the parent.
type cellResult struct {
	System    string  `json:"system"`
	Payload   int     `json:"payload"`
	Callers   int     `json:"callers"`
	Count     int64   `json:"count"`  // commands acknowledged inside the window
	Errors    int64   `json:"errors"` // proposals that failed or timed out
	Seconds   float64 `json:"seconds"`
	P50       float64 `json:"p50_us"`
	P99       float64 `json:"p99_us"`
	Max       float64 `json:"max_us"`
	Applied   uint64  `json:"applied"` // the leader's applied commands, warm-up included
	PeakRSS   int64   `json:"peak_rss_kib"`
	PerSecond float64 `json:"per_second"`
}

// errNothingCommitted fails a cell whose harness acknowledged nothing: a
// broken harness must not show up as a slow one.
var errNothingCommitted = errors.New("no command was committed in the measured window")

// drive runs callers synchronous callers against c, each waiting for its
// command before sending the next, for warmup and then for duration.
// Only commands sent and acknowledged inside the measured window count.
func drive(c cluster, payload, callers int, warmup, duration time.Duration) (cellResult, error) {
	start := time.Now().Add(warmup)
	end := start.Add(duration)
	inWindow := func(t time.Time) bool { return !t.Before(start) && t.Before(end) }
	var lat histogram
	var errs atomic.Int64
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Random bytes, different per caller: a log that compresses
			// its records must not gain from zeros.
			cmd := make([]byte, payload)
			r := rand.New(rand.NewPCG(uint64(i), uint64(payload)))
			for j := range cmd {
				cmd[j] = byte(r.Uint32())
			}
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.propose(ctx, cmd)
				cancel()
				t1 := time.Now()
				if err != nil {
					errs.Add(1)
					// A harness that fails at once must not spin the CPU
					// the others need.
					time.Sleep(time.Millisecond)
					continue
				}
				if inWindow(t0) && inWindow(t1) {
					lat.record(t1.Sub(t0))
				}
			}
		}()
	}
	wg.Wait()
	count := int64(lat.count())
	res := cellResult{
		Payload: payload, Callers: callers, Count: count, Errors: errs.Load(),
		Seconds: duration.Seconds(), Applied: c.applied(),
	}
	res.PerSecond = float64(count) / duration.Seconds()
	res.P50 = micros(lat.percentile(50))
	res.P99 = micros(lat.percentile(99))
	res.Max = micros(lat.percentile(100))
	if count == 0 {
		return res, fmt.Errorf("%w (%d errors)", errNothingCommitted, res.Errors)
	}
	return res, nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
