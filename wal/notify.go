package wal

// Notifications the WAL sends to a writer's process. They are plain Go
// values: WAL traffic never leaves the node.

// Written tells a writer that entries From..To (inclusive) of UID are
// durable: every index in the range was written in one batch that was
// synced, and To is the writer's last index after that batch. Term is the
// term of entry To. A writer gets at most one Written per batch, in batch
// order.
type Written struct {
	UID      string
	Term     uint64
	From, To uint64
}

// OutOfSequence tells a writer that the WAL dropped a write whose index
// left a gap (index > last+1). The WAL drops every further write of this
// UID that also leaves a gap, notifying only once, until a write arrives
// at an index <= Expected; the writer should resend from Expected.
type OutOfSequence struct {
	UID      string
	Expected uint64 // the next index the WAL accepts without a gap
	Got      uint64 // the index that was dropped
}

// WriteFailed tells a writer that entries From..To were not made durable
// because the WAL failed (Err wraps ErrFailed and the cause). The WAL is
// fail-stop: nothing later will be acknowledged either.
type WriteFailed struct {
	UID      string
	From, To uint64
	Err      error
}
