package wal

import (
	"sync/atomic"

	"github.com/rago-raft/rago/metrics"
)

// Stats are cumulative counters of a WAL since Start (or since the Open of
// a restarted WAL: every Open starts from zero).
type Stats struct {
	Batches int64 // batches made durable (one write and one sync each)
	Entries int64 // entries in them
	Bytes   int64 // bytes written to WAL files, framing included
	Files   int64 // files started
	// Preallocated counts the files started in a prepared, zero-filled
	// spare (see Config.PreallocateBytes) instead of an empty file.
	Preallocated int64
	// Recycled counts the files started over a flushed file kept to be
	// written over (see Config.RecycleFiles) instead of zeros.
	Recycled int64

	// Write is the time of each batch's write to its file: one observation
	// per write call that returned, failed ones included. Creating a new
	// file for the batch is not part of it.
	Write metrics.HistogramSnapshot
	// Sync is the time of each batch's file sync (fdatasync, or fsync with
	// SyncFull): one observation per sync that returned, failed ones
	// included. It is empty with SyncNoneUnsafeForTests. The directory sync
	// after starting a file is not part of it.
	Sync metrics.HistogramSnapshot
	// WriteFailures counts batches whose file creation or write failed.
	// The WAL is fail-stop, so it is 0 or 1.
	WriteFailures int64
	// SyncFailures counts batches whose file sync, or directory sync after
	// starting a file, failed. The WAL is fail-stop, so it is 0 or 1.
	SyncFailures int64
}

// Add adds o's counts to s: the counts of a node's WALs over restarts.
func (s *Stats) Add(o Stats) {
	s.Batches += o.Batches
	s.Entries += o.Entries
	s.Bytes += o.Bytes
	s.Files += o.Files
	s.Preallocated += o.Preallocated
	s.Recycled += o.Recycled
	s.Write.Add(o.Write)
	s.Sync.Add(o.Sync)
	s.WriteFailures += o.WriteFailures
	s.SyncFailures += o.SyncFailures
}

// MeanBatch returns the mean entries per batch.
func (s Stats) MeanBatch() float64 {
	if s.Batches == 0 {
		return 0
	}
	return float64(s.Entries) / float64(s.Batches)
}

// statsCounters are updated by the WAL process (batches, entries, bytes,
// files) and its flusher (the rest), and read by anyone.
type statsCounters struct {
	batches, entries, bytes, files atomic.Int64
	preallocated, recycled         atomic.Int64
	write, sync                    metrics.Histogram
	writeFailures, syncFailures    atomic.Int64
}

func (c *statsCounters) load() Stats {
	return Stats{
		Batches:       c.batches.Load(),
		Entries:       c.entries.Load(),
		Bytes:         c.bytes.Load(),
		Files:         c.files.Load(),
		Preallocated:  c.preallocated.Load(),
		Recycled:      c.recycled.Load(),
		Write:         c.write.Snapshot(),
		Sync:          c.sync.Snapshot(),
		WriteFailures: c.writeFailures.Load(),
		SyncFailures:  c.syncFailures.Load(),
	}
}

// Stats returns the WAL's counters. Safe from any goroutine.
func (w *WAL) Stats() Stats { return w.o.core.stats.load() }
