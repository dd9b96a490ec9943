package core

import (
	"fmt"
	"slices"
)

// LogReader is the core's read-only window on the member's durable log (in
// the server: the log store over the WAL's mem tables and the segments). The core reads through it only entries that a Written event
// reported durable; entries still in flight it holds in memory itself. So
// an implementation may reflect writes as soon as they are issued (as mem
// tables do) or only once durable: both are consistent with what the core
// asks.
//
// Implementations must be cheap for recent entries (the leader reads them to
// replicate) and must not block on other actors. Errors other than
// ErrCompacted and ErrUnavailable break the Raft (see ErrStorage).
type LogReader interface {
	// FirstIndex is the first index whose entry is held: 1 for a log that
	// never took a snapshot. Term(FirstIndex()-1) must still answer (0 for
	// index 0, the snapshot's term later).
	FirstIndex() uint64
	// LastIndex is the index of the last entry held (FirstIndex()-1 when
	// empty). At New it must be the last DURABLE entry.
	LastIndex() uint64
	// Term returns the term of the entry at index, for index in
	// [FirstIndex()-1, LastIndex()]; ErrCompacted below, ErrUnavailable above.
	Term(index uint64) (uint64, error)
	// Entries returns the entries in [lo, hi), stopping early once their
	// total size passes maxBytes but always returning at least one entry when
	// lo < hi. Entries must not be modified by the caller or the reader
	// afterwards (the core may hold them).
	Entries(lo, hi uint64, maxBytes int) ([]Entry, error)
}

// raftLog is the member's log as the core sees it: entries up to stable are
// durable and read through the LogReader; entries after stable are held in
// unstable until a Written event reports them durable. Entries up to
// snapIndex are covered by the member's snapshot and may be gone from the
// reader (ErrCompacted).
//
// Invariants: unstable[i].Index == stable+1+i; terms never decrease along
// the log; an overwrite (truncation) happens only when unstable is empty,
// so no write is in flight for any index an overwrite replaces; the reader
// holds every index above floor() up to stable; snapIndex is committed.
type raftLog struct {
	reader     LogReader
	stable     uint64 // last index known durable
	stableTerm uint64 // term at stable
	unstable   []Entry
	snapIndex  uint64 // index of the member's snapshot, 0 if none
	snapTerm   uint64
}

// newRaftLog opens the log as the reader holds it, continuing snap (zero
// if none). The log must not leave a gap after the snapshot, and must agree
// with it on the term at its index.
func newRaftLog(reader LogReader, snap Snapshot) (raftLog, error) {
	first, last := reader.FirstIndex(), reader.LastIndex()
	if snap.Index > 0 {
		switch {
		case first > snap.Index+1:
			return raftLog{}, fmt.Errorf("%w: log starts at %d, after the snapshot at %d", ErrInvalidState, first, snap.Index)
		case last < snap.Index:
			return raftLog{}, fmt.Errorf("%w: log ends at %d, below the snapshot at %d (reset it to the snapshot)", ErrInvalidState, last, snap.Index)
		}
		t, err := reader.Term(snap.Index)
		if err != nil {
			return raftLog{}, fmt.Errorf("%w: term of snapshot index %d: %w", ErrStorage, snap.Index, err)
		}
		if t != snap.Term {
			return raftLog{}, fmt.Errorf("%w: log has term %d at %d, the snapshot there term %d (reset it to the snapshot)", ErrInvalidState, t, snap.Index, snap.Term)
		}
	}
	t, err := reader.Term(last)
	if err != nil {
		return raftLog{}, fmt.Errorf("%w: term of last index %d: %w", ErrStorage, last, err)
	}
	return raftLog{reader: reader, stable: last, stableTerm: t, snapIndex: snap.Index, snapTerm: snap.Term}, nil
}

// restore resets the log to hold nothing after the snapshot s, as the
// server's log is once it executed RestoreSnapshot. Writes still in flight
// (none, when the core installs) would be ignored when reported.
func (l *raftLog) restore(s Snapshot) {
	l.stable, l.stableTerm = s.Index, s.Term
	l.unstable = l.unstable[:0]
	l.snapIndex, l.snapTerm = s.Index, s.Term
}

// snapshotTaken records a newer snapshot of the member's own.
func (l *raftLog) snapshotTaken(s Snapshot) {
	l.snapIndex, l.snapTerm = s.Index, s.Term
}

// floor is the highest index whose term is known without the reader
// holding entries below it: the snapshot's, or the one before the reader's
// first entry. Terms at and above it can always be read.
func (l *raftLog) floor() uint64 {
	return max(l.reader.FirstIndex()-1, l.snapIndex)
}

func (l *raftLog) lastIndex() uint64 { return l.stable + uint64(len(l.unstable)) }

func (l *raftLog) lastTerm() uint64 {
	if n := len(l.unstable); n > 0 {
		return l.unstable[n-1].Term
	}
	return l.stableTerm
}

// firstIndex is the first index an entry can be read at.
func (l *raftLog) firstIndex() uint64 { return l.reader.FirstIndex() }

// inFlight reports whether some appended entries are not yet durable.
func (l *raftLog) inFlight() bool { return len(l.unstable) > 0 }

// term returns the term at index i, for i in [firstIndex-1, lastIndex].
func (l *raftLog) term(i uint64) (uint64, error) {
	switch {
	case i == l.stable:
		return l.stableTerm, nil
	case i == l.snapIndex && i > 0:
		return l.snapTerm, nil
	case i > l.lastIndex():
		return 0, fmt.Errorf("%w: term at %d, last is %d", ErrUnavailable, i, l.lastIndex())
	case i > l.stable:
		return l.unstable[i-l.stable-1].Term, nil
	case i == 0:
		return 0, nil
	}
	return l.reader.Term(i)
}

// matchTerm reports whether the entry at i has term t (false if absent).
func (l *raftLog) matchTerm(i, t uint64) (bool, error) {
	if i > l.lastIndex() {
		return false, nil
	}
	got, err := l.term(i)
	if err != nil {
		return false, err
	}
	return got == t, nil
}

// slice returns copies of the entries in [lo, hi), at most maxBytes of
// them (at least one when lo < hi). Copies, because unstable's backing array
// is reused and the caller may hold the result (in a Send) for a while.
func (l *raftLog) slice(lo, hi uint64, maxBytes int) ([]Entry, error) {
	if hi > l.lastIndex()+1 {
		hi = l.lastIndex() + 1
	}
	if lo >= hi {
		return nil, nil
	}
	var out []Entry
	size := 0
	if lo <= l.stable {
		end := min(hi, l.stable+1)
		ents, err := l.reader.Entries(lo, end, maxBytes)
		if err != nil {
			return nil, err
		}
		if len(ents) == 0 {
			return nil, fmt.Errorf("%w: reader returned no entries for [%d, %d)", ErrUnavailable, lo, end)
		}
		// The reader's slice is not ours to change: capped at its length,
		// appending the unstable entries below copies it first.
		out = ents[:len(ents):len(ents)]
		for i := range ents {
			size += ents[i].size()
		}
		if uint64(len(ents)) < end-lo || size >= maxBytes {
			return out, nil
		}
		lo = end
	}
	// The unstable entries that fit, counted first so that out grows once.
	n := 0
	for i := lo; i < hi; i++ {
		e := &l.unstable[i-l.stable-1]
		if (len(out) > 0 || n > 0) && size+e.size() > maxBytes {
			break
		}
		size += e.size()
		n++
	}
	if n == 0 {
		return out, nil
	}
	from := lo - l.stable - 1
	return append(slices.Grow(out, n), l.unstable[from:from+uint64(n)]...), nil
}

// append adds ents, which must start at or below lastIndex+1. Starting at
// or below lastIndex replaces the suffix from there; callers do that only
// while nothing is in flight (see the type's invariants).
func (l *raftLog) append(ents []Entry) error {
	if len(ents) == 0 {
		return nil
	}
	first := ents[0].Index
	switch {
	case first > l.lastIndex()+1:
		return fmt.Errorf("%w: append at %d leaves a gap after %d", ErrInvalidState, first, l.lastIndex())
	case first > l.stable:
		l.unstable = append(l.unstable[:first-l.stable-1], ents...)
	default:
		t, err := l.term(first - 1)
		if err != nil {
			return err
		}
		l.stable, l.stableTerm = first-1, t
		l.unstable = append(l.unstable[:0], ents...)
	}
	return nil
}

// stableTo records a Written{t, i} report. It returns whether stable moved.
// A report for an index that is gone or holds another term now, or that is
// already stable, is stale and ignored.
func (l *raftLog) stableTo(t, i uint64) bool {
	if i <= l.stable || i > l.lastIndex() {
		return false
	}
	e := l.unstable[i-l.stable-1]
	if e.Term != t {
		return false
	}
	n := i - l.stable
	l.stable, l.stableTerm = i, t
	if n == uint64(len(l.unstable)) {
		// Drop the backing array too when it grew large, so a burst does not
		// pin memory for the member's lifetime.
		if cap(l.unstable) > 1024 {
			l.unstable = nil
		} else {
			l.unstable = l.unstable[:0]
		}
		return true
	}
	l.unstable = l.unstable[n:]
	return true
}

// isUpToDate reports whether a log ending at (lastIndex, lastTerm) is at
// least as up to date as this one (Raft's election restriction).
func (l *raftLog) isUpToDate(lastIndex, lastTerm uint64) bool {
	mine := l.lastTerm()
	return lastTerm > mine || (lastTerm == mine && lastIndex >= l.lastIndex())
}

// conflictHint returns the largest index j <= index whose term is <= t, and
// its term: the leader and follower logs cannot agree beyond j, so the
// leader may resume there instead of walking back one entry at a time. The
// walk stops at floor(): entries up to the snapshot are committed, so they
// agree with every leader's log, and below the reader's first entry no term
// is known. An index below floor() is returned as it is, with term 0.
func (l *raftLog) conflictHint(index, t uint64) (uint64, uint64, error) {
	index = min(index, l.lastIndex())
	floor := l.floor()
	if index < floor {
		return index, 0, nil
	}
	for {
		got, err := l.term(index)
		if err != nil {
			return 0, 0, err
		}
		if got <= t || index <= floor {
			return index, got, nil
		}
		index--
	}
}
