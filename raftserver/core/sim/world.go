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
	clients  []*client
	history  []porcupine.Operation
	unknown  []*op
	cfgIndex uint64 // highest committed config entry applied anywhere
	stats    Stats
	nextOpID int
	// Per-seed regime (see Options.Vary).
	walMaxDelayMs  int64
	maxInFlight    uint64
	maxAppendBytes int
	applyBuf       []core.Entry
	encodeBuf      []byte
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
	kv         map[string]string
	applied    uint64
	queries    []waitingQuery
	fdTold     [maxMembers]bool // suspicions this incarnation was told about
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
	if opts.Vary {
		w.walMaxDelayMs = []int64{2, 6, 45}[w.rng.IntN(3)]
		w.maxInFlight = []uint64{1, 4, 64, 1000}[w.rng.IntN(4)]
		w.maxAppendBytes = []int{1, 200, 4096}[w.rng.IntN(3)]
		w.opts.Faults.MaxDelayMs = []int64{3, 12, 40}[w.rng.IntN(3)]
		w.opts.Faults.DropRate = []float64{0, 0.05, 0.2}[w.rng.IntN(3)]
	}
	var initial core.Membership
	for i := 0; i < opts.Members; i++ {
		initial.Voters = append(initial.Voters, memberID(i))
	}
	for i := 0; i < opts.Members; i++ {
		m := w.addMember(initial)
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

// addMember creates and starts a member with the given initial config.
func (w *World) addMember(initial core.Membership) *member {
	m := &member{idx: len(w.members), id: memberID(len(w.members)), initial: initial}
	w.members = append(w.members, m)
	w.byID[m.id] = m.idx
	w.start(m)
	return m
}

func (w *World) config(m *member) core.Config {
	return core.Config{
		ID:                m.id,
		InitialMembers:    m.initial,
		ElectionTimeoutMs: electionTimeoutMs,
		TickMs:            tickMs,
		CheckQuorumMs:     checkQuorumMs,
		MaxInFlight:       w.maxInFlight,
		MaxAppendBytes:    w.maxAppendBytes,
		Seed:              w.opts.Seed*1000003 + uint64(m.idx)*7919 + uint64(m.inc),
		Sabotage:          w.opts.Sabotage,
	}
}

// start boots m from its durable state.
func (w *World) start(m *member) {
	r, err := core.New(w.config(m), m.disk.hard, reader{&m.disk})
	if err != nil {
		w.violate(CoreError, "member %s: New: %v", m.id, err)
		return
	}
	m.raft = r
	m.up = true
	m.kv = map[string]string{}
	m.applied = 0
	m.lastCommit = 0
	m.queries = nil
	m.fdTold = [maxMembers]bool{}
	w.stepMember(m, core.Started{})
}

// crash kills m: unsynced writes are lost (some may survive unreported),
// clients waiting on it learn nothing.
func (w *World) crash(m *member, stop bool) {
	if !m.up {
		m.stopped = m.stopped || stop
		return
	}
	m.disk.crash(w.rng.IntN(len(m.disk.pending) + 1))
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
	// Monitors of its actor fire where the network lets them.
	for _, o := range w.members {
		if o.up && !w.blocked[m.idx][o.idx] {
			w.schedule(1+w.rng.Int64N(10), evCore{m: o.idx, inc: o.inc, ev: core.LeaderDown{Leader: m.id}})
		}
	}
	if !stop {
		w.schedule(50+w.rng.Int64N(500), evRestart{m: m.idx})
	}
}

// stepMember feeds one event to m's core and executes the actions.
func (w *World) stepMember(m *member, ev core.Event) {
	if !m.up || w.violation != nil {
		return
	}
	acts, err := m.raft.Step(ev)
	w.stats.CoreSteps++
	if err != nil {
		w.violate(CoreError, "member %s: Step(%T): %v", m.id, ev, err)
		return
	}
	for _, a := range acts {
		w.exec(m, a)
		if !m.up || w.violation != nil {
			return
		}
	}
	w.checkMember(m)
}

func (w *World) exec(m *member, a core.Action) {
	switch a := a.(type) {
	case core.PersistState:
		if a.State.Term < m.disk.hard.Term {
			w.violate(CoreError, "member %s persisted term %d after %d", m.id, a.State.Term, m.disk.hard.Term)
			return
		}
		m.disk.hard = a.State
	case core.Append:
		if err := m.disk.write(a.Entries); err != nil {
			w.violate(CoreError, "member %s: %v", m.id, err)
			return
		}
		w.checkAppend(m, a.Entries)
		if !m.syncQueued {
			m.syncQueued = true
			w.schedule(1+w.rng.Int64N(w.walMaxDelayMs), evSync{m: m.idx, inc: m.inc})
		}
	case core.Send:
		w.checkSend(m, a)
		if w.opts.Trace != nil {
			fmt.Fprintf(w.opts.Trace, "%8s send %s -> %s %T %+v\n", "", m.id.Name, a.To.Name, a.Msg, a.Msg)
		}
		w.send(m, a.To, a.Msg)
	case core.Apply:
		w.apply(m, a)
	case core.Reply:
		w.reply(m, a)
	case core.RunQuery:
		o, ok := a.Token.(*op)
		if !ok {
			return
		}
		if m.applied >= a.ReadIndex {
			w.answerQuery(m, o)
		} else {
			m.queries = append(m.queries, waitingQuery{o: o, index: a.ReadIndex})
		}
	case core.SetElectionTimer:
		m.timerGen++
		w.schedule(a.Ms, evElection{m: m.idx, inc: m.inc, gen: m.timerGen})
	case core.CancelElectionTimer:
		m.timerGen++
	case core.StartTicker:
		m.tickGen++
		w.schedule(a.Ms, evTick{m: m.idx, inc: m.inc, gen: m.tickGen, ms: a.Ms})
	case core.StopTicker:
		m.tickGen++
	case core.RoleChanged:
		if a.Role == core.RoleLeader {
			w.stats.Elections++
			w.checkNewLeader(m, a.Term)
		}
		if a.Term > w.stats.MaxTerm {
			w.stats.MaxTerm = a.Term
		}
	default:
		w.violate(CoreError, "unknown action %T", a)
	}
}

// send puts an encoded message on the simulated network.
func (w *World) send(from *member, to core.ServerID, msg core.Message) {
	ti, ok := w.byID[to]
	if !ok {
		return
	}
	w.stats.MessagesOut++
	data := msg.AppendBinary(nil)
	f := w.opts.Faults
	if w.blocked[from.idx][ti] || (!w.healed && w.rng.Float64() < f.DropRate) {
		return
	}
	copies := 1
	if !w.healed && w.rng.Float64() < f.DupRate {
		copies = 2
	}
	for i := 0; i < copies; i++ {
		d := 1 + w.rng.Int64N(max(1, f.MaxDelayMs))
		if !w.healed && w.rng.Float64() < f.SlowRate {
			d *= 10
		}
		w.schedule(d, evDeliver{from: from.idx, to: ti, data: data})
	}
}

// apply hands committed entries to m's machine and answers tokens.
func (w *World) apply(m *member, a core.Apply) {
	for lo := a.From; lo <= a.To; {
		ents, err := m.raft.Entries(lo, a.To+1, 1<<16)
		if err != nil {
			w.violate(CoreError, "member %s: Entries(%d, %d): %v", m.id, lo, a.To+1, err)
			return
		}
		for i := range ents {
			e := &ents[i]
			w.checkApplied(m, e)
			switch e.Type {
			case core.EntryNormal:
				if k, v, ok := decodePut(e.Data); ok {
					m.kv[k] = v
				}
			case core.EntryConfig:
				w.configCommitted(e)
			}
			m.applied = e.Index
		}
		lo += uint64(len(ents))
	}
	for _, t := range a.Tokens {
		o, ok := t.Token.(*op)
		if !ok {
			continue // an admin request
		}
		e, err := m.raft.Entries(t.Index, t.Index+1, 1)
		if err != nil || len(e) != 1 || string(e[0].Data) != string(encodePut(o.key, o.value)) {
			w.violate(CoreError, "member %s: token of op %d answered by a different entry at %d", m.id, o.id, t.Index)
			return
		}
		w.checkAcked(m, &e[0])
		w.finishOK(o, "")
	}
	// Queries waiting for this apply.
	keep := m.queries[:0]
	for _, q := range m.queries {
		if m.applied >= q.index {
			w.answerQuery(m, q.o)
		} else {
			keep = append(keep, q)
		}
	}
	m.queries = keep
}

// configCommitted follows committed membership: members removed for good
// are shut down, as the server layer would.
func (w *World) configCommitted(e *core.Entry) {
	if e.Index <= w.cfgIndex {
		return
	}
	w.cfgIndex = e.Index
	w.stats.ConfigsDone++
	cfg, err := core.DecodeMembership(e.Data)
	if err != nil {
		w.violate(CoreError, "config entry %d: %v", e.Index, err)
		return
	}
	for _, m := range w.members {
		switch {
		case cfg.Contains(m.id):
			m.everMember = true
		case m.everMember && !m.stopped:
			w.schedule(5+w.rng.Int64N(50), evStop{m: m.idx})
		}
	}
}

func (w *World) reply(m *member, a core.Reply) {
	o, ok := a.Token.(*op)
	if !ok {
		if ad, ok := a.Token.(*adminOp); ok && ad.kind == "transfer" && a.Err == nil {
			w.stats.TransfersOK++
		}
		return
	}
	c := w.clients[o.client]
	switch {
	case a.Err == nil:
		w.violate(CoreError, "client op %d got a nil-error Reply", o.id)
	case isDefiniteFailure(a.Err):
		if a.Leader != (core.ServerID{}) {
			if i, ok := w.byID[a.Leader]; ok {
				c.leader = i
			}
		} else {
			c.leader = -1
		}
		w.finishFailed(o)
	default:
		w.finishUnknown(c, o)
	}
}

func (w *World) answerQuery(m *member, o *op) {
	w.finishOK(o, m.kv[o.key])
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
