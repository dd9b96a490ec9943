package sim

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/fnv"
	"math/rand/v2"

	"github.com/anishathalye/porcupine"
	"github.com/rago-raft/rago/raftserver/core"
)

// World is one simulated run. It is single-threaded and deterministic.
type World struct {
	opts    Options
	rng     *rand.Rand
	now     int64
	seq     uint64
	q       queue
	events  int
	healed  bool
	members []*member
	byID    map[core.ServerID]int
	blocked [maxMembers][maxMembers]bool
	fdAt    [maxMembers][maxMembers]int64 // last detector notice time per pair

	trace     hash.Hash64
	traceBuf  []byte
	violation *Violation

	checker
	clients      []*client
	history      []porcupine.Operation
	unknown      []*op
	cfgIndex     uint64          // highest committed config entry applied anywhere
	cfgCommitted core.Membership // the configuration of cfgIndex
	stats        Stats
	nextOpID     int
	// Per-seed regime (see Options.Vary).
	walMaxDelayMs  int64
	maxInFlight    uint64
	leaderLostMs   int64
	maxAppendBytes int
	snapEvery      uint64 // a member snapshots every this many entries applied, 0: never
	snapRetryMs    int64
	// targetVersion is the machine version a rolling upgrade moves every
	// member to (0: no upgrade in this run); keepOld is the member kept on
	// old code after healing until the cluster has converged (-1: none).
	targetVersion uint64
	keepOld       int
	applyBuf      []core.Entry
	encodeBuf     []byte
}

// member is one simulated server: a core plus its disk, timers and machine.
type member struct {
	idx     int
	id      core.ServerID
	initial core.Membership
	raft    *core.Raft
	up      bool
	stopped bool // removed from the cluster and shut down for good
	// everMember: in the initial or a committed configuration at some point.
	everMember bool
	inc        int // incarnation, bumped on crash
	disk       disk
	syncQueued bool
	timerGen   uint64
	tickGen    uint64
	lastCommit uint64
	machine    machineState
	applied    uint64
	queries    []waitingQuery
	fdTold     [maxMembers]bool // suspicions this incarnation was told about
	// version is the machine version this member's code supports; a
	// rolling upgrade restarts it with a higher one.
	version uint64
	// staged is the last snapshot received (durable, not yet installed).
	staged *stagedSnapshot
	// snapWriting: a snapshot of this member is being written.
	snapWriting bool
	snapFrom    uint64 // applied index of the last snapshot started
}

// stagedSnapshot is a snapshot as it travels and waits to be installed.
type stagedSnapshot struct {
	snap  core.Snapshot
	state machineState
}

type waitingQuery struct {
	o     *op
	index uint64
}

// Stats summarises a run.
type Stats struct {
	Events      int
	Elections   int
	MaxTerm     uint64
	Committed   uint64
	OpsOK       int
	OpsFailed   int
	OpsUnknown  int
	Crashes     int
	Partitions  int
	Changes     int // membership changes asked for
	Transfers   int // leader transfers asked for
	ConfigsDone int // config entries committed
	TransfersOK int // transfers that completed
	CoreSteps   int
	MessagesOut int
	Snapshots   int // snapshots taken (SnapshotTaken stepped)
	Compactions int // Compact actions
	SnapSends   int // SendSnapshot actions
	Installs    int // RestoreSnapshot actions
	Upgrades    int // members restarted with newer code
	Bumps       int // machine version bumps committed
	StalledMax  int // most entries a member on old code held back at once
	// SnapshotsLost counts restarts whose snapshot was found corrupt.
	SnapshotsLost int
}

func newWorld(opts Options) *World {
	if opts.Members < 1 || opts.Members > maxMembers {
		opts.Members = 3
	}
	w := &World{
		opts:    opts,
		rng:     rand.New(rand.NewPCG(opts.Seed, 0x5eed)),
		byID:    map[core.ServerID]int{},
		trace:   fnv.New64a(),
		checker: newChecker(),
	}
	w.walMaxDelayMs, w.maxInFlight, w.maxAppendBytes = 6, 64, 4096
	w.leaderLostMs = electionTimeoutMs
	w.snapRetryMs = 10 * tickMs
	w.keepOld = -1
	if opts.Vary {
		w.walMaxDelayMs = []int64{2, 6, 45}[w.rng.IntN(3)]
		w.maxInFlight = []uint64{1, 4, 64, 1000}[w.rng.IntN(4)]
		w.maxAppendBytes = []int{1, 200, 4096}[w.rng.IntN(3)]
		w.opts.Faults.MaxDelayMs = []int64{3, 12, 40}[w.rng.IntN(3)]
		w.opts.Faults.DropRate = []float64{0, 0.05, 0.2}[w.rng.IntN(3)]
		// Half the worlds react to a lost leader faster than they time
		// out an election, as servers do.
		w.leaderLostMs = []int64{electionTimeoutMs, electionTimeoutMs / 3}[w.rng.IntN(2)]
		// Snapshots: never, or every few entries applied (so that lagging,
		// restarted and new members need them), with transfers retried
		// soon or late.
		w.snapEvery = []uint64{0, 3, 10, 40}[w.rng.IntN(4)]
		w.snapRetryMs = []int64{4 * tickMs, 25 * tickMs}[w.rng.IntN(2)]
		// A third of the runs upgrade the members' code one by one.
		if w.rng.IntN(3) == 0 {
			w.targetVersion = 1 + w.rng.Uint64N(2)
		}
	}
	if opts.SnapshotEvery > 0 {
		w.snapEvery = opts.SnapshotEvery
	}
	if opts.TargetVersion > 0 {
		w.targetVersion = opts.TargetVersion
	}
	var initial core.Membership
	for i := 0; i < opts.Members; i++ {
		initial.Voters = append(initial.Voters, memberID(i))
	}
	for i := 0; i < opts.Members; i++ {
		var v uint64
		if w.targetVersion > 0 {
			v = w.rng.Uint64N(w.targetVersion)
		}
		m := w.addMember(initial, v)
		m.everMember = true
	}
	for i := 0; i < opts.Clients; i++ {
		w.clients = append(w.clients, &client{idx: i, leader: -1})
		w.schedule(1+w.rng.Int64N(20), evClient{c: i})
	}
	w.schedule(w.chaosDelay(), evChaos{})
	w.schedule(fdPeriodMs, evFD{})
	return w
}

func memberID(i int) core.ServerID {
	return core.ServerID{Name: fmt.Sprintf("s%d", i+1), Node: fmt.Sprintf("n%d", i+1)}
}

// addMember creates and starts a member with the given initial config and
// machine version.
func (w *World) addMember(initial core.Membership, version uint64) *member {
	m := &member{idx: len(w.members), id: memberID(len(w.members)), initial: initial, version: version}
	w.members = append(w.members, m)
	w.byID[m.id] = m.idx
	w.start(m)
	return m
}

func (w *World) config(m *member) core.Config {
	return core.Config{
		ID:                  m.id,
		InitialMembers:      m.initial,
		ElectionTimeoutMs:   electionTimeoutMs,
		LeaderLostTimeoutMs: w.leaderLostMs,
		TickMs:              tickMs,
		CheckQuorumMs:       checkQuorumMs,
		MaxInFlight:         w.maxInFlight,
		MaxAppendBytes:      w.maxAppendBytes,
		SnapshotRetryMs:     w.snapRetryMs,
		MachineVersion:      m.version,
		Snapshot:            m.disk.snap.Clone(),
		RecoverTo:           m.disk.recoverTo,
		RecoverTerm:         m.disk.recoverTerm,
		Seed:                w.opts.Seed*1000003 + uint64(m.idx)*7919 + uint64(m.inc),
		Sabotage:            w.opts.Sabotage,
	}
}

// start boots m from its durable state, as the server does: the log is
// made to continue the snapshot, the machine restored from the snapshot.
func (w *World) start(m *member) {
	m.disk.reconcile()
	r, err := core.New(w.config(m), m.disk.hard, reader{&m.disk})
	if err != nil {
		w.violate(CoreError, "member %s: New: %v", m.id, err)
		return
	}
	m.raft = r
	m.up = true
	m.machine = newMachineState()
	if m.disk.snap.Index > 0 {
		m.machine = m.disk.state.clone()
	}
	m.applied = m.machine.index
	m.snapFrom = m.applied
	m.snapWriting = false
	m.staged = nil
	m.lastCommit = 0
	m.queries = nil
	m.fdTold = [maxMembers]bool{}
	w.stepMember(m, core.Started{})
}

// stopGracefully stops m the way its server does on a shutdown, a removal
// or an upgrade: the core answers what it holds (core.Stopping) and a
// leader tells its followers, then m goes down like a crash (writes still
// in flight are not waited for).
func (w *World) stopGracefully(m *member, stop bool) {
	w.stepMember(m, core.Stopping{})
	w.crash(m, stop)
}

// crash kills m: unsynced writes are lost (some may survive unreported),
// clients waiting on it learn nothing.
func (w *World) crash(m *member, stop bool) {
	if !m.up {
		m.stopped = m.stopped || stop
		return
	}
	if err := m.disk.crash(w.rng.IntN(len(m.disk.pending) + 1)); err != nil {
		w.violate(CoreError, "member %s: crash: %v", m.id, err)
		return
	}
	m.raft = nil
	m.up = false
	m.stopped = stop
	m.inc++
	m.syncQueued = false
	m.queries = nil
	for _, c := range w.clients {
		if o := c.cur; o != nil && o.target == m.idx && o.sent {
			w.finishUnknown(c, o)
		}
	}
	// Monitors of its actor fire where the network lets them: a
	// follower's of its leader, a leader's of its peers.
	for _, o := range w.members {
		if o.up && !w.blocked[m.idx][o.idx] {
			w.schedule(1+w.rng.Int64N(10), evCore{m: o.idx, inc: o.inc, ev: core.LeaderDown{Leader: m.id}})
			w.schedule(1+w.rng.Int64N(10), evCore{m: o.idx, inc: o.inc, ev: core.PeerDown{Peer: m.id}})
		}
	}
	if !stop {
		w.schedule(50+w.rng.Int64N(500), evRestart{m: m.idx})
	}
}

// traceEvent folds one event into the trace digest (and the text trace).
func (w *World) traceEvent(kind string, m int, data []byte) {
	b := w.traceBuf[:0]
	b = binary.LittleEndian.AppendUint64(b, uint64(w.now))
	b = append(b, kind...)
	b = append(b, byte(m))
	b = append(b, data...)
	w.traceBuf = b
	w.trace.Write(b)
	if w.opts.Trace != nil {
		fmt.Fprintf(w.opts.Trace, "%8d t=%-7d %-9s m=%d %x\n", w.events, w.now, kind, m, data)
	}
}
