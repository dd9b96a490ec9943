package snapshot

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is; they arrive wrapped with the
// UID, index or file involved.
var (
	// ErrNotFound: there is no snapshot of the UID (or none that
	// verifies), or the file an Info names is gone.
	ErrNotFound = errors.New("snapshot: not found")
	// ErrCorrupt: a snapshot file or chunk stream fails its checksums or
	// its structure. Errors about files are a *CorruptError naming the file
	// and the offset of the first bad structure. A corrupt snapshot is
	// never used.
	ErrCorrupt = errors.New("snapshot: corrupt")
	// ErrStale: a snapshot at the same or a higher index of the UID is
	// already durable, so this one will never become visible. Nothing was
	// left on disk.
	ErrStale = errors.New("snapshot: stale")
	// ErrInvalid: an argument breaks a precondition (a UID outside the
	// base64url alphabet, index 0, a nil Source, meta too large, a bad
	// configuration value).
	ErrInvalid = errors.New("snapshot: invalid argument")
	// ErrIO: the file system failed (for example the disk is full). The
	// cause is wrapped too, so errors.Is(err, syscall.ENOSPC) works.
	// Nothing half-written becomes visible.
	ErrIO = errors.New("snapshot: i/o error")
	// ErrSource: a Source's WriteTo returned an error; the snapshot was
	// discarded.
	ErrSource = errors.New("snapshot: source failed")
	// ErrDeleted: the UID's snapshots were deleted (Store.Delete) while
	// this snapshot was being written or received; it was discarded.
	ErrDeleted = errors.New("snapshot: uid deleted")
	// ErrSuperseded: a queued Write was dropped, unwritten, because a
	// newer Write of the same UID arrived before it started.
	ErrSuperseded = errors.New("snapshot: superseded by a newer write")
	// ErrStopped: the snapshot writer stopped before or while writing; the
	// snapshot was discarded.
	ErrStopped = errors.New("snapshot: writer stopped")
	// ErrFinished: the Pending, Sender or Receiver was already committed,
	// aborted, closed or finished.
	ErrFinished = errors.New("snapshot: already finished")
	// ErrTimeout: a transfer made no progress (no ack advanced it) for
	// SenderConfig.GiveUpAfter. The receiver keeps what it has; a new
	// transfer of the same snapshot resumes from there.
	ErrTimeout = errors.New("snapshot: transfer timed out")
	// ErrRejected: the receiver refused the snapshot; the error is a
	// *RejectedError carrying the reason.
	ErrRejected = errors.New("snapshot: rejected by the receiver")
)

// CorruptError reports a damaged snapshot file: the file, the byte offset
// where the first bad structure starts, and what was wrong.
// errors.Is(err, ErrCorrupt) holds.
type CorruptError struct {
	File   string // path of the damaged file (or a description of the stream)
	Offset int64  // byte offset of the first bad structure
	Reason string // what was wrong
}

// Error names the file, the offset and the reason.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("snapshot: corrupt file %s at offset %d: %s", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// RejectReason says why a receiver refused a snapshot.
type RejectReason uint8

// Reasons carried by a rejecting ChunkAck. Wire format: the values are
// encoded as one byte.
const (
	// RejectStale: the receiver already has a snapshot at this index or a
	// higher one. The sender's server should continue with the log.
	RejectStale RejectReason = 1
	// RejectCorrupt: the bytes arrived intact (chunk checksums held) but
	// do not form a valid snapshot, or not the one announced: the sender's
	// file is damaged. The sender should verify its snapshot
	// (Store.Verify) and take a new one if it fails.
	RejectCorrupt RejectReason = 2
	// RejectStorage: the receiver's disk failed. Retrying later may work.
	RejectStorage RejectReason = 3
)

// String names the reason.
func (r RejectReason) String() string {
	switch r {
	case RejectStale:
		return "stale"
	case RejectCorrupt:
		return "corrupt"
	case RejectStorage:
		return "storage"
	default:
		return fmt.Sprintf("reason(%d)", uint8(r))
	}
}

// RejectedError is the error a Sender ends with when the receiver refused
// the snapshot. errors.Is(err, ErrRejected) holds.
type RejectedError struct {
	Reason RejectReason
}

// Error names the reason.
func (e *RejectedError) Error() string {
	return "snapshot: rejected by the receiver: " + e.Reason.String()
}

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// ioErr wraps a file-system error with ErrIO, keeping the cause matchable.
func ioErr(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrIO, op, err)
}
