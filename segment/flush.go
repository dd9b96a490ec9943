package segment

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rago-raft/rago/wal"
)

// FlushResult says what FlushFile did with one table of the file.
type FlushResult struct {
	Table   wal.ClosedTable
	Skipped bool // the UID was deleted: its records were discarded
}

// FlushFile writes every table of cf into the store as one batch and makes
// it durable (pebble Flush: memtable to a synced sstable). Only after it
// returns nil may the tables be dropped (MemLog.DropFile) and the WAL file
// removed (ClosedFile.Remove); the segment writer process does both.
//
// Applying a table is idempotent, so a file replayed after a crash that
// happened after its flush but before its removal changes nothing:
//   - a reset table deletes all of the UID's entries, sets the UID's floor
//     to just below its first entry, then writes its own;
//   - any other table deletes the UID's entries at index >= First (the
//     suffix it replaces, which is how a follower's overwrite reaches the
//     segments), then writes its own;
//   - entries at or below the UID's floor (truncated by a snapshot) are not
//     written again, and a UID with a tombstone is skipped.
//
// Files must be flushed in WAL sequence order: a table only shadows what
// older files wrote.
func (s *Store) FlushFile(cf *wal.ClosedFile) ([]FlushResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	results, n, err := s.flushLocked(cf)
	if err != nil {
		s.stats.flushFailures.Add(1)
		return nil, err
	}
	s.stats.flush.Since(start)
	s.stats.flushes.Add(1)
	s.stats.entries.Add(n.entries)
	s.stats.bytes.Add(n.bytes)
	return results, nil
}

// flushCount is the entries a flush wrote and their payload bytes.
type flushCount struct{ entries, bytes int64 }

func (s *Store) flushLocked(cf *wal.ClosedFile) ([]FlushResult, flushCount, error) {
	var n flushCount
	if s.closed {
		return nil, n, ErrClosed
	}
	b := s.db.NewBatch()
	defer b.Close()
	results := make([]FlushResult, 0, len(cf.Tables))
	for _, t := range cf.Tables {
		deleted, err := s.Deleted(t.UID)
		if err != nil {
			return nil, n, err
		}
		if deleted {
			results = append(results, FlushResult{Table: t, Skipped: true})
			continue
		}
		if err := s.applyTable(b, t, &n); err != nil {
			return nil, n, fmt.Errorf("segment: flush %s of %s: %w", t.UID, cf.Path, err)
		}
		results = append(results, FlushResult{Table: t})
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return nil, n, fmt.Errorf("segment: commit flush of %s: %w", cf.Path, err)
	}
	if err := s.db.Flush(); err != nil {
		return nil, n, fmt.Errorf("segment: make flush of %s durable: %w", cf.Path, err)
	}
	return results, n, nil
}

// applyTable adds t to b and counts the entries it writes into n.
func (s *Store) applyTable(b *pebble.Batch, t wal.ClosedTable, n *flushCount) error {
	floor, err := s.readUvarint(floorKey(t.UID))
	if err != nil {
		return err
	}
	lower, upper := entryBounds(t.UID)
	if !t.Reset {
		lower = entryKey(t.UID, t.First)
	}
	if err := b.DeleteRange(lower, upper, nil); err != nil {
		return err
	}
	if t.Reset && floor != t.First-1 {
		// The log restarts after First-1 (a snapshot there): that is its
		// floor now, also when an older floor was higher (the snapshot it
		// came from was lost and the log restarted from an older one).
		floor = t.First - 1
		if err := b.Set(floorKey(t.UID), binary.AppendUvarint(nil, floor), nil); err != nil {
			return err
		}
	}
	for _, e := range t.Entries {
		if e.Index <= floor {
			continue
		}
		if err := b.Set(entryKey(t.UID, e.Index), encodeValue(e.Term, e.Payload), nil); err != nil {
			return err
		}
		n.entries++
		n.bytes += int64(len(e.Payload))
	}
	return nil
}
