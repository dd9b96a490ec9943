package snapshot

import (
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/metrics"
)

// Stats are cumulative counters of a Store since Open: the snapshots
// written into it, and the chunks of the transfers of Senders and
// Receivers made on it. They live in the Store, which every server of the
// node shares and which outlives restarts of the snapshot writer process.
// Whole snapshots sent and installed are left to the servers that run
// the transfers, which count them per server.
type Stats struct {
	// SnapshotsWritten counts snapshots made durable by Begin and a
	// successful Commit (by the snapshot writer, or by a server directly).
	// Received snapshots are not counted here.
	SnapshotsWritten int64
	// BytesWritten counts the file bytes of those snapshots (Info.Size).
	BytesWritten int64
	// Write is the time of each of those snapshots, from Begin to the end
	// of Commit: the machine's data stream, the fsync, the rename and the
	// directory fsync. Its Count equals SnapshotsWritten.
	Write metrics.HistogramSnapshot
	// WriteFailures counts snapshot writes that did not become durable:
	// Begin failed other than with ErrStale or ErrInvalid (the directory
	// or file could not be created, the UID was deleted), or the Pending
	// was aborted (a failing Source or disk, the writer stopping) or its
	// Commit failed. Requests that never reached Begin (ErrInvalid,
	// ErrSuperseded, ErrStale in the writer's queue) are not counted.
	WriteFailures int64

	// ChunksSent counts the chunks Senders returned to be sent (by Start,
	// HandleAck and Tick), resent ones included.
	ChunksSent int64
	// ChunkBytesSent counts the snapshot bytes in those chunks.
	ChunkBytesSent int64
	// ChunksReceived counts the chunks handed to Receivers' Receive,
	// duplicates and rejected ones included.
	ChunksReceived int64
	// ChunkBytesReceived counts the snapshot bytes in those chunks.
	ChunkBytesReceived int64
}

// statsCounters are updated by Pendings, Senders and Receivers on their
// goroutines and read by anyone.
type statsCounters struct {
	snapshotsWritten, bytesWritten, writeFailures atomic.Int64
	write                                         metrics.Histogram
	chunksSent, chunkBytesSent                    atomic.Int64
	chunksReceived, chunkBytesReceived            atomic.Int64
}

// wrote records the end of a snapshot write begun at began.
func (c *statsCounters) wrote(began time.Time, info Info, err error) {
	if err != nil {
		c.writeFailures.Add(1)
		return
	}
	c.write.Since(began)
	c.snapshotsWritten.Add(1)
	c.bytesWritten.Add(info.Size)
}

// Stats returns the store's counters. Safe from any goroutine.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		SnapshotsWritten:   c.snapshotsWritten.Load(),
		BytesWritten:       c.bytesWritten.Load(),
		Write:              c.write.Snapshot(),
		WriteFailures:      c.writeFailures.Load(),
		ChunksSent:         c.chunksSent.Load(),
		ChunkBytesSent:     c.chunkBytesSent.Load(),
		ChunksReceived:     c.chunksReceived.Load(),
		ChunkBytesReceived: c.chunkBytesReceived.Load(),
	}
}
