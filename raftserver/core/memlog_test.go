package core

import "fmt"

// memLog is a LogReader over a slice, standing in for the server's log
// facade in tests. It shows every write at once (as mem tables do); tests
// call write for each Append action.
type memLog struct {
	ents []Entry
	err  error // when set, every read fails with it
}

func newMemLog(ents ...Entry) *memLog { return &memLog{ents: ents} }

func (l *memLog) write(ents []Entry) {
	first := ents[0].Index
	l.ents = append(l.ents[:first-1], ents...)
}

func (l *memLog) FirstIndex() uint64 { return 1 }
func (l *memLog) LastIndex() uint64  { return uint64(len(l.ents)) }

func (l *memLog) Term(i uint64) (uint64, error) {
	if l.err != nil {
		return 0, l.err
	}
	if i == 0 {
		return 0, nil
	}
	if i > uint64(len(l.ents)) {
		return 0, fmt.Errorf("%w: %d", ErrUnavailable, i)
	}
	return l.ents[i-1].Term, nil
}

func (l *memLog) Entries(lo, hi uint64, maxBytes int) ([]Entry, error) {
	if l.err != nil {
		return nil, l.err
	}
	if lo < 1 || hi > uint64(len(l.ents))+1 || lo > hi {
		return nil, fmt.Errorf("%w: [%d, %d)", ErrUnavailable, lo, hi)
	}
	out := []Entry{}
	size := 0
	for i := lo; i < hi; i++ {
		e := l.ents[i-1]
		if len(out) > 0 && size+e.size() > maxBytes {
			break
		}
		out = append(out, e)
		size += e.size()
	}
	return out, nil
}
