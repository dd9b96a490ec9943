package raftserver

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Environment knobs of the host simulation's seed sweep:
//
//	RAGO_HOSTSIM_SEEDS=n       run n seeds (default 1000)
//	RAGO_HOSTSIM_FIRST_SEED=s  start at seed s (default 1)
//	RAGO_HOSTSIM_SEED=s        run only seed s, writing its trace to
//	                           RAGO_HOSTSIM_TRACE (a file name) if set
const (
	envHSSeeds     = "RAGO_HOSTSIM_SEEDS"
	envHSFirstSeed = "RAGO_HOSTSIM_FIRST_SEED"
	envHSSeed      = "RAGO_HOSTSIM_SEED"
	envHSTrace     = "RAGO_HOSTSIM_TRACE"
)

func hsEnvUint(t *testing.T, name string, def uint64) uint64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	require.NoError(t, err, "bad %s", name)
	return n
}

func TestHostSimulationSeeds(t *testing.T) {
	if s := hsEnvUint(t, envHSSeed, 0); s != 0 {
		opts := hsDefaultOptions(s)
		if path := os.Getenv(envHSTrace); path != "" {
			f, err := os.Create(path)
			require.NoError(t, err)
			defer f.Close()
			opts.Trace = f
		}
		res := hsRun(opts)
		t.Logf("seed %d: %+v", s, res.Stats)
		require.NoError(t, res.Violation)
		return
	}
	n := hsEnvUint(t, envHSSeeds, 1000)
	first := hsEnvUint(t, envHSFirstSeed, 1)
	seeds := make(chan uint64)
	var mu sync.Mutex
	var failed []hsResult
	var total hsStats
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				res := hsRun(hsDefaultOptions(seed))
				mu.Lock()
				if res.Violation != nil {
					failed = append(failed, res)
				}
				total.add(res.Stats)
				mu.Unlock()
			}
		}()
	}
	for s := first; s < first+n; s++ {
		seeds <- s
	}
	close(seeds)
	wg.Wait()
	t.Logf("%d seeds from %d: %+v", n, first, total)
	for _, res := range failed {
		t.Errorf("seed %d: %v\n\treplay: %s=%d %s=/tmp/trace.txt go test ./raftserver -run TestHostSimulationSeeds -v",
			res.Seed, res.Violation, envHSSeed, res.Seed, envHSTrace)
	}
}

// TestHostSimulationIsDeterministic: a seed replays exactly.
func TestHostSimulationIsDeterministic(t *testing.T) {
	for _, seed := range []uint64{3, 4} {
		a, b := hsRun(hsDefaultOptions(seed)), hsRun(hsDefaultOptions(seed))
		require.NoError(t, a.Violation)
		require.Equal(t, a.TraceHash, b.TraceHash, "seed %d", seed)
		require.Equal(t, a.Stats, b.Stats, "seed %d", seed)
	}
}

// TestHostSimulationCatchesSabotage: each deliberate bug in a host's
// storage is caught by the checks within a few seeds.
func TestHostSimulationCatchesSabotage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sabotage hsSabotage
		want     string
	}{
		{"votes are not persisted", hsSabotage{ForgetVote: true}, "vote"},
		// Entries a member acknowledged and lost: its log diverges from
		// what the leader believes it holds.
		{"writes acknowledged before they are durable", hsSabotage{AckBeforeSync: true}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := uint64(1); seed <= 200; seed++ {
				opts := hsDefaultOptions(seed)
				opts.Sabotage = tc.sabotage
				if res := hsRun(opts); res.Violation != nil {
					t.Logf("seed %d: %v", seed, res.Violation)
					require.Contains(t, res.Violation.Error(), tc.want)
					return
				}
			}
			t.Fatalf("no seed of 200 caught it")
		})
	}
}
