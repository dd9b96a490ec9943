package sim

import (
	"fmt"

	"github.com/rago-raft/rago/raftserver/core"
)

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
