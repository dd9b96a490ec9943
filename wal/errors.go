package wal

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match with errors.Is; they arrive wrapped with context.
var (
	// ErrCorrupt: a WAL file is damaged before its tail. Start-up stops
	// rather than skip acknowledged entries; the error is a
	// *CorruptionError naming the file and offset.
	ErrCorrupt = errors.New("wal: corrupt file")
	// ErrFailed: a write or sync of the WAL failed (for example the disk is
	// full). The WAL is fail-stop: the batch was not acknowledged and no
	// later write will be; restart the node to recover. WriteFailed
	// notifications and Writer.Write return it wrapped with the cause.
	ErrFailed = errors.New("wal: write failed")
	// ErrBackpressure: the writer already has its maximum of entries or
	// bytes waiting for Written. Nothing was sent; retry after the next
	// Written (a writer with nothing in flight is always admitted).
	ErrBackpressure = errors.New("wal: too many writes in flight")
	// ErrClosed: the WAL was stopped.
	ErrClosed = errors.New("wal: closed")
	// ErrInvalid: the write breaks a precondition (bad UID, index 0,
	// payload too large, non-ascending entries in one call).
	ErrInvalid = errors.New("wal: invalid write")
	// ErrConfig: the configuration is invalid.
	ErrConfig = errors.New("wal: invalid config")
	// ErrUnknownVersion: a WAL file is of a format version this release
	// does not know (a newer release wrote it). Start-up stops, with a
	// *CorruptionError that also matches this, and changes nothing.
	ErrUnknownVersion = errors.New("wal: unknown file format version")
)

// CorruptionError reports damage found in a WAL file during recovery that
// is not a torn tail: it names the file and the byte offset where the
// damaged structure starts. errors.Is(err, ErrCorrupt) holds.
type CorruptionError struct {
	File   string // path of the damaged file
	Offset int64  // byte offset of the first bad structure
	Reason error  // what was wrong
}

// Error names the file, the offset and the reason.
func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt file %s at offset %d: %v", e.File, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptionError) Is(target error) bool { return target == ErrCorrupt }

// Unwrap returns the reason.
func (e *CorruptionError) Unwrap() error { return e.Reason }
