package sim

import (
	"fmt"

	"github.com/rago-raft/rago/raftserver/core"
)

// The events of the simulation's queue.
type (
	evDeliver struct {
		from, to int
		data     []byte
		staged   *stagedSnapshot // the snapshot an InstallSnapshot stands for
	}
	evSnapshotDone struct {
		m, inc int
		st     *stagedSnapshot
	}
	evSync     struct{ m, inc int }
	evElection struct {
		m, inc int
		gen    uint64
	}
	evTick struct {
		m, inc int
		gen    uint64
		ms     int64
	}
	evCore struct {
		m, inc int
		ev     core.Event
	}
	evClient  struct{ c int }
	evRequest struct {
		c int
		o *op
	}
	evTimeout struct {
		c int
		o *op
	}
	evChaos   struct{}
	evFD      struct{}
	evRestart struct{ m int }
	evStop    struct{ m int }
)

// Result is the outcome of one run.
type Result struct {
	Seed uint64
	// Violation is the first broken property, nil if none.
	Violation *Violation
	// TraceHash digests every event processed: the same seed and options
	// always give the same hash.
	TraceHash uint64
	Stats     Stats
}

// Run simulates one seed: FaultEvents events under faults, then healing and
// up to LivenessEvents events to converge, then the final checks.
func Run(opts Options) Result {
	w := newWorld(opts)
	for w.violation == nil && w.events < opts.FaultEvents {
		if !w.stepOne() {
			break
		}
	}
	if w.violation == nil {
		w.heal()
		healedAt := w.events
		for w.violation == nil {
			if (w.events-healedAt)%16 == 0 && w.converged() != nil {
				if m := w.oldMember(); m != nil {
					// The cluster converged with a member on old code held
					// back; upgrade it now: it must catch up.
					w.keepOld = -1
					w.upgrade(m, w.targetVersion)
					continue
				}
				break
			}
			if w.events-healedAt >= opts.LivenessEvents {
				w.violate(Liveness, "no convergence within %d events after healing: %s", opts.LivenessEvents, w.describe())
				break
			}
			if !w.stepOne() {
				w.violate(Liveness, "event queue ran dry: %s", w.describe())
				break
			}
		}
	}
	if w.violation == nil {
		w.finalChecks()
	}
	w.stats.Events = w.events
	w.stats.Committed = uint64(len(w.committed))
	return Result{Seed: opts.Seed, Violation: w.violation, TraceHash: w.trace.Sum64(), Stats: w.stats}
}

// stepOne processes the next event. It returns false when none is left.
func (w *World) stepOne() bool {
	ev, ok := w.next()
	if !ok {
		return false
	}
	w.events++
	switch ev := ev.(type) {
	case evDeliver:
		w.traceEvent("deliver", ev.to, ev.data)
		m := w.members[ev.to]
		if !m.up || w.blocked[ev.from][ev.to] {
			return true
		}
		msg, err := core.DecodeMessage(ev.data)
		if err != nil {
			w.violate(CoreError, "decode: %v", err)
			return true
		}
		if ev.staged != nil {
			// The whole snapshot arrived and is durable, staged.
			m.staged = &stagedSnapshot{snap: ev.staged.snap.Clone(), state: ev.staged.state.clone()}
		}
		w.stepMember(m, core.Receive{From: w.members[ev.from].id, Msg: msg})
	case evSync:
		w.traceEvent("sync", ev.m, nil)
		m := w.members[ev.m]
		if !m.up || m.inc != ev.inc {
			return true
		}
		m.syncQueued = false
		n := len(m.disk.pending)
		if n == 0 {
			return true
		}
		k := 1 + w.rng.IntN(n)
		lasts, err := m.disk.sync(k)
		if err != nil {
			w.violate(CoreError, "member %s: sync: %v", m.id, err)
			return true
		}
		if len(lasts) > 1 && w.rng.IntN(2) == 0 {
			// One report for the whole batch, as a WAL does per fsync.
			lasts = lasts[len(lasts)-1:]
		}
		for _, e := range lasts {
			w.stepMember(m, core.Written{Term: e.Term, To: e.Index})
		}
		if m.up && len(m.disk.pending) > 0 && !m.syncQueued {
			m.syncQueued = true
			w.schedule(1+w.rng.Int64N(w.walMaxDelayMs), evSync{m: m.idx, inc: m.inc})
		}
	case evElection:
		w.traceEvent("election", ev.m, nil)
		m := w.members[ev.m]
		if m.up && m.inc == ev.inc && m.timerGen == ev.gen {
			w.stepMember(m, core.ElectionTimeout{})
		}
	case evTick:
		m := w.members[ev.m]
		if m.up && m.inc == ev.inc && m.tickGen == ev.gen {
			w.traceEvent("tick", ev.m, nil)
			w.schedule(ev.ms, ev)
			w.stepMember(m, core.Tick{})
		}
	case evCore:
		w.traceEvent(fmt.Sprintf("%T", ev.ev)[5:], ev.m, nil)
		m := w.members[ev.m]
		if m.up && m.inc == ev.inc {
			w.stepMember(m, ev.ev)
		}
	case evClient:
		w.traceEvent("client", ev.c, nil)
		w.clientIssue(w.clients[ev.c])
	case evRequest:
		w.traceEvent("request", ev.o.target, nil)
		w.clientDeliver(w.clients[ev.c], ev.o)
	case evTimeout:
		c := w.clients[ev.c]
		if c.cur == ev.o {
			w.traceEvent("timeout", ev.c, nil)
			w.finishUnknown(c, ev.o)
		}
	case evSnapshotDone:
		w.traceEvent("snapshot", ev.m, nil)
		m := w.members[ev.m]
		if m.up && m.inc == ev.inc {
			w.snapshotDone(m, ev.st)
		}
	case evChaos:
		w.traceEvent("chaos", 0, nil)
		if !w.healed {
			w.chaos()
			w.schedule(w.chaosDelay(), evChaos{})
		}
	case evFD:
		w.failureDetector()
		w.schedule(fdPeriodMs, evFD{})
	case evRestart:
		m := w.members[ev.m]
		if !m.up && !m.stopped {
			w.traceEvent("restart", ev.m, nil)
			if !w.healed && m.disk.snap.Index > 0 && w.noneRecovering() && w.rng.Float64() < w.opts.Faults.SnapshotLoss {
				w.traceEvent("snaplost", ev.m, nil)
				w.stats.SnapshotsLost++
				m.disk.loseSnapshot()
				if len(m.disk.members.Voters) > 0 {
					// The server restarts it with the members its
					// directory recorded.
					m.initial = m.disk.members.Clone()
				}
			}
			w.start(m)
		}
	case evStop:
		m := w.members[ev.m]
		if !m.stopped && !w.cfgCommitted.Contains(m.id) {
			w.traceEvent("stop", ev.m, nil)
			w.stopGracefully(m, true)
		}
	}
	return true
}

// noneRecovering reports whether no member is recovering lost log entries.
// Snapshots are lost on one member at a time: two members that lose
// acknowledged entries at once may have lost a committed one for good, and
// no protocol can get it back.
func (w *World) noneRecovering() bool {
	for _, m := range w.members {
		if m.disk.recoverTo != 0 {
			return false
		}
	}
	return true
}

// failureDetector tells each live member about nodes it cannot hear from
// (down, or cut off towards it) and about nodes it can hear from again.
func (w *World) failureDetector() {
	for _, a := range w.members {
		if !a.up {
			continue
		}
		for _, b := range w.members {
			if a == b {
				continue
			}
			suspect := !b.up || w.blocked[b.idx][a.idx]
			if suspect == a.fdTold[b.idx] {
				continue
			}
			a.fdTold[b.idx] = suspect
			var ev core.Event = core.NodeUp{Node: b.id.Node}
			if suspect {
				ev = core.NodeSuspected{Node: b.id.Node}
			}
			w.fdNotify(a, b, ev)
		}
	}
}

// fdNotify delivers a detector notice about b to a after a random delay,
// but never before an earlier notice about b: detectors report in order.
func (w *World) fdNotify(a, b *member, ev core.Event) {
	at := max(w.now+1+w.rng.Int64N(fdMaxDelayMs), w.fdAt[a.idx][b.idx]+1)
	w.fdAt[a.idx][b.idx] = at
	w.schedule(at-w.now, evCore{m: a.idx, inc: a.inc, ev: ev})
}

// heal ends the fault phase: no more chaos, drops or partitions; crashed
// members restart; clients finish what they have in flight. In an upgrade
// run every member gets the new code, except, in half the runs (if no
// member is recovering lost entries), one that stays on old code until the
// cluster has converged without it.
func (w *World) heal() {
	w.healed = true
	w.traceEvent("heal", 0, nil)
	w.blocked = [maxMembers][maxMembers]bool{}
	if w.targetVersion > 0 {
		var old []*member
		for _, m := range w.members {
			if !m.stopped && m.version < w.targetVersion {
				old = append(old, m)
			}
		}
		// Not while a member recovers lost entries: with one member that
		// cannot lead and another that may not, a cluster of three can be
		// left with no possible leader until the old code is upgraded.
		if len(old) > 0 && w.rng.IntN(2) == 0 && w.noneRecovering() {
			k := w.rng.IntN(len(old))
			w.keepOld = old[k].idx
			old = append(old[:k], old[k+1:]...)
		}
		for _, m := range old {
			w.upgrade(m, w.targetVersion)
		}
	}
	for _, m := range w.members {
		if !m.up && !m.stopped {
			w.schedule(1+w.rng.Int64N(50), evRestart{m: m.idx})
		}
	}
}

// oldMember is the member kept on old code after healing, if it still is.
func (w *World) oldMember() *member {
	if w.keepOld < 0 {
		return nil
	}
	m := w.members[w.keepOld]
	if m.stopped || m.version >= w.targetVersion {
		return nil
	}
	return m
}

// converged returns a leader that has committed its whole log while every
// member of its configuration is up, holds the same log, has applied all of
// it and has the same machine state; nil if there is none. A member on old
// code must instead have stopped just before the first version bump it
// does not support, or be stuck behind the leader's snapshot (which its
// code could not run) without having applied that far. In an upgrade run with every member upgraded, the
// cluster must also have reached the target version.
func (w *World) converged() *member {
	for _, l := range w.members {
		if !l.up || l.raft.Role() != core.RoleLeader {
			continue
		}
		st := l.raft.Status()
		if st.Commit != st.LastIndex || st.LastTerm != st.Term || l.applied != st.Commit {
			return nil
		}
		if w.targetVersion > 0 && w.oldMember() == nil && st.MachineVersion != w.targetVersion {
			return nil
		}
		lh, _ := l.disk.hashAt(st.LastIndex)
		for _, id := range append(st.Members.Voters, st.Members.NonVoters...) {
			m := w.members[w.byID[id]]
			if !m.up {
				return nil
			}
			stall, old := w.stalledAt(m)
			if old && m.applied < stall && m.raft.LastIndex() < st.FirstIndex-1 {
				// Behind the leader's snapshot, which its code cannot run:
				// it waits for newer code.
				continue
			}
			if m.raft.LastIndex() != st.LastIndex || m.raft.Commit() != st.Commit || m.raft.Term() != st.Term {
				return nil
			}
			if h, ok := m.disk.hashAt(st.LastIndex); !ok || h != lh {
				return nil
			}
			if old {
				if m.applied != stall-1 {
					return nil
				}
				continue
			}
			if m.applied != st.Commit || m.machine.digest() != l.machine.digest() {
				return nil
			}
		}
		return l
	}
	return nil
}

// stalledAt returns the index of the first version bump that m's code does
// not support, if some member applied one.
func (w *World) stalledAt(m *member) (uint64, bool) {
	first, ok := uint64(0), false
	for v, at := range w.bumps {
		if v > m.version && (!ok || at < first) {
			first, ok = at, true
		}
	}
	return first, ok
}

// describe summarises every member for failure messages.
func (w *World) describe() string {
	s := fmt.Sprintf("t=%d", w.now)
	for _, m := range w.members {
		if !m.up {
			s += fmt.Sprintf(" [%s down stopped=%v]", m.id.Name, m.stopped)
			continue
		}
		st := m.raft.Status()
		s += fmt.Sprintf(" [%s %s term=%d lead=%s commit=%d applied=%d first=%d last=%d stable=%d snap=%d version=%d/%d members=%v]",
			m.id.Name, st.Role, st.Term, st.Leader.Name, st.Commit, m.applied, st.FirstIndex, st.LastIndex, st.StableIndex,
			st.SnapshotIndex, st.MachineVersion, m.version, st.Members.Voters)
	}
	return s
}
