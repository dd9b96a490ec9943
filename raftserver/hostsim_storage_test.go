package raftserver

import (
	"fmt"

	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/wal"
)

// simLog is a member's log in the host simulation: the logPort a host
// gets, over a disk that loses what was not synced when the member
// crashes. It behaves as the node's WAL and segments do for one server:
// writes show at once (mem tables), become durable later (a sync event,
// reported with wal.Written), a reset rides on the next write
// (wal.WriteReset), and compaction drops entries at once.
//
// volatile holds base+1..base+len(volatile) as the host sees them; durable
// holds dbase+1.. as a crash leaves them. pending are the writes not yet
// synced, in order.
type simLog struct {
	base, baseTerm uint64
	volatile       []core.Entry

	dbase, dbaseTerm uint64
	durable          []core.Entry
	pending          []simWrite
	resetNext        bool
	floorIndex       uint64 // compacted through, durable

	snapIndex, snapTerm uint64
}

// simWrite is one write of entries, restarting the log after base first if
// reset is set.
type simWrite struct {
	ents           []core.Entry
	reset          bool
	base, baseTerm uint64
}

func (l *simLog) last() uint64 { return l.base + uint64(len(l.volatile)) }

// open is the log as a restarted server finds it.
func (l *simLog) open() *simLog {
	l.base, l.baseTerm = l.dbase, l.dbaseTerm
	if len(l.durable) == 0 {
		// Like segment.Log's bounds: a log without entries says nothing
		// of where it was compacted to (floor does).
		l.base, l.baseTerm = 0, 0
	}
	l.volatile = append([]core.Entry(nil), l.durable...)
	l.pending, l.resetNext = nil, false
	l.snapIndex, l.snapTerm = 0, 0
	return l
}

// crash makes the first survive pending writes durable and loses the rest.
func (l *simLog) crash(survive int) error {
	_, err := l.sync(survive)
	l.pending = nil
	return err
}

// sync makes the first n pending writes durable and returns the last
// entry of each. Entries at or below the durable log's start (compacted
// meanwhile) are passed over; a write that would leave a gap is an error.
func (l *simLog) sync(n int) ([]core.Entry, error) {
	var lasts []core.Entry
	for _, w := range l.pending[:n] {
		if w.reset {
			l.dbase, l.dbaseTerm = w.base, w.baseTerm
			l.durable = l.durable[:0]
		}
		ents := w.ents
		for len(ents) > 0 && ents[0].Index <= l.dbase {
			ents = ents[1:]
		}
		lasts = append(lasts, w.ents[len(w.ents)-1])
		if len(ents) == 0 {
			continue
		}
		keep := ents[0].Index - l.dbase - 1
		if keep > uint64(len(l.durable)) {
			return nil, fmt.Errorf("synced write at %d leaves a gap after the durable log (%d, %d]",
				ents[0].Index, l.dbase, l.dbase+uint64(len(l.durable)))
		}
		l.durable = append(l.durable[:keep], ents...)
	}
	l.pending = l.pending[n:]
	return lasts, nil
}

func (l *simLog) FirstIndex() uint64 { return l.base + 1 }
func (l *simLog) LastIndex() uint64  { return l.last() }

func (l *simLog) Term(i uint64) (uint64, error) {
	switch {
	case i == 0:
		return 0, nil
	case i == l.snapIndex:
		return l.snapTerm, nil
	case i == l.base:
		return l.baseTerm, nil
	case i < l.base:
		return 0, fmt.Errorf("%w: %d < first %d", core.ErrCompacted, i, l.base+1)
	case i > l.last():
		return 0, fmt.Errorf("%w: %d > last %d", core.ErrUnavailable, i, l.last())
	}
	return l.volatile[i-l.base-1].Term, nil
}

func (l *simLog) Entries(lo, hi uint64, maxBytes int) ([]core.Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo <= l.base {
		return nil, fmt.Errorf("%w: %d < first %d", core.ErrCompacted, lo, l.base+1)
	}
	if hi > l.last()+1 {
		return nil, fmt.Errorf("%w: [%d, %d) beyond %d", core.ErrUnavailable, lo, hi, l.last())
	}
	var out []core.Entry
	size := 0
	for i := lo; i < hi; i++ {
		e := l.volatile[i-l.base-1]
		if len(out) > 0 && maxBytes > 0 && size+len(e.Data) > maxBytes {
			break
		}
		size += len(e.Data)
		e.Data = append([]byte(nil), e.Data...)
		out = append(out, e)
	}
	return out, nil
}

func (l *simLog) append(ents []core.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	first := ents[0].Index
	if first <= l.base || first > l.last()+1 {
		return fmt.Errorf("%w: append at %d outside (%d, %d]", ErrStorage, first, l.base, l.last()+1)
	}
	own := make([]core.Entry, len(ents))
	for i, e := range ents {
		e.Data = append([]byte(nil), e.Data...)
		own[i] = e
	}
	l.volatile = append(l.volatile[:first-l.base-1], own...)
	w := simWrite{ents: own}
	if l.resetNext {
		w.reset, w.base, w.baseTerm = true, l.snapIndex, l.snapTerm
		l.resetNext = false
	}
	l.pending = append(l.pending, w)
	return nil
}

func (l *simLog) compact(through uint64) error {
	if through <= l.base {
		return nil
	}
	if through > l.last() {
		return fmt.Errorf("%w: compact through %d beyond %d", ErrStorage, through, l.last())
	}
	k := through - l.base
	l.baseTerm = l.volatile[k-1].Term
	l.volatile = append([]core.Entry(nil), l.volatile[k:]...)
	l.base = through
	l.dropDurable(through)
	return nil
}

// dropDurable drops the durable entries up to through at once, as a
// segment truncation does.
func (l *simLog) dropDurable(through uint64) {
	l.floorIndex = max(l.floorIndex, through)
	if through <= l.dbase {
		return
	}
	n := min(through-l.dbase, uint64(len(l.durable)))
	if n > 0 {
		l.dbaseTerm = l.durable[n-1].Term
	}
	l.durable = append([]core.Entry(nil), l.durable[n:]...)
	l.dbase += n
	if l.dbase < through {
		// The durable log ended below: what is left restarts after a gap,
		// which reconcile sees as a log that no longer continues.
		l.dbase, l.dbaseTerm = through, 0
	}
}

func (l *simLog) reset(index, term uint64) error {
	l.snapIndex, l.snapTerm = index, term
	l.base, l.baseTerm = index, term
	l.volatile = nil
	l.resetNext = true
	l.pending = nil
	l.dropDurable(index)
	return nil
}

func (l *simLog) setSnapshot(index, term uint64) {
	if index > l.snapIndex {
		l.snapIndex, l.snapTerm = index, term
	}
}

func (l *simLog) retry() error { return nil }

func (l *simLog) resend(from uint64, read func(lo, hi uint64) ([]core.Entry, error)) error {
	return fmt.Errorf("%w: the simulated log never drops a write", ErrStorage)
}

func (l *simLog) continues(index, term uint64) (bool, error) {
	first, last := l.FirstIndex(), l.last()
	switch {
	case index == 0:
		return first <= 1, nil
	case first > index+1 || last < index:
		return false, nil
	case first == index+1:
		return true, nil
	}
	t, err := l.Term(index)
	return err == nil && t == term, err
}

func (l *simLog) floor() (uint64, error) { return l.floorIndex, nil }

// written is what the WAL would report for the writes made durable.
func written(uid string, lasts []core.Entry) []wal.Written {
	out := make([]wal.Written, len(lasts))
	for i, e := range lasts {
		out[i] = wal.Written{UID: uid, Term: e.Term, To: e.Index}
	}
	return out
}

// simState is a member's durable state besides its log and snapshots:
// every save is durable at once (the meta store syncs term and vote; the
// applied index is only a hint).
type simState struct {
	term     uint64
	vote     ServerID
	applied  uint64
	lostIdx  uint64
	lostTerm uint64
	members  []ServerID
}

func (s *simState) load() (uint64, ServerID, uint64, error) { return s.term, s.vote, s.applied, nil }

func (s *simState) saveVote(term uint64, vote ServerID) error {
	if term < s.term {
		return fmt.Errorf("%w: term %d saved after %d", ErrStorage, term, s.term)
	}
	s.term, s.vote = term, vote
	return nil
}

func (s *simState) saveApplied(index uint64) error   { s.applied = index; return nil }
func (s *simState) lost() (uint64, uint64, error)    { return s.lostIdx, s.lostTerm, nil }
func (s *simState) setLost(index, term uint64) error { s.lostIdx, s.lostTerm = index, term; return nil }
func (s *simState) clearLost() error                 { s.lostIdx, s.lostTerm = 0, 0; return nil }
func (s *simState) saveMembers(voters []ServerID) error {
	s.members = append([]ServerID(nil), voters...)
	return nil
}
