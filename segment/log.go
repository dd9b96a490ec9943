package segment

import (
	"fmt"

	"github.com/rago-raft/rago/wal"
)

// Log is one server's read view of its log across both layers: the WAL's
// mem tables first, then the segments. It takes no locks and sends no
// messages, so the owning server (or any reader) calls it directly.
//
// Reads stay consistent while the segment writer works because entries
// leave the mem tables only after they are durable in the segments, and a
// mem table shadows every segment entry at or above its first index.
type Log struct {
	uid   string
	mem   func() *wal.MemLog
	store *Store
}

// NewLog returns the log of uid. mem returns uid's mem tables (nil if
// none); pass w.Mem from the WAL, or a Writer's Mem.
func NewLog(uid string, store *Store, mem func() *wal.MemLog) *Log {
	return &Log{uid: uid, mem: mem, store: store}
}

func (l *Log) view() wal.View {
	if m := l.mem(); m != nil {
		return m.View()
	}
	return wal.View{}
}

// Entry returns the entry at index, or an error matching ErrNotFound.
// Entries at or below a truncation (Store.Truncate) can still be returned
// from the mem tables until their WAL file is flushed; they are the
// entries the snapshot covers, so callers check their snapshot index first.
func (l *Log) Entry(index uint64) (wal.Entry, error) {
	e, p := l.view().Get(index)
	switch p {
	case wal.Present:
		return e, nil
	case wal.Absent:
		return wal.Entry{}, fmt.Errorf("%w: %s index %d", ErrNotFound, l.uid, index)
	}
	return l.store.Entry(l.uid, index)
}

// Range returns the entries lo..hi inclusive that exist, contiguous from
// lo, stopping early after maxBytes of payload (maxBytes <= 0: no limit).
func (l *Log) Range(lo, hi uint64, maxBytes int) ([]wal.Entry, error) {
	var out []wal.Entry
	if hi >= lo {
		out = make([]wal.Entry, 0, min(hi-lo+1, maxRangePrealloc))
	}
	return l.AppendRange(out, lo, hi, maxBytes)
}

// AppendRange is Range appending to out: a reader that walks the log
// often can reuse one slice.
func (l *Log) AppendRange(out []wal.Entry, lo, hi uint64, maxBytes int) ([]wal.Entry, error) {
	v := l.view()
	size := 0
	for i := lo; i <= hi && i != 0; i++ {
		e, p := v.Get(i)
		switch p {
		case wal.Absent:
			return out, nil
		case wal.Unknown:
			// Below the mem tables: read a run from the segments up to
			// where the mem tables start.
			top := hi
			if first, _, ok := v.First(); ok && first-1 < top {
				top = first - 1
			}
			seg, err := l.store.Range(l.uid, i, top, budget(maxBytes, size))
			if err != nil {
				return nil, err
			}
			for _, e := range seg {
				out = append(out, e)
				size += len(e.Payload)
			}
			if len(seg) == 0 || seg[len(seg)-1].Index != top || maxBytes > 0 && size >= maxBytes {
				return out, nil
			}
			i = top
			continue
		}
		out = append(out, e)
		size += len(e.Payload)
		if maxBytes > 0 && size >= maxBytes {
			return out, nil
		}
	}
	return out, nil
}

// maxRangePrealloc bounds the entries Range makes room for at once: a
// range may be far larger than what maxBytes lets it return.
const maxRangePrealloc = 1024

func budget(maxBytes, used int) int {
	if maxBytes <= 0 {
		return 0
	}
	return max(maxBytes-used, 1)
}

// Bounds returns the first and last index of the log and the term of the
// last entry; ok is false if the log is empty. After a restart this is
// how a server learns its last written index and term.
func (l *Log) Bounds() (first, last, lastTerm uint64, ok bool, err error) {
	v := l.view()
	memFirst, reset, memOK := v.First()
	segFirst, segLast, segOK, err := l.store.Bounds(l.uid)
	if err != nil {
		return 0, 0, 0, false, err
	}
	switch {
	case memOK && (reset || !segOK || segFirst >= memFirst):
		first = memFirst
	case segOK:
		first = segFirst
	default:
		return 0, 0, 0, false, nil
	}
	if memOK {
		last, lastTerm, _ = v.Last()
		// Mem tables may still hold entries a snapshot truncated.
		floor, err := l.store.Floor(l.uid)
		if err != nil {
			return 0, 0, 0, false, err
		}
		if first <= floor && !reset {
			first = floor + 1
		}
		return first, last, lastTerm, first <= last, nil
	}
	e, err := l.store.Entry(l.uid, segLast)
	if err != nil {
		return 0, 0, 0, false, err
	}
	return first, segLast, e.Term, true, nil
}
