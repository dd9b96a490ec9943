package raftserver

import (
	"errors"
	"fmt"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver/core"
)

// Tokens: the core hands them back in Apply.Tokens or Reply actions.
type (
	// A command's token carries when the command arrived (commit
	// latency).
	syncToken struct {
		rt actor.ReplyTo
		at time.Time
	}
	pipeToken struct {
		notify actor.Ref
		corr   uint64
		at     time.Time
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

func (s *server) queueCommand(m *commandReq, rt actor.ReplyTo) {
	var tok any
	if !s.flushPending {
		// The commands of one batch (see flushCommands) arrive within
		// one drain of the mailbox and share its first one's arrival
		// time: one clock reading per batch.
		s.batchArrived = s.env.now()
	}
	s.met.received.Add(1)
	if m.Pipeline {
		tok = pipeToken{notify: m.Notify, corr: m.Correlation, at: s.batchArrived}
	} else {
		tok = syncToken{rt: rt, at: s.batchArrived}
	}
	var cmd core.Command
	switch {
	case m.Session:
		cmd.Data = encodeSessionCommand(m.Client, m.Seq, m.Responded, m.Data)
	case m.userCommand != nil:
		cmd.Framed = m.userCommand
	default:
		cmd.Framed = frameUserCommand(m.Data)
	}
	if cmd.Framed != nil {
		cmd.Data = cmd.Framed[1:]
	}
	cmd.Token = tok
	s.cmdBuf = append(s.cmdBuf, cmd)
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
		s.step(core.AddMember{Member: m.Member, Voter: m.Op == opAddMember, Incarnation: m.Incarnation, Token: tok})
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
			v, err := t.req.fn(userMachine(s.mh.machine))
			res.Value, res.Err = v, toRemote(err)
			return
		}
		q, ok := s.mh.machine.(Querier)
		if !ok {
			res.Err = toRemote(fmt.Errorf("%w: machine %T answers no queries", ErrMachine, s.mh.machine))
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
