package raftserver

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/meta"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/segment"
	"github.com/rago-raft/rago/wal"
)

// server is the process of one Raft member. It runs the core: every input
// (a peer's message, a WAL notification, a client request, a timer, a
// monitor's Down) becomes one core event, and the actions the core returns
// are carried out in order over actor, wal and meta. It makes no Raft
// decisions of its own.
type server struct {
	sys     *System
	cfg     ServerConfig
	uid     string
	self    ServerID
	logger  *slog.Logger
	raft    *core.Raft
	log     *logStore
	machine Machine
	applied uint64

	ctx *actor.Context // valid during Receive

	// Client commands wait in cmdBuf until the flush message the first of
	// them posted comes round: everything queued in the mailbox by then
	// goes to the core as one batch.
	cmdBuf       []core.Command
	flushPending bool

	queries []parkedQuery // waiting for applied >= readIndex

	electionTimer actor.TimerRef
	electionArmed bool
	tickerOn      bool
	tickMs        int64
	tickTimer     actor.TimerRef

	leaderMon  actor.MonitorRef
	monitoring ServerID // the leader whose process we monitor

	// Pipelined replies of the current Apply, by notify process, in the
	// order the processes first appear.
	notify      map[actor.Ref]*Applied
	notifyOrder []actor.Ref

	appliedSaved uint64 // last applied index written to the meta store
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

type parkedQuery struct {
	readIndex uint64
	tok       queryToken
}

// Messages a server sends itself.
type (
	flushCommands   struct{}
	electionTimeout struct{}
	tickMsg         struct{}
)

// appliedSaveEvery is how many applied entries may pass before the last
// applied index is written to the meta store (unsynced); see docs.
const appliedSaveEvery = 1024

func newServer(sys *System, cfg ServerConfig, uid string) *server {
	return &server{
		sys:    sys,
		cfg:    cfg,
		uid:    uid,
		self:   cfg.ID,
		logger: sys.logger.With("server", cfg.ID.String(), "cluster", cfg.Cluster),
	}
}

func (s *server) Receive(ctx *actor.Context, msg actor.Message) {
	s.ctx = ctx
	switch m := msg.(type) {
	case actor.Started:
		if err := s.start(); err != nil {
			s.logger.Error("server failed to start", "err", err)
			ctx.Exit(actor.ErrorReason(err))
		}
	case *peerMsg:
		s.step(core.Receive{From: m.From, Msg: m.Msg})
	case wal.Written:
		s.step(core.Written{Term: m.Term, To: m.To})
		if err := s.log.retry(); err != nil {
			s.fail(err)
		}
	case wal.OutOfSequence:
		s.logger.Warn("wal dropped a write that left a gap; resending", "expected", m.Expected, "got", m.Got)
		err := s.log.resend(m.Expected, func(lo, hi uint64) ([]core.Entry, error) { return s.raft.Entries(lo, hi, 4<<20) })
		if err != nil {
			s.fail(err)
		}
	case wal.WriteFailed:
		s.fail(fmt.Errorf("%w: entries %d..%d: %w", ErrStorage, m.From, m.To, m.Err))
	case segment.Flushed:
		// Entries moved from the WAL to the segments; reads follow by
		// themselves (segment.Log). Snapshots will use this.
	case *commandReq:
		s.queueCommand(m)
	case flushCommands:
		s.flushCommands()
	case electionTimeout:
		s.electionArmed = false
		s.step(core.ElectionTimeout{})
	case tickMsg:
		if s.tickerOn {
			s.tickTimer = ctx.SendAfter(time.Duration(s.tickMs)*time.Millisecond, tickMsg{})
			s.step(core.Tick{})
		}
	case actor.Down:
		if m.Monitor == s.leaderMon && !s.monitoring.IsZero() {
			leader := s.monitoring
			s.monitoring = ServerID{}
			s.step(core.LeaderDown{Leader: leader})
		}
	case *queryReq:
		rt, _ := ctx.ReplyTo()
		s.step(core.Query{Kind: m.Kind, Token: queryToken{rt: rt, req: m}})
	case *memberReq:
		s.memberRequest(m)
	case *statusReq:
		_ = ctx.Reply(s.status())
	case actor.Terminating:
		if s.raft != nil {
			s.saveApplied()
			s.sys.board.Record(s.cfg.Cluster, ServerID{}, s.raft.Status().Members.Voters, s.raft.Term())
		}
	}
}

// start builds the core from durable state: the WAL and segments for the
// log, the meta store for term and vote.
func (s *server) start() error {
	w, err := s.sys.wal.Register(s.uid, s.ctx.Self())
	if err != nil {
		return fmt.Errorf("%w: register %s with the wal: %w", ErrStorage, s.uid, err)
	}
	l, err := openLogStore(s.uid, w, segment.NewLog(s.uid, s.sys.segments, w.Mem))
	if err != nil {
		return err
	}
	s.log = l
	term, voted, applied, err := s.sys.meta.Get(s.uid)
	if err != nil {
		return fmt.Errorf("%w: meta of %s: %w", ErrStorage, s.uid, err)
	}
	s.appliedSaved = applied
	m, err := s.sys.newMachine(s.cfg.Machine)
	if err != nil {
		return err
	}
	s.machine = m
	rc := s.sys.raftConfig()
	rc.ID = s.self
	rc.InitialMembers = core.Membership{Voters: s.cfg.InitialMembers}
	rc.Seed = rand.Uint64()
	rc.Logger = s.logger
	r, err := core.New(rc, core.HardState{Term: term, VotedFor: ServerID(voted)}, l)
	if err != nil {
		return err
	}
	s.raft = r
	s.step(core.Started{})
	return nil
}

// fail stops the server after a storage failure; its supervisor restarts
// it from durable state, or gives up if it keeps failing.
func (s *server) fail(err error) {
	s.logger.Error("server failing", "err", err)
	s.ctx.Exit(actor.ErrorReason(err))
}

func (s *server) step(ev core.Event) {
	acts, err := s.raft.Step(ev)
	if err != nil {
		s.fail(err)
		return
	}
	s.execute(acts)
}

// execute carries out one batch of actions, in order (see core.Action for
// the ordering rules it relies on).
func (s *server) execute(acts []core.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case core.PersistState:
			// Synced before anything later in the batch happens: no vote
			// leaves this server before it is durable.
			if err := s.sys.meta.Put(s.uid, a.State.Term, meta.ServerID(a.State.VotedFor)); err != nil {
				s.fail(fmt.Errorf("%w: persist term and vote: %w", ErrStorage, err))
				return
			}
		case core.Append:
			if err := s.log.append(a.Entries); err != nil {
				s.fail(err)
				return
			}
		case core.Send:
			_ = s.ctx.Send(Ref(a.To), &peerMsg{From: s.self, Msg: a.Msg})
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
				s.ctx.CancelTimer(s.electionTimer)
			}
			s.electionTimer = s.ctx.SendAfter(time.Duration(a.Ms)*time.Millisecond, electionTimeout{})
			s.electionArmed = true
		case core.CancelElectionTimer:
			if s.electionArmed {
				s.ctx.CancelTimer(s.electionTimer)
				s.electionArmed = false
			}
		case core.StartTicker:
			if s.tickerOn {
				s.ctx.CancelTimer(s.tickTimer)
			}
			s.tickerOn, s.tickMs = true, a.Ms
			s.tickTimer = s.ctx.SendAfter(time.Duration(a.Ms)*time.Millisecond, tickMsg{})
		case core.StopTicker:
			if s.tickerOn {
				s.ctx.CancelTimer(s.tickTimer)
				s.tickerOn = false
			}
		case core.RoleChanged:
			s.roleChanged(a)
		}
	}
	s.flushNotifications()
}

func (s *server) queueCommand(m *commandReq) {
	var tok any
	if m.Pipeline {
		tok = pipeToken{notify: m.Notify, corr: m.Correlation}
	} else {
		rt, _ := s.ctx.ReplyTo()
		tok = syncToken{rt: rt}
	}
	s.cmdBuf = append(s.cmdBuf, core.Command{Data: m.Data, Token: tok})
	if !s.flushPending {
		s.flushPending = true
		_ = s.ctx.Send(s.ctx.Self(), flushCommands{})
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

func (s *server) memberRequest(m *memberReq) {
	rt, _ := s.ctx.ReplyTo()
	tok := memberToken{rt: rt}
	switch m.Op {
	case opAddMember, opAddNonVoter:
		s.step(core.AddMember{Member: m.Member, Voter: m.Op == opAddMember, Token: tok})
	case opRemoveMember:
		s.step(core.RemoveMember{Member: m.Member, Token: tok})
	case opTransfer:
		s.step(core.TransferLeadership{To: m.Member, Token: tok})
	default:
		_ = s.ctx.Reply(&memberResult{Err: toRemote(fmt.Errorf("%w: membership operation %d", ErrInvalidConfig, m.Op))})
	}
}

// apply applies the committed entries From..To and answers their tokens.
func (s *server) apply(a core.Apply) error {
	toks := a.Tokens
	for lo := a.From; lo <= a.To; {
		ents, err := s.raft.Entries(lo, a.To+1, 4<<20)
		if err != nil {
			return err
		}
		for _, e := range ents {
			reply, err := s.applyEntry(e)
			s.applied = e.Index
			for len(toks) > 0 && toks[0].Index <= e.Index {
				if toks[0].Index == e.Index {
					s.reply(toks[0].Token, reply, err)
				}
				toks = toks[1:]
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	s.runReadyQueries()
	if s.applied-s.appliedSaved >= appliedSaveEvery {
		s.saveApplied()
	}
	return nil
}

func (s *server) applyEntry(e core.Entry) (reply []byte, err error) {
	switch e.Type {
	case core.EntryNormal:
		return s.applyCommand(e)
	case core.EntryConfig:
		s.configApplied(e.Index)
	}
	return nil, nil
}

// applyCommand runs the machine on one command. A panic is turned into an
// error reply and logged with the index; every member meets the same panic
// at the same index and does the same.
func (s *server) applyCommand(e core.Entry) (reply []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("machine panicked applying a command", "index", e.Index, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			reply, err = nil, fmt.Errorf("%w: command at index %d panicked: %v", ErrMachine, e.Index, r)
		}
	}()
	return s.machine.Apply(&ApplyContext{Index: e.Index, Term: e.Term}, e.Data), nil
}

// configApplied records a committed membership change in the directory,
// so a restarted node knows the members. A server that the latest
// configuration removed stops once that configuration is committed; it
// keeps its data until deleted.
func (s *server) configApplied(index uint64) {
	st := s.raft.Status()
	if index == st.MembersIndex && !st.Members.Contains(s.self) {
		s.logger.Info("removed from the cluster; stopping", "index", index)
		s.ctx.Stop()
	}
	members := make([]meta.ServerID, 0, len(st.Members.Voters))
	for _, id := range st.Members.Voters {
		members = append(members, meta.ServerID(id))
	}
	if err := s.sys.directoryMembers(s.uid, members); err != nil {
		s.logger.Warn("could not record the new members", "err", err)
	}
	s.sys.board.Record(s.cfg.Cluster, st.Leader, st.Members.Voters, st.Term)
}

func (s *server) saveApplied() {
	if s.applied == s.appliedSaved {
		return
	}
	if err := s.sys.meta.SetLastApplied(s.uid, s.applied); err != nil {
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
		_ = s.ctx.Node().Reply(t.rt, &commandResult{Reply: reply, Leader: leader, Err: toRemote(err)})
	case pipeToken:
		if err != nil {
			var nl *NotLeaderError
			if errors.As(err, &nl) {
				leader = nl.Leader
			}
			_ = s.ctx.Send(t.notify, &Rejected{Server: s.self, Correlation: t.corr, Err: err, Leader: leader})
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
		_ = s.ctx.Node().Reply(t.rt, &memberResult{Leader: leader, Err: toRemote(err)})
	case queryToken:
		_ = s.ctx.Node().Reply(t.rt, &queryResult{Leader: leader, Err: toRemote(err)})
	}
}

func (s *server) flushNotifications() {
	for _, ref := range s.notifyOrder {
		_ = s.ctx.Send(ref, s.notify[ref])
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
		if t.req.fn != nil {
			v, err := t.req.fn(s.machine)
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
	_ = s.ctx.Node().Reply(t.rt, res)
}

// roleChanged publishes the leader on the leaderboard and monitors the
// leader's process, whose Down triggers an election here.
func (s *server) roleChanged(a core.RoleChanged) {
	s.sys.board.Record(s.cfg.Cluster, a.Leader, s.raft.Status().Members.Voters, a.Term)
	want := a.Leader
	if want == s.self {
		want = ServerID{}
	}
	if want == s.monitoring {
		return
	}
	if !s.monitoring.IsZero() {
		s.ctx.Demonitor(s.leaderMon)
	}
	s.monitoring = want
	if !want.IsZero() {
		s.leaderMon = s.ctx.Monitor(Ref(want))
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
	}
}
