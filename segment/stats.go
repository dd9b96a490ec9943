package segment

import (
	"sync/atomic"

	"github.com/rago-raft/rago/metrics"
)

// Stats are cumulative counters of a Store's flushes of WAL files since
// Open. They live in the Store, not in the segment writer process, so they
// survive the writer's restarts by its supervisor.
type Stats struct {
	// Flushes counts WAL files made durable in the store: FlushFile calls
	// that returned nil.
	Flushes int64
	// Entries counts the entries those flushes wrote. Entries of deleted
	// UIDs, and entries at or below their UID's floor (covered by a
	// snapshot), are discarded and not counted.
	Entries int64
	// Bytes counts the payload bytes of those entries.
	Bytes int64
	// Flush is the time of each successful FlushFile: applying the tables,
	// committing the batch and pebble's flush to a synced sstable; waiting
	// for a concurrent truncation or deletion is not part of it. Its Count
	// equals Flushes.
	Flush metrics.HistogramSnapshot
	// FlushFailures counts FlushFile calls that failed. The segment writer
	// retries a failed file, so one file can fail many times.
	FlushFailures int64
	// Linked counts WAL files that flushes kept by hard link instead of
	// copying their entries (see Options.LinkMinBytes); their entries
	// are counted in Entries and Bytes too.
	Linked int64
	// LinkedCollected counts linked files removed once no entry referred
	// to them any more.
	LinkedCollected int64
	// LinkedReclaimed counts the collected linked files that the WAL took
	// back to write over (SetReclaim) instead of being removed.
	LinkedReclaimed int64
}

// statsCounters are updated by FlushFile and read by anyone.
type statsCounters struct {
	flushes, entries, bytes atomic.Int64
	flush                   metrics.Histogram
	flushFailures           atomic.Int64
	linked, linkedCollected atomic.Int64
	linkedReclaimed         atomic.Int64
}

// Stats returns the store's flush counters. Safe from any goroutine,
// also after Close.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Flushes:         c.flushes.Load(),
		Entries:         c.entries.Load(),
		Bytes:           c.bytes.Load(),
		Flush:           c.flush.Snapshot(),
		FlushFailures:   c.flushFailures.Load(),
		Linked:          c.linked.Load(),
		LinkedCollected: c.linkedCollected.Load(),
		LinkedReclaimed: c.linkedReclaimed.Load(),
	}
}
