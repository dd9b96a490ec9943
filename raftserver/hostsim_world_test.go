package raftserver

import (
	"container/heap"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

// The host simulation runs the servers' real hosts (server: the Raft core,
// machine host, effect runner, snapshot bookkeeping and transfers, replies
// and queries) in one goroutine, over a simulated network, clock and disks:
// a log that loses unsynced writes in a crash, a snapshot store on an
// in-memory file system that is crash-cloned, a snapshot writer. Faults:
// crashes, partitions, one-way links, lost, duplicated and late messages,
// false failure-detector suspicions, membership changes, leadership
// transfers, rolling upgrades of the machine's code, and snapshots found
// corrupt at restart. Clients write and read through the same requests
// and redirect rule as System's API, some with sessions, and some commands
// make the machine panic. A seed decides everything: a failing seed
// replays exactly.
//
// Checked: at most one leader per term; a vote is durable before it is
// sent and one per member and term; no two logs hold different entries at
// one index and term; a member's commit index never goes back; every
// member applies the same command at each index, holds the same state
// after it, never applies under a machine version its code does not
// support, and switches versions at the same index as the others; a
// snapshot holds the state after the command it ends with; the history
// of acknowledged operations is linearizable (porcupine); after healing,
// every member of the configuration converges on the leader's log and
// state. TestHostSimulationCatchesSabotage shows each check biting.

type hsEvent struct {
	at  int64
	seq uint64
	ev  any
}

type hsQueue []hsEvent

func (q hsQueue) Len() int { return len(q) }

func (q hsQueue) Less(i, j int) bool {
	return q[i].at < q[j].at || q[i].at == q[j].at && q[i].seq < q[j].seq
}

func (q hsQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }

func (q *hsQueue) Push(x any) { *q = append(*q, x.(hsEvent)) }

func (q *hsQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// Events of the simulation.
type (
	hsDeliver struct {
		from, to int
		msg      actor.Message
	}
	hsTimer struct {
		m, inc int
		id     timerID
		msg    actor.Message
	}
	hsDown struct {
		m, inc int
		id     monitorID
	}
	hsSync      struct{ m, inc int }
	hsSnapWrite struct {
		m, inc int
		w      snapshot.Write
	}
	hsExit struct {
		m, inc int
		reason actor.Reason
	}
	hsRestart struct{ m int }
	hsChaos   struct{}
	hsFD      struct{}
	hsRejoin  struct{}
)

type hsWorld struct {
	opts    hsOptions
	rng     *rand.Rand
	now     int64
	seq     uint64
	q       hsQueue
	events  int
	healed  bool
	members []*hsMember
	byName  map[string]int
	blocked [hsMaxMembers][hsMaxMembers]bool
	clients []*hsClient
	history []porcupine.Operation
	unknown []*hsOp
	leaders map[uint64]ServerID    // term -> the leader recorded for it
	votes   map[[2]uint64]ServerID // (member, term) -> the vote it granted
	applied map[uint64]string      // index -> the command applied there
	digests map[uint64]string      // index of a command -> machine state after it
	values  map[string]uint64      // value put -> the index its command was applied at
	entries map[[2]uint64]string   // (index, term) -> the entry any log held there
	bumps   map[uint64]uint64      // machine version -> the index it took effect
	// Per-seed regime.
	syncDelayMs   int64
	maxDelayMs    int64
	dropRate      float64
	maxInFlight   uint64
	appendBytes   int
	snapEntries   uint64
	targetVersion uint64 // a rolling upgrade to this version (0: none)

	// lateDowns are monitors' Downs held up by a blocked link.
	lateDowns []hsLateDown

	violation error
	trace     hash.Hash64
	stats     hsStats
	nextOp    int
	nextAdmin uint64
	logger    *slog.Logger
}

// hsLateDown is a Down that waits for the link from the member that went.
type hsLateDown struct {
	from int
	down hsDown
}

// deliverLateDowns sends the Downs whose links are open again.
func (w *hsWorld) deliverLateDowns() {
	keep := w.lateDowns[:0]
	for _, d := range w.lateDowns {
		if w.blocked[d.from][d.down.m] {
			keep = append(keep, d)
			continue
		}
		w.schedule(1+w.rng.Int64N(10), d.down)
	}
	w.lateDowns = keep
}

// hsMember is one simulated node with one server on it.
type hsMember struct {
	idx     int
	id      ServerID
	uid     string
	initial []ServerID // the InitialMembers it was created with
	version uint64     // the machine version its code supports
	up      bool
	stopped bool // removed from the cluster: down for good
	// wiped: it lost its disk and waits to rejoin (see rejoin); gen counts
	// its disks, for its UIDs.
	wiped bool
	gen   int
	// bound: when it last went down, its configuration bound it to its
	// incarnation, and that configuration had committed.
	bound bool
	// exiting: its host asked to exit (a removal); like a process that
	// called Exit, it takes no more input until it is down.
	exiting bool
	// removedAt is the index of the configuration whose removal stopped
	// it, as it was when the host asked to exit (see readmitted).
	removedAt uint64
	inc       int
	host      *server
	env       *hsEnv
	log       *simLog
	state     *simState
	fs        *vfs.MemFS
	// watching and told: nodes the host asked the failure detector about,
	// and the last verdict told per node (true: suspected).
	watching   map[string]bool
	told       map[string]bool
	syncQueued bool
	lastCommit uint64
}

func (w *hsWorld) schedule(after int64, ev any) {
	w.seq++
	heap.Push(&w.q, hsEvent{at: w.now + after, seq: w.seq, ev: ev})
}

func (w *hsWorld) violate(format string, args ...any) {
	if w.violation == nil {
		w.violation = fmt.Errorf("t=%d: "+format, append([]any{w.now}, args...)...)
	}
}

func (w *hsWorld) tracef(format string, args ...any) {
	line := fmt.Sprintf("%d %s\n", w.now, fmt.Sprintf(format, args...))
	w.trace.Write([]byte(line))
	if w.opts.Trace != nil {
		_, _ = io.WriteString(w.opts.Trace, line)
	}
}

func hsMemberID(i int) ServerID {
	return ServerID{Name: fmt.Sprintf("s%d", i+1), Node: fmt.Sprintf("n%d", i+1)}
}

func newHSWorld(opts hsOptions) *hsWorld {
	w := &hsWorld{
		opts:    opts,
		rng:     rand.New(rand.NewPCG(opts.Seed, 0x4057)),
		byName:  map[string]int{},
		leaders: map[uint64]ServerID{},
		votes:   map[[2]uint64]ServerID{},
		applied: map[uint64]string{},
		digests: map[uint64]string{},
		values:  map[string]uint64{},
		entries: map[[2]uint64]string{},
		bumps:   map[uint64]uint64{},
		trace:   fnv.New64a(),
		logger:  slog.New(slog.DiscardHandler),
	}
	if opts.Trace != nil {
		w.logger = slog.New(slog.NewTextHandler(opts.Trace, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	// The regime of this seed: disks slower than a tick or not, slow and
	// lossy networks or not, pipelining windows and message sizes down to
	// one entry, snapshots every few entries or rarely, and in a third of
	// the runs a rolling upgrade of the machine's code.
	w.syncDelayMs = []int64{2, 6, 45}[w.rng.IntN(3)]
	w.maxDelayMs = []int64{3, 12, 40}[w.rng.IntN(3)]
	w.dropRate = []float64{0, 0.05, 0.2}[w.rng.IntN(3)]
	w.maxInFlight = []uint64{1, 4, 64}[w.rng.IntN(3)]
	w.appendBytes = []int{1, 200, 4096}[w.rng.IntN(3)]
	w.snapEntries = []uint64{3, 10, 40, 1 << 20}[w.rng.IntN(4)]
	if w.rng.IntN(3) == 0 {
		w.targetVersion = 1 + w.rng.Uint64N(2)
	}
	var initial []ServerID
	for i := range opts.Members {
		initial = append(initial, hsMemberID(i))
	}
	for range opts.Members {
		var v uint64
		if w.targetVersion > 0 {
			v = w.rng.Uint64N(w.targetVersion)
		}
		w.addMember(initial, v)
	}
	for i := range opts.Clients {
		w.clients = append(w.clients, &hsClient{idx: i, leader: -1, session: i > 0, clientID: uint64(1000 + i)})
		w.schedule(1+w.rng.Int64N(20), hsClientNext{c: i})
	}
	w.schedule(w.chaosDelay(), hsChaos{})
	w.schedule(hsFDPeriodMs, hsFD{})
	w.schedule(hsRejoinMs, hsRejoin{})
	return w
}

// addMember creates a member (initial empty: it joins) and starts it.
func (w *hsWorld) addMember(initial []ServerID, version uint64) *hsMember {
	i := len(w.members)
	m := &hsMember{idx: i, id: hsMemberID(i), uid: fmt.Sprintf("s%d-uid", i+1), initial: initial, version: version,
		log: &simLog{}, state: &simState{}, fs: vfs.NewCrashableMem()}
	w.members = append(w.members, m)
	w.byName[m.id.Name] = i
	// The node's data directory, made durable as StartSystem makes it.
	if err := makeDataDirs(m.fs, "/data", "snapshots"); err != nil {
		w.violate("member %s: %v", m.id, err)
		return m
	}
	w.start(m)
	return m
}

// start builds m's host from its durable state and starts it.
func (w *hsWorld) start(m *hsMember) {
	m.inc++
	m.up, m.exiting = true, false
	m.watching, m.told = map[string]bool{}, map[string]bool{}
	m.syncQueued, m.lastCommit = false, 0
	m.env = &hsEnv{w: w, m: m, inc: m.inc, timers: map[timerID]bool{}, mons: map[monitorID]int{}}
	store, err := snapshot.Open("/data/snapshots", snapshot.Options{FS: snapshot.FromVFS(m.fs), BlockBytes: 512})
	if err != nil {
		w.violate("member %s: snapshot store: %v", m.id, err)
		return
	}
	inc := m.inc
	ports := hostPorts{
		openLog: func(actor.Ref) (logPort, error) { return hsLog{m.log.open(), w, m}, nil },
		state:   hsState{m.state, w},
		snaps: snapshotPort{store: store, submit: func(wr snapshot.Write) error {
			w.schedule(1+w.rng.Int64N(3*w.syncDelayMs), hsSnapWrite{m: m.idx, inc: inc, w: wr})
			return nil
		}},
		node: &hsNode{w: w, m: m},
	}
	maxSessions := 100
	if w.opts.Sabotage.ForgetSessions {
		maxSessions = 1
	}
	conf := hostConfig{
		raft: core.Config{
			ElectionTimeoutMs: hsElectionMs, LeaderLostTimeoutMs: hsElectionMs / 3, MaxElectionBackoff: 3,
			TickMs: hsTickMs, CheckQuorumMs: hsCheckQuorum, SnapshotRetryMs: 10 * hsTickMs,
			MaxInFlight: w.maxInFlight, MaxAppendBytes: w.appendBytes, Sabotage: w.opts.Core,
		},
		sessionTTLEntries: 1 << 20,
		maxSessions:       maxSessions,
		snapshots:         SnapshotPolicy{Entries: w.snapEntries, Bytes: 1 << 40, MinInterval: time.Millisecond, LogRatio: -1, SkipOnStop: true},
		machineTick:       time.Second,
		seed:              func() uint64 { return w.opts.Seed*1000003 + uint64(m.idx)*7919 + uint64(inc) },
	}
	members := m.initial
	if len(m.state.members) > 0 {
		// The node's directory knows the latest members: a restarted
		// server starts from them, as System does.
		members = m.state.members
	}
	cfg := ServerConfig{ID: m.id, Cluster: "sim", Machine: MachineSpec{Kind: "kv"}, InitialMembers: members}
	m.host = newHost(m.env, &conf, ports, cfg, m.uid, m.initial, w.logger.With("server", m.id.Name), newServerMetrics(cfg.ID, cfg.Cluster))
	w.tracef("start %s inc=%d version=%d", m.id.Name, m.inc, m.version)
	if err := m.host.start(); err != nil {
		w.violate("member %s failed to start: %v", m.id, err)
		return
	}
	w.afterInput(m)
}

// crash kills m: unsynced writes are lost (a random prefix of the log's
// survives, and some of the snapshot files' unsynced data), the monitors
// of its process fire where the network lets them, and it restarts later
// unless stop.
func (w *hsWorld) crash(m *hsMember, stop bool) {
	if !m.up {
		m.stopped = m.stopped || stop
		return
	}
	w.tracef("crash %s stop=%v", m.id.Name, stop)
	if err := m.log.crash(w.rng.IntN(len(m.log.pending) + 1)); err != nil {
		w.violate("member %s: %v", m.id, err)
	}
	m.fs = m.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: w.rng.IntN(101), RNG: rand.New(rand.NewPCG(w.rng.Uint64(), 1))})
	m.up, m.stopped = false, stop
	st := m.host.raft.Status()
	m.bound = st.Members.Incarnation(m.id) == incarnationOf(m.uid) && st.MembersIndex <= st.Commit
	m.host = nil
	for _, o := range w.members {
		if !o.up {
			continue
		}
		for _, id := range slices.Sorted(maps.Keys(o.env.mons)) {
			if o.env.mons[id] != m.idx {
				continue
			}
			if w.blocked[m.idx][o.idx] {
				// The news waits for the link: the actor layer never loses
				// a Down, it delivers it late or as a lost connection.
				w.lateDowns = append(w.lateDowns, hsLateDown{from: m.idx, down: hsDown{m: o.idx, inc: o.inc, id: id}})
				continue
			}
			w.schedule(1+w.rng.Int64N(10), hsDown{m: o.idx, inc: o.inc, id: id})
		}
	}
	if !stop {
		w.schedule(50+w.rng.Int64N(500), hsRestart{m: m.idx})
	}
}

// stopGracefully stops m as System does: the host answers what it holds
// and tells its followers, the log syncs, then it goes down.
func (w *hsWorld) stopGracefully(m *hsMember, reason actor.Reason, stop bool) {
	if !m.up {
		return
	}
	m.host.terminating(reason)
	if _, err := m.log.sync(len(m.log.pending)); err != nil {
		w.violate("member %s: %v", m.id, err)
	}
	w.crash(m, stop)
}

// send carries msg from member from to the process to.
func (w *hsWorld) send(from *hsMember, to actor.Ref, msg actor.Message) error {
	ti, ok := w.byName[to.Name]
	if !ok {
		return nil // not a server: machine effects' targets are not simulated
	}
	if ti == from.idx {
		// To itself (a flush): local, never lost.
		w.schedule(0, hsDeliver{from: from.idx, to: ti, msg: msg})
		return nil
	}
	w.stats.Sends++
	w.checkVote(from, w.members[ti].id, msg)
	cp, err := actor.Roundtrip(msg)
	if err != nil {
		w.violate("member %s sends %T that does not cross the wire: %v", from.id, msg, err)
		return err
	}
	if w.blocked[from.idx][ti] || (!w.healed && w.rng.Float64() < w.dropRate) {
		return nil
	}
	copies := 1
	if !w.healed && w.rng.Float64() < 0.02 {
		copies = 2
	}
	for range copies {
		d := 1 + w.rng.Int64N(w.maxDelayMs)
		if !w.healed && w.rng.Float64() < 0.02 {
			d *= 10
		}
		w.schedule(d, hsDeliver{from: from.idx, to: ti, msg: cp})
	}
	return nil
}

func (w *hsWorld) step() bool {
	if w.q.Len() == 0 {
		return false
	}
	e := heap.Pop(&w.q).(hsEvent)
	w.now = e.at
	w.events++
	switch ev := e.ev.(type) {
	case hsDeliver:
		m := w.members[ev.to]
		if !m.takesInput() || w.blocked[ev.from][ev.to] {
			return true
		}
		w.tracef("deliver %s->%s %T", w.members[ev.from].id.Name, m.id.Name, ev.msg)
		switch ev.msg.(type) {
		case *snapChunk:
			w.stats.SnapChunks++
			m.host.peerInput(w.members[ev.from].id.Node, ev.msg)
		case *peerMsg, *snapAck, *membersAsk, *membersTell:
			m.host.peerInput(w.members[ev.from].id.Node, ev.msg)
		default:
			m.host.handle(ev.msg)
		}
		w.afterInput(m)
	case hsTimer:
		m := w.members[ev.m]
		if !m.takesInput() || m.inc != ev.inc || !m.env.timers[ev.id] {
			return true
		}
		delete(m.env.timers, ev.id)
		w.tracef("timer %s %T", m.id.Name, ev.msg)
		m.host.handle(ev.msg)
		w.afterInput(m)
	case hsDown:
		m := w.members[ev.m]
		if !m.takesInput() || m.inc != ev.inc {
			return true
		}
		if _, ok := m.env.mons[ev.id]; !ok {
			return true
		}
		delete(m.env.mons, ev.id)
		w.tracef("down %s %d", m.id.Name, ev.id)
		m.host.processDown(ev.id, actor.NoConnection)
		w.afterInput(m)
	case hsSync:
		w.syncLog(ev)
	case hsSnapWrite:
		w.writeSnapshot(ev)
	case hsExit:
		w.exited(ev)
	case hsRestart:
		m := w.members[ev.m]
		if !m.up && !m.stopped {
			w.restart(m)
		}
	case hsChaos:
		if !w.healed {
			w.chaos()
			w.schedule(w.chaosDelay(), hsChaos{})
		}
	case hsRejoin:
		w.rejoin()
		w.schedule(hsRejoinMs, hsRejoin{})
	case hsFD:
		w.failureDetector()
		w.readmitted()
		w.schedule(hsFDPeriodMs, hsFD{})
	case hsClientNext:
		w.clientNext(w.clients[ev.c])
	case hsSendOp:
		w.sendOp(ev.op, ev.try)
	case hsReply:
		w.clientReply(ev)
	case hsTimeout:
		w.clientTimeout(ev)
	}
	return true
}

// takesInput reports whether m's host handles input: it is up and did not
// ask to exit.
func (m *hsMember) takesInput() bool { return m.up && !m.exiting }

// exited: a host ended its process. Removed from the cluster, it stops
// for good; any other reason is a failure the simulation never causes.
func (w *hsWorld) exited(ev hsExit) {
	m := w.members[ev.m]
	if !m.up || m.inc != ev.inc {
		return
	}
	if ev.reason.Kind != actor.ReasonNormal {
		w.violate("member %s failed: %v", m.id, ev.reason)
		return
	}
	w.stats.Stopped++
	w.stopGracefully(m, ev.reason, true)
}

// readmitted restarts a member that a removal stopped once a
// configuration newer than that removal names it again (a promotion that
// waited behind its removal, or an add), as its operator would: a removed
// server stays stopped until someone starts it. The configuration need not
// have committed: it may need the member's vote to commit.
func (w *hsWorld) readmitted() {
	for _, l := range w.members {
		if !l.up {
			continue
		}
		st := l.host.raft.Status()
		for _, id := range append(st.Members.Voters, st.Members.NonVoters...) {
			if m := w.members[w.byName[id.Name]]; m.stopped && st.MembersIndex > m.removedAt {
				m.stopped = false
				w.tracef("readmitted %s", m.id.Name)
				w.schedule(50+w.rng.Int64N(500), hsRestart{m: m.idx})
			}
		}
	}
}

// afterInput runs after every input of a host: it checks the commit index
// and queues a sync of the writes it issued.
func (w *hsWorld) afterInput(m *hsMember) {
	if !m.up || w.violation != nil {
		return
	}
	if c := m.host.raft.Commit(); c < m.lastCommit {
		w.violate("member %s's commit index went back from %d to %d", m.id, m.lastCommit, c)
	} else {
		m.lastCommit = c
	}
	if len(m.log.pending) > 0 && !m.syncQueued {
		m.syncQueued = true
		w.schedule(1+w.rng.Int64N(w.syncDelayMs), hsSync{m: m.idx, inc: m.inc})
	}
}

// syncLog makes some of a member's pending writes durable and reports them.
func (w *hsWorld) syncLog(ev hsSync) {
	m := w.members[ev.m]
	if !m.takesInput() || m.inc != ev.inc {
		return
	}
	m.syncQueued = false
	n := len(m.log.pending)
	if n == 0 {
		return
	}
	var lasts []core.Entry
	var err error
	if w.opts.Sabotage.AckBeforeSync {
		for _, wr := range m.log.pending {
			lasts = append(lasts, wr.ents[len(wr.ents)-1])
		}
		_, err = m.log.sync(w.rng.IntN(n + 1))
	} else {
		lasts, err = m.log.sync(1 + w.rng.IntN(n))
	}
	if err != nil {
		w.violate("member %s: %v", m.id, err)
		return
	}
	if len(lasts) > 1 && w.rng.IntN(2) == 0 {
		lasts = lasts[len(lasts)-1:] // one report per fsync
	}
	for _, wr := range written(m.uid, lasts) {
		if !m.takesInput() || m.inc != ev.inc {
			return
		}
		w.tracef("written %s %d@%d", m.id.Name, wr.To, wr.Term)
		m.host.handle(wr)
	}
	w.afterInput(m)
}

// writeSnapshot does what the node's snapshot writer does, at once.
func (w *hsWorld) writeSnapshot(ev hsSnapWrite) {
	m := w.members[ev.m]
	defer ev.w.Data.Release()
	if !m.takesInput() || m.inc != ev.inc {
		return
	}
	store := m.host.snaps.store
	var info snapshot.Info
	p, err := store.Begin(ev.w.UID, ev.w.Index, ev.w.Term, ev.w.Meta)
	if err == nil {
		if _, err = ev.w.Data.WriteTo(p); err != nil {
			p.Abort()
		} else {
			info, err = p.Commit()
		}
	}
	w.tracef("snapshot %s %d err=%v", m.id.Name, ev.w.Index, err)
	if err != nil {
		m.host.handle(snapshot.WriteFailed{UID: ev.w.UID, Index: ev.w.Index, Term: ev.w.Term, Err: err})
	} else {
		w.stats.Snapshots++
		m.host.handle(snapshot.Written{Info: info})
	}
	w.afterInput(m)
}

// failureDetector tells each live member about the nodes it watches that
// it cannot hear from (down, or cut off towards it), and about those it
// hears from again.
func (w *hsWorld) failureDetector() {
	for _, a := range w.members {
		if !a.up {
			continue
		}
		for _, b := range w.members {
			if a == b || !a.watching[b.id.Node] {
				continue
			}
			suspect := !b.up || w.blocked[b.idx][a.idx]
			if suspect == a.told[b.id.Node] {
				continue
			}
			a.told[b.id.Node] = suspect
			var msg actor.Message = failuredetector.Up{Node: b.id.Node}
			if suspect {
				msg = failuredetector.Suspected{Node: b.id.Node}
			}
			w.tracef("fd %s %T %s", a.id.Name, msg, b.id.Node)
			a.host.handle(msg)
			w.afterInput(a)
			if !a.up {
				break
			}
		}
	}
}
