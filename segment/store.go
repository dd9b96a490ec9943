package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/internal/pebblelog"
	"github.com/rago-raft/rago/internal/pebblesched"
	"github.com/rago-raft/rago/wal"
)

// Sentinel errors; match with errors.Is.
var (
	// ErrNotFound: the index is not in the segments (never written, or
	// truncated, or overwritten away).
	ErrNotFound = errors.New("segment: entry not found")
	// ErrCorrupt: the store holds a key or value it cannot decode.
	ErrCorrupt = errors.New("segment: corrupt data")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("segment: closed")
	// ErrFormat: the store was written by a newer version of rago, in a
	// format this one cannot read.
	ErrFormat = errors.New("segment: unknown store format")
)

// Options configures a Store.
type Options struct {
	// FS is pebble's file system; nil means the operating system's. Tests
	// use vfs.NewMem().
	FS vfs.FS
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// LinkMinBytes is the smallest run of one server's entries that a
	// flush keeps by hard-linking its WAL file instead of copying the
	// entries, when the run also holds nine tenths of the file's payload
	// bytes (see linked.go). 0 means 1 MiB; a negative value never links.
	LinkMinBytes int64
}

// Store is the durable per-server log storage of a node: one pebble
// database holding the entries of every server, keyed by UID and index
// (see keys.go for the format).
//
// The database runs with pebble's own WAL disabled. The rago WAL already
// holds every entry durably until the segment writer has flushed it, so a
// second log inside pebble would only write each entry twice more. Each
// flush of a closed WAL file writes its entries into synced sstables that
// pebble ingests (see FlushFile), and its deletions as an unsynced batch
// made durable by a pebble Flush; only then is the WAL file deleted. A
// crash before that loses at most what WAL files still hold, and they are
// replayed at start. Replaying a file is idempotent (see FlushFile), so
// duplicates are harmless.
//
// Because DisableWAL is database-wide, nothing that needs a synced write
// of its own (terms, votes) can live here: that is the meta store's job.
//
// Reads are safe from any goroutine and take no lock. Writes (flushes,
// truncation, deletion) are serialized by mu so that a flush never
// interleaves with a truncation or deletion of the same UID.
type Store struct {
	db           *pebble.DB
	fs           vfs.FS // the very FS pebble uses, so that ingests link files, not copy them
	dir          string
	tableOptions sstable.WriterOptions // for the sstables a flush ingests
	logger       *slog.Logger
	stats        statsCounters
	links        linkTable                              // live linked WAL files
	reclaim      atomic.Pointer[func(path string) bool] // SetReclaim
	trunc        truncator                              // TruncateLater

	mu           sync.Mutex // serializes writes and guards the fields below
	closed       bool
	unsynced     bool   // the memtable holds writes no pebble Flush made durable yet
	ingestSeq    uint64 // names the sstables of ingests
	nextLink     uint64 // the id of the next linked WAL file
	format       uint64 // the newest format feature the store holds
	linkMinBytes int64  // see Options; -1 once the file system refused a link
}

// Open opens (or creates) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	popts := &pebble.Options{
		DisableWAL: true,
		FS:         opts.FS,
		Logger:     pebblelog.Logger{L: logger},
	}
	// Compactions are granted on events, not on a 100 ms clock: an idle
	// node must not wake up for nothing.
	popts.Experimental.CompactionScheduler = pebblesched.New()
	// Fill in pebble's defaults here rather than in Open, so that the FS
	// (wrapped with disk-health checks when none is given) is the same
	// value pebble keeps: ingesting from it links instead of copying.
	popts.EnsureDefaults()
	if err := popts.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("segment: open %s: %w", dir, err)
	}
	if err := removeIngestLeftovers(popts.FS, dir); err != nil {
		return nil, fmt.Errorf("segment: open %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("segment: open %s: %w", dir, err)
	}
	tableOptions := popts.MakeWriterOptions(len(popts.Levels)-1, db.TableFormat())
	// Logs are read in runs of consecutive entries, so larger blocks cost
	// readers little and cut a flush's writes (one per block) by 8.
	tableOptions.BlockSize = ingestBlockBytes
	s := &Store{
		db:           db,
		fs:           popts.FS,
		dir:          dir,
		tableOptions: tableOptions,
		logger:       logger,
		linkMinBytes: opts.LinkMinBytes,
		nextLink:     1,
	}
	s.trunc.init()
	if s.linkMinBytes == 0 {
		s.linkMinBytes = defaultLinkMinBytes
	}
	if s.format, err = s.readUvarint(formatKey); err == nil && s.format > formatLinked {
		err = fmt.Errorf("%w: format %d, this version reads up to %d", ErrFormat, s.format, formatLinked)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("segment: open %s: %w", dir, err)
	}
	if err := s.openLinked(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("segment: open %s: linked WAL files: %w", dir, err)
	}
	return s, nil
}

// removeIngestLeftovers removes sstables a flush wrote but a crash kept it
// from ingesting; their WAL file is still there and will be flushed again.
func removeIngestLeftovers(fs vfs.FS, dir string) error {
	names, err := fs.List(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		if strings.HasPrefix(name, ingestPrefix) {
			if err := fs.Remove(fs.PathJoin(dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close carries out the truncations queued by TruncateLater, flushes what
// is not yet durable and closes the database.
func (s *Store) Close() error {
	s.trunc.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.links.closeAll()
	ferr := s.db.Flush()
	cerr := s.db.Close()
	if err := errors.Join(ferr, cerr); err != nil {
		return fmt.Errorf("segment: close: %w", err)
	}
	return nil
}

// Sync makes every earlier write (truncations included) durable.
func (s *Store) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.db.Flush(); err != nil {
		return fmt.Errorf("segment: flush: %w", err)
	}
	s.unsynced = false
	return nil
}

// Entry returns uid's entry at index, or ErrNotFound.
func (s *Store) Entry(uid string, index uint64) (wal.Entry, error) {
	v, closer, err := s.db.Get(entryKey(uid, index))
	if errors.Is(err, pebble.ErrNotFound) {
		return wal.Entry{}, fmt.Errorf("%w: %s index %d", ErrNotFound, uid, index)
	}
	if err != nil {
		return wal.Entry{}, fmt.Errorf("segment: get %s index %d: %w", uid, index, err)
	}
	defer closer.Close()
	term, payload, err := s.value(uid, index, v)
	if err != nil {
		return wal.Entry{}, err
	}
	return wal.Entry{Index: index, Term: term, Payload: payload}, nil
}

// Range returns uid's entries from lo up to hi inclusive, stopping early
// at the first missing index or once maxBytes of payload were collected
// (at least one entry is returned if lo exists; maxBytes <= 0 means no
// limit). The result is in index order and contiguous from lo.
func (s *Store) Range(uid string, lo, hi uint64, maxBytes int) ([]wal.Entry, error) {
	if hi < lo {
		return nil, nil
	}
	lower := entryKey(uid, lo)
	var upper []byte
	if hi == ^uint64(0) {
		_, upper = entryBounds(uid)
	} else {
		upper = entryKey(uid, hi+1)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("segment: range %s: %w", uid, err)
	}
	defer it.Close()
	var out []wal.Entry
	size := 0
	next := lo
	for ok := it.First(); ok; ok = it.Next() {
		idx, err := indexOf(uid, it.Key())
		if err != nil {
			return nil, err
		}
		if idx != next {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("segment: range %s: %w", uid, err)
		}
		term, payload, err := s.value(uid, idx, v)
		if errors.Is(err, ErrNotFound) {
			break // its linked file was collected: truncated meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, wal.Entry{Index: idx, Term: term, Payload: payload})
		size += len(payload)
		next++
		if maxBytes > 0 && size >= maxBytes {
			break
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("segment: range %s: %w", uid, err)
	}
	return out, nil
}

// value decodes the value v of uid's entry at index, inline or a
// reference into a linked WAL file.
func (s *Store) value(uid string, index uint64, v []byte) (term uint64, payload []byte, err error) {
	if isRef(v) {
		return s.readRef(uid, index, v)
	}
	return decodeValue(v)
}

// Bounds returns the first and last index uid has in the segments; ok is
// false if it has none.
func (s *Store) Bounds(uid string) (first, last uint64, ok bool, err error) {
	lower, upper := entryBounds(uid)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, 0, false, fmt.Errorf("segment: bounds %s: %w", uid, err)
	}
	defer it.Close()
	if !it.First() {
		return 0, 0, false, it.Error()
	}
	if first, err = indexOf(uid, it.Key()); err != nil {
		return 0, 0, false, err
	}
	if !it.Last() {
		return 0, 0, false, fmt.Errorf("segment: bounds %s: iterator lost its last key: %w", uid, it.Error())
	}
	if last, err = indexOf(uid, it.Key()); err != nil {
		return 0, 0, false, err
	}
	return first, last, true, nil
}

// Floor returns the index up to which uid was truncated (0 if never).
func (s *Store) Floor(uid string) (uint64, error) {
	return s.readUvarint(floorKey(uid))
}

// Truncate drops uid's entries up to and including index, for a snapshot
// that covers them, and remembers the floor so that replayed WAL records
// at or below it are not written again. Readers stop seeing the entries at
// once; the truncation is durable after the next flush of a WAL file or
// Sync. Losing it in a crash only brings back entries the snapshot covers.
func (s *Store) Truncate(uid string, index uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	floor, err := s.readUvarint(floorKey(uid))
	if err != nil {
		return err
	}
	if index <= floor {
		return nil
	}
	if deleted, err := s.Deleted(uid); err != nil || deleted {
		return err // a truncation queued before the UID was deleted
	}
	b := s.db.NewBatch()
	defer b.Close()
	lower, _ := entryBounds(uid)
	if err := b.DeleteRange(lower, entryKey(uid, index+1), nil); err != nil {
		return fmt.Errorf("segment: truncate %s: %w", uid, err)
	}
	if err := b.Set(floorKey(uid), binary.AppendUvarint(nil, index), nil); err != nil {
		return fmt.Errorf("segment: truncate %s: %w", uid, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("segment: truncate %s: %w", uid, err)
	}
	s.unsynced = true
	s.collectLinkedOrLog(uid, 0, index)
	return nil
}

// collectLinkedOrLog collects after a deletion that has succeeded: a file
// that fails to go is only wasted space, collected at the next Open.
func (s *Store) collectLinkedOrLog(uid string, from, to uint64) {
	if err := s.collectLinked(uid, from, to); err != nil {
		s.logger.Warn("segment: collecting linked WAL files failed", "uid", uid, "err", err)
	}
}

// DeleteUID removes everything stored for uid and leaves a tombstone so
// that WAL records of uid still waiting in WAL files are discarded when
// flushed. It is durable when it returns. Call it after the WAL forgot
// uid (wal.WAL.Forget) and the server stopped.
func (s *Store) DeleteUID(uid string) error {
	s.trunc.take(uid) // a queued truncation has nothing left to do
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	b := s.db.NewBatch()
	defer b.Close()
	lower, upper := entryBounds(uid)
	err := errors.Join(
		b.DeleteRange(lower, upper, nil),
		b.Delete(floorKey(uid), nil),
		b.Set(tombstoneKey(uid), nil, nil),
	)
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	if err == nil {
		err = s.db.Flush()
	}
	if err != nil {
		return fmt.Errorf("segment: delete %s: %w", uid, err)
	}
	s.unsynced = false
	s.collectLinkedOrLog(uid, 0, ^uint64(0))
	return nil
}

// Deleted reports whether uid has a tombstone.
func (s *Store) Deleted(uid string) (bool, error) {
	_, closer, err := s.db.Get(tombstoneKey(uid))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("segment: tombstone %s: %w", uid, err)
	}
	closer.Close()
	return true, nil
}

func (s *Store) readUvarint(key []byte) (uint64, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("segment: get %x: %w", key, err)
	}
	defer closer.Close()
	x, n := binary.Uvarint(v)
	if n <= 0 || n != len(v) {
		return 0, fmt.Errorf("%w: bad uvarint under key %x", ErrCorrupt, key)
	}
	return x, nil
}
