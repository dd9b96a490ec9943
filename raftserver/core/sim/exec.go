package sim

import (
	"fmt"

	"github.com/rago-raft/rago/internal/kvmodel"
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
	if m.disk.recoverTo != 0 && m.raft.RecoverTo() == 0 {
		// Recovered: the server forgets the persisted mark.
		m.disk.recoverTo, m.disk.recoverTerm = 0, 0
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
		if err := m.disk.writeEntries(a.Entries); err != nil {
			w.violate(CoreError, "member %s: %v", m.id, err)
			return
		}
		w.checkAppend(m, a.Entries)
		w.queueSync(m)
	case core.Compact:
		// The core may drop only what a durable snapshot covers.
		if a.Through > m.disk.snap.Index {
			w.violate(CoreError, "member %s compacts through %d, its durable snapshot is at %d", m.id, a.Through, m.disk.snap.Index)
			return
		}
		if err := m.disk.compact(a.Through); err != nil {
			w.violate(CoreError, "member %s: %v", m.id, err)
			return
		}
		w.stats.Compactions++
	case core.SendSnapshot:
		w.sendSnapshot(m, a)
	case core.RestoreSnapshot:
		w.restoreSnapshot(m, a.Snapshot)
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
	case core.MembersChanged:
		// The server follows it with its monitors; nothing to simulate.
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

func (w *World) queueSync(m *member) {
	if !m.syncQueued {
		m.syncQueued = true
		w.schedule(1+w.rng.Int64N(w.walMaxDelayMs), evSync{m: m.idx, inc: m.inc})
	}
}

// sendSnapshot carries out a SendSnapshot: the snapshot travels as one
// message, lost, duplicated and delayed like the others (a transfer takes
// a while), carrying the sender's durable snapshot. The receiver's server
// stages it and steps the InstallSnapshot message on arrival.
func (w *World) sendSnapshot(from *member, a core.SendSnapshot) {
	w.stats.SnapSends++
	s := a.Msg.Snapshot
	if s.Index != from.disk.snap.Index || s.Term != from.disk.snap.Term {
		w.violate(CoreError, "member %s sends snapshot (%d, term %d), its durable one is (%d, term %d)",
			from.id, s.Index, s.Term, from.disk.snap.Index, from.disk.snap.Term)
		return
	}
	if w.opts.Trace != nil {
		fmt.Fprintf(w.opts.Trace, "%8s snapshot %s -> %s %+v\n", "", from.id.Name, a.To.Name, a.Msg)
	}
	staged := &stagedSnapshot{snap: from.disk.snap.Clone(), state: from.disk.state.clone()}
	w.send(from, a.To, a.Msg, staged)
}

// restoreSnapshot carries out a RestoreSnapshot: the staged snapshot
// becomes the member's, its log is reset (the reset is a write that a
// crash may lose, leaving the old log with the new snapshot), and the
// machine is restored.
func (w *World) restoreSnapshot(m *member, s core.Snapshot) {
	st := m.staged
	switch {
	case st == nil || st.snap.Index != s.Index || st.snap.Term != s.Term:
		w.violate(CoreError, "member %s restores snapshot (%d, term %d), which is not the one staged", m.id, s.Index, s.Term)
		return
	case m.disk.entryWritesPending() > 0:
		w.violate(CoreError, "member %s installs a snapshot with %d writes in flight", m.id, m.disk.entryWritesPending())
		return
	case s.Index < m.applied:
		w.violate(StateMachineSafety, "member %s installs a snapshot at %d: its machine goes back from %d", m.id, s.Index, m.applied)
		return
	case st.state.version > m.version:
		w.violate(VersionSafety, "member %s installs a snapshot of machine version %d, its code supports %d", m.id, st.state.version, m.version)
		return
	}
	w.checkSnapshot(m, "installs", s, &st.state)
	w.stats.Installs++
	m.disk.snap, m.disk.state = st.snap, st.state.clone()
	if len(st.state.members.Voters) > 0 {
		m.disk.members = st.state.members.Clone()
	}
	m.disk.resetLog(s.Index, s.Term, st.state.hash)
	w.queueSync(m)
	m.machine = st.state
	m.applied = s.Index
	m.snapFrom = s.Index
	m.staged = nil
}

// send puts an encoded message on the simulated network; staged rides
// along with an InstallSnapshot.
func (w *World) send(from *member, to core.ServerID, msg core.Message, staged ...*stagedSnapshot) {
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
	ev := evDeliver{from: from.idx, to: ti, data: data}
	if len(staged) > 0 {
		ev.staged = staged[0]
	}
	for i := 0; i < copies; i++ {
		d := 1 + w.rng.Int64N(max(1, f.MaxDelayMs))
		if ev.staged != nil {
			d += w.rng.Int64N(max(1, 4*f.MaxDelayMs))
		}
		if !w.healed && w.rng.Float64() < f.SlowRate {
			d *= 10
		}
		w.schedule(d, ev)
	}
}

// apply hands committed entries to m's machine and answers tokens.
func (w *World) apply(m *member, a core.Apply) {
	if a.From != m.applied+1 || a.To < a.From {
		w.violate(CoreError, "member %s: Apply %d..%d after applying up to %d", m.id, a.From, a.To, m.applied)
		return
	}
	for lo := a.From; lo <= a.To; {
		ents, err := m.raft.Entries(lo, a.To+1, 1<<16)
		if err != nil {
			w.violate(CoreError, "member %s: Entries(%d, %d): %v", m.id, lo, a.To+1, err)
			return
		}
		for i := range ents {
			e := &ents[i]
			w.checkApplied(m, e)
			if m.machine.version > m.version {
				w.violate(VersionSafety, "member %s applies entry %d under machine version %d, its code supports %d",
					m.id, e.Index, m.machine.version, m.version)
				return
			}
			if err := m.machine.apply(e); err != nil {
				w.violate(CoreError, "member %s: entry %d: %v", m.id, e.Index, err)
				return
			}
			w.checkState(m)
			switch e.Type {
			case core.EntryConfig:
				m.disk.members = m.machine.members.Clone()
				w.configCommitted(e)
			case core.EntryMachineVersion:
				w.versionApplied(m, e)
			}
			m.applied = e.Index
			if w.violation != nil {
				return
			}
			w.maybeSnapshot(m)
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
		w.finishOK(o, kvmodel.Output{})
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
	w.cfgCommitted = cfg
	for _, m := range w.members {
		switch {
		case cfg.Contains(m.id):
			m.everMember = true
			if m.stopped {
				// Added back after its removal shut it down (a change
				// that waited behind the removal): its operator starts
				// it again, as a removed server stays stopped.
				m.stopped = false
				w.traceEvent("readded", m.idx, nil)
				w.schedule(50+w.rng.Int64N(500), evRestart{m: m.idx})
			}
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
	v, ok := m.machine.kv[o.key]
	w.finishOK(o, kvmodel.Output{Found: ok, Value: v})
}

// maybeSnapshot starts a snapshot of m's machine at the entry just applied,
// per the run's policy. Writing it takes a while; then it is durable, and
// the core hears of it.
func (w *World) maybeSnapshot(m *member) {
	if w.snapEvery == 0 || m.snapWriting || m.applied < m.snapFrom+w.snapEvery {
		return
	}
	m.snapWriting = true
	m.snapFrom = m.applied
	st := &stagedSnapshot{snap: m.machine.snapshot(), state: m.machine.clone()}
	w.schedule(1+w.rng.Int64N(3*w.walMaxDelayMs), evSnapshotDone{m: m.idx, inc: m.inc, st: st})
}

// snapshotDone: m's snapshot is durable; it replaces an older one.
func (w *World) snapshotDone(m *member, st *stagedSnapshot) {
	m.snapWriting = false
	if st.snap.Index <= m.disk.snap.Index {
		return // an installed snapshot overtook it
	}
	w.checkSnapshot(m, "takes", st.snap, &st.state)
	m.disk.snap, m.disk.state = st.snap, st.state
	w.stats.Snapshots++
	w.stepMember(m, core.SnapshotTaken{Snapshot: st.snap.Clone()})
}

// versionApplied checks that every member switches to a version at the
// same index.
func (w *World) versionApplied(m *member, e *core.Entry) {
	v := m.machine.version
	if v > m.version {
		w.violate(VersionSafety, "member %s applies the bump to machine version %d at %d, its code supports %d", m.id, v, e.Index, m.version)
		return
	}
	if at, ok := w.bumps[v]; ok && at != e.Index {
		w.violate(VersionSafety, "member %s switches to machine version %d at %d, another member at %d", m.id, v, e.Index, at)
		return
	}
	if _, ok := w.bumps[v]; !ok {
		w.bumps[v] = e.Index
		w.stats.Bumps++
	}
}
