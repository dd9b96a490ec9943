package core

import "fmt"

// memLog is a LogReader over a slice, standing in for the server's log
// facade in tests. It shows every write at once (as mem tables do); tests
// call write for each Append action. It holds entries base+1 onwards: the
// ones up to base were compacted into a snapshot of term baseTerm.
type memLog struct {
	base, baseTerm uint64
	ents           []Entry
	err            error // when set, every read fails with it
}

func newMemLog(ents ...Entry) *memLog { return &memLog{ents: ents} }

func (l *memLog) write(ents []Entry) {
	first := ents[0].Index
	l.ents = append(l.ents[:first-l.base-1], ents...)
}

// compact drops the entries up to through (Compact).
func (l *memLog) compact(through uint64) {
	if through <= l.base {
		return
	}
	l.baseTerm = l.ents[through-l.base-1].Term
	l.ents = append([]Entry(nil), l.ents[through-l.base:]...)
	l.base = through
}

// reset empties the log after a snapshot (RestoreSnapshot).
func (l *memLog) reset(index, term uint64) {
	l.base, l.baseTerm, l.ents = index, term, nil
}

// durable returns a copy of the log holding entries up to stable only.
func (l *memLog) durable(stable uint64) *memLog {
	return &memLog{base: l.base, baseTerm: l.baseTerm, ents: append([]Entry(nil), l.ents[:stable-l.base]...)}
}

func (l *memLog) FirstIndex() uint64 { return l.base + 1 }
func (l *memLog) LastIndex() uint64  { return l.base + uint64(len(l.ents)) }

func (l *memLog) Term(i uint64) (uint64, error) {
	if l.err != nil {
		return 0, l.err
	}
	switch {
	case i == l.base:
		return l.baseTerm, nil
	case i < l.base:
		return 0, fmt.Errorf("%w: %d", ErrCompacted, i)
	case i > l.LastIndex():
		return 0, fmt.Errorf("%w: %d", ErrUnavailable, i)
	}
	return l.ents[i-l.base-1].Term, nil
}

func (l *memLog) Entries(lo, hi uint64, maxBytes int) ([]Entry, error) {
	if l.err != nil {
		return nil, l.err
	}
	if lo <= l.base {
		return nil, fmt.Errorf("%w: [%d, %d)", ErrCompacted, lo, hi)
	}
	if hi > l.LastIndex()+1 || lo > hi {
		return nil, fmt.Errorf("%w: [%d, %d)", ErrUnavailable, lo, hi)
	}
	out := []Entry{}
	size := 0
	for i := lo; i < hi; i++ {
		e := l.ents[i-l.base-1]
		if len(out) > 0 && size+e.size() > maxBytes {
			break
		}
		out = append(out, e)
		size += e.size()
	}
	return out, nil
}
