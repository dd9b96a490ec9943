package wal

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/rago-raft/rago/wal/walfs"
)

// SyncMethod says how the WAL makes a batch durable.
type SyncMethod int

const (
	// SyncData uses fdatasync: data plus the size needed to read it back.
	// The default.
	SyncData SyncMethod = iota
	// SyncFull uses fsync: data and all metadata.
	SyncFull
	// SyncNoneUnsafeForTests skips syncing. Written then means only "handed
	// to the OS": a power cut loses acknowledged entries. Tests only.
	SyncNoneUnsafeForTests
)

// String names the method as the docs do: datasync, sync, none-unsafe-for-tests.
func (s SyncMethod) String() string {
	switch s {
	case SyncData:
		return "datasync"
	case SyncFull:
		return "sync"
	case SyncNoneUnsafeForTests:
		return "none-unsafe-for-tests"
	}
	return fmt.Sprintf("SyncMethod(%d)", int(s))
}

// Config configures a WAL. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Dir is the directory of the WAL files. Required.
	Dir string
	// FS does all file I/O; nil means walfs.OS().
	FS walfs.FS
	// Sync is the sync method; the zero value is SyncData.
	Sync SyncMethod
	// MaxFileBytes: a batch that would take the current file past this
	// size starts a new file (rollover). Each entry counts 64 bytes more
	// than its record, and a kept payload (Entry.Shared) also what its
	// allocation may hold beyond it; a mem table holds an entry in less
	// than that, so this also bounds the memory of one file's mem tables,
	// with room to spare for tiny entries. A single batch larger than this
	// still goes into one file.
	MaxFileBytes int64
	// PreallocateBytes is the size of the spare file the WAL fills with
	// zeros and syncs in the background while the current file fills, and
	// then starts the next file in. Appending to a file makes every
	// fdatasync commit the new size too (a journal commit on ext4 or xfs);
	// writing over synced zeros makes it sync data only, which shortens
	// every batch's sync. The price is writing each file's bytes twice
	// (zeros, then data) and one spare file on disk. 0 means MaxFileBytes;
	// negative turns preallocation off. Only with SyncData, and only if FS
	// implements walfs.Preallocator (the OS, walfs.Mem and walfs.FromVFS
	// do).
	PreallocateBytes int64
	// RecycleFiles is how many flushed files the WAL keeps to start later
	// files over (ClosedFile.Recycle), so that it need not fill spares
	// with zeros: their blocks are written already, and writes over them
	// sync data only, as over zeros. Only where the WAL preallocates; 0
	// means 2, negative turns recycling off (flushed files are removed).
	RecycleFiles int
	// MaxBatchBytes and MaxBatchEntries bound one batch (one write + one
	// sync). Writes that arrive while a batch is in flight accumulate into
	// the following batches.
	MaxBatchBytes   int
	MaxBatchEntries int
	// MaxClosedFiles bounds the files handed to the segment writer and not
	// yet removed; beyond it, rollover waits (see docs/storage.md,
	// Backpressure). The WAL directory holds at most MaxClosedFiles+1
	// files, plus what recovery found, plus the spare (PreallocateBytes).
	MaxClosedFiles int
	// MaxPayloadBytes is the largest payload one entry may carry.
	MaxPayloadBytes int
	// MaxInFlightEntries and MaxInFlightBytes bound, per writer, what was
	// sent to the WAL and not yet answered (Written, OutOfSequence or
	// WriteFailed). Writer.Write returns ErrBackpressure beyond them.
	MaxInFlightEntries int
	MaxInFlightBytes   int64
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults for a WAL in dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:                dir,
		Sync:               SyncData,
		MaxFileBytes:       64 << 20,
		MaxBatchBytes:      4 << 20,
		MaxBatchEntries:    32768,
		MaxClosedFiles:     8,
		RecycleFiles:       2,
		MaxPayloadBytes:    16 << 20,
		MaxInFlightEntries: 4096,
		MaxInFlightBytes:   8 << 20,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Dir)
	if c.FS == nil {
		c.FS = walfs.OS()
	}
	if c.MaxFileBytes == 0 {
		c.MaxFileBytes = d.MaxFileBytes
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = d.MaxBatchBytes
	}
	if c.MaxBatchEntries == 0 {
		c.MaxBatchEntries = d.MaxBatchEntries
	}
	if c.MaxClosedFiles == 0 {
		c.MaxClosedFiles = d.MaxClosedFiles
	}
	if c.RecycleFiles == 0 {
		c.RecycleFiles = d.RecycleFiles
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = d.MaxPayloadBytes
	}
	if c.MaxInFlightEntries == 0 {
		c.MaxInFlightEntries = d.MaxInFlightEntries
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = d.MaxInFlightBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Validate checks the configuration after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is empty", ErrConfig)
	case c.Sync < SyncData || c.Sync > SyncNoneUnsafeForTests:
		return fmt.Errorf("%w: unknown sync method %d", ErrConfig, int(c.Sync))
	case c.MaxFileBytes < fileHeaderLen+batchHeaderLen:
		return fmt.Errorf("%w: MaxFileBytes %d is below the minimum %d", ErrConfig, c.MaxFileBytes, fileHeaderLen+batchHeaderLen)
	case c.MaxClosedFiles < 1:
		return fmt.Errorf("%w: MaxClosedFiles %d must be positive", ErrConfig, c.MaxClosedFiles)
	case c.MaxBatchBytes < 1 || c.MaxBatchEntries < 1:
		return fmt.Errorf("%w: MaxBatchBytes %d and MaxBatchEntries %d must be positive", ErrConfig, c.MaxBatchBytes, c.MaxBatchEntries)
	case c.MaxPayloadBytes < 0 || int64(c.MaxPayloadBytes) > 1<<31:
		return fmt.Errorf("%w: MaxPayloadBytes %d must be within 0..2^31", ErrConfig, c.MaxPayloadBytes)
	case c.MaxInFlightEntries < 1 || c.MaxInFlightBytes < 1:
		return fmt.Errorf("%w: MaxInFlightEntries %d and MaxInFlightBytes %d must be positive", ErrConfig, c.MaxInFlightEntries, c.MaxInFlightBytes)
	}
	return nil
}
