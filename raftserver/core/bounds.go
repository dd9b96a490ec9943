package core

import "fmt"

// MaxTerm and MaxIndex bound every term and log index this package takes
// from a message, hands to storage or computes. The wire carries uvarints
// up to 2^64-1, and a peer that sends term 2^64-1 would make the
// receiver's next pre-vote term (term+1) wrap to 0: no member could win an
// election again, and the bad term, once persisted, survives restarts.
// With every value at most 2^62, term+1, index+1 and sums such as
// index+MaxInFlight never overflow, and the values fit an int64. The bound
// is out of legitimate reach: a million elections or appends a second take
// over 100,000 years to get there.
const (
	MaxTerm  = 1 << 62
	MaxIndex = 1 << 62
)

// checkBounds returns an error wrapping ErrOutOfRange if m carries a term
// above MaxTerm or an index above MaxIndex (NextIndex, a "one past" hint,
// may be MaxIndex+1).
func checkBounds(m Message) error {
	var terms, indexes [5]uint64
	var nt, ni int
	term := func(v ...uint64) { nt += copy(terms[nt:], v) }
	index := func(v ...uint64) { ni += copy(indexes[ni:], v) }
	term(m.MessageTerm())
	switch m := m.(type) {
	case *AppendEntries:
		term(m.PrevTerm)
		index(m.PrevIndex, m.Commit)
		if n := uint64(len(m.Entries)); m.PrevIndex <= MaxIndex && n > MaxIndex-m.PrevIndex {
			return fmt.Errorf("%w: %d entries after index %d go past MaxIndex", ErrOutOfRange, n, m.PrevIndex)
		}
		for i := range m.Entries {
			if e := &m.Entries[i]; e.Term > MaxTerm || e.Index > MaxIndex {
				return fmt.Errorf("%w: entry %d of term %d", ErrOutOfRange, e.Index, e.Term)
			}
		}
	case *AppendReply:
		term(m.LastTerm)
		index(m.LastIndex, m.RejectedPrev, m.Commit)
		if m.NextIndex > MaxIndex+1 {
			return fmt.Errorf("%w: next index %d", ErrOutOfRange, m.NextIndex)
		}
	case *PreVoteRequest:
		term(m.LastTerm)
		index(m.LastIndex)
	case *VoteRequest:
		term(m.LastTerm)
		index(m.LastIndex)
	case *Heartbeat:
		index(m.Commit)
	case *HeartbeatReply:
		index(m.Commit)
	case *InstallSnapshot:
		term(m.Snapshot.Term)
		index(m.Snapshot.Index)
	}
	for _, t := range terms[:nt] {
		if t > MaxTerm {
			return fmt.Errorf("%w: %T carries term %d, above %d", ErrOutOfRange, m, t, uint64(MaxTerm))
		}
	}
	for _, i := range indexes[:ni] {
		if i > MaxIndex {
			return fmt.Errorf("%w: %T carries index %d, above %d", ErrOutOfRange, m, i, uint64(MaxIndex))
		}
	}
	return nil
}
