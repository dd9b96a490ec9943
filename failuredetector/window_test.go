package failuredetector

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

var epoch = time.Unix(1_700_000_000, 0)

func at(d time.Duration) time.Time { return epoch.Add(d) }

func mustWindow(t testing.TB, cfg Config, start time.Time) *Window {
	t.Helper()
	w, err := NewWindow(cfg, start)
	require.NoError(t, err)
	return w
}

// beat feeds n heartbeats spaced by the durations gap(i) after now and
// returns the time of the last one.
func beat(w *Window, now time.Time, n int, gap func(i int) time.Duration) time.Time {
	for i := range n {
		now = now.Add(gap(i))
		w.Heartbeat(now)
	}
	return now
}

func every(d time.Duration) func(int) time.Duration { return func(int) time.Duration { return d } }

// defaultTimeout is the silence the default configuration tolerates from
// a jitter-free peer: mean 200ms + pause 400ms + z*(8)=5.612 * 50ms.
const defaultTimeout = 880600 * time.Microsecond

func TestZForPhi(t *testing.T) {
	require.InDelta(t, 5.612, zForPhi(8), 0.001)
	for _, phi := range []float64{1, 2, 5, 8, 12, 16, 30, 50} {
		require.InDelta(t, phi, phiOfZ(zForPhi(phi)), 1e-6, "phi %v", phi)
	}
	// At the expected arrival time a heartbeat is late with probability
	// one half.
	require.InDelta(t, math.Log10(2), phiOfZ(0), 1e-12)
	require.Equal(t, MaxPhi, phiOfZ(1000))
	require.Equal(t, 0.0, phiOfZ(-1000))
}

func TestWindowBeforeAnyHeartbeat(t *testing.T) {
	w := mustWindow(t, DefaultConfig(), epoch)
	// The prior: mean Interval, deviation max(MinStdDev, Interval/4).
	require.Equal(t, 200*time.Millisecond, w.Mean())
	require.Equal(t, 50*time.Millisecond, w.StdDev())
	require.InDelta(t, float64(defaultTimeout), float64(w.Timeout()), float64(time.Millisecond))
	require.False(t, w.Suspected(at(800*time.Millisecond)))
	// A node that never answers is suspected like one that went quiet.
	require.True(t, w.Suspected(at(900*time.Millisecond)))
	require.Equal(t, 0, w.Samples())
}

func TestWindowRegularArrivals(t *testing.T) {
	cfg := DefaultConfig()
	w := mustWindow(t, cfg, epoch)
	last := beat(w, epoch, 50, every(cfg.Interval))
	require.Equal(t, 49, w.Samples(), "the first heartbeat has no predecessor")
	require.Equal(t, 200*time.Millisecond, w.Mean())
	// A jitter-free window uses the floor, not a deviation of zero.
	require.Equal(t, cfg.MinStdDev, w.StdDev())

	// On time or a little late: nowhere near suspicion.
	require.Less(t, w.Phi(last.Add(200*time.Millisecond)), 0.01)
	require.Less(t, w.Phi(last.Add(300*time.Millisecond)), 0.1)
	require.False(t, w.Suspected(last.Add(800*time.Millisecond)))
	// Within five intervals of silence the node is suspected.
	require.True(t, w.Suspected(last.Add(5*cfg.Interval)))
	require.GreaterOrEqual(t, w.Phi(last.Add(5*cfg.Interval)), cfg.Threshold)
	require.InDelta(t, float64(defaultTimeout), float64(w.Timeout()), float64(time.Millisecond))
}

func TestWindowJitterRaisesTheTimeout(t *testing.T) {
	cfg := DefaultConfig()
	regular := mustWindow(t, cfg, epoch)
	beat(regular, epoch, 100, every(200*time.Millisecond))
	jittery := mustWindow(t, cfg, epoch)
	// Same mean, deviation 100ms.
	last := beat(jittery, epoch, 101, func(i int) time.Duration {
		if i%2 == 0 {
			return 100 * time.Millisecond
		}
		return 300 * time.Millisecond
	})
	require.Equal(t, 200*time.Millisecond, jittery.Mean())
	require.Equal(t, 100*time.Millisecond, jittery.StdDev())
	require.Greater(t, jittery.Timeout(), regular.Timeout()+200*time.Millisecond)
	// A silence that condemns the regular peer is ordinary for this one.
	silence := regular.Timeout() + 50*time.Millisecond
	require.True(t, regular.Suspected(regular.Last().Add(silence)))
	require.False(t, jittery.Suspected(last.Add(silence)))
}

func TestWindowGapAndRecovery(t *testing.T) {
	cfg := DefaultConfig()
	w := mustWindow(t, cfg, epoch)
	last := beat(w, epoch, 60, every(cfg.Interval))
	before, samples := w.Timeout(), w.Samples()

	// Frozen for ten seconds.
	require.True(t, w.Suspected(last.Add(2*time.Second)))
	back := last.Add(10 * time.Second)
	w.Heartbeat(back)
	require.False(t, w.Suspected(back))
	require.Less(t, w.Phi(back.Add(cfg.Interval)), 0.01)

	// The gap was a failure, not a sample: the window is exactly as
	// sensitive as before, however often the peer freezes.
	require.Equal(t, samples, w.Samples())
	require.Equal(t, before, w.Timeout())
	for range 10 {
		last = beat(w, back, 5, every(cfg.Interval))
		require.True(t, w.Suspected(last.Add(before)))
		back = last.Add(5 * time.Second)
		w.Heartbeat(back)
	}
	require.Equal(t, before, w.Timeout())

	// A late heartbeat that was not yet suspected is a sample, and it
	// widens the window: that is the adaptation.
	last = beat(w, back, 5, every(cfg.Interval))
	w.Heartbeat(last.Add(before - 10*time.Millisecond))
	require.Greater(t, w.Timeout(), before)
}

func TestWindowExcuse(t *testing.T) {
	cfg := DefaultConfig()
	w := mustWindow(t, cfg, epoch)
	last := beat(w, epoch, 10, every(cfg.Interval))
	n := w.Samples()
	// Our own process was frozen for 5 s of a 5.1 s silence: 100ms remain.
	resumed := last.Add(5100 * time.Millisecond)
	require.True(t, w.Suspected(resumed))
	w.Excuse(resumed, 5*time.Second)
	require.False(t, w.Suspected(resumed))
	require.Equal(t, 100*time.Millisecond, w.Elapsed(resumed))
	require.True(t, w.Suspected(resumed.Add(time.Second)), "a peer silent after the pause is still caught")
	// The first heartbeat after the pause is not an inter-arrival sample.
	w.Heartbeat(resumed.Add(10 * time.Millisecond))
	require.Equal(t, n, w.Samples())
	w.Heartbeat(resumed.Add(210 * time.Millisecond))
	require.Equal(t, n+1, w.Samples())
	// Excuse never moves the reference past now, nor back.
	w.Excuse(resumed.Add(300*time.Millisecond), time.Hour)
	require.Equal(t, resumed.Add(300*time.Millisecond), w.Last())
	w.Excuse(resumed.Add(400*time.Millisecond), -time.Hour)
	require.Equal(t, resumed.Add(300*time.Millisecond), w.Last())
}

func TestWindowExcuseUnderSustainedLateness(t *testing.T) {
	// Every check runs 300ms late and excuses it: the silence still grows
	// by the scheduled check interval each time, so a dead peer is caught
	// after Timeout/CheckInterval checks.
	cfg := DefaultConfig()
	w := mustWindow(t, cfg, epoch)
	now := beat(w, epoch, 10, every(cfg.Interval))
	checks := 0
	for !w.Suspected(now) {
		now = now.Add(cfg.CheckInterval + 300*time.Millisecond)
		w.Excuse(now, 300*time.Millisecond)
		checks++
		require.LessOrEqual(t, checks, int(w.Timeout()/cfg.CheckInterval)+1)
	}
}

func TestWindowAdaptsToASlowerPeer(t *testing.T) {
	// The peer heartbeats every second although we expect 200ms. The
	// prior condemns it between heartbeats at first; the gaps recorded as
	// the prior's timeout pull the mean up until its pace is normal.
	cfg := DefaultConfig()
	w := mustWindow(t, cfg, epoch)
	last := beat(w, epoch, 1, every(time.Second))
	require.True(t, w.Suspected(last.Add(time.Second)))
	last = beat(w, last, 30, every(time.Second))
	require.False(t, w.Suspected(last.Add(time.Second)))
	require.True(t, w.Suspected(last.Add(3*time.Second)))
}

func TestWindowIsBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WindowSize = 10
	w := mustWindow(t, cfg, epoch)
	beat(w, epoch, 1000, func(i int) time.Duration { return time.Duration(100+i) * time.Millisecond })
	require.Equal(t, 10, w.Samples())
	require.Equal(t, 10, cap(w.samples))
	// Only the last ten intervals (1090..1099ms) count.
	require.Equal(t, 1094500*time.Microsecond, w.Mean())
}

func TestWindowTimeGoesBackward(t *testing.T) {
	w := mustWindow(t, DefaultConfig(), epoch)
	w.Heartbeat(at(time.Second))
	w.Heartbeat(at(500 * time.Millisecond)) // an earlier time counts as the last one
	require.Equal(t, at(time.Second), w.Last())
	require.Equal(t, time.Duration(0), w.Elapsed(at(0)))
	require.False(t, w.Suspected(at(0)))
}

func TestNewWindowRejectsBadConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MinStdDev = 0
	_, err := NewWindow(cfg, epoch)
	require.ErrorIs(t, err, ErrInvalidConfig)
}

func TestConfigValidate(t *testing.T) {
	require.NoError(t, DefaultConfig().Validate())
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"zero interval", func(c *Config) { c.Interval = 0 }, "Interval 0s"},
		{"zero check", func(c *Config) { c.CheckInterval = 0 }, "CheckInterval 0s"},
		{"check above interval", func(c *Config) { c.CheckInterval = time.Second }, "CheckInterval 1s must not exceed Interval 200ms"},
		{"threshold low", func(c *Config) { c.Threshold = 0.5 }, "Threshold 0.5"},
		{"threshold high", func(c *Config) { c.Threshold = 60 }, "Threshold 60"},
		{"threshold NaN", func(c *Config) { c.Threshold = math.NaN() }, "Threshold NaN"},
		{"negative pause", func(c *Config) { c.AcceptablePause = -time.Second }, "AcceptablePause -1s"},
		{"zero floor", func(c *Config) { c.MinStdDev = 0 }, "MinStdDev 0s"},
		{"one sample", func(c *Config) { c.MinSamples = 1 }, "MinSamples 1"},
		{"window below min samples", func(c *Config) { c.WindowSize = 4 }, "WindowSize 4 must be in [MinSamples 5"},
		{"huge window", func(c *Config) { c.WindowSize = 1 << 20 }, "WindowSize 1048576"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// genConfig draws a valid configuration.
func genConfig(t *rapid.T) Config {
	interval := time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(time.Second)).Draw(t, "interval"))
	window := rapid.IntRange(2, 200).Draw(t, "window")
	cfg := Config{
		Interval:        interval,
		CheckInterval:   time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(interval)).Draw(t, "check")),
		Threshold:       rapid.Float64Range(1, MaxPhi/2).Draw(t, "threshold"),
		AcceptablePause: time.Duration(rapid.Int64Range(0, int64(2*time.Second)).Draw(t, "pause")),
		MinStdDev:       time.Duration(rapid.Int64Range(int64(time.Millisecond), int64(200*time.Millisecond)).Draw(t, "minStd")),
		WindowSize:      window,
		MinSamples:      rapid.IntRange(2, window).Draw(t, "minSamples"),
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("generated an invalid config: %v", err)
	}
	return cfg
}

// genWindow draws a config and a window fed with arbitrary heartbeats
// (gaps from 0 to 3 s, with part of a gap excused now and then), and
// returns them with the largest gap.
func genWindow(t *rapid.T) (Config, *Window, time.Duration) {
	cfg := genConfig(t)
	w, err := NewWindow(cfg, epoch)
	if err != nil {
		t.Fatal(err)
	}
	now := epoch
	gaps := rapid.SliceOfN(rapid.Int64Range(0, int64(3*time.Second)), 0, 300).Draw(t, "gaps")
	excuseEvery := rapid.IntRange(0, 50).Draw(t, "excuseEvery")
	var maxGap time.Duration
	for i, g := range gaps {
		now = now.Add(time.Duration(g))
		maxGap = max(maxGap, time.Duration(g))
		if excuseEvery > 0 && i%excuseEvery == excuseEvery-1 {
			w.Excuse(now, time.Duration(rapid.Int64Range(0, g).Draw(t, "blind")))
		} else {
			w.Heartbeat(now)
		}
	}
	return cfg, w, maxGap
}

func TestPropertyPhiGrowsWithSilence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		_, w, _ := genWindow(t)
		a := time.Duration(rapid.Int64Range(0, int64(time.Minute)).Draw(t, "a"))
		b := a + time.Duration(rapid.Int64Range(0, int64(time.Minute)).Draw(t, "b"))
		pa, pb := w.Phi(w.Last().Add(a)), w.Phi(w.Last().Add(b))
		if pa > pb+1e-9 {
			t.Fatalf("phi fell from %v at %v to %v at %v (%v)", pa, a, pb, b, w)
		}
		if pa < 0 || pb > MaxPhi {
			t.Fatalf("phi out of [0, MaxPhi]: %v, %v", pa, pb)
		}
		if w.Suspected(w.Last().Add(a)) && !w.Suspected(w.Last().Add(b)) {
			t.Fatalf("suspected after %v but not after %v (%v)", a, b, w)
		}
	})
}

func TestPropertySuspectedIsPhiAtThreshold(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg, w, _ := genWindow(t)
		silence := time.Duration(rapid.Int64Range(0, int64(time.Minute)).Draw(t, "silence"))
		// Away from the edge, where rounding the timeout to whole
		// nanoseconds could tip the comparison.
		if d := silence - w.Timeout(); d > -time.Millisecond && d < time.Millisecond {
			t.Skip("too close to the timeout")
		}
		now := w.Last().Add(silence)
		if got, want := w.Suspected(now), w.Phi(now) >= cfg.Threshold; got != want {
			t.Fatalf("Suspected %v but phi %v vs threshold %v at silence %v (%v)", got, w.Phi(now), cfg.Threshold, silence, w)
		}
	})
}

func TestPropertyFloorsAndBounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg, w, _ := genWindow(t)
		if w.Samples() > cfg.WindowSize {
			t.Fatalf("%d samples in a window of %d", w.Samples(), cfg.WindowSize)
		}
		if w.StdDev() < cfg.MinStdDev {
			t.Fatalf("deviation %v below the floor %v", w.StdDev(), cfg.MinStdDev)
		}
		// The timeout always leaves the acceptable pause and a margin of
		// deviations beyond the mean.
		if min := w.Mean() + cfg.AcceptablePause + cfg.MinStdDev; w.Timeout() < min {
			t.Fatalf("timeout %v below mean+pause+floor %v", w.Timeout(), min)
		}
		// A heartbeat just received is never suspected.
		if w.Suspected(w.Last()) {
			t.Fatalf("suspected at zero silence (%v)", w)
		}
	})
}

func TestPropertyRegularHeartbeatsAreNeverSuspected(t *testing.T) {
	// A peer that heartbeats at least as often as expected, with no
	// jitter, is not suspected between two heartbeats, from the first one
	// on: not while the window relies on its prior, nor after.
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		w, err := NewWindow(cfg, epoch)
		if err != nil {
			t.Fatal(err)
		}
		gap := time.Duration(rapid.Int64Range(0, int64(cfg.Interval)).Draw(t, "gap"))
		n := rapid.IntRange(1, 3*cfg.WindowSize).Draw(t, "n")
		now := epoch
		for i := range n {
			now = now.Add(gap)
			if w.Suspected(now) {
				t.Fatalf("suspected at heartbeat %d, gap %v (%v)", i, gap, w)
			}
			w.Heartbeat(now)
		}
	})
}

func TestPropertySilentPeerIsSuspectedInBoundedTime(t *testing.T) {
	// Whatever a window saw, it suspects a silent peer within a bound that
	// depends only on the configuration and the longest gap between
	// heartbeats: samples are never longer than that gap (a gap recorded
	// as the timeout was longer than it), so neither is their mean, and
	// their deviation is at most half of it.
	rapid.Check(t, func(t *rapid.T) {
		cfg, w, maxGap := genWindow(t)
		z := zForPhi(cfg.Threshold)
		prior := float64(cfg.Interval) + float64(cfg.AcceptablePause) + z*math.Max(float64(cfg.MinStdDev), float64(cfg.Interval)/4)
		learned := float64(maxGap) + float64(cfg.AcceptablePause) + z*math.Max(float64(cfg.MinStdDev), float64(maxGap)/2)
		bound := time.Duration(math.Max(prior, learned)) + time.Microsecond
		if !w.Suspected(w.Last().Add(bound)) {
			t.Fatalf("not suspected after %v of silence (max gap %v, %v)", bound, maxGap, w)
		}
	})
}
