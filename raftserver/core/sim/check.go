package sim

import (
	"fmt"
	"sort"

	"github.com/rago-raft/rago/raftserver/core"
)

// Invariant names a property the simulation checks.
type Invariant string

// The properties checked. Each has a sabotage test proving the check fires.
const (
	ElectionSafety     Invariant = "election safety"      // at most one leader per term
	LogMatching        Invariant = "log matching"         // same index and term => same prefix
	LeaderCompleteness Invariant = "leader completeness"  // leaders hold every entry committed before their term
	StateMachineSafety Invariant = "state machine safety" // no two members apply different entries at one index
	CommitMonotonic    Invariant = "commit monotonic"     // a member's commit index never goes back
	AckedLost          Invariant = "acknowledged lost"    // an acknowledged command vanished
	VoteForgotten      Invariant = "vote forgotten"       // a vote granted that the durable state does not hold
	VersionSafety      Invariant = "version safety"       // old code applies past a bump, switches elsewhere, or leads
	Linearizability    Invariant = "linearizability"      // client history against the KV model
	Liveness           Invariant = "liveness"             // no convergence after healing
	CoreError          Invariant = "core error"           // the core returned an error or broke its contract
)

// Violation is the first property a run broke.
type Violation struct {
	Invariant Invariant
	Event     int   // events processed when it was detected
	TimeMs    int64 // simulated time
	Detail    string
}

// String renders the violation for test failures.
func (v *Violation) String() string {
	return fmt.Sprintf("%s violated at event %d (t=%dms): %s", v.Invariant, v.Event, v.TimeMs, v.Detail)
}

func (w *World) violate(inv Invariant, format string, args ...any) {
	if w.violation == nil {
		w.violation = &Violation{Invariant: inv, Event: w.events, TimeMs: w.now, Detail: fmt.Sprintf(format, args...)}
	}
}

type idxTerm struct{ index, term uint64 }

type voteKey struct {
	member int
	term   uint64
}

type ackedEntry struct {
	index, term uint64 // term: of the leader that acknowledged it
	hash        uint64 // entryHash
}

// checker holds the global knowledge the invariants are checked against.
type checker struct {
	leaders map[uint64]int // term -> member that led it
	// prefix[(i, t)] is the rolling hash of the prefix ending with the
	// entry (i, t), as first seen in any log.
	prefix map[idxTerm]uint64
	// committed[i-1] is the rolling hash of the committed prefix up to i;
	// commitTerm[i-1] a term by which i was known committed (never below
	// the true one, and non-decreasing).
	committed  []uint64
	commitTerm []uint64
	applied    []uint64 // entryHash of the entry applied at i, first seen
	// state[i-1] is the digest of the machine after applying up to i, as
	// first seen: every member must hold the same state at i, whether it
	// applied the entries or installed a snapshot.
	state []uint64
	acked []ackedEntry
	votes map[voteKey]core.ServerID
	// bumps maps a machine version to the index where members switch to it.
	bumps map[uint64]uint64
}

func newChecker() checker {
	return checker{
		leaders: map[uint64]int{},
		prefix:  map[idxTerm]uint64{},
		votes:   map[voteKey]core.ServerID{},
		bumps:   map[uint64]uint64{},
	}
}

// checkAppend: log matching, over the entries just written to m's log.
func (w *World) checkAppend(m *member, ents []core.Entry) {
	for i := range ents {
		e := &ents[i]
		h, _ := m.disk.hashAt(e.Index)
		k := idxTerm{e.Index, e.Term}
		if prev, ok := w.prefix[k]; ok && prev != h {
			w.violate(LogMatching, "member %s holds entry (%d, term %d) after a prefix that differs from another log's", m.id, e.Index, e.Term)
			return
		} else if !ok {
			w.prefix[k] = h
		}
	}
}

// checkSend: a granted vote must be durable, and unique per term.
func (w *World) checkSend(m *member, s core.Send) {
	v, ok := s.Msg.(*core.VoteReply)
	if !ok || !v.Granted {
		return
	}
	if m.disk.hard.Term != v.Term || m.disk.hard.VotedFor != s.To {
		w.violate(VoteForgotten, "member %s grants its term-%d vote to %s, but its durable state says term %d vote %s",
			m.id, v.Term, s.To, m.disk.hard.Term, m.disk.hard.VotedFor)
		return
	}
	k := voteKey{m.idx, v.Term}
	if prev, ok := w.votes[k]; ok && prev != s.To {
		w.violate(VoteForgotten, "member %s votes for %s in term %d after voting for %s", m.id, s.To, v.Term, prev)
		return
	}
	w.votes[k] = s.To
}

// checkNewLeader: election safety, the new leader holds every command
// acknowledged in an earlier term, and it runs code that supports the
// machine version its log has reached.
func (w *World) checkNewLeader(m *member, term uint64) {
	if prev, ok := w.leaders[term]; ok && prev != m.idx {
		w.violate(ElectionSafety, "%s and %s both lead term %d", w.members[prev].id, m.id, term)
		return
	}
	w.leaders[term] = m.idx
	if v := m.raft.Status().MachineVersion; v > m.version {
		w.violate(VersionSafety, "%s leads term %d at machine version %d, its code supports %d", m.id, term, v, m.version)
		return
	}
	for _, a := range w.acked {
		if a.term >= term {
			continue
		}
		if !w.holdsAcked(m, a) {
			w.violate(AckedLost, "new leader %s of term %d lacks the command acknowledged at index %d in term %d", m.id, term, a.index, a.term)
			return
		}
	}
}

// holdsAcked reports whether m's log, or the snapshot below it, holds the
// acknowledged entry a.
func (w *World) holdsAcked(m *member, a ackedEntry) bool {
	if e, ok := m.disk.entryAt(a.index); ok {
		return entryHash(e) == a.hash
	}
	b := m.disk.base
	if a.index > b || b > uint64(len(w.committed)) {
		return false
	}
	// Compacted: the snapshot covers the committed prefix up to base, in
	// which a is the entry applied at its index.
	return m.disk.baseHash == w.committed[b-1] && w.applied[a.index-1] == a.hash
}

// checkApplied: state machine safety.
func (w *World) checkApplied(m *member, e *core.Entry) {
	h := entryHash(e)
	switch i := e.Index; {
	case i <= uint64(len(w.applied)):
		if w.applied[i-1] != h {
			w.violate(StateMachineSafety, "member %s applies a different entry at index %d (term %d)", m.id, i, e.Term)
		}
	case i == uint64(len(w.applied))+1:
		w.applied = append(w.applied, h)
	default:
		w.violate(CoreError, "member %s applies index %d before %d", m.id, i, len(w.applied)+1)
	}
}

// checkState: state machine safety for the whole machine state, right
// after m applied an entry.
func (w *World) checkState(m *member) {
	i, d := m.machine.index, m.machine.digest()
	switch {
	case i <= uint64(len(w.state)):
		if w.state[i-1] != d {
			w.violate(StateMachineSafety, "member %s holds a different machine state after applying %d", m.id, i)
		}
	case i == uint64(len(w.state))+1:
		w.state = append(w.state, d)
	default:
		w.violate(CoreError, "member %s reaches state %d before %d", m.id, i, len(w.state)+1)
	}
}

// checkSnapshot: a snapshot (taken or installed) holds exactly the state
// after applying the committed entries up to its index, and describes it.
func (w *World) checkSnapshot(m *member, what string, s core.Snapshot, st *machineState) {
	i := s.Index
	switch {
	case i == 0 || i > uint64(len(w.state)) || i > uint64(len(w.committed)):
		w.violate(StateMachineSafety, "member %s %s a snapshot at %d beyond what any member applied and committed", m.id, what, i)
	case st.index != i || st.term != s.Term || st.version != s.MachineVersion:
		w.violate(CoreError, "member %s %s a snapshot (%d, term %d, version %d) of a machine at (%d, term %d, version %d)",
			m.id, what, i, s.Term, s.MachineVersion, st.index, st.term, st.version)
	case st.hash != w.committed[i-1] || st.digest() != w.state[i-1]:
		w.violate(StateMachineSafety, "member %s %s a snapshot at %d whose state differs from the committed state there", m.id, what, i)
	}
}

// checkAcked records a command acknowledged to a client.
func (w *World) checkAcked(m *member, e *core.Entry) {
	w.acked = append(w.acked, ackedEntry{index: e.Index, term: m.raft.Term(), hash: entryHash(e)})
}

// checkMember runs after every step of m: election safety, commit never
// going back, committed prefixes agreeing, and leader completeness.
func (w *World) checkMember(m *member) {
	r := m.raft
	if r.LastIndex() != m.disk.last() {
		w.violate(CoreError, "member %s: core log ends at %d, its disk at %d", m.id, r.LastIndex(), m.disk.last())
		return
	}
	if ap := r.Applied(); ap != m.applied {
		w.violate(CoreError, "member %s: core says applied %d, the machine holds %d", m.id, ap, m.applied)
		return
	}
	if held := int(r.Commit() - min(r.Commit(), m.applied)); held > w.stats.StalledMax {
		w.stats.StalledMax = held
	}
	c := r.Commit()
	if c < m.lastCommit {
		w.violate(CommitMonotonic, "member %s commit index went from %d back to %d", m.id, m.lastCommit, c)
		return
	}
	m.lastCommit = c
	if c > 0 {
		n := uint64(len(w.committed))
		// Compare the committed prefix at the highest index both know: the
		// member's log knows nothing below its base (the snapshot's hash).
		at := max(min(c, n), m.disk.base)
		if at > 0 && at <= n {
			if h, ok := m.disk.hashAt(at); !ok || h != w.committed[at-1] {
				w.violate(StateMachineSafety, "member %s committed a prefix up to %d that differs from the one committed before", m.id, at)
				return
			}
		}
		t := r.Term()
		for i := n + 1; i <= c; i++ {
			if k := len(w.commitTerm); k > 0 && w.commitTerm[k-1] > t {
				t = w.commitTerm[k-1]
			}
			h, ok := m.disk.hashAt(i)
			if !ok {
				w.violate(CoreError, "member %s commits %d, which its log no longer holds and nobody committed before", m.id, i)
				return
			}
			w.committed = append(w.committed, h)
			w.commitTerm = append(w.commitTerm, t)
		}
	}
	if r.Role() == core.RoleLeader {
		term := r.Term()
		if prev, ok := w.leaders[term]; ok && prev != m.idx {
			w.violate(ElectionSafety, "%s and %s both lead term %d", w.members[prev].id, m.id, term)
			return
		}
		// The highest index known committed before this term (or the
		// leader's snapshot, if that covers more: it holds all below it).
		i := uint64(sort.Search(len(w.commitTerm), func(k int) bool { return w.commitTerm[k] >= term }))
		at := max(i, m.disk.base)
		if i > 0 && at <= uint64(len(w.committed)) {
			if h, ok := m.disk.hashAt(at); !ok || h != w.committed[at-1] {
				w.violate(LeaderCompleteness, "leader %s of term %d lacks entries committed up to %d before its term", m.id, term, i)
			}
		}

	}
}

// finalChecks run after convergence: every acknowledged command is in the
// converged log, and the client history is linearizable.
func (w *World) finalChecks() {
	l := w.converged()
	if l == nil {
		w.violate(CoreError, "final checks without a converged leader")
		return
	}
	st := l.raft.Status()
	for _, id := range append(st.Members.Voters, st.Members.NonVoters...) {
		m := w.members[w.byID[id]]
		for _, a := range w.acked {
			if !w.holdsAcked(m, a) {
				w.violate(AckedLost, "member %s lacks the command acknowledged at index %d", m.id, a.index)
				return
			}
		}
	}
	if !w.opts.SkipLinearizability && !w.checkLinearizable() {
		w.violate(Linearizability, "client history of %d operations (+%d of unknown outcome) is not linearizable", len(w.history), len(w.unknown))
	}
}
