package raftserver

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
	"github.com/rago-raft/rago/internal/smallmap"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/segment"
	"github.com/rago-raft/rago/snapshot"
	"github.com/rago-raft/rago/wal"
)

// server is the host of one Raft member: it owns the core and the machine.
// Every input (a peer's message, a log notification, a client request, a
// timer, a monitor's Down) becomes one core event, and the actions the core
// returns are carried out in order, through its environment (env) and its
// ports (log, state, snaps, node) only. It makes no Raft decisions of its
// own. serverActor runs it as a process; the host simulation runs it too.
type server struct {
	env     hostEnv
	conf    *hostConfig // the node's, shared by all its servers
	openLog func(self actor.Ref) (logPort, error)
	state   statePort
	snaps   snapshotPort
	node    nodeServices
	cfg     ServerConfig
	uid     string
	// incarnation is the core's name for this incarnation of the replica
	// (core.Config.Incarnation), derived from uid.
	incarnation uint64
	self        ServerID
	logger      *slog.Logger
	raft        *core.Raft
	log         logPort
	applied     uint64

	role core.Role // last role reported by RoleChanged
	// executing is set while the actions of one step are carried out.
	executing bool
	// flushPending: a flushCommands message is on its way (see cmdBuf).
	// Next to the other small fields, so the struct has no padding to
	// spare: it is allocated once per server, and thousands may be idle.
	flushPending bool

	// Client commands wait in cmdBuf until the flush message the first of
	// them posted comes round: everything queued in the mailbox by then
	// goes to the core as one batch.
	cmdBuf []core.Command
	// batchArrived is when the first command of cmdBuf arrived (commit
	// latency).
	batchArrived time.Time

	queries []parkedQuery // waiting for applied >= readIndex
	// logSubs are the watchers of the applied log (WatchLog), by id.
	logSubs map[actor.Ref]*logSub

	electionTimer timerID
	electionArmed bool
	tickerOn      bool
	lagTimer      bool // a publishLagMsg is due (see lagAt)
	tickMs        int64
	tickTimer     timerID

	leaderMon  monitorID
	monitoring ServerID // the leader whose process we monitor

	// A leader monitors its peers' processes (see syncPeerMonitors).
	// Small maps, as are watching and known: a handful of entries, on a
	// node that may host thousands of servers.
	peerMons  smallmap.Map[monitorID, ServerID]
	peerMonOf smallmap.Map[ServerID, monitorID]
	peersGone map[ServerID]bool // Down seen, not heard from since

	// Pipelined replies of the current Apply, by notify process, in the
	// order the processes first appear.
	notify      map[actor.Ref]*Applied
	notifyOrder []actor.Ref

	appliedSaved uint64 // last applied index written to the meta store

	watching smallmap.Map[string, struct{}] // nodes the failure detector watches for us

	// mh runs the machine; effects carries out what it asks for.
	mh      machineHost
	effects effectRunner

	// initial is the cluster's first config.
	initial core.Membership
	// current is the configuration in effect, as the core last reported it
	// (core.MembersChanged).
	current core.Membership
	// known are the servers this one takes peer messages from (see
	// refusePeer): every member of every configuration it held since it
	// started.
	known smallmap.Map[ServerID, struct{}]
	// refusedPeer counts the peer messages refused since the server
	// started (ServerStatus.RefusedPeerMessages).
	refusedPeer uint64
	// askedAt is when the server last asked the servers it knows for
	// their members (vouch).
	askedAt time.Time
	// lost is the persisted index of a log this server lost (see
	// core.Config.RecoverTo), until the core says it recovered.
	lost uint64
	// raftTerm is the persisted term as the server started.
	raftTerm uint64
	snap     snapState
	// met are the server's counters (System.Metrics), kept across its
	// processes.
	met *serverMetrics
	// lagAt is when the lag was last published.
	lagAt time.Time
}

// Messages a server sends itself.
type (
	flushCommands   struct{}
	publishLagMsg   struct{}
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

// newServer builds the process of a server; initial is the cluster's first
// configuration as the server was created with it (empty for a member that
// joined).
func newServer(sys *System, cfg ServerConfig, uid string, initial []ServerID) *serverActor {
	env := newActorEnv()
	ports := hostPorts{
		openLog: func(self actor.Ref) (logPort, error) { return sys.openLog(uid, self) },
		state:   metaState{sys: sys, uid: uid},
		snaps:   snapshotPort{store: sys.snapshots, submit: sys.submitSnapshot},
		node:    sys,
	}
	logger := sys.logger.With("server", cfg.ID.String(), "cluster", cfg.Cluster)
	h := newHost(env, sys.hostConf, ports, cfg, uid, initial, logger, sys.metrics.forServer(cfg.ID, cfg.Cluster))
	return &serverActor{env: env, host: h}
}

// hostPorts are the storage and node ports of a host.
type hostPorts struct {
	openLog func(self actor.Ref) (logPort, error)
	state   statePort
	snaps   snapshotPort
	node    nodeServices
}

// newHost builds the host of one member from its parts; it does nothing
// until start. met are the counters it keeps (kept across its processes).
func newHost(env hostEnv, conf *hostConfig, ports hostPorts, cfg ServerConfig, uid string, initial []ServerID, logger *slog.Logger, met *serverMetrics) *server {
	s := &server{
		env:         env,
		conf:        conf,
		openLog:     ports.openLog,
		state:       ports.state,
		snaps:       ports.snaps,
		node:        ports.node,
		cfg:         cfg,
		uid:         uid,
		incarnation: incarnationOf(uid),
		self:        cfg.ID,
		initial:     core.Membership{Voters: initial},
		logger:      logger,
		met:         met,
	}
	s.mh = machineHost{
		logger:      logger,
		newMachine:  func() (Machine, error) { return s.node.newMachine(s.cfg.Machine) }, // captures s alone: 16 bytes, not cfg's 112
		newSessions: conf.newSessions,
		entries:     func(lo, hi uint64) ([]core.Entry, error) { return s.raft.Entries(lo, hi, entryReadBytes) },
		firstIndex:  func() uint64 { return s.log.FirstIndex() },
		restore:     s.restoreOnDisk,
	}
	s.effects = effectRunner{env: env, logger: logger, tickEvery: conf.machineTick}
	return s
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
	case *peerMsg, *snapChunk, *snapAck, *membersAsk, *membersTell:
		h.peerInput(ctx.SourceNode(), msg)
	case actor.Terminating:
		h.terminating(m.Reason)
	default:
		h.handle(msg)
	}
}

// handle takes one input that needs no caller to answer: a peer's message
// (admitted by peerInput), a storage notification, a timer, a detector's
// verdict.
func (s *server) handle(msg actor.Message) {
	switch m := msg.(type) {
	case *peerMsg:
		if s.peersGone[m.From] {
			delete(s.peersGone, m.From) // back: watch it again
			s.syncPeerMonitors()
		}
		s.step(core.Receive{From: m.From, Incarnation: m.Incarnation, Msg: m.Msg})
		s.publishLag()
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
	case *membersAsk:
		_ = s.env.send(Ref(m.From), &membersTell{From: s.self, Voters: slices.Clone(s.current.Voters), NonVoters: slices.Clone(s.current.NonVoters)})
	case *membersTell:
		s.membersTold(m)
	case snapTickMsg:
		s.snapTick()
	case snapDueMsg:
		s.snapDue()
	case flushCommands:
		s.flushCommands()
	case publishLagMsg:
		s.lagTimer = false
		s.publishLag()
	case electionTimeout:
		s.electionArmed = false
		s.step(core.ElectionTimeout{})
	case tickMsg:
		if s.tickerOn {
			s.tickTimer = s.env.after(time.Duration(s.tickMs)*time.Millisecond, tickMsg{})
			s.step(core.Tick{})
		}
	case actor.NodeDown:
		if s.effects.watchesNode(m.Node) {
			s.observe(NodeDown{Node: m.Node})
		}
	case actor.NodeUp:
		if s.effects.watchesNode(m.Node) {
			s.observe(NodeUp{Node: m.Node})
		}
	case machineTimer:
		if s.effects.timerFired(m) {
			s.observe(TimerFired{Name: m.name})
		}
	case machineTickMsg:
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
	if peer, ok := s.peerMons.Delete(id); ok {
		s.peerMonOf.Delete(peer)
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
	if ref, ok := s.effects.processDown(id); ok {
		s.observe(ProcessDown{Ref: ref, Reason: reason.String()})
	}
}

// query hands a query to the core, which answers it with RunQuery or Reply.
func (s *server) query(m *queryReq, rt actor.ReplyTo) {
	s.step(core.Query{Kind: m.Kind, Token: queryToken{rt: rt, req: m}})
}

// terminating: the server's process is stopping for reason.
func (s *server) terminating(reason actor.Reason) {
	defer s.met.running.Store(false)
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
		s.met.commandAnswered(c.Token, s.env.now(), false)
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
			s.met.commandAnswered(a.Token, s.env.now(), false)
			s.reply(a.Token, nil, fromCore(a.Err, s.self, a.Leader))
		case core.Send:
			_ = s.env.send(Ref(a.To), &peerMsg{From: s.self, Incarnation: s.incarnation, Msg: a.Msg})
		}
	}
	s.flushNotifications()
}

// lagPublishEvery is how often a leader publishes its followers' lag at
// most.
const lagPublishEvery = 100 * time.Millisecond

// publishLag publishes a leader's followers' lag (ServerMetrics) as their
// replies come in, at most every lagPublishEvery; a reply within that
// interval arms a timer that publishes at its end, so the last state is
// never left out.
func (s *server) publishLag() {
	if s.raft.Role() != core.RoleLeader {
		return
	}
	now := s.env.now()
	if now.Sub(s.lagAt) >= lagPublishEvery {
		s.lagAt = now
		s.met.publishLag(s.raft.LastIndex(), s.raft.Progress())
		return
	}
	if !s.lagTimer {
		s.lagTimer = true
		s.env.after(lagPublishEvery-now.Sub(s.lagAt), publishLagMsg{})
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
			s.learnMembers()
			s.syncWatches()
			s.syncPeerMonitors()
		case core.Send:
			_ = s.env.send(Ref(a.To), &peerMsg{From: s.self, Incarnation: s.incarnation, Msg: a.Msg})
		case core.Apply:
			if err := s.apply(a); err != nil {
				s.fail(err)
				return
			}
		case core.Reply:
			s.met.commandAnswered(a.Token, s.env.now(), false)
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
