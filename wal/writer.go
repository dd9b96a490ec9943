package wal

import (
	"fmt"
	"sync/atomic"
)

// Writer is a Raft server's handle on the WAL, made by WAL.Register. It
// sends writes, bounds what is in flight, and reads the server's mem
// tables. A Writer is meant to be used by its owning server's goroutine;
// its in-flight counters are updated concurrently by the WAL.
type Writer struct {
	uid        string
	log        *MemLog
	target     any // where notifications go (an actor.Ref in the shell)
	send       func(writeMsg) error
	maxEntries int64
	maxBytes   int64
	maxPayload int

	inflightEntries atomic.Int64
	inflightBytes   atomic.Int64
}

// UID returns the writer's UID.
func (w *Writer) UID() string { return w.uid }

// Mem returns the writer's mem tables, readable concurrently without
// messaging the WAL.
func (w *Writer) Mem() *MemLog { return w.log }

// InFlight returns the entries and payload bytes sent and not yet
// answered.
func (w *Writer) InFlight() (entries int, bytes int64) {
	return int(w.inflightEntries.Load()), w.inflightBytes.Load()
}

// Write sends entries, which must have consecutive ascending indexes, to
// the WAL asynchronously. The first index must be at most one past the
// last index the WAL has for this UID (an index at or below it overwrites
// the suffix from there); a gap is answered with OutOfSequence and the
// entries are dropped. The writer later gets Written, OutOfSequence or
// WriteFailed covering them. The payloads must not be modified after the
// call.
//
// Write returns ErrBackpressure (nothing sent) if the writer's in-flight
// bound would be exceeded; a writer with nothing in flight is always
// admitted, so waiting for the next notification and retrying always
// makes progress. It returns ErrInvalid for malformed input and ErrClosed
// after the WAL stopped.
func (w *Writer) Write(entries ...Entry) error { return w.write(entries, false) }

// WriteReset is Write for a log that restarts at entries[0].Index (after
// installing a snapshot): every older entry of the UID, at any index, is
// discarded, and no gap check applies to the first entry.
func (w *Writer) WriteReset(entries ...Entry) error { return w.write(entries, true) }

func (w *Writer) write(entries []Entry, reset bool) error {
	if len(entries) == 0 {
		return fmt.Errorf("%w: no entries", ErrInvalid)
	}
	var bytes int64
	for i, e := range entries {
		if e.Index == 0 {
			return fmt.Errorf("%w: index 0", ErrInvalid)
		}
		if i > 0 && e.Index != entries[i-1].Index+1 {
			return fmt.Errorf("%w: index %d follows %d", ErrInvalid, e.Index, entries[i-1].Index)
		}
		if e.size() > w.maxPayload {
			return fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrInvalid, e.size(), w.maxPayload)
		}
		bytes += int64(e.size())
	}
	n := int64(len(entries))
	ne := w.inflightEntries.Add(n)
	nb := w.inflightBytes.Add(bytes)
	if ne > n && (ne > w.maxEntries || nb > w.maxBytes) {
		w.release(len(entries), bytes)
		return fmt.Errorf("%w: %d entries / %d bytes in flight for %s", ErrBackpressure, ne-n, nb-bytes, w.uid)
	}
	if err := w.send(writeMsg{w: w, entries: entries, reset: reset}); err != nil {
		w.release(len(entries), bytes)
		return err
	}
	return nil
}

// release returns in-flight budget; the WAL calls it when it answers.
func (w *Writer) release(entries int, bytes int64) {
	w.inflightEntries.Add(-int64(entries))
	w.inflightBytes.Add(-bytes)
}
