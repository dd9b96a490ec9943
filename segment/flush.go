package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/rago-raft/rago/wal"
)

// FlushResult says what FlushFile did with one table of the file.
type FlushResult struct {
	Table   wal.ClosedTable
	Skipped bool // the UID was deleted: its records were discarded
	// Linked: the store keeps the WAL file itself for this table's
	// entries (a hard link, see linked.go), so the file must be removed,
	// never handed back to be written over (wal.ClosedFile.Recycle).
	Linked bool
}

// FlushFile writes every table of cf into the store and makes it durable.
// Only after it returns nil may the tables be dropped (MemLog.DropFile)
// and the WAL file removed (ClosedFile.Remove), or, if no result is
// Linked, handed back to be written over (ClosedFile.Recycle); the
// segment writer process does both.
//
// The entries do not go through pebble's memtable: they are written
// straight into sstables, synced, and ingested (see ingest.go). A log
// only grows at its end, so a server's new entries never overlap what
// the store holds and pebble places their sstable in the bottom level,
// where no compaction rewrites it: each entry is written once more after
// the WAL, not once per level.
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
// The deletions and floors are committed and made durable first and the
// entries ingested after, so the entries carry the newer sequence number
// and survive the deletions of their own flush, and a crash between the
// two never leaves new entries beside the old suffix they replaced.
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
	runs := make([]run, 0, len(cf.Tables))
	var overwritten []wal.ClosedTable // tables whose flush deletes older entries
	for _, t := range cf.Tables {
		deleted, err := s.Deleted(t.UID)
		if err != nil {
			return nil, n, err
		}
		if deleted {
			results = append(results, FlushResult{Table: t, Skipped: true})
			continue
		}
		r, stale, err := s.prepareTable(b, t)
		if err != nil {
			return nil, n, fmt.Errorf("segment: flush %s of %s: %w", t.UID, cf.Path, err)
		}
		if stale {
			overwritten = append(overwritten, t)
		}
		if r.entries.Len() > 0 {
			runs = append(runs, r)
		}
		n.entries += int64(r.entries.Len())
		n.bytes += r.entries.Bytes()
		results = append(results, FlushResult{Table: t})
	}
	var linked *linkedFile
	newFormat := false
	if i := s.linkCandidate(cf, runs); i >= 0 {
		lf, refs, err := s.link(cf, runs[i])
		switch {
		case errors.Is(err, errCannotLink):
			// The mem tables hold the entries: copy them, now and from
			// now on.
			s.linkMinBytes = -1
			s.logger.Info("segment: WAL files cannot be linked; copying their entries", "err", err)
		case err != nil:
			s.logger.Warn("segment: copying a run instead of linking its WAL file", "file", cf.Path, "uid", runs[i].uid, "err", err)
		default:
			runs[i].refs, linked = refs, lf
			if s.format < formatLinked {
				// Before the first reference, so that an older version
				// refuses the store instead of misreading references.
				if err := b.Set(formatKey, binary.AppendUvarint(nil, formatLinked), nil); err != nil {
					return nil, n, err
				}
				newFormat = true
			}
		}
	}
	if !b.Empty() {
		if err := b.Commit(pebble.NoSync); err != nil {
			return nil, n, fmt.Errorf("segment: commit flush of %s: %w", cf.Path, err)
		}
		s.unsynced = true
	}
	if s.unsynced {
		// Deletions, floors and truncations live in the memtable, which
		// pebble (without its WAL) only makes durable by a flush. They go
		// first: a crash must not keep the ingested entries and lose the
		// deletion of the old suffix they replace.
		if err := s.db.Flush(); err != nil {
			return nil, n, fmt.Errorf("segment: make flush of %s durable: %w", cf.Path, err)
		}
		s.unsynced = false
	}
	if newFormat {
		s.format = formatLinked
	}
	if linked != nil {
		// Readers may meet its references as soon as they are ingested.
		s.links.add(linked)
	}
	if err := s.ingest(runs, linked); err != nil {
		if linked != nil {
			// Nothing refers to the file: remove it now (or at Open).
			s.links.remove(linked.id)
			_ = s.fs.Remove(linked.path)
		}
		return nil, n, fmt.Errorf("segment: flush of %s: %w", cf.Path, err)
	}
	if linked != nil {
		s.stats.linked.Add(1)
		for i := range results {
			if results[i].Table.UID == linked.uid {
				results[i].Linked = true
			}
		}
	}
	for _, t := range overwritten {
		from := t.First
		if t.Reset {
			from = 0
		}
		s.collectLinkedOrLog(t.UID, from, ^uint64(0))
	}
	return results, n, nil
}

// prepareTable adds t's deletions and floor to b and returns the entries
// of t that are to be written: those above the UID's floor.
func (s *Store) prepareTable(b *pebble.Batch, t wal.ClosedTable) (r run, stale bool, err error) {
	floor, err := s.readUvarint(floorKey(t.UID))
	if err != nil {
		return run{}, false, err
	}
	lower, upper := entryBounds(t.UID)
	if !t.Reset {
		lower = entryKey(t.UID, t.First)
	}
	// A leader's log, and a follower's that is not overwritten, only
	// grows: there is nothing at or after First to delete, and a range
	// deletion would only make the next ingest overlap this one.
	stale, err = s.anyKey(lower, upper)
	if err != nil {
		return run{}, false, err
	}
	if stale {
		if err := b.DeleteRange(lower, upper, nil); err != nil {
			return run{}, false, err
		}
	}
	if t.Reset && floor != t.First-1 {
		// The log restarts after First-1 (a snapshot there): that is its
		// floor now, also when an older floor was higher (the snapshot it
		// came from was lost and the log restarted from an older one).
		floor = t.First - 1
		if err := b.Set(floorKey(t.UID), binary.AppendUvarint(nil, floor), nil); err != nil {
			return run{}, false, err
		}
	}
	// Entries are consecutive from First: skip those at or below floor.
	skip := 0
	if floor >= t.First {
		skip = int(min(floor-t.First+1, uint64(t.Entries.Len())))
	}
	return run{uid: t.UID, entries: t.Entries.From(skip)}, stale, nil
}

// anyKey reports whether the store holds a key in [lower, upper).
func (s *Store) anyKey(lower, upper []byte) (bool, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return false, err
	}
	found := it.First()
	return found, errors.Join(it.Error(), it.Close())
}
