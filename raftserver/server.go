package raftserver

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/segment"
	"github.com/rago-raft/rago/snapshot"
	"github.com/rago-raft/rago/wal"
)

// server is the process of one Raft member. It runs the core: every input
// (a peer's message, a WAL notification, a client request, a timer, a
// monitor's Down) becomes one core event, and the actions the core returns
// are carried out in order over actor, wal and meta. It makes no Raft
// decisions of its own.
type server struct {
	env     hostEnv
	conf    hostConfig
	openLog func(self actor.Ref) (logPort, error)
	state   statePort
	snaps   snapshotPort
	node    nodeServices
	cfg     ServerConfig
	uid     string
	self    ServerID
	logger  *slog.Logger
	raft    *core.Raft
	log     logPort
	machine Machine
	applied uint64

	role core.Role // last role reported by RoleChanged
	// executing is set while the actions of one step are carried out.
	executing bool

	// Client commands wait in cmdBuf until the flush message the first of
	// them posted comes round: everything queued in the mailbox by then
	// goes to the core as one batch.
	cmdBuf       []core.Command
	flushPending bool

	queries []parkedQuery // waiting for applied >= readIndex
	// logSubs are the watchers of the applied log (WatchLog), by id.
	logSubs map[actor.Ref]*logSub

	electionTimer timerID
	electionArmed bool
	tickerOn      bool
	tickMs        int64
	tickTimer     timerID

	leaderMon  monitorID
	monitoring ServerID // the leader whose process we monitor

	// A leader monitors its peers' processes (see syncPeerMonitors).
	peerMons  map[monitorID]ServerID
	peerMonOf map[ServerID]monitorID
	peersGone map[ServerID]bool // Down seen, not heard from since

	// Pipelined replies of the current Apply, by notify process, in the
	// order the processes first appear.
	notify      map[actor.Ref]*Applied
	notifyOrder []actor.Ref

	appliedSaved uint64 // last applied index written to the meta store

	watching map[string]bool // nodes the failure detector watches for us

	sessions *sessionTable
	// poisoned holds the indexes of commands that made the machine panic:
	// a rebuild replays the log around them.
	poisoned map[uint64]bool
	// effectsFloor: entries up to this index were applied before the last
	// restart (as far as the meta store knows), so their effects are not
	// carried out again.
	effectsFloor  uint64
	pending       []effect // effects of the entries being applied
	releaseCursor uint64   // highest ReleaseCursor index seen

	// members and machineVersion are the config and machine version in
	// effect at the applied index (members empty: the initial members),
	// which a snapshot records. initial is the cluster's first config.
	members        core.Membership
	machineVersion uint64
	initial        core.Membership
	// current is the configuration in effect, as the core last reported it
	// (core.MembersChanged).
	current core.Membership
	// lost is the persisted index of a log this server lost (see
	// core.Config.RecoverTo), until the core says it recovered.
	lost uint64
	// raftTerm is the persisted term as the server started.
	raftTerm uint64
	snap     snapState

	// Effect state; the leader's only, dropped when leadership changes.
	effMons      map[actor.Ref]monitorID
	effMonRefs   map[monitorID]actor.Ref
	effNodes     map[string]bool
	effTimers    map[string]machineTimer
	effTimerGen  uint64
	tickArmed    bool
	machineTickT timerID
}

// Tokens: the core hands them back in Apply.Tokens or Reply actions.
type (
	syncToken struct{ rt actor.ReplyTo }
	pipeToken struct {
		notify actor.Ref
		corr   uint64
	}
	memberToken struct{ rt actor.ReplyTo }
	queryToken  struct {
		rt  actor.ReplyTo
		req *queryReq
	}
)

type answer struct {
	tok   any
	reply []byte
	err   error
}

type parkedQuery struct {
	readIndex uint64
	tok       queryToken
}

// Messages a server sends itself.
type (
	flushCommands   struct{}
	electionTimeout struct{}
	tickMsg         struct{}
	machineTickMsg  struct{}
	// machineTimer is a timer the machine set; gen tells a restarted timer
	// from the one it replaced.
	machineTimer struct {
		name string
		gen  uint64
		ref  timerID
	}
)

// appliedSaveEvery is how many applied entries may pass before the last
// applied index is written to the meta store (unsynced); see docs.
const appliedSaveEvery = 1024

// newServer builds the process of a server; initial is the cluster's first
// configuration as the server was created with it (empty for a member that
// joined).
func newServer(sys *System, cfg ServerConfig, uid string, initial []ServerID) *serverActor {
	env := newActorEnv()
	return &serverActor{env: env, host: &server{
		env:     env,
		conf:    sys.cfg.host(),
		openLog: func(self actor.Ref) (logPort, error) { return sys.openLog(uid, self) },
		state:   metaState{sys: sys, uid: uid},
		snaps:   snapshotPort{store: sys.snapshots, submit: sys.snapw.Submit},
		node:    sys,
		cfg:     cfg,
		uid:     uid,
		self:    cfg.ID,
		initial: core.Membership{Voters: initial},
		logger:  sys.logger.With("server", cfg.ID.String(), "cluster", cfg.Cluster),
	}}
}

// serverActor is the process of one Raft member: a thin shell that turns
// its mailbox messages into inputs of the member's host (server), and
// lends the host the process's context as its hostEnv.
type serverActor struct {
	host *server
	env  *actorEnv
}

func (a *serverActor) Receive(ctx *actor.Context, msg actor.Message) {
	a.env.ctx = ctx
	h := a.host
	switch m := msg.(type) {
	case actor.Started:
		if err := h.start(); err != nil {
			h.logger.Error("server failed to start", "err", err)
			ctx.Exit(actor.ErrorReason(err))
		}
	case firedTimer:
		if a.env.fired(m.id) {
			h.handle(m.msg)
		}
	case actor.Down:
		if id, ok := a.env.down(m.Monitor); ok {
			h.processDown(id, m.Reason)
		}
	case *commandReq:
		rt, _ := ctx.ReplyTo()
		h.queueCommand(m, rt)
	case *queryReq:
		rt, _ := ctx.ReplyTo()
		h.query(m, rt)
	case *memberReq:
		rt, _ := ctx.ReplyTo()
		h.memberRequest(m, rt)
	case *watchLogReq:
		rt, _ := ctx.ReplyTo()
		h.watchLog(m, rt)
	case *statusReq:
		_ = ctx.Reply(h.status())
	case actor.Terminating:
		h.terminating(m.Reason)
	default:
		h.handle(msg)
	}
}

// handle takes one input that needs no caller to answer: a peer's message,
// a storage notification, a timer, a detector's verdict.
func (s *server) handle(msg actor.Message) {
	switch m := msg.(type) {
	case *peerMsg:
		if s.peersGone[m.From] {
			delete(s.peersGone, m.From) // back: watch it again
			s.syncPeerMonitors()
		}
		s.step(core.Receive{From: m.From, Msg: m.Msg})
	case wal.Written:
		s.step(core.Written{Term: m.Term, To: m.To})
		if err := s.log.retry(); err != nil {
			s.fail(err)
		}
	case wal.OutOfSequence:
		s.logger.Warn("wal dropped a write that left a gap; resending", "expected", m.Expected, "got", m.Got)
		err := s.log.resend(m.Expected, func(lo, hi uint64) ([]core.Entry, error) { return s.raft.Entries(lo, hi, entryReadBytes) })
		if err != nil {
			s.fail(err)
		}
	case wal.WriteFailed:
		s.fail(fmt.Errorf("%w: entries %d..%d: %w", ErrStorage, m.From, m.To, m.Err))
	case segment.Flushed:
		// Entries moved from the WAL to the segments; reads follow by
		// themselves (segment.Log).
	case snapshot.Written:
		s.snapshotWritten(m.Info)
	case snapshot.WriteFailed:
		s.snapshotFailed(m)
	case *snapChunk:
		s.chunkReceived(m)
	case *snapAck:
		s.chunkAcked(m)
	case snapTickMsg:
		s.snapTick()
	case snapDueMsg:
		s.snapDue()
	case flushCommands:
		s.flushCommands()
	case electionTimeout:
		s.electionArmed = false
		s.step(core.ElectionTimeout{})
	case tickMsg:
		if s.tickerOn {
			s.tickTimer = s.env.after(time.Duration(s.tickMs)*time.Millisecond, tickMsg{})
			s.step(core.Tick{})
		}
	case actor.NodeDown:
		if s.effNodes[m.Node] {
			s.observe(NodeDown{Node: m.Node})
		}
	case actor.NodeUp:
		if s.effNodes[m.Node] {
			s.observe(NodeUp{Node: m.Node})
		}
	case machineTimer:
		if t, ok := s.effTimers[m.name]; ok && t.gen == m.gen {
			delete(s.effTimers, m.name)
			s.observe(TimerFired{Name: m.name})
		}
	case machineTickMsg:
		s.tickArmed = false
		s.machineTick()
	case *logAck:
		s.logAcked(m)
	case *unwatchLog:
		s.unwatchLog(m.Watcher)
	case failuredetector.Suspected:
		s.step(core.NodeSuspected{Node: m.Node})
	case failuredetector.Up:
		s.step(core.NodeUp{Node: m.Node})
	}
}

// processDown: a process the server monitored exited.
func (s *server) processDown(id monitorID, reason actor.Reason) {
	if id == s.leaderMon && !s.monitoring.IsZero() {
		leader := s.monitoring
		s.monitoring = ServerID{}
		s.step(core.LeaderDown{Leader: leader})
		return
	}
	if peer, ok := s.peerMons[id]; ok {
		delete(s.peerMons, id)
		delete(s.peerMonOf, peer)
		if s.peersGone == nil {
			s.peersGone = map[ServerID]bool{}
		}
		s.peersGone[peer] = true
		s.step(core.PeerDown{Peer: peer})
		return
	}
	if s.logWatcherDown(id) {
		return
	}
	if ref, ok := s.effMonRefs[id]; ok {
		delete(s.effMonRefs, id)
		delete(s.effMons, ref)
		s.observe(ProcessDown{Ref: ref, Reason: reason.String()})
	}
}

// query hands a query to the core, which answers it with RunQuery or Reply.
func (s *server) query(m *queryReq, rt actor.ReplyTo) {
	s.step(core.Query{Kind: m.Kind, Token: queryToken{rt: rt, req: m}})
}

// terminating: the server's process is stopping for reason.
func (s *server) terminating(reason actor.Reason) {
	s.answerAll()
	s.endLogWatches()
	if reason == actor.Shutdown && s.raft != nil {
		s.snapshotOnStop()
	}
	s.stopTransfers()
	if s.snap.receiver != nil {
		s.snap.receiver.Close()
	}
	if s.raft != nil {
		s.saveApplied()
		s.node.recordLeader(s.cfg.Cluster, ServerID{}, s.current.Voters, s.raft.Term())
	}
}

// answerAll answers every request the server still holds as it stops:
// commands not yet handed to the core and parked queries get
// ErrShuttingDown (they were not served: safe to retry elsewhere), and the
// core answers its own tokens (core.Stopping: a leader's uncommitted
// commands lose their leader, its queries and queued changes are refused)
// and tells its followers it no longer leads. Nothing steps the core
// again, so a caller would otherwise wait out its deadline.
func (s *server) answerAll() {
	if s.raft == nil {
		return
	}
	stopping := fmt.Errorf("%w: %s is stopping", ErrShuttingDown, s.self)
	for _, c := range s.cmdBuf {
		s.reply(c.Token, nil, stopping)
	}
	s.cmdBuf = nil
	for _, q := range s.queries {
		s.reply(q.tok, nil, stopping)
	}
	s.queries = nil
	acts, _ := s.raft.Step(core.Stopping{})
	for _, a := range acts {
		switch a := a.(type) {
		case core.Reply:
			s.reply(a.Token, nil, fromCore(a.Err, s.self, a.Leader))
		case core.Send:
			_ = s.env.send(Ref(a.To), &peerMsg{From: s.self, Msg: a.Msg})
		}
	}
	s.flushNotifications()
}

// start builds the core from durable state: the newest snapshot that
// verifies (the machine is restored from it), the WAL and segments for the
// log after it, the meta store for term and vote.
func (s *server) start() error {
	l, err := s.openLog(s.env.self())
	if err != nil {
		return fmt.Errorf("%w: open the log of %s: %w", ErrStorage, s.uid, err)
	}
	s.log = l
	term, voted, applied, err := s.state.load()
	if err != nil {
		return fmt.Errorf("%w: meta of %s: %w", ErrStorage, s.uid, err)
	}
	s.appliedSaved = applied
	s.sessions = s.conf.newSessions()
	s.poisoned = map[uint64]bool{}
	m, err := s.node.newMachine(s.cfg.Machine)
	if err != nil {
		return err
	}
	s.machine = m
	s.raftTerm = term
	desc, err := s.loadSnapshot()
	if err != nil {
		return err
	}
	if err := s.reconcileLog(desc); err != nil {
		return err
	}
	lost, lostTerm, err := s.state.lost()
	if err != nil {
		return fmt.Errorf("%w: meta of %s: %w", ErrStorage, s.uid, err)
	}
	s.lost = lost
	s.applied = desc.Index
	s.effectsFloor = max(applied, desc.Index)
	if s.snap.receiver, err = snapshot.NewReceiver(s.snaps.store, s.uid, snapshot.ReceiverConfig{Logger: s.logger}); err != nil {
		return fmt.Errorf("%w: snapshot receiver of %s: %w", ErrStorage, s.uid, err)
	}
	rc := s.conf.raft
	rc.ID = s.self
	rc.InitialMembers = core.Membership{Voters: s.cfg.InitialMembers}
	rc.MachineVersion = s.supportedVersion()
	rc.Snapshot = desc
	rc.RecoverTo, rc.RecoverTerm = lost, lostTerm
	rc.Seed = rand.Uint64()
	rc.Logger = s.logger
	r, err := core.New(rc, core.HardState{Term: term, VotedFor: voted}, l)
	if err != nil {
		return err
	}
	s.raft = r
	s.step(core.Started{})
	return nil
}

// loadSnapshot restores the machine from the newest snapshot that
// verifies, if any. Corrupt ones are set aside by the store and reported;
// they are never used.
func (s *server) loadSnapshot() (core.Snapshot, error) {
	info, corrupt, err := s.snaps.store.Latest(s.uid)
	for _, c := range corrupt {
		s.logger.Error("snapshot failed verification; not used", "file", c.File, "offset", c.Offset, "reason", c.Reason)
	}
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
		return core.Snapshot{}, nil
	case err != nil:
		return core.Snapshot{}, fmt.Errorf("%w: snapshots of %s: %w", ErrStorage, s.uid, err)
	}
	m, desc, sessions, err := s.restoreMachine(info)
	if err != nil {
		return core.Snapshot{}, err
	}
	s.machine, s.sessions = m, sessions
	s.members, s.machineVersion = desc.Members, desc.MachineVersion
	s.snap.info, s.snap.desc = info, desc
	s.snap.at = s.env.now()
	return desc, nil
}

// reconcileLog makes the log continue the snapshot desc. A log that ends
// below it or disagrees with it at its index (a crash cut an install short)
// is reset to it. A log that starts after it (compacted through a newer
// snapshot that no longer verifies) is lost: it is reset too. Whenever the
// server lost entries it held (the log's, or those of a snapshot set aside
// as corrupt that the log does not reach), the last of them is recorded
// durably first, so that the member recovers safely (see
// core.Config.RecoverTo).
func (s *server) reconcileLog(desc core.Snapshot) error {
	l := s.log
	first, last := l.FirstIndex(), l.LastIndex()
	ok, err := l.continues(desc.Index, desc.Term)
	if err != nil {
		return err
	}
	var lost core.Entry
	if !ok && first > desc.Index+1 && last >= first {
		t, err := l.Term(last)
		if err != nil {
			return fmt.Errorf("%w: last entry of %s: %w", ErrStorage, s.uid, err)
		}
		lost = core.Entry{Index: last, Term: t}
	}
	aside, err := s.snaps.store.SetAside(s.uid)
	if err != nil {
		return fmt.Errorf("%w: snapshots of %s: %w", ErrStorage, s.uid, err)
	}
	for _, c := range aside {
		if c.Index > desc.Index && c.Index > last && c.Index > lost.Index {
			lost = core.Entry{Index: c.Index, Term: c.Term}
		}
	}
	// The segments remember how far the log was compacted. Compacted past
	// the snapshot, with nothing else to tell what went (a snapshot file
	// removed by hand), the entry's term is unknown: the current term is
	// a safe stand-in, since the member then votes only for logs at least
	// that recent.
	floor, err := l.floor()
	if err != nil {
		return fmt.Errorf("%w: log floor of %s: %w", ErrStorage, s.uid, err)
	}
	if floor > desc.Index && floor > last && floor > lost.Index {
		lost = core.Entry{Index: floor, Term: s.raftTerm}
	}
	if lost.Index > 0 {
		s.logger.Error("the log no longer reaches back to a usable snapshot: recovering lost entries from the leader",
			"snapshot", desc.Index, "log_first", first, "log_last", last, "lost_to", lost.Index)
		if err := s.state.setLost(lost.Index, lost.Term); err != nil {
			return fmt.Errorf("%w: record lost log of %s: %w", ErrStorage, s.uid, err)
		}
	}
	// After a loss the next write restarts the log, so that the segments'
	// floor comes back down to the snapshot with it.
	if !ok || lost.Index > 0 {
		if err := l.reset(desc.Index, desc.Term); err != nil {
			return err
		}
	}
	l.setSnapshot(desc.Index, desc.Term)
	return nil
}

// syncWatches has the failure detector watch the nodes of the cluster's
// other members, and no others: suspicions of the leader's node start an
// election, and a member coming back lets a leaderless member retry at
// once. The detector heartbeats once per pair of nodes however many
// servers watch.
func (s *server) syncWatches() {
	members := s.current
	want := map[string]bool{}
	for _, list := range [][]ServerID{members.Voters, members.NonVoters} {
		for _, id := range list {
			if id.Node != s.self.Node {
				want[id.Node] = true
			}
		}
	}
	for node := range s.watching {
		if !want[node] {
			s.node.unwatchNode(s.env.self(), node)
			delete(s.watching, node)
		}
	}
	for node := range want {
		if !s.watching[node] {
			if s.watching == nil {
				s.watching = map[string]bool{}
			}
			if err := s.node.watchNode(s.env.self(), node); err == nil {
				s.watching[node] = true
			}
		}
	}
}

// syncPeerMonitors has a leader monitor the processes of its cluster's
// other members, and a non-leader none. A Down is evidence the core cannot
// get from silence (core.PeerDown): a leader whose voters are gone in a
// quorum steps down at once instead of holding its callers, while slow
// voters, whose processes live, never depose it. A peer whose Down fired
// is watched again once it is heard from (it restarted).
func (s *server) syncPeerMonitors() {
	var want map[ServerID]bool
	if s.role == core.RoleLeader {
		members := s.current
		want = make(map[ServerID]bool, len(members.Voters)+len(members.NonVoters))
		for _, list := range [][]ServerID{members.Voters, members.NonVoters} {
			for _, id := range list {
				if id != s.self && !s.peersGone[id] {
					want[id] = true
				}
			}
		}
	} else {
		clear(s.peersGone)
	}
	for id, ref := range s.peerMonOf {
		if !want[id] {
			s.env.demonitor(ref)
			delete(s.peerMonOf, id)
			delete(s.peerMons, ref)
		}
	}
	for id := range want {
		if _, ok := s.peerMonOf[id]; ok {
			continue
		}
		if s.peerMonOf == nil {
			s.peerMonOf, s.peerMons = map[ServerID]monitorID{}, map[monitorID]ServerID{}
		}
		ref := s.env.monitor(Ref(id))
		s.peerMonOf[id], s.peerMons[ref] = ref, id
	}
}

// fail stops the server after a storage failure; its supervisor restarts
// it from durable state, or gives up if it keeps failing.
func (s *server) fail(err error) {
	s.logger.Error("server failing", "err", err)
	s.env.exit(actor.ErrorReason(err))
}

func (s *server) step(ev core.Event) {
	if s.executing {
		// The core reuses its slice of actions: a step while they are
		// being executed would overwrite them. A bug, made loud.
		s.fail(fmt.Errorf("raftserver: internal error: %T stepped while executing the actions of another event", ev))
		return
	}
	acts, err := s.raft.Step(ev)
	if err != nil {
		s.fail(err)
		return
	}
	s.execute(acts)
	// Steps that follow from this one come after it: the core reuses the
	// slice of actions, so nothing executed above may step.
	s.maybeAdoptStaged()
	if s.lost != 0 && s.raft.RecoverTo() == 0 {
		if err := s.state.clearLost(); err != nil {
			s.logger.Warn("could not clear the lost log mark", "err", err)
			return
		}
		s.lost = 0
	}
}

// execute carries out one batch of actions, in order (see core.Action for
// the ordering rules it relies on).
func (s *server) execute(acts []core.Action) {
	s.executing = true
	defer func() { s.executing = false }()
	for _, a := range acts {
		switch a := a.(type) {
		case core.PersistState:
			// Synced before anything later in the batch happens: no vote
			// leaves this server before it is durable.
			if err := s.state.saveVote(a.State.Term, a.State.VotedFor); err != nil {
				s.fail(fmt.Errorf("%w: persist term and vote: %w", ErrStorage, err))
				return
			}
		case core.Append:
			if err := s.log.append(a.Entries); err != nil {
				s.fail(err)
				return
			}
		case core.MembersChanged:
			s.current = a.Members
			s.syncWatches()
			s.syncPeerMonitors()
		case core.Send:
			_ = s.env.send(Ref(a.To), &peerMsg{From: s.self, Msg: a.Msg})
		case core.Apply:
			if err := s.apply(a); err != nil {
				s.fail(err)
				return
			}
		case core.Reply:
			s.reply(a.Token, nil, fromCore(a.Err, s.self, a.Leader))
		case core.RunQuery:
			tok := a.Token.(queryToken)
			if s.applied >= a.ReadIndex {
				s.runQuery(tok)
			} else {
				s.park(parkedQuery{readIndex: a.ReadIndex, tok: tok})
			}
		case core.SetElectionTimer:
			if s.electionArmed {
				s.env.cancelTimer(s.electionTimer)
			}
			d := s.node.electionDelay(s.env.now(), time.Duration(a.Ms)*time.Millisecond)
			s.electionTimer = s.env.after(d, electionTimeout{})
			s.electionArmed = true
		case core.CancelElectionTimer:
			if s.electionArmed {
				s.env.cancelTimer(s.electionTimer)
				s.electionArmed = false
			}
		case core.StartTicker:
			if s.tickerOn {
				s.env.cancelTimer(s.tickTimer)
			}
			s.tickerOn, s.tickMs = true, a.Ms
			s.tickTimer = s.env.after(time.Duration(a.Ms)*time.Millisecond, tickMsg{})
		case core.StopTicker:
			if s.tickerOn {
				s.env.cancelTimer(s.tickTimer)
				s.tickerOn = false
			}
		case core.RoleChanged:
			s.roleChanged(a)
		case core.Compact:
			if err := s.log.compact(a.Through); err != nil {
				s.fail(err)
				return
			}
		case core.SendSnapshot:
			s.sendSnapshot(a)
		case core.RestoreSnapshot:
			if err := s.restoreSnapshot(a.Snapshot); err != nil {
				s.fail(err)
				return
			}
		}
	}
	s.flushNotifications()
}

func (s *server) queueCommand(m *commandReq, rt actor.ReplyTo) {
	var tok any
	if m.Pipeline {
		tok = pipeToken{notify: m.Notify, corr: m.Correlation}
	} else {
		tok = syncToken{rt: rt}
	}
	data := encodeUserCommand(m.Data)
	if m.Session {
		data = encodeSessionCommand(m.Client, m.Seq, m.Responded, m.Data)
	}
	s.cmdBuf = append(s.cmdBuf, core.Command{Data: data, Token: tok})
	if !s.flushPending {
		s.flushPending = true
		_ = s.env.send(s.env.self(), flushCommands{})
	}
}

func (s *server) flushCommands() {
	s.flushPending = false
	if len(s.cmdBuf) == 0 {
		return
	}
	batch := s.cmdBuf
	s.cmdBuf = nil
	if len(batch) == 1 {
		s.step(batch[0])
		return
	}
	s.step(core.Commands{Batch: batch})
}

func (s *server) memberRequest(m *memberReq, rt actor.ReplyTo) {
	tok := memberToken{rt: rt}
	switch m.Op {
	case opAddMember, opAddNonVoter:
		s.step(core.AddMember{Member: m.Member, Voter: m.Op == opAddMember, Token: tok})
	case opRemoveMember:
		s.step(core.RemoveMember{Member: m.Member, Token: tok})
	case opTransfer:
		s.step(core.TransferLeadership{To: m.Member, Token: tok})
	case opTriggerElection:
		s.step(core.Campaign{})
	default:
		s.env.reply(rt, &memberResult{Err: toRemote(fmt.Errorf("%w: membership operation %d", ErrInvalidConfig, m.Op))})
	}
}

// apply applies the committed entries From..To, answers their tokens and,
// on the leader, carries out the effects the machine recorded.
func (s *server) apply(a core.Apply) error {
	toks := a.Tokens
	// Replies wait until the batch's effects were carried out: a caller
	// that has its reply knows the leader issued the effects.
	var answers []answer
	for lo := a.From; lo <= a.To; {
		ents, err := s.raft.Entries(lo, a.To+1, entryReadBytes)
		if err != nil {
			return err
		}
		for _, e := range ents {
			reply, err := s.applyEntry(e, true)
			if errors.Is(err, ErrStorage) {
				return err
			}
			s.applied = e.Index
			s.counted(e)
			for len(toks) > 0 && toks[0].Index <= e.Index {
				if toks[0].Index == e.Index {
					answers = append(answers, answer{tok: toks[0].Token, reply: reply, err: err})
				}
				toks = toks[1:]
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	s.carryOutEffects()
	for _, a := range answers {
		s.reply(a.tok, a.reply, a.err)
	}
	s.runReadyQueries()
	s.pushLogs()
	if s.applied-s.appliedSaved >= appliedSaveEvery {
		s.saveApplied()
	}
	return nil
}

// applyEntry applies one committed entry. live is false while a rebuild
// replays the log: nothing leaves the server then.
func (s *server) applyEntry(e core.Entry, live bool) (reply []byte, err error) {
	switch e.Type {
	case core.EntryNormal:
		reply, err = s.applyNormal(e, live)
	case core.EntryConfig:
		m, derr := core.DecodeMembership(e.Data)
		if derr != nil {
			return nil, fmt.Errorf("%w: config entry %d: %w", ErrStorage, e.Index, derr)
		}
		s.members = m
		if live {
			s.configApplied(e.Index)
		}
	case core.EntryMachineVersion:
		reply, err = s.applyVersion(e, live)
	}
	if e.Index%sessionExpiryEvery == 0 {
		s.sessions.expire(e.Index)
	}
	return reply, err
}

func (s *server) applyNormal(e core.Entry, live bool) ([]byte, error) {
	cmd, err := decodeCommand(e.Data)
	if err != nil {
		// Every member holds the same bytes and fails the same way.
		s.logger.Error("log entry does not decode", "index", e.Index, "err", err)
		return nil, fmt.Errorf("%w: entry %d: %v", ErrMachine, e.Index, err)
	}
	switch cmd.kind {
	case cmdSession:
		if reply, err, known := s.sessions.lookup(cmd.client, cmd.seq); known {
			return reply, err
		}
		reply, err := s.runMachine(e, live, func(ctx *ApplyContext) []byte { return s.machine.Apply(ctx, cmd.data) })
		if errors.Is(err, ErrStorage) {
			return nil, err
		}
		s.sessions.record(e.Index, cmd.client, cmd.seq, cmd.responded, reply, err)
		return reply, err
	case cmdObservation:
		o, ok := capability[Observer](s.machine)
		if !ok {
			return nil, nil
		}
		return s.runMachine(e, live, func(ctx *ApplyContext) []byte { o.Observe(ctx, cmd.obs); return nil })
	}
	return s.runMachine(e, live, func(ctx *ApplyContext) []byte { return s.machine.Apply(ctx, cmd.data) })
}

// runMachine runs one machine callback for entry e. A panic is a poison
// command: the caller gets ErrMachine, the machine is rebuilt to its state
// before e by replaying the log, and the index is remembered so that
// later rebuilds skip it. Every member meets the same panic at the same
// index and does the same, so replicas never diverge.
func (s *server) runMachine(e core.Entry, live bool, run func(*ApplyContext) []byte) ([]byte, error) {
	if s.poisoned[e.Index] {
		return nil, fmt.Errorf("%w: command at index %d panicked", ErrMachine, e.Index)
	}
	ctx := &ApplyContext{Index: e.Index, Term: e.Term, MachineVersion: s.machineVersion}
	reply, panicked := callMachine(ctx, run)
	if panicked != nil {
		s.poisoned[e.Index] = true
		if live {
			s.logger.Error("machine panicked applying a command; its state is rebuilt without it",
				"index", e.Index, "panic", fmt.Sprint(panicked.value), "stack", panicked.stack)
		}
		if err := s.rebuild(e.Index - 1); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: command at index %d panicked: %v", ErrMachine, e.Index, panicked.value)
	}
	for _, eff := range ctx.list {
		// The snapshot hint counts on every member, not only the leader.
		if eff.kind == effReleaseCursor {
			s.releaseCursor = max(s.releaseCursor, eff.index)
			if live && eff.index >= e.Index {
				s.snap.releaseAt = e.Index
			}
		}
	}
	if live && e.Index > s.effectsFloor {
		s.pending = append(s.pending, ctx.list...)
	}
	if ctx.rejected != nil {
		return nil, fmt.Errorf("%w: %s", ErrMachine, ctx.rejected)
	}
	return reply, nil
}

type machinePanic struct {
	value any
	stack string
}

func callMachine(ctx *ApplyContext, run func(*ApplyContext) []byte) (reply []byte, p *machinePanic) {
	defer func() {
		if r := recover(); r != nil {
			p = &machinePanic{value: r, stack: string(debug.Stack())}
		}
	}()
	return run(ctx), nil
}

// rebuild replaces the machine and the session table by fresh ones that
// replayed the log up to index upTo, starting from the server's snapshot.
// Replays skip the commands known to panic, so they do not panic again.
func (s *server) rebuild(upTo uint64) error {
	from := uint64(1)
	if info, ok := s.snapshotOnDisk(upTo); ok {
		m, desc, sessions, err := s.restoreMachine(info)
		if err != nil {
			return fmt.Errorf("%w: rebuilding the machine: %w", ErrStorage, err)
		}
		s.machine, s.sessions = m, sessions
		s.members, s.machineVersion = desc.Members, desc.MachineVersion
		from = desc.Index + 1
	} else {
		m, err := s.node.newMachine(s.cfg.Machine)
		if err != nil {
			return fmt.Errorf("%w: rebuilding the machine: %w", ErrStorage, err)
		}
		s.machine = m
		s.sessions = s.conf.newSessions()
		s.members, s.machineVersion = core.Membership{}, 0
	}
	for lo := from; lo <= upTo; {
		ents, err := s.raft.Entries(lo, upTo+1, entryReadBytes)
		if err != nil {
			return fmt.Errorf("%w: rebuilding the machine: %w", ErrStorage, err)
		}
		for _, e := range ents {
			if _, err := s.applyEntry(e, false); errors.Is(err, ErrStorage) {
				return err
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	return nil
}

// applyVersion applies a machine version bump: from this index on the
// machine runs the new version's logic, after migrating its state.
func (s *server) applyVersion(e core.Entry, live bool) ([]byte, error) {
	v, err := core.DecodeMachineVersion(e.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: version entry %d: %w", ErrStorage, e.Index, err)
	}
	from := s.machineVersion
	s.machineVersion = v
	vm, ok := capability[Versioned](s.machine)
	if !ok || v == from {
		return nil, nil
	}
	if live {
		s.logger.Info("machine version changes", "index", e.Index, "from", from, "to", v)
	}
	return s.runMachine(e, live, func(ctx *ApplyContext) []byte { vm.MigrateVersion(ctx, from); return nil })
}

// userMachine returns the machine as its factory built it: the typed
// machine a NewTypedMachine adapter wraps, or m itself.
func userMachine(m Machine) any {
	if u, ok := m.(interface{ Unwrap() any }); ok {
		return u.Unwrap()
	}
	return m
}

// capability returns the machine, or the typed machine it wraps, as T.
func capability[T any](m Machine) (T, bool) {
	if t, ok := m.(T); ok {
		return t, true
	}
	if u, ok := m.(interface{ Unwrap() any }); ok {
		if t, ok := u.Unwrap().(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// observe commits an observation to the log, if this server leads.
func (s *server) observe(o Observation) {
	if s.raft.Role() != core.RoleLeader {
		return
	}
	s.step(core.Command{Data: encodeObservation(o)})
}

// carryOutEffects runs the effects of the entries just applied, on the
// leader only; followers drop them.
func (s *server) carryOutEffects() {
	if len(s.pending) == 0 {
		return
	}
	effs := s.pending
	s.pending = nil
	if s.raft.Role() == core.RoleLeader {
		s.runEffects(effs, 0)
	}
}

// maxReadLogDepth bounds ReadLog callbacks that record ReadLog effects.
const maxReadLogDepth = 4

func (s *server) runEffects(effs []effect, depth int) {
	for _, e := range effs {
		switch e.kind {
		case effSend:
			if err := s.env.send(e.to, e.msg); err != nil {
				s.logger.Warn("machine effect: send failed", "to", e.to.String(), "err", err)
			}
		case effCall:
			s.safely("call", e.fn)
		case effMonitor:
			if _, ok := s.effMons[e.to]; !ok {
				if s.effMons == nil {
					s.effMons, s.effMonRefs = map[actor.Ref]monitorID{}, map[monitorID]actor.Ref{}
				}
				mon := s.env.monitor(e.to)
				s.effMons[e.to], s.effMonRefs[mon] = mon, e.to
			}
		case effDemonitor:
			if mon, ok := s.effMons[e.to]; ok {
				s.env.demonitor(mon)
				delete(s.effMons, e.to)
				delete(s.effMonRefs, mon)
			}
		case effMonitorNode:
			if !s.effNodes[e.node] {
				if s.effNodes == nil {
					s.effNodes = map[string]bool{}
				}
				s.effNodes[e.node] = true
				s.env.monitorNode(e.node)
			}
		case effDemonitorNode:
			if s.effNodes[e.node] {
				delete(s.effNodes, e.node)
				s.env.demonitorNode(e.node)
			}
		case effTimer:
			if t, ok := s.effTimers[e.name]; ok {
				s.env.cancelTimer(t.ref)
				delete(s.effTimers, e.name)
			}
			if e.after > 0 {
				if s.effTimers == nil {
					s.effTimers = map[string]machineTimer{}
				}
				s.effTimerGen++
				t := machineTimer{name: e.name, gen: s.effTimerGen}
				t.ref = s.env.after(e.after, machineTimer{name: e.name, gen: t.gen})
				s.effTimers[e.name] = t
			}
		case effReadLog:
			out := &Effects{}
			cmds := s.readCommands(e.indexes)
			s.safely("read log", func() { e.read(cmds, out) })
			if depth < maxReadLogDepth {
				s.runEffects(out.list, depth+1)
			}
		}
	}
}

func (s *server) safely(what string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("machine effect panicked", "effect", what, "panic", fmt.Sprint(r))
		}
	}()
	fn()
}

// readCommands returns the user data of the commands at indexes (nil for
// an index that holds no command or is no longer in the log).
func (s *server) readCommands(indexes []uint64) [][]byte {
	out := make([][]byte, len(indexes))
	for i, idx := range indexes {
		if idx == 0 || idx > s.raft.LastIndex() {
			continue
		}
		ents, err := s.raft.Entries(idx, idx+1, 0)
		if err != nil || len(ents) == 0 || ents[0].Type != core.EntryNormal {
			continue
		}
		if cmd, err := decodeCommand(ents[0].Data); err == nil && cmd.kind != cmdObservation {
			out[i] = cmd.data
		}
	}
	return out
}

// leadershipChanged drops the leader's effect state when leadership is
// lost, and lets the machine re-create it when it is won.
func (s *server) leadershipChanged(role core.Role) {
	if role != core.RoleLeader {
		for mon := range s.effMonRefs {
			s.env.demonitor(mon)
		}
		for node := range s.effNodes {
			s.env.demonitorNode(node)
		}
		for _, t := range s.effTimers {
			s.env.cancelTimer(t.ref)
		}
		s.effMons, s.effMonRefs, s.effNodes, s.effTimers = nil, nil, nil, nil
		if s.tickArmed {
			s.env.cancelTimer(s.machineTickT)
			s.tickArmed = false
		}
	}
	if se, ok := capability[StateEnterer](s.machine); ok {
		out := &Effects{}
		s.safely("state enter", func() { se.StateEnter(roleOf(role), out) })
		if role == core.RoleLeader {
			s.runEffects(out.list, 0)
		}
	}
	if role == core.RoleLeader {
		s.armMachineTick()
	}
}

func roleOf(r core.Role) Role {
	switch r {
	case core.RoleLeader:
		return RoleLeader
	case core.RoleCandidate:
		return RoleCandidate
	case core.RolePreVote:
		return RolePreVote
	}
	return RoleFollower
}

func (s *server) armMachineTick() {
	if _, ok := capability[Ticker](s.machine); ok && !s.tickArmed {
		s.machineTickT = s.env.after(s.conf.machineTick, machineTickMsg{})
		s.tickArmed = true
	}
}

func (s *server) machineTick() {
	t, ok := capability[Ticker](s.machine)
	if !ok || s.raft.Role() != core.RoleLeader {
		return
	}
	out := &Effects{}
	s.safely("tick", func() { t.Tick(s.env.now(), out) })
	s.runEffects(out.list, 0)
	s.armMachineTick()
}

// configApplied records a committed membership change in the directory,
// so a restarted node knows the members. A server that the latest
// configuration removed stops once that configuration is committed; it
// keeps its data until deleted.
func (s *server) configApplied(index uint64) {
	st := s.raft.Status()
	if index == st.MembersIndex && !st.Members.Contains(s.self) {
		s.logger.Info("removed from the cluster; stopping", "index", index)
		s.env.exit(actor.Normal)
	}
	if err := s.state.saveMembers(st.Members.Voters); err != nil {
		s.logger.Warn("could not record the new members", "err", err)
	}
	s.node.recordLeader(s.cfg.Cluster, st.Leader, st.Members.Voters, st.Term)
}

func (s *server) saveApplied() {
	if s.applied == s.appliedSaved {
		return
	}
	if err := s.state.saveApplied(s.applied); err != nil {
		s.logger.Warn("could not save the last applied index", "err", err)
		return
	}
	s.appliedSaved = s.applied
}

// reply answers a token with a reply or an error.
func (s *server) reply(tok any, reply []byte, err error) {
	leader := s.raft.Leader()
	switch t := tok.(type) {
	case syncToken:
		s.env.reply(t.rt, &commandResult{Reply: reply, Leader: leader, Err: toRemote(err)})
	case pipeToken:
		if err != nil {
			var nl *NotLeaderError
			if errors.As(err, &nl) {
				leader = nl.Leader
			}
			_ = s.env.send(t.notify, &Rejected{Server: s.self, Correlation: t.corr, Err: err, Leader: leader})
			return
		}
		ap := s.notify[t.notify]
		if ap == nil {
			if s.notify == nil {
				s.notify = make(map[actor.Ref]*Applied)
			}
			ap = &Applied{Server: s.self}
			s.notify[t.notify] = ap
			s.notifyOrder = append(s.notifyOrder, t.notify)
		}
		ap.Results = append(ap.Results, AppliedResult{Correlation: t.corr, Reply: reply})
	case memberToken:
		s.env.reply(t.rt, &memberResult{Leader: leader, Err: toRemote(err)})
	case queryToken:
		s.env.reply(t.rt, &queryResult{Leader: leader, Err: toRemote(err)})
	}
}

func (s *server) flushNotifications() {
	for _, ref := range s.notifyOrder {
		_ = s.env.send(ref, s.notify[ref])
		delete(s.notify, ref)
	}
	s.notifyOrder = s.notifyOrder[:0]
}

func (s *server) park(q parkedQuery) {
	i := len(s.queries)
	for i > 0 && s.queries[i-1].readIndex > q.readIndex {
		i--
	}
	s.queries = append(s.queries, parkedQuery{})
	copy(s.queries[i+1:], s.queries[i:])
	s.queries[i] = q
}

func (s *server) runReadyQueries() {
	n := 0
	for n < len(s.queries) && s.queries[n].readIndex <= s.applied {
		s.runQuery(s.queries[n].tok)
		n++
	}
	if n > 0 {
		s.queries = append(s.queries[:0], s.queries[n:]...)
	}
}

func (s *server) runQuery(t queryToken) {
	res := &queryResult{Leader: s.raft.Leader()}
	func() {
		defer func() {
			if r := recover(); r != nil {
				res.Err = toRemote(fmt.Errorf("%w: query panicked: %v", ErrMachine, r))
			}
		}()
		if t.req.backup {
			v, err := s.backupView()
			res.Value, res.Err = v, toRemote(err)
			return
		}
		if t.req.fn != nil {
			v, err := t.req.fn(userMachine(s.machine))
			res.Value, res.Err = v, toRemote(err)
			return
		}
		q, ok := s.machine.(Querier)
		if !ok {
			res.Err = toRemote(fmt.Errorf("%w: machine %T answers no queries", ErrMachine, s.machine))
			return
		}
		reply, err := q.Query(t.req.Query)
		if err != nil && !errors.Is(err, ErrMachine) {
			err = fmt.Errorf("%w: %w", ErrMachine, err)
		}
		res.Reply, res.Err = reply, toRemote(err)
	}()
	s.env.reply(t.rt, res)
}

// roleChanged publishes the leader on the leaderboard and monitors the
// leader's process, whose Down triggers an election here.
func (s *server) roleChanged(a core.RoleChanged) {
	s.node.recordLeader(s.cfg.Cluster, a.Leader, s.current.Voters, a.Term)
	if a.Role != s.role {
		s.role = a.Role
		if a.Role != core.RoleLeader {
			s.stopTransfers()
		}
		s.leadershipChanged(a.Role)
		s.syncWatches()
		s.syncPeerMonitors()
	}
	want := a.Leader
	if want == s.self {
		want = ServerID{}
	}
	if want == s.monitoring {
		return
	}
	if !s.monitoring.IsZero() {
		s.env.demonitor(s.leaderMon)
	}
	s.monitoring = want
	if !want.IsZero() {
		s.leaderMon = s.env.monitor(Ref(want))
	}
	if a.Role == core.RoleLeader {
		s.logger.Info("became leader", "term", a.Term)
	}
}

func (s *server) status() *ServerStatus {
	st := s.raft.Status()
	return &ServerStatus{
		ID:          s.self,
		UID:         s.uid,
		Cluster:     s.cfg.Cluster,
		MachineKind: s.cfg.Machine.Kind,
		Role:        st.Role.String(),
		Term:        st.Term,
		Leader:      st.Leader,
		Commit:      st.Commit,
		LastApplied: s.applied,
		FirstIndex:  st.FirstIndex,
		LastIndex:   st.LastIndex,
		LastTerm:    st.LastTerm,
		Voters:      st.Members.Voters,
		NonVoters:   st.Members.NonVoters,
		Machine:     s.machineOverview(),

		SnapshotIndex:  st.SnapshotIndex,
		MachineVersion: s.machineVersion,
		RecoverTo:      st.RecoverTo,
		StableIndex:    st.StableIndex,
		Progress:       st.Progress,
	}
}

func (s *server) machineOverview() (out map[string]string) {
	o, ok := capability[Overviewer](s.machine)
	if !ok {
		return nil
	}
	s.safely("overview", func() { out = o.Overview() })
	return out
}
