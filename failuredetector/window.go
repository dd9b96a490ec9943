package failuredetector

import (
	"fmt"
	"math"
	"time"
)

// Window is what the detector knows about one peer node: the times between
// its recent heartbeats, in a bounded ring, and the time of the last one.
// From them it computes how suspicious the peer's current silence is.
//
// It is a plain value with no clock, goroutine or lock of its own: every
// method that depends on time takes the caller's now, so tests drive it
// with synthetic times. It is not safe for concurrent use; the detector
// process owns one per tracked node.
//
// # Suspicion
//
// Inter-arrival times are modelled as normally distributed with the mean
// mu and standard deviation sigma of the samples in the window, sigma
// floored at Config.MinStdDev, and the expected arrival pushed back by
// Config.AcceptablePause. After t of silence,
//
//	z   = (t - mu - AcceptablePause) / max(sigma, MinStdDev)
//	phi = -log10(P(X > t)) = -log10(erfc(z / sqrt 2) / 2)
//
// and the peer is suspected once phi >= Config.Threshold, that is once the
// silence exceeds Timeout = mu + AcceptablePause + z*·sigma, where z* is
// the z at which phi equals the threshold (5.61 for phi 8). This is the
// phi-accrual detector of Hayashibara et al. with the two safety margins
// Akka added to it; the floors keep a window of perfectly regular
// heartbeats from suspecting a peer that is a few milliseconds late.
//
// Until the window holds Config.MinSamples samples it assumes a mean of
// Config.Interval and a deviation of max(MinStdDev, Interval/4), so a peer
// that never answers is suspected after the same silence as one that went
// quiet, and a peer is not judged by two or three samples.
//
// A gap longer than the current Timeout (the peer was suspected when its
// heartbeat came) is a failure, not a sample of the peer's pace, and is
// not recorded: otherwise every freeze would widen the window, each
// widening would lengthen the next recorded gap, and repeated freezes
// would push the timeout up without bound. The one exception is a window
// still relying on its prior (fewer than MinSamples samples): there the
// gap is recorded as Timeout, so that a peer that heartbeats more slowly
// than Interval (up to the prior's timeout plus AcceptablePause and a few
// deviations, ~1.5 s with the defaults) is learned instead of suspected
// forever.
type Window struct {
	// Parameters, fixed at creation. Durations are float64 nanoseconds.
	pause      float64
	minStd     float64
	priorMean  float64
	priorStd   float64
	minSamples int
	threshold  float64
	zStar      float64 // phiOfZ(zStar) == threshold

	// samples is a ring of inter-arrival times in nanoseconds. Invariant:
	// len(samples) <= cap(samples) == WindowSize; once full, next is the
	// slot of the oldest sample.
	samples []float64
	next    int
	// mean and std are the statistics in use: the prior while
	// len(samples) < minSamples, else the samples' (std floored).
	mean, std float64

	// last is the reference the silence is measured from: the last
	// heartbeat or the window's start, moved on by Excuse. lastIsArrival tells
	// whether it was a heartbeat, since only the time between two
	// heartbeats is a sample.
	last          time.Time
	lastIsArrival bool
}

// NewWindow returns an empty window for a peer first tracked at start. It
// fails with ErrInvalidConfig if cfg does not validate.
func NewWindow(cfg Config, start time.Time) (*Window, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newWindow(cfg, zForPhi(cfg.Threshold), start), nil
}

// newWindow builds a window from a validated cfg; zStar is
// zForPhi(cfg.Threshold), computed once by the caller.
func newWindow(cfg Config, zStar float64, start time.Time) *Window {
	w := &Window{
		pause:      float64(cfg.AcceptablePause),
		minStd:     float64(cfg.MinStdDev),
		priorMean:  float64(cfg.Interval),
		priorStd:   math.Max(float64(cfg.MinStdDev), float64(cfg.Interval)/4),
		minSamples: cfg.MinSamples,
		threshold:  cfg.Threshold,
		zStar:      zStar,
		samples:    make([]float64, 0, cfg.WindowSize),
		last:       start,
	}
	w.mean, w.std = w.priorMean, w.priorStd
	return w
}

// Heartbeat records a heartbeat that arrived at now. A now before the
// previous reference time counts as equal to it (the window never goes
// back in time).
func (w *Window) Heartbeat(now time.Time) {
	if now.Before(w.last) {
		now = w.last
	}
	if w.lastIsArrival {
		iv, timeout := float64(now.Sub(w.last)), float64(w.Timeout())
		switch {
		case iv < timeout:
			w.push(iv)
		case len(w.samples) < w.minSamples:
			w.push(timeout)
		}
	}
	w.last = now
	w.lastIsArrival = true
}

// Excuse removes up to blind of the current silence, never moving its
// start past now, and makes the next heartbeat's interval not count as a
// sample. The detector calls it when it was itself unable to run for
// blind (its process was frozen, starved or stopped by the runtime): it
// could not have seen heartbeats in that time, so that part of the silence
// says nothing about the peer.
func (w *Window) Excuse(now time.Time, blind time.Duration) {
	if blind > 0 {
		w.last = w.last.Add(blind)
		if w.last.After(now) {
			w.last = now
		}
	}
	w.lastIsArrival = false
}

// Elapsed returns the silence at now: the time since the last heartbeat
// (or the start), less what Excuse removed; zero if now is earlier.
func (w *Window) Elapsed(now time.Time) time.Duration {
	return max(now.Sub(w.last), 0)
}

// Phi returns the suspicion level at now, in [0, MaxPhi]. It grows without
// bound (up to MaxPhi) with the silence and does not depend on anything
// but the samples and the silence.
func (w *Window) Phi(now time.Time) float64 {
	z := (float64(w.Elapsed(now)) - w.mean - w.pause) / w.std
	return phiOfZ(z)
}

// Suspected reports whether the peer is suspected at now: Phi(now) has
// reached the threshold. It is computed as Elapsed(now) >= Timeout(), the
// same test without floating point at the edge.
func (w *Window) Suspected(now time.Time) bool {
	return w.Elapsed(now) >= w.Timeout()
}

// Timeout returns the silence after which the peer is suspected, given
// the samples so far.
func (w *Window) Timeout() time.Duration {
	t := w.mean + w.pause + w.zStar*w.std
	if t <= 0 {
		return 0
	}
	return time.Duration(t)
}

// Last returns the reference time the silence is measured from.
func (w *Window) Last() time.Time { return w.last }

// Samples returns how many inter-arrival times the window holds.
func (w *Window) Samples() int { return len(w.samples) }

// Mean returns the mean inter-arrival time in use (the prior, Interval,
// until the window holds MinSamples samples).
func (w *Window) Mean() time.Duration { return time.Duration(w.mean) }

// StdDev returns the standard deviation in use, floor applied.
func (w *Window) StdDev() time.Duration { return time.Duration(w.std) }

// String summarises the window for logs.
func (w *Window) String() string {
	return fmt.Sprintf("window{samples=%d mean=%v std=%v timeout=%v}", len(w.samples), w.Mean(), w.StdDev(), w.Timeout())
}

func (w *Window) push(iv float64) {
	if len(w.samples) < cap(w.samples) {
		w.samples = append(w.samples, iv)
	} else {
		w.samples[w.next] = iv
		w.next = (w.next + 1) % len(w.samples)
	}
	if len(w.samples) < w.minSamples {
		return
	}
	// Two passes over at most WindowSize samples per heartbeat: cheap,
	// and free of the drift a running sum of squares accumulates.
	var sum float64
	for _, s := range w.samples {
		sum += s
	}
	mean := sum / float64(len(w.samples))
	var sq float64
	for _, s := range w.samples {
		d := s - mean
		sq += d * d
	}
	w.mean = mean
	w.std = math.Max(math.Sqrt(sq/float64(len(w.samples))), w.minStd)
}

// phiOfZ is -log10 of the probability that a normal variable exceeds its
// mean by z standard deviations, capped at MaxPhi. It is non-decreasing
// in z.
func phiOfZ(z float64) float64 {
	p := 0.5 * math.Erfc(z/math.Sqrt2)
	if p <= 0 {
		return MaxPhi
	}
	phi := -math.Log10(p)
	switch {
	case phi > MaxPhi:
		return MaxPhi
	case phi < 0: // p is at most 1; guard against rounding
		return 0
	}
	return phi
}

// zForPhi inverts phiOfZ by bisection. math.Erfcinv cannot be used: it
// computes Erfinv(1-x), and 1-x rounds to 1 for the tiny probabilities of
// thresholds above ~15.
func zForPhi(phi float64) float64 {
	lo, hi := -40.0, 40.0 // phiOfZ(-40) ~ 0, phiOfZ(40) = MaxPhi
	for range 200 {
		mid := (lo + hi) / 2
		if phiOfZ(mid) < phi {
			lo = mid
		} else {
			hi = mid
		}
		if hi-lo < 1e-12 {
			break
		}
	}
	return hi
}
