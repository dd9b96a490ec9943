package raftserver

import (
	"errors"
	"fmt"
	"sync"

	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/segment"
	"github.com/rago-raft/rago/wal"
)

// logStore is a server's log: writes go to the node's WAL through the
// server's wal.Writer, reads come from the WAL's mem tables and then the
// segments (segment.Log). It implements core.LogReader; the core keeps the
// entries it has not yet seen durable in memory itself, so reads here only
// cover durable entries and never message anyone.
//
// With a snapshot, the log holds first..last with first <= snapIndex+1,
// and Term(snapIndex) answers the snapshot's term even once the entries up
// to it are compacted away. After a snapshot install (or a reset at start)
// the log holds nothing after the snapshot until the next write, which is a
// wal.WriteReset: it hides every older entry of the server, in the mem
// tables at once and in the segments when flushed.
//
// A log entry's payload in the WAL is its core.EntryType byte followed by
// its data (wire format).
type logStore struct {
	uid      string
	writer   *wal.Writer
	log      *segment.Log
	segments *segment.Store
	first    uint64 // first index held
	last     uint64 // last index written or being written
	// snapIndex and snapTerm describe the server's snapshot (0 if none).
	snapIndex, snapTerm uint64
	// resetNext: the next write restarts the log (WriteReset).
	resetNext bool
	// pending holds writes the WAL refused for backpressure, oldest first;
	// later writes queue behind them so the WAL sees them in order.
	pending []pendingWrite
	// terms answers Term for a suffix of the log from memory.
	terms termRuns
}

// readBufs holds the buffers that logStore.Entries reads the log into,
// emptied between reads. They are shared by every server of the process
// rather than kept per server, so that thousands of idle servers hold
// none, and the collector drops them when reads stop.
var readBufs = sync.Pool{New: func() any { return new([]wal.Entry) }}

// readBufMax bounds the buffers kept in readBufs: 48 KiB.
const readBufMax = 1024

// entryReadBytes bounds the bytes of entries one read of the log returns
// when the server walks a range of it (applying, rebuilding the machine,
// re-sending to the WAL), so a long range sits in memory a chunk at a time.
const entryReadBytes = 4 << 20

type pendingWrite struct {
	ents  []wal.Entry
	reset bool
}

func openLogStore(uid string, writer *wal.Writer, log *segment.Log, segments *segment.Store) (*logStore, error) {
	l := &logStore{uid: uid, writer: writer, log: log, segments: segments, first: 1}
	// A truncation of an earlier incarnation may still be queued: the
	// bounds, and the floor that recovery reads, must include it.
	if err := segments.Settle(uid); err != nil {
		return nil, fmt.Errorf("%w: truncate %s: %w", ErrStorage, uid, err)
	}
	first, last, _, ok, err := log.Bounds()
	if err != nil {
		return nil, fmt.Errorf("%w: log bounds of %s: %w", ErrStorage, uid, err)
	}
	if ok {
		l.first, l.last = first, last
	}
	return l, nil
}

// setSnapshot records the server's newest durable snapshot.
func (l *logStore) setSnapshot(index, term uint64) {
	if index > l.snapIndex {
		l.snapIndex, l.snapTerm = index, term
	}
}

// continues reports whether the log continues the snapshot at index with
// term: it holds that entry (or was compacted exactly through it) and
// nothing is missing between the snapshot and its first entry.
func (l *logStore) continues(index, term uint64) (bool, error) {
	switch {
	case index == 0:
		return l.first <= 1, nil
	case l.first > index+1 || l.last < index:
		return false, nil
	case l.first == index+1:
		// Compacted through the snapshot (its entry is gone): the log
		// after it was written on top of it.
		return true, nil
	}
	e, err := l.log.Entry(index)
	if err != nil {
		return false, fmt.Errorf("%w: %s entry %d: %w", ErrStorage, l.uid, index, err)
	}
	return e.Term == term, nil
}

// reset makes the log hold nothing after the snapshot at index (term): for
// an installed snapshot, or at start when the log does not continue the
// snapshot. The next write restarts the log in the WAL; the segments drop
// what the snapshot covers soon (see compact) and the rest when that write
// is flushed.
func (l *logStore) reset(index, term uint64) error {
	l.snapIndex, l.snapTerm = index, term
	l.first, l.last = index+1, index
	l.terms.reset()
	l.resetNext = true
	l.pending = nil
	l.dropThrough(index)
	return nil
}

// compact drops the entries up to through (covered by the snapshot there):
// from the segments soon, off the server's goroutine (the store's
// TruncateLater: a truncation waits for any flush in progress), from the
// mem tables as whole tables fall under it.
func (l *logStore) compact(through uint64) error {
	if through < l.first {
		return nil
	}
	l.first = through + 1
	l.terms.compacted(l.first)
	l.dropThrough(through)
	return nil
}

func (l *logStore) dropThrough(index uint64) {
	if index == 0 {
		return
	}
	l.segments.TruncateLater(l.uid, index)
	if m := l.writer.Mem(); m != nil {
		m.Release(index)
	}
}

// FirstIndex implements core.LogReader.
func (l *logStore) FirstIndex() uint64 { return l.first }

// LastIndex implements core.LogReader.
func (l *logStore) LastIndex() uint64 { return l.last }

// Term implements core.LogReader.
func (l *logStore) Term(index uint64) (uint64, error) {
	switch {
	case index == 0:
		return 0, nil
	case index == l.snapIndex:
		return l.snapTerm, nil
	case index < l.first:
		return 0, fmt.Errorf("%w: %d < first %d", core.ErrCompacted, index, l.first)
	case index > l.last:
		return 0, fmt.Errorf("%w: %d > last %d", core.ErrUnavailable, index, l.last)
	}
	if t, ok := l.terms.term(index); ok {
		return t, nil
	}
	e, err := l.log.Entry(index)
	if err != nil {
		if errors.Is(err, segment.ErrNotFound) {
			return 0, fmt.Errorf("%w: %s index %d: %w", core.ErrUnavailable, l.uid, index, err)
		}
		return 0, err
	}
	l.terms.learned(index, e.Term, l.last)
	return e.Term, nil
}

// Entries implements core.LogReader.
func (l *logStore) Entries(lo, hi uint64, maxBytes int) ([]core.Entry, error) {
	if lo >= hi {
		return nil, nil
	}
	if lo < l.first {
		return nil, fmt.Errorf("%w: %d < first %d", core.ErrCompacted, lo, l.first)
	}
	buf := readBufs.Get().(*[]wal.Entry)
	ws, err := l.log.AppendRange(*buf, lo, hi-1, maxBytes)
	defer func() {
		// Emptied, so that it holds no payload read from the segments.
		clear(ws)
		if cap(ws) <= readBufMax {
			*buf = ws[:0]
			readBufs.Put(buf)
		}
	}()
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("%w: %s has no entry %d", core.ErrUnavailable, l.uid, lo)
	}
	out := make([]core.Entry, len(ws))
	for i, w := range ws {
		e, err := decodeEntry(w)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// encodeEntries encodes ents for the WAL: each payload is the entry's type
// byte, then its data. A framed entry (core.Entry.Framed: a follower's
// decoded entries, a leader's user commands) is that payload already, and
// goes as shared: entry data is never modified once made, so the mem
// tables may keep it instead of a copy. Otherwise the type goes as the WAL
// entry's prefix, so the data is not copied here either: the WAL copies it
// into its batch and its mem tables anyway.
func encodeEntries(ents []core.Entry) []wal.Entry {
	ws := make([]wal.Entry, len(ents))
	for i := range ents {
		e := &ents[i]
		if e.FramedOK() {
			ws[i] = wal.Entry{Index: e.Index, Term: e.Term, Payload: e.Framed, Shared: true}
			continue
		}
		ws[i] = wal.Entry{Index: e.Index, Term: e.Term, Prefix: byte(e.Type), Prefixed: true, Payload: e.Data}
	}
	return ws
}

func decodeEntry(w wal.Entry) (core.Entry, error) {
	if len(w.Payload) == 0 {
		return core.Entry{}, fmt.Errorf("%w: entry %d has an empty payload", ErrStorage, w.Index)
	}
	return core.Entry{Index: w.Index, Term: w.Term, Type: core.EntryType(w.Payload[0]), Data: w.Payload[1:]}, nil
}

// append writes entries, starting at entries[0].Index (an index at or
// below last overwrites the suffix). Durability comes back as wal.Written.
func (l *logStore) append(ents []core.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	ws := encodeEntries(ents)
	l.last = ents[len(ents)-1].Index
	l.terms.appended(ents)
	w := pendingWrite{ents: ws, reset: l.resetNext}
	l.resetNext = false
	if len(l.pending) > 0 {
		l.pending = append(l.pending, w)
		return nil
	}
	return l.write(w)
}

// write sends w, or queues it when the WAL refuses it for backpressure.
func (l *logStore) write(w pendingWrite) error {
	sent, err := l.send(w)
	if err == nil && !sent {
		l.pending = append(l.pending, w)
	}
	return err
}

// retry sends writes held back by backpressure; call it whenever the WAL
// answered (its in-flight count dropped).
func (l *logStore) retry() error {
	for len(l.pending) > 0 {
		if sent, err := l.send(l.pending[0]); !sent {
			return err
		}
		l.pending[0] = pendingWrite{}
		l.pending = l.pending[1:]
	}
	return nil
}

// send hands w to the WAL. It reports false with no error when the WAL
// refused it for backpressure, so that the caller keeps it for retry.
func (l *logStore) send(w pendingWrite) (bool, error) {
	var err error
	if w.reset {
		err = l.writer.WriteReset(w.ents...)
	} else {
		err = l.writer.Write(w.ents...)
	}
	switch {
	case errors.Is(err, wal.ErrBackpressure):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%w: %s: %w", ErrStorage, l.uid, err)
	}
	return true, nil
}

// resend writes entries again from index from, after the WAL dropped a
// write that left a gap (wal.OutOfSequence). read gives the entries, which
// may still be only in the core's memory.
func (l *logStore) resend(from uint64, read func(lo, hi uint64) ([]core.Entry, error)) error {
	if from > l.last {
		return nil
	}
	// A reset still waiting in pending must not be lost with it.
	reset := l.resetNext
	for _, w := range l.pending {
		reset = reset || w.reset
	}
	l.pending = nil
	end := l.last
	for lo := from; lo <= end; {
		ents, err := read(lo, end+1)
		if err != nil {
			return err
		}
		if len(ents) == 0 {
			break
		}
		l.resetNext = reset && lo == from
		if err := l.append(ents); err != nil {
			return err
		}
		lo = ents[len(ents)-1].Index + 1
	}
	return nil
}

// floor implements logPort.
func (l *logStore) floor() (uint64, error) { return l.segments.Floor(l.uid) }
