package sim

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/raftserver/core"
)

// Environment knobs of the seed sweep:
//
//	RAGO_SIM_SEEDS=n       run n seeds (default 1000; 200 under -race)
//	RAGO_SIM_FIRST_SEED=s  start at seed s (default 1)
//	RAGO_SIM_SEED=s        run only seed s, writing its event trace to
//	                       RAGO_SIM_TRACE (a file name) if set
//
// A soak: RAGO_SIM_SEEDS=100000 go test ./raftserver/core/sim -run TestSimulationSeeds -timeout 0
const (
	envSeeds     = "RAGO_SIM_SEEDS"
	envFirstSeed = "RAGO_SIM_FIRST_SEED"
	envSeed      = "RAGO_SIM_SEED"
	envTrace     = "RAGO_SIM_TRACE"
)

func envUint(t *testing.T, name string, def uint64) uint64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	require.NoError(t, err, "bad %s", name)
	return n
}

// membersFor alternates 3- and 5-member clusters across seeds.
func membersFor(seed uint64) int { return 3 + 2*int(seed%2) }

func TestSimulationSeeds(t *testing.T) {
	if s := envUint(t, envSeed, 0); s != 0 {
		runOneSeed(t, s)
		return
	}
	def := uint64(1000)
	if raceEnabled {
		def = 200
	}
	n := envUint(t, envSeeds, def)
	first := envUint(t, envFirstSeed, 1)

	seeds := make(chan uint64)
	var mu sync.Mutex
	var failed []Result
	var totals Stats
	stalledRuns := 0
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				res := Run(DefaultOptions(seed, membersFor(seed)))
				mu.Lock()
				if res.Violation != nil {
					failed = append(failed, res)
				}
				totals.Events += res.Stats.Events
				totals.Elections += res.Stats.Elections
				totals.OpsOK += res.Stats.OpsOK
				totals.Crashes += res.Stats.Crashes
				totals.Changes += res.Stats.Changes
				totals.Transfers += res.Stats.Transfers
				totals.ConfigsDone += res.Stats.ConfigsDone
				totals.TransfersOK += res.Stats.TransfersOK
				totals.Snapshots += res.Stats.Snapshots
				totals.Compactions += res.Stats.Compactions
				totals.SnapSends += res.Stats.SnapSends
				totals.Installs += res.Stats.Installs
				totals.Upgrades += res.Stats.Upgrades
				totals.Bumps += res.Stats.Bumps
				totals.SnapshotsLost += res.Stats.SnapshotsLost
				if res.Stats.StalledMax > 0 {
					stalledRuns++
				}
				mu.Unlock()
			}
		}()
	}
	for s := first; s < first+n; s++ {
		seeds <- s
	}
	close(seeds)
	wg.Wait()
	t.Logf("%d seeds from %d: %d events, %d elections, %d client ops acknowledged, %d crashes, "+
		"%d membership changes asked (%d committed), %d transfers asked (%d done), "+
		"%d snapshots taken, %d compactions, %d snapshots sent, %d installed, "+
		"%d upgrades, %d version bumps, %d runs with a member held back by old code, "+
		"%d snapshots found corrupt at restart",
		n, first, totals.Events, totals.Elections, totals.OpsOK, totals.Crashes,
		totals.Changes, totals.ConfigsDone, totals.Transfers, totals.TransfersOK,
		totals.Snapshots, totals.Compactions, totals.SnapSends, totals.Installs,
		totals.Upgrades, totals.Bumps, stalledRuns, totals.SnapshotsLost)
	for _, res := range failed {
		t.Errorf("seed %d: %v\n\treplay: %s=%d %s=/tmp/trace.txt go test ./raftserver/core/sim -run TestSimulationSeeds -v",
			res.Seed, res.Violation, envSeed, res.Seed, envTrace)
	}
}

func runOneSeed(t *testing.T, seed uint64) {
	opts := DefaultOptions(seed, membersFor(seed))
	if path := os.Getenv(envTrace); path != "" {
		f, err := os.Create(path)
		require.NoError(t, err)
		defer f.Close()
		opts.Trace = f
	}
	res := Run(opts)
	t.Logf("seed %d: trace %016x, %+v", seed, res.TraceHash, res.Stats)
	if res.Violation != nil {
		t.Fatalf("seed %d: %v", seed, res.Violation)
	}
}

// TestSimulationReplaysExactly: a seed is a complete description of a run.
func TestSimulationReplaysExactly(t *testing.T) {
	for _, seed := range []uint64{7, 8} {
		a := Run(DefaultOptions(seed, membersFor(seed)))
		b := Run(DefaultOptions(seed, membersFor(seed)))
		require.Nil(t, a.Violation)
		require.Equal(t, a.TraceHash, b.TraceHash, "seed %d replayed differently", seed)
		require.Equal(t, a.Stats, b.Stats)
	}
	require.NotEqual(t,
		Run(DefaultOptions(7, 3)).TraceHash,
		Run(DefaultOptions(9, 3)).TraceHash, "different seeds should give different runs")
}

// TestSabotageIsCaught breaks the core on purpose, once per checked
// property, and requires the simulation to report that property within a
// bounded number of seeds. It proves each check can fail.
func TestSabotageIsCaught(t *testing.T) {
	cases := []struct {
		name     string
		sabotage core.Sabotage
		want     Invariant
		detail   string // the violation's detail must contain it, if set
	}{
		{"two leaders when half the votes win", core.Sabotage{HalfQuorumElections: true}, ElectionSafety, ""},
		{"appending after a mismatched previous entry", core.Sabotage{SkipPrevCheck: true}, LogMatching, ""},
		{"voting for stale logs", core.Sabotage{SkipUpToDateCheck: true}, LeaderCompleteness, ""},
		{"applying entries before they commit", core.Sabotage{ApplyUncommitted: true}, StateMachineSafety, ""},
		{"taking a commit index from a stale message", core.Sabotage{CommitRegress: true}, CommitMonotonic, ""},
		{"counting entries that are not durable", core.Sabotage{CountUndurable: true}, AckedLost, ""},
		{"not persisting the vote", core.Sabotage{ForgetVote: true}, VoteForgotten, ""},
		{"reads without a quorum round", core.Sabotage{ReadWithoutQuorum: true}, Linearizability, ""},
		{"never re-sending to silent followers", core.Sabotage{NoResend: true}, Liveness, ""},
		{"old code applying past a version bump", core.Sabotage{ApplyUnsupportedVersion: true}, VersionSafety, ""},
		{"installing a snapshot behind the commit index", core.Sabotage{InstallStaleSnapshot: true}, StateMachineSafety, ""},
		{"installing a snapshot without resetting the log", core.Sabotage{InstallWithoutReset: true}, CoreError,
			"core log ends at"},
		{"voting after losing log entries", core.Sabotage{VoteWhileRecovering: true}, AckedLost, ""},
	}
	const maxSeeds = 3000
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			others := map[Invariant]int{}
			for seed := uint64(1); seed <= maxSeeds; seed++ {
				opts := DefaultOptions(seed, membersFor(seed))
				opts.Sabotage = tc.sabotage
				res := Run(opts)
				if res.Violation == nil {
					continue
				}
				if res.Violation.Invariant == tc.want && strings.Contains(res.Violation.Detail, tc.detail) {
					t.Logf("caught at seed %d (after %d other violations %v): %v", seed, sum(others), others, res.Violation)
					return
				}
				others[res.Violation.Invariant]++
			}
			t.Fatalf("%s not caught in %d seeds (other violations: %v)", tc.want, maxSeeds, others)
		})
	}
}

func sum(m map[Invariant]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestOptionsDescribeViolations(t *testing.T) {
	v := &Violation{Invariant: Liveness, Event: 3, TimeMs: 9, Detail: "x"}
	require.Equal(t, fmt.Sprintf("%s violated at event 3 (t=9ms): x", Liveness), v.String())
}
