package raftserver

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
	"github.com/rago-raft/rago/internal/kvmodel"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

// The host simulation runs the servers' real hosts (server, with its
// machine host, effect runner, snapshot bookkeeping and transfers, replies
// and queries) in one goroutine, over a simulated network, clock and
// disks, under crashes, partitions, lost, duplicated and late messages and
// false failure-detector suspicions. Clients write and read through the
// same requests and redirect rule as System's API, some with sessions, and
// some commands make the machine panic. A seed decides everything, so a
// failing seed replays exactly.
//
// Checked: at most one leader per term; every member applies the same
// command at each index; the history of acknowledged operations is
// linearizable (porcupine); a session's command takes effect at most once;
// after healing, every member converges on the leader's state.

// hsOptions configures one run.
type hsOptions struct {
	Seed           uint64
	Members        int
	FaultEvents    int
	LivenessEvents int
	Clients        int
	Trace          io.Writer
	// Sabotage breaks the host on purpose (tests of the checks).
	Sabotage hsSabotage
}

// hsSabotage lists bugs the simulation's checks must catch.
type hsSabotage struct {
	// ForgetVote makes the durable state lose votes (a host that does not
	// persist them).
	ForgetVote bool
	// AckBeforeSync reports writes durable (wal.Written) before they are:
	// a crash then loses entries the host counted.
	AckBeforeSync bool
}

func hsDefaultOptions(seed uint64) hsOptions {
	return hsOptions{Seed: seed, Members: 3 + 2*int(seed%2), FaultEvents: 4000, LivenessEvents: 60000, Clients: 3}
}

// Timing of the simulated members, in simulated milliseconds.
const (
	hsElectionMs   = 150
	hsTickMs       = 20
	hsCheckQuorum  = 100
	hsFDPeriodMs   = 25
	hsClientWaitMs = 1500
	hsMaxDelayMs   = 12
)

// hsResult is the outcome of one run.
type hsResult struct {
	Seed      uint64
	Violation error
	TraceHash uint64
	Stats     hsStats
}

type hsStats struct {
	Events, Crashes, Partitions, Elections  int
	OpsOK, OpsFailed, OpsUnknown, Poisoned  int
	SessionOps, Redirects, Snapshots, Sends int
	SnapChunks                              int
}

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
func (q *hsQueue) Push(x any)   { *q = append(*q, x.(hsEvent)) }
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
	hsReply struct {
		op  *hsOp
		try int
		msg actor.Message
	}
	hsClientNext struct{ c int }
	hsSendOp     struct {
		op  *hsOp
		try int
	}
	hsTimeout struct {
		op  *hsOp
		try int
	}
	hsChaos   struct{}
	hsFD      struct{}
	hsRestart struct{ m int }
	hsExit    struct {
		m, inc int
		reason actor.Reason
	}
)

type hsWorld struct {
	opts      hsOptions
	rng       *rand.Rand
	now       int64
	seq       uint64
	q         hsQueue
	events    int
	healed    bool
	members   []*hsMember
	byName    map[string]int
	blocked   [][]bool
	clients   []*hsClient
	history   []porcupine.Operation
	unknown   []*hsOp
	leaders   map[uint64]ServerID    // term -> the leader recorded for it
	votes     map[[2]uint64]ServerID // (member, term) -> the vote it granted
	applied   map[uint64]string      // index -> the command applied there
	violation error
	trace     hash.Hash64
	stats     hsStats
	nextOp    int
	logger    *slog.Logger
}

// hsMember is one simulated node with one server on it.
type hsMember struct {
	idx   int
	id    ServerID
	uid   string
	up    bool
	inc   int
	host  *server
	env   *hsEnv
	log   *simLog
	state *simState
	fs    vfs.FS
	// watching and told: nodes the host asked the failure detector about,
	// and the last verdict told per node (true: suspected).
	watching   map[string]bool
	told       map[string]bool
	syncQueued bool
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
		io.WriteString(w.opts.Trace, line)
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
		trace:   fnv.New64a(),
		logger:  slog.New(slog.DiscardHandler),
	}
	if opts.Trace != nil {
		w.logger = slog.New(slog.NewTextHandler(opts.Trace, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	w.blocked = make([][]bool, opts.Members)
	for i := range w.blocked {
		w.blocked[i] = make([]bool, opts.Members)
	}
	for i := 0; i < opts.Members; i++ {
		m := &hsMember{idx: i, id: hsMemberID(i), uid: fmt.Sprintf("s%d-uid", i+1),
			log: &simLog{}, state: &simState{}, fs: vfs.NewMem()}
		w.members = append(w.members, m)
		w.byName[m.id.Name] = i
	}
	for _, m := range w.members {
		w.start(m)
	}
	for i := 0; i < opts.Clients; i++ {
		c := &hsClient{idx: i, leader: -1, session: i%2 == 1, clientID: uint64(1000 + i)}
		w.clients = append(w.clients, c)
		w.schedule(1+w.rng.Int64N(20), hsClientNext{c: i})
	}
	w.schedule(w.chaosDelay(), hsChaos{})
	w.schedule(hsFDPeriodMs, hsFD{})
	return w
}

func (w *hsWorld) initial() []ServerID {
	ids := make([]ServerID, len(w.members))
	for i, m := range w.members {
		ids[i] = m.id
	}
	return ids
}

// start builds m's host from its durable state and starts it.
func (w *hsWorld) start(m *hsMember) {
	m.inc++
	m.up = true
	m.watching, m.told = map[string]bool{}, map[string]bool{}
	m.syncQueued = false
	m.env = &hsEnv{w: w, m: m, inc: m.inc, timers: map[timerID]bool{}, mons: map[monitorID]int{}}
	store, err := snapshot.Open("/snapshots", snapshot.Options{FS: snapshot.FromVFS(m.fs), BlockBytes: 512})
	if err != nil {
		w.violate("member %s: snapshot store: %v", m.id, err)
		return
	}
	inc := m.inc
	ports := hostPorts{
		openLog: func(actor.Ref) (logPort, error) { return m.log.open(), nil },
		state:   hsState{m.state, w},
		snaps: snapshotPort{store: store, submit: func(wr snapshot.Write) error {
			w.schedule(1+w.rng.Int64N(30), hsSnapWrite{m: m.idx, inc: inc, w: wr})
			return nil
		}},
		node: &hsNode{w: w, m: m},
	}
	conf := hostConfig{
		raft: core.Config{
			ElectionTimeoutMs: hsElectionMs, LeaderLostTimeoutMs: hsElectionMs / 3, MaxElectionBackoff: 3,
			TickMs: hsTickMs, CheckQuorumMs: hsCheckQuorum, SnapshotRetryMs: 10 * hsTickMs,
			MaxInFlight: 16, MaxAppendBytes: 256,
		},
		sessionTTLEntries: 1 << 20,
		maxSessions:       100,
		snapshots:         SnapshotPolicy{Entries: uint64(5 + w.rng.IntN(40)), Bytes: 1 << 20, MinInterval: time.Millisecond, LogRatio: -1, SkipOnStop: true},
		machineTick:       time.Second,
		seed:              func() uint64 { return w.opts.Seed*1000003 + uint64(m.idx)*7919 + uint64(inc) },
	}
	cfg := ServerConfig{ID: m.id, Cluster: "sim", Machine: MachineSpec{Kind: "kv"}, InitialMembers: w.initial()}
	m.host = newHost(m.env, conf, ports, cfg, m.uid, w.initial(), w.logger.With("server", m.id.Name))
	w.tracef("start %s inc=%d", m.id.Name, m.inc)
	if err := m.host.start(); err != nil {
		w.violate("member %s failed to start: %v", m.id, err)
	}
}

// crash kills m: unsynced writes are lost (a random prefix survives), the
// monitors of its process fire where the network lets them, and it
// restarts later.
func (w *hsWorld) crash(m *hsMember) {
	if !m.up {
		return
	}
	w.stats.Crashes++
	w.tracef("crash %s", m.id.Name)
	if err := m.log.crash(w.rng.IntN(len(m.log.pending) + 1)); err != nil {
		w.violate("member %s: %v", m.id, err)
	}
	m.up = false
	m.host = nil
	for _, o := range w.members {
		if !o.up || w.blocked[m.idx][o.idx] {
			continue
		}
		for _, id := range slices.Sorted(mapsKeys(o.env.mons)) {
			if o.env.mons[id] == m.idx {
				w.schedule(1+w.rng.Int64N(10), hsDown{m: o.idx, inc: o.inc, id: id})
			}
		}
	}
	w.schedule(50+w.rng.Int64N(500), hsRestart{m: m.idx})
}

func mapsKeys[K cmp.Ordered, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
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
	copyMsg, err := actor.Roundtrip(msg)
	if err != nil {
		w.violate("member %s sends %T that does not cross the wire: %v", from.id, msg, err)
		return err
	}
	if w.blocked[from.idx][ti] || (!w.healed && w.rng.Float64() < 0.05) {
		return nil
	}
	copies := 1
	if !w.healed && w.rng.Float64() < 0.02 {
		copies = 2
	}
	for range copies {
		d := 1 + w.rng.Int64N(hsMaxDelayMs)
		if !w.healed && w.rng.Float64() < 0.02 {
			d *= 10
		}
		w.schedule(d, hsDeliver{from: from.idx, to: ti, msg: copyMsg})
	}
	return nil
}

// checkVote: a vote granted is durable first, and a member grants one
// vote per term, across restarts.
func (w *hsWorld) checkVote(from *hsMember, to ServerID, msg actor.Message) {
	pm, ok := msg.(*peerMsg)
	if !ok {
		return
	}
	v, ok := pm.Msg.(*core.VoteReply)
	if !ok || !v.Granted {
		return
	}
	if st := from.state; st.term != v.Term || st.vote != to {
		w.violate("member %s grants its term-%d vote to %s, but its durable state says term %d vote %s", from.id, v.Term, to, st.term, st.vote)
		return
	}
	k := [2]uint64{uint64(from.idx), v.Term}
	if prev, ok := w.votes[k]; ok && prev != to {
		w.violate("member %s votes for %s in term %d after voting for %s", from.id, to, v.Term, prev)
		return
	}
	w.votes[k] = to
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
		if !m.up || w.blocked[ev.from][ev.to] {
			return true
		}
		w.tracef("deliver %s->%s %T", w.members[ev.from].id.Name, m.id.Name, ev.msg)
		if _, ok := ev.msg.(*snapChunk); ok {
			w.stats.SnapChunks++
		}
		m.host.handle(ev.msg)
		w.afterInput(m)
	case hsTimer:
		m := w.members[ev.m]
		if !m.up || m.inc != ev.inc || !m.env.timers[ev.id] {
			return true
		}
		delete(m.env.timers, ev.id)
		w.tracef("timer %s %T", m.id.Name, ev.msg)
		m.host.handle(ev.msg)
		w.afterInput(m)
	case hsDown:
		m := w.members[ev.m]
		if !m.up || m.inc != ev.inc {
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
		m := w.members[ev.m]
		if m.up && m.inc == ev.inc {
			w.violate("member %s exited: %v", m.id, ev.reason)
		}
	case hsRestart:
		m := w.members[ev.m]
		if !m.up {
			w.start(m)
		}
	case hsChaos:
		if !w.healed {
			w.chaos()
			w.schedule(w.chaosDelay(), hsChaos{})
		}
	case hsFD:
		w.failureDetector()
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

// afterInput runs the checks that follow every input of a host.
func (w *hsWorld) afterInput(m *hsMember) {
	if m.up && len(m.log.pending) > 0 && !m.syncQueued {
		m.syncQueued = true
		w.schedule(1+w.rng.Int64N(6), hsSync{m: m.idx, inc: m.inc})
	}
}

// syncLog makes some of a member's pending writes durable and reports them.
func (w *hsWorld) syncLog(ev hsSync) {
	m := w.members[ev.m]
	if !m.up || m.inc != ev.inc {
		return
	}
	m.syncQueued = false
	n := len(m.log.pending)
	if n == 0 {
		return
	}
	var lasts []core.Entry
	if w.opts.Sabotage.AckBeforeSync {
		for _, wr := range m.log.pending {
			lasts = append(lasts, wr.ents[len(wr.ents)-1])
		}
		if _, err := m.log.sync(w.rng.IntN(n + 1)); err != nil {
			w.violate("member %s: %v", m.id, err)
			return
		}
	} else {
		var err error
		if lasts, err = m.log.sync(1 + w.rng.IntN(n)); err != nil {
			w.violate("member %s: %v", m.id, err)
			return
		}
	}
	if len(lasts) > 1 && w.rng.IntN(2) == 0 {
		lasts = lasts[len(lasts)-1:] // one report per fsync
	}
	for _, wr := range written(m.uid, lasts) {
		if !m.up || m.inc != ev.inc {
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
	if !m.up || m.inc != ev.inc {
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
		}
	}
}

func (w *hsWorld) chaosDelay() int64 { return 20 + w.rng.Int64N(120) }

// chaos injects one fault.
func (w *hsWorld) chaos() {
	n := len(w.members)
	switch x := w.rng.IntN(10); {
	case x < 3:
		up := 0
		for _, m := range w.members {
			if m.up {
				up++
			}
		}
		if up > (n+1)/2 || w.rng.IntN(4) == 0 {
			w.crash(w.members[w.rng.IntN(n)])
		}
	case x < 5:
		w.stats.Partitions++
		side := make([]bool, n)
		for i := range side {
			side[i] = w.rng.IntN(2) == 0
		}
		for i := range n {
			for j := range n {
				w.blocked[i][j] = side[i] != side[j]
			}
		}
		w.tracef("partition %v", side)
	case x < 6:
		i, j := w.rng.IntN(n), w.rng.IntN(n)
		if i != j {
			w.blocked[i][j] = true
			w.tracef("oneway %d->%d", i, j)
		}
	case x < 9:
		for i := range n {
			clear(w.blocked[i])
		}
		w.tracef("heal links")
	default:
		// A false suspicion.
		a, b := w.members[w.rng.IntN(n)], w.members[w.rng.IntN(n)]
		if a != b && a.up && a.watching[b.id.Node] && !a.told[b.id.Node] {
			a.told[b.id.Node] = true
			w.tracef("false suspicion %s of %s", a.id.Name, b.id.Node)
			a.host.handle(failuredetector.Suspected{Node: b.id.Node})
			w.afterInput(a)
		}
	}
}

// hsRun simulates one seed: faults, then healing and convergence, then the
// final checks.
func hsRun(opts hsOptions) hsResult {
	w := newHSWorld(opts)
	for w.violation == nil && w.events < opts.FaultEvents && w.step() {
	}
	if w.violation == nil {
		w.heal()
		healedAt := w.events
		for w.violation == nil {
			if (w.events-healedAt)%16 == 0 && w.converged() {
				break
			}
			if w.events-healedAt >= opts.LivenessEvents {
				w.violate("no convergence within %d events after healing: %s", opts.LivenessEvents, w.describe())
				break
			}
			if !w.step() {
				w.violate("event queue ran dry: %s", w.describe())
			}
		}
	}
	if w.violation == nil {
		w.checkHistory()
	}
	w.stats.Events = w.events
	return hsResult{Seed: opts.Seed, Violation: w.violation, TraceHash: w.trace.Sum64(), Stats: w.stats}
}

// heal ends the faults: links come back, crashed members restart.
func (w *hsWorld) heal() {
	w.healed = true
	w.tracef("heal")
	for i := range w.blocked {
		clear(w.blocked[i])
	}
	for _, m := range w.members {
		if !m.up {
			w.schedule(1+w.rng.Int64N(50), hsRestart{m: m.idx})
		}
	}
}

// converged reports whether a leader has committed and applied its whole
// log, every member holds and applied the same, with the same machine
// state, and no client waits.
func (w *hsWorld) converged() bool {
	for _, c := range w.clients {
		if c.cur != nil {
			return false
		}
	}
	for _, l := range w.members {
		if !l.up || l.host.raft.Role() != core.RoleLeader {
			continue
		}
		st := l.host.raft.Status()
		if st.Commit != st.LastIndex || st.LastTerm != st.Term || l.host.applied != st.Commit {
			return false
		}
		want := machineDigest(l.host.mh.machine)
		for _, m := range w.members {
			if !m.up {
				return false
			}
			ms := m.host.raft.Status()
			if ms.LastIndex != st.LastIndex || ms.Commit != st.Commit || ms.Term != st.Term || m.host.applied != st.Commit {
				return false
			}
			if machineDigest(m.host.mh.machine) != want {
				return false
			}
		}
		return true
	}
	return false
}

func machineDigest(m Machine) string {
	kv := userMachine(m).(*simKV).kvMachine
	keys := slices.Sorted(mapsKeys(kv.data))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s;", k, kv.data[k])
	}
	return b.String()
}

func (w *hsWorld) describe() string {
	var b strings.Builder
	for _, m := range w.members {
		if !m.up {
			fmt.Fprintf(&b, " [%s down]", m.id.Name)
			continue
		}
		st := m.host.raft.Status()
		fmt.Fprintf(&b, " [%s %s term=%d lead=%s commit=%d applied=%d last=%d stable=%d snap=%d]",
			m.id.Name, st.Role, st.Term, st.Leader.Name, st.Commit, m.host.applied, st.LastIndex, st.StableIndex, st.SnapshotIndex)
	}
	return b.String()
}

// checkHistory checks the acknowledged operations for linearizability;
// puts of unknown outcome may have happened at any time after their call.
func (w *hsWorld) checkHistory() {
	hist := append([]porcupine.Operation(nil), w.history...)
	for _, o := range w.unknown {
		hist = append(hist, porcupine.Operation{ClientId: o.client, Input: kvmodel.Input{Put: true, Key: o.key, Value: o.value},
			Call: o.call, Output: kvmodel.Output{}, Return: 1 << 62})
	}
	res, _ := porcupine.CheckOperationsVerbose(kvmodel.Model, hist, 10*time.Second)
	if res == porcupine.Illegal {
		w.violate("history of %d operations is not linearizable", len(hist))
	}
}

// hsEnv is a member's hostEnv: the simulated network, clock, timers and
// monitors of one incarnation.
type hsEnv struct {
	w      *hsWorld
	m      *hsMember
	inc    int
	nextID uint64
	timers map[timerID]bool
	mons   map[monitorID]int // -> the member monitored
}

func (e *hsEnv) live() bool { return e.m.up && e.m.inc == e.inc }

func (e *hsEnv) self() actor.Ref { return Ref(e.m.id) }

func (e *hsEnv) send(to actor.Ref, msg actor.Message) error {
	if !e.live() {
		return nil
	}
	return e.w.send(e.m, to, msg)
}

func (e *hsEnv) reply(rt actor.ReplyTo, msg actor.Message) {
	if e.live() {
		e.w.replyToClient(e.m, rt, msg)
	}
}

func (e *hsEnv) after(d time.Duration, msg actor.Message) timerID {
	e.nextID++
	id := timerID(e.nextID)
	e.timers[id] = true
	e.w.schedule(max(1, d.Milliseconds()), hsTimer{m: e.m.idx, inc: e.inc, id: id, msg: msg})
	return id
}

func (e *hsEnv) cancelTimer(id timerID) { delete(e.timers, id) }

func (e *hsEnv) monitor(ref actor.Ref) monitorID {
	e.nextID++
	id := monitorID(e.nextID)
	ti, ok := e.w.byName[ref.Name]
	if !ok {
		return id
	}
	e.mons[id] = ti
	if !e.w.members[ti].up {
		e.w.schedule(1+e.w.rng.Int64N(10), hsDown{m: e.m.idx, inc: e.inc, id: id})
	}
	return id
}

func (e *hsEnv) demonitor(id monitorID) { delete(e.mons, id) }
func (e *hsEnv) monitorNode(string)     {}
func (e *hsEnv) demonitorNode(string)   {}
func (e *hsEnv) now() time.Time         { return time.UnixMilli(1_700_000_000_000 + e.w.now) }

func (e *hsEnv) exit(reason actor.Reason) {
	if e.live() {
		e.w.schedule(0, hsExit{m: e.m.idx, inc: e.inc, reason: reason})
	}
}

// hsState is a member's statePort, with the sabotage that forgets votes.
type hsState struct {
	*simState
	w *hsWorld
}

func (s hsState) saveVote(term uint64, vote ServerID) error {
	if s.w.opts.Sabotage.ForgetVote {
		vote = ServerID{}
	}
	return s.simState.saveVote(term, vote)
}

// hsNode is a member's nodeServices.
type hsNode struct {
	w *hsWorld
	m *hsMember
}

func (n *hsNode) newMachine(MachineSpec) (Machine, error) {
	return &simKV{kvMachine: kvMachine{data: map[string]string{}}, w: n.w, m: n.m}, nil
}

// recordLeader checks election safety: one leader per term.
func (n *hsNode) recordLeader(_ string, leader ServerID, _ []ServerID, term uint64) {
	if leader.IsZero() {
		return
	}
	if prev, ok := n.w.leaders[term]; ok && prev != leader {
		n.w.violate("two leaders in term %d: %s and %s", term, prev, leader)
		return
	}
	if _, ok := n.w.leaders[term]; !ok {
		n.w.stats.Elections++
		n.w.leaders[term] = leader
	}
}

func (n *hsNode) watchNode(_ actor.Ref, node string) error {
	n.m.watching[node] = true
	return nil
}

func (n *hsNode) unwatchNode(_ actor.Ref, node string) {
	delete(n.m.watching, node)
	delete(n.m.told, node)
}

func (n *hsNode) electionDelay(_ time.Time, d time.Duration) time.Duration { return d }

// simKV is the simulation's machine: the test machine, which also checks
// that every member applies the same command at each index.
type simKV struct {
	kvMachine
	w *hsWorld
	m *hsMember
}

func (k *simKV) Apply(ctx *ApplyContext, cmd []byte) []byte {
	if prev, ok := k.w.applied[ctx.Index]; ok && prev != string(cmd) {
		k.w.violate("member %s applies %q at %d, another member applied %q", k.m.id, cmd, ctx.Index, prev)
	}
	k.w.applied[ctx.Index] = string(cmd)
	return k.kvMachine.Apply(ctx, cmd)
}

// Clients.

// hsClient issues one operation at a time to the member it believes leads;
// session clients tag puts with their session and retry an unknown outcome
// with the same sequence number.
type hsClient struct {
	idx      int
	leader   int
	cur      *hsOp
	seq      int
	session  bool
	clientID uint64
	sessSeq  uint64
	done     uint64 // highest session seq answered
}

type hsOp struct {
	id        int
	client    int
	put       bool
	poison    bool
	key       string
	value     string
	call      int64
	via       int // the member first asked
	target    int // the member asked now
	redirects int
	try       int
	sessSeq   uint64
	// uncertain: an earlier attempt's outcome is unknown, so a later
	// refusal does not mean the command had no effect.
	uncertain bool
}

var hsKeys = []string{"a", "b", "c"}

func (w *hsWorld) clientNext(c *hsClient) {
	if w.healed || c.cur != nil {
		return
	}
	c.seq++
	w.nextOp++
	o := &hsOp{id: w.nextOp, client: c.idx, key: hsKeys[w.rng.IntN(len(hsKeys))], call: w.now}
	switch x := w.rng.IntN(20); {
	case x == 0:
		o.poison, o.put = true, true
	case x < 12:
		o.put = true
		o.value = fmt.Sprintf("c%d-%d", c.idx, c.seq)
	}
	if c.session && o.put {
		c.sessSeq++
		o.sessSeq = c.sessSeq
		w.stats.SessionOps++
	}
	o.via = c.leader
	if o.via < 0 || w.rng.IntN(8) == 0 {
		o.via = w.rng.IntN(len(w.members))
	}
	o.target = o.via
	c.cur = o
	w.schedule(1+w.rng.Int64N(5), hsSendOp{op: o, try: o.try})
}

// sendOp sends the op's request to its target member.
func (w *hsWorld) sendOp(o *hsOp, try int) {
	c := w.clients[o.client]
	if c.cur != o || o.try != try {
		return
	}
	w.schedule(hsClientWaitMs, hsTimeout{op: o, try: try})
	m := w.members[o.target]
	if !m.up {
		// The call fails at once: nothing was asked.
		w.refused(o, ErrNoSuchServer, ServerID{})
		return
	}
	rt := actor.ReplyTo{Node: "client", ID: uint64(o.id)<<8 | uint64(try&0xff)}
	w.tracef("request %s op=%d try=%d", m.id.Name, o.id, try)
	switch {
	case o.poison:
		m.host.queueCommand(&commandReq{Data: []byte("panic")}, rt)
	case o.put:
		req := &commandReq{Data: []byte("set " + o.key + " " + o.value)}
		if o.sessSeq > 0 {
			req.Session, req.Client, req.Seq, req.Responded = true, c.clientID, o.sessSeq, c.done
		}
		m.host.queueCommand(req, rt)
	default:
		m.host.query(&queryReq{Kind: core.QueryConsistent, Query: []byte("get " + o.key)}, rt)
	}
	w.afterInput(m)
}

// replyToClient carries a server's answer back to the client whose call it
// answers; replies may be lost like any message.
func (w *hsWorld) replyToClient(from *hsMember, rt actor.ReplyTo, msg actor.Message) {
	id, try := int(rt.ID>>8), int(rt.ID&0xff)
	for _, c := range w.clients {
		if o := c.cur; o != nil && o.id == id {
			if !w.healed && w.rng.Float64() < 0.03 {
				return
			}
			cp, err := actor.Roundtrip(msg)
			if err != nil {
				w.violate("reply %T does not cross the wire: %v", msg, err)
				return
			}
			w.schedule(1+w.rng.Int64N(hsMaxDelayMs), hsReply{op: o, try: try, msg: cp})
			return
		}
	}
}

func (w *hsWorld) clientReply(ev hsReply) {
	o := ev.op
	c := w.clients[o.client]
	if c.cur != o || o.try != ev.try {
		return
	}
	target := w.members[o.target].id
	var err error
	var leader ServerID
	var out kvmodel.Output
	switch r := ev.msg.(type) {
	case *commandResult:
		err, leader = r.Err.err(target), r.Leader
	case *queryResult:
		err, leader = r.Err.err(target), r.Leader
		if err == nil {
			out = kvmodel.Output{Found: len(r.Reply) > 0, Value: string(r.Reply)}
		}
	default:
		w.violate("client got %T", ev.msg)
		return
	}
	w.tracef("reply op=%d err=%v", o.id, err)
	switch {
	case err == nil && o.poison:
		w.violate("a poison command was answered without an error")
	case err == nil:
		if o.sessSeq > 0 {
			c.done = max(c.done, o.sessSeq)
		}
		c.leader = o.target
		w.finish(o, out, "ok")
	case o.poison && errors.Is(err, ErrMachine):
		w.stats.Poisoned++
		w.finish(o, out, "failed")
	default:
		w.refused(o, err, leader)
	}
}

// refused follows the API's rule for a request not served: a named leader
// is asked at once, a request not served goes back to via after a pause,
// any other answer stands.
func (w *hsWorld) refused(o *hsOp, err error, leader ServerID) {
	var named ServerID
	if nl := (*NotLeaderError)(nil); errors.As(err, &nl) {
		named = nl.Leader
	}
	if named.IsZero() {
		named = leader
	}
	via, target := w.members[o.via].id, w.members[o.target].id
	switch refusal(err, named, target, via, o.redirects) {
	case refusalFollow:
		ti, ok := w.byName[named.Name]
		if !ok {
			w.violate("a member named %s as leader, which is not one", named)
			return
		}
		w.stats.Redirects++
		o.redirects++
		o.target = ti
		o.try++
		w.schedule(1, hsSendOp{op: o, try: o.try})
	case refusalRetry:
		o.redirects = 0
		o.target = o.via
		o.try++
		w.schedule(10+w.rng.Int64N(40), hsSendOp{op: o, try: o.try})
	default:
		// The outcome stands. Errors that say the command was not
		// appended end it as failed; others leave it unknown.
		if errors.Is(err, ErrShuttingDown) || errors.Is(err, ErrNoSuchServer) {
			w.finish(o, kvmodel.Output{}, "failed")
			return
		}
		w.unknownOutcome(o)
	}
}

// clientTimeout: no answer came in time. A session put is sent again with
// the same sequence number, which must take effect at most once; other
// operations end with an unknown outcome.
func (w *hsWorld) clientTimeout(ev hsTimeout) {
	o := ev.op
	c := w.clients[o.client]
	if c.cur != o || o.try != ev.try {
		return
	}
	w.tracef("timeout op=%d", o.id)
	w.unknownOutcome(o)
}

func (w *hsWorld) unknownOutcome(o *hsOp) {
	c := w.clients[o.client]
	o.uncertain = true
	if o.sessSeq > 0 && !w.healed && o.try < 200 {
		// Retry through any member, same session and sequence number.
		o.try++
		o.redirects = 0
		o.via = w.rng.IntN(len(w.members))
		o.target = o.via
		w.schedule(5+w.rng.Int64N(50), hsSendOp{op: o, try: o.try})
		return
	}
	c.leader = -1
	w.finish(o, kvmodel.Output{}, "unknown")
}

func (w *hsWorld) finish(o *hsOp, out kvmodel.Output, how string) {
	c := w.clients[o.client]
	if how == "failed" && o.uncertain {
		how = "unknown"
	}
	switch how {
	case "ok":
		w.stats.OpsOK++
		if !o.poison {
			w.history = append(w.history, porcupine.Operation{ClientId: o.client,
				Input: kvmodel.Input{Put: o.put, Key: o.key, Value: o.value}, Call: o.call, Output: out, Return: w.now})
		}
	case "failed":
		w.stats.OpsFailed++
	case "unknown":
		w.stats.OpsUnknown++
		if o.put && !o.poison {
			w.unknown = append(w.unknown, o)
		}
	}
	c.cur = nil
	w.schedule(1+w.rng.Int64N(20), hsClientNext{c: c.idx})
}
