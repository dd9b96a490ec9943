package sim

import (
	"io"

	"github.com/rago-raft/rago/raftserver/core"
)

// Options configures one simulated run.
type Options struct {
	Seed uint64
	// Members is the number of initial voters (3 or 5 in the tests).
	Members int
	// FaultEvents is how many events run while faults are injected.
	FaultEvents int
	// LivenessEvents bounds the events after all faults are healed within
	// which a leader must emerge and every live member must converge.
	LivenessEvents int
	// Clients is the number of concurrent clients.
	Clients int
	// Faults are the fault rates; see DefaultFaults.
	Faults Faults
	// Sabotage is handed to every member (see core.Sabotage).
	Sabotage core.Sabotage
	// SkipLinearizability skips the porcupine check (benchmarks).
	SkipLinearizability bool
	// Vary draws, per seed, the disk latency (sometimes slower than a
	// tick), the message delay and drop rate, the pipelining window and the
	// message size budget, so a sweep covers many regimes.
	Vary bool
	// SnapshotEvery, when set, makes members snapshot every this many
	// entries applied, whatever Vary draws.
	SnapshotEvery uint64
	// TargetVersion, when set, makes the run a rolling upgrade to this
	// machine version, whatever Vary draws.
	TargetVersion uint64
	// Trace, when set, receives one line per event.
	Trace io.Writer
}

// Faults are per-opportunity probabilities and bounds of the adversary.
type Faults struct {
	DropRate      float64 // a message is lost
	DupRate       float64 // a message is delivered twice
	MaxDelayMs    int64   // message delay is uniform in [1, MaxDelayMs]
	SlowRate      float64 // a message is delayed up to 10x MaxDelayMs
	ChaosPeriodMs int64   // mean time between chaos decisions
	Crash         float64 // weight: crash a member (restarted later)
	Partition     float64 // weight: split the members in two groups
	OneWay        float64 // weight: block one direction between two members
	Heal          float64 // weight: remove all partitions
	Suspect       float64 // weight: a false failure-detector suspicion
	Membership    float64 // weight: add, promote or remove a member
	Transfer      float64 // weight: ask the leader to transfer leadership
	Upgrade       float64 // weight: restart a member with newer code (upgrade runs only)
	// SnapshotLoss is the chance that a member holding a snapshot finds it
	// corrupt when it restarts during the fault phase: it falls back to no
	// snapshot and, if its log started after it, loses the log too and
	// recovers (core.Config.RecoverTo).
	SnapshotLoss float64
}

// DefaultFaults is the adversary the tests use.
func DefaultFaults() Faults {
	return Faults{
		DropRate: 0.05, DupRate: 0.03, MaxDelayMs: 12, SlowRate: 0.02,
		ChaosPeriodMs: 60,
		Crash:         3, Partition: 2, OneWay: 1, Heal: 4, Suspect: 1,
		Membership: 1.5, Transfer: 1, Upgrade: 1.5,
		SnapshotLoss: 0.2,
	}
}

// NoFaults is a perfect network and no chaos (benchmarks).
func NoFaults() Faults { return Faults{MaxDelayMs: 1, ChaosPeriodMs: 1 << 40} }

// DefaultOptions returns the options the seed sweep uses.
func DefaultOptions(seed uint64, members int) Options {
	return Options{
		Seed: seed, Members: members,
		FaultEvents: 3000, LivenessEvents: 60000, Clients: 3,
		Faults: DefaultFaults(), Vary: true,
	}
}

// Timing of the simulated members, in simulated milliseconds.
const (
	electionTimeoutMs = 150
	tickMs            = 20
	checkQuorumMs     = 100
	fdPeriodMs        = 25
	fdMaxDelayMs      = 30
	clientTimeoutMs   = 1500
	maxMembers        = 7
)
