package wal

import "sync/atomic"

// Stats are cumulative counters of a WAL since Start.
type Stats struct {
	Batches int64 // batches made durable (one write and one sync each)
	Entries int64 // entries in them
	Bytes   int64 // bytes written to WAL files, framing included
	Files   int64 // files started
}

// MeanBatch returns the mean entries per batch.
func (s Stats) MeanBatch() float64 {
	if s.Batches == 0 {
		return 0
	}
	return float64(s.Entries) / float64(s.Batches)
}

// statsCounters are updated by the WAL process and read by anyone.
type statsCounters struct {
	batches, entries, bytes, files atomic.Int64
}

func (c *statsCounters) load() Stats {
	return Stats{Batches: c.batches.Load(), Entries: c.entries.Load(), Bytes: c.bytes.Load(), Files: c.files.Load()}
}

// Stats returns the WAL's counters. Safe from any goroutine.
func (w *WAL) Stats() Stats { return w.o.core.stats.load() }
