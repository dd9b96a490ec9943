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
	acked      []ackedEntry
	votes      map[voteKey]core.ServerID
}

func newChecker() checker {
	return checker{
		leaders: map[uint64]int{},
		prefix:  map[idxTerm]uint64{},
		votes:   map[voteKey]core.ServerID{},
	}
}

// checkAppend: log matching, over the entries just written to m's log.
func (w *World) checkAppend(m *member, ents []core.Entry) {
	for i := range ents {
		e := &ents[i]
		h := m.disk.hashes[e.Index-1]
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

// checkNewLeader: election safety, and the new leader holds every
// acknowledged command acknowledged in an earlier term.
func (w *World) checkNewLeader(m *member, term uint64) {
	if prev, ok := w.leaders[term]; ok && prev != m.idx {
		w.violate(ElectionSafety, "%s and %s both lead term %d", w.members[prev].id, m.id, term)
		return
	}
	w.leaders[term] = m.idx
	for _, a := range w.acked {
		if a.term >= term {
			continue
		}
		if a.index > uint64(len(m.disk.volatile)) || entryHash(&m.disk.volatile[a.index-1]) != a.hash {
			w.violate(AckedLost, "new leader %s of term %d lacks the command acknowledged at index %d in term %d", m.id, term, a.index, a.term)
			return
		}
	}
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

// checkAcked records a command acknowledged to a client.
func (w *World) checkAcked(m *member, e *core.Entry) {
	w.acked = append(w.acked, ackedEntry{index: e.Index, term: m.raft.Term(), hash: entryHash(e)})
}

// checkMember runs after every step of m: election safety, commit never
// going back, committed prefixes agreeing, and leader completeness.
func (w *World) checkMember(m *member) {
	r := m.raft
	if r.LastIndex() != uint64(len(m.disk.volatile)) {
		w.violate(CoreError, "member %s: core log ends at %d, its disk at %d", m.id, r.LastIndex(), len(m.disk.volatile))
		return
	}
	c := r.Commit()
	if c < m.lastCommit {
		w.violate(CommitMonotonic, "member %s commit index went from %d back to %d", m.id, m.lastCommit, c)
		return
	}
	m.lastCommit = c
	if c > 0 {
		n := uint64(len(w.committed))
		at := min(c, n)
		if at > 0 && m.disk.hashes[at-1] != w.committed[at-1] {
			w.violate(StateMachineSafety, "member %s committed a prefix up to %d that differs from the one committed before", m.id, at)
			return
		}
		t := r.Term()
		for i := n + 1; i <= c; i++ {
			if k := len(w.commitTerm); k > 0 && w.commitTerm[k-1] > t {
				t = w.commitTerm[k-1]
			}
			w.committed = append(w.committed, m.disk.hashes[i-1])
			w.commitTerm = append(w.commitTerm, t)
		}
	}
	if r.Role() == core.RoleLeader {
		term := r.Term()
		if prev, ok := w.leaders[term]; ok && prev != m.idx {
			w.violate(ElectionSafety, "%s and %s both lead term %d", w.members[prev].id, m.id, term)
			return
		}
		// The highest index known committed before this term.
		i := sort.Search(len(w.commitTerm), func(k int) bool { return w.commitTerm[k] >= term })
		if i > 0 && (uint64(i) > uint64(len(m.disk.hashes)) || m.disk.hashes[i-1] != w.committed[i-1]) {
			w.violate(LeaderCompleteness, "leader %s of term %d lacks entries committed up to %d before its term", m.id, term, i)
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
			if a.index > uint64(len(m.disk.volatile)) || entryHash(&m.disk.volatile[a.index-1]) != a.hash {
				w.violate(AckedLost, "member %s lacks the command acknowledged at index %d", m.id, a.index)
				return
			}
		}
	}
	if !w.opts.SkipLinearizability && !w.checkLinearizable() {
		w.violate(Linearizability, "client history of %d operations (+%d of unknown outcome) is not linearizable", len(w.history), len(w.unknown))
	}
}
