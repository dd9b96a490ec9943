package raftserver

import (
	"errors"
	"fmt"

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
// A log entry's payload in the WAL is its core.EntryType byte followed by
// its data (wire format).
type logStore struct {
	uid    string
	writer *wal.Writer
	log    *segment.Log
	first  uint64 // first index held: 1 until snapshots truncate
	last   uint64 // last index written or being written
	// pending holds writes the WAL refused for backpressure, oldest first;
	// later writes queue behind them so the WAL sees them in order.
	pending [][]wal.Entry
}

func openLogStore(uid string, writer *wal.Writer, log *segment.Log) (*logStore, error) {
	l := &logStore{uid: uid, writer: writer, log: log, first: 1}
	first, last, _, ok, err := log.Bounds()
	if err != nil {
		return nil, fmt.Errorf("%w: log bounds of %s: %w", ErrStorage, uid, err)
	}
	if ok {
		l.first, l.last = first, last
	}
	return l, nil
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
	case index < l.first:
		return 0, fmt.Errorf("%w: %d < first %d", core.ErrCompacted, index, l.first)
	case index > l.last:
		return 0, fmt.Errorf("%w: %d > last %d", core.ErrUnavailable, index, l.last)
	}
	e, err := l.log.Entry(index)
	if err != nil {
		if errors.Is(err, segment.ErrNotFound) {
			return 0, fmt.Errorf("%w: %s index %d: %w", core.ErrUnavailable, l.uid, index, err)
		}
		return 0, err
	}
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
	ws, err := l.log.Range(lo, hi-1, maxBytes)
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

func encodeEntry(e core.Entry) wal.Entry {
	p := make([]byte, 1+len(e.Data))
	p[0] = byte(e.Type)
	copy(p[1:], e.Data)
	return wal.Entry{Index: e.Index, Term: e.Term, Payload: p}
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
	ws := make([]wal.Entry, len(ents))
	for i, e := range ents {
		ws[i] = encodeEntry(e)
	}
	l.last = ents[len(ents)-1].Index
	if len(l.pending) > 0 {
		l.pending = append(l.pending, ws)
		return nil
	}
	return l.write(ws)
}

func (l *logStore) write(ws []wal.Entry) error {
	err := l.writer.Write(ws...)
	if errors.Is(err, wal.ErrBackpressure) {
		l.pending = append(l.pending, ws)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrStorage, l.uid, err)
	}
	return nil
}

// retry sends writes held back by backpressure; call it whenever the WAL
// answered (its in-flight count dropped).
func (l *logStore) retry() error {
	for len(l.pending) > 0 {
		err := l.writer.Write(l.pending[0]...)
		if errors.Is(err, wal.ErrBackpressure) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrStorage, l.uid, err)
		}
		l.pending[0] = nil
		l.pending = l.pending[1:]
	}
	return nil
}

// resend writes entries again from index from, after the WAL dropped a
// write that left a gap (wal.OutOfSequence). read gives the entries, which
// may still be only in the core's memory.
func (l *logStore) resend(from uint64, read func(lo, hi uint64) ([]core.Entry, error)) error {
	if from > l.last {
		return nil
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
		if err := l.append(ents); err != nil {
			return err
		}
		lo = ents[len(ents)-1].Index + 1
	}
	return nil
}
