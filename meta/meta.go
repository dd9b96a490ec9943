// Package meta is a node's small durable metadata store: per Raft server
// the current term, the vote and the last applied index, and the directory
// of servers that live on the node, so a restarted node can start them all
// again.
//
// It is a pebble database of its own with pebble's WAL on. Terms and votes
// are written with a synced commit before the call returns: a server must
// never grant a vote (or act on a term) that a crash could make it forget.
// The segment store cannot hold them, because it runs with pebble's WAL
// disabled database-wide.
//
// Keys (the on-disk format; never change them): UIDs are base64url, so a
// one-byte kind prefix is enough to keep the kinds apart.
//
//	's' | uid  ->  u8 version (1) | uvarint term | string voted.Name | string voted.Node
//	'a' | uid  ->  uvarint last applied index
//	'l' | uid  ->  uvarint index | uvarint term   (the last entry of a log the
//	               server lost; see SetLost)
//	'd' | uid  ->  u8 version (2) | string server name | string cluster name |
//	               bytes machine config | members | initial members
//	               (members: uvarint n | n x (string name | string node);
//	               version 1 records end after the members)
//
// (string and bytes are a uvarint length followed by the bytes; see
// internal/wire.)
package meta

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/internal/pebblelog"
	"github.com/rago-raft/rago/internal/pebblesched"
	"github.com/rago-raft/rago/internal/wire"
)

// Sentinel errors; match with errors.Is.
var (
	// ErrCorrupt: a stored value does not decode.
	ErrCorrupt = errors.New("meta: corrupt value")
	// ErrInvalid: an argument breaks a precondition (empty UID).
	ErrInvalid = errors.New("meta: invalid argument")
)

const (
	kindState     byte = 's'
	kindApplied   byte = 'a'
	kindLost      byte = 'l'
	kindDirectory byte = 'd'
	valueVersion  byte = 1
)

// ServerID names a Raft server: its registered name and its node.
type ServerID struct {
	Name string
	Node string
}

// Options configures a Store.
type Options struct {
	// FS is pebble's file system; nil means the operating system's.
	FS vfs.FS
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Store is the meta store. Its methods are safe for concurrent use.
type Store struct {
	db *pebble.DB
}

// Open opens (or creates) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	popts := &pebble.Options{FS: opts.FS, Logger: pebblelog.Logger{L: logger}}
	// Compactions are granted on events, not on a 100 ms clock: an idle
	// node must not wake up for nothing.
	popts.Experimental.CompactionScheduler = pebblesched.New()
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("meta: open %s: %w", dir, err)
	}
	return &Store{db: db}, nil
}

// Close syncs and closes the store.
func (s *Store) Close() error {
	ferr := s.db.Flush() // makes unsynced SetLastApplied durable
	cerr := s.db.Close()
	if err := errors.Join(ferr, cerr); err != nil {
		return fmt.Errorf("meta: close: %w", err)
	}
	return nil
}

func key(kind byte, uid string) []byte { return append([]byte{kind}, uid...) }

func checkUID(uid string) error {
	if uid == "" {
		return fmt.Errorf("%w: empty uid", ErrInvalid)
	}
	return nil
}

// Get returns uid's current term, vote and last applied index; all zero if
// nothing was stored.
func (s *Store) Get(uid string) (term uint64, votedFor ServerID, lastApplied uint64, err error) {
	if err := checkUID(uid); err != nil {
		return 0, ServerID{}, 0, err
	}
	if v, ok, err := s.get(key(kindState, uid)); err != nil {
		return 0, ServerID{}, 0, err
	} else if ok {
		if term, votedFor, err = decodeState(v); err != nil {
			return 0, ServerID{}, 0, fmt.Errorf("%w: state of %s: %w", ErrCorrupt, uid, err)
		}
	}
	if v, ok, err := s.get(key(kindApplied, uid)); err != nil {
		return 0, ServerID{}, 0, err
	} else if ok {
		r := wire.NewReader(v)
		lastApplied = r.Uvarint()
		if err := r.Done(); err != nil {
			return 0, ServerID{}, 0, fmt.Errorf("%w: last applied of %s: %w", ErrCorrupt, uid, err)
		}
	}
	return term, votedFor, lastApplied, nil
}

// Put stores uid's term and vote (zero ServerID: no vote) with a synced
// commit. When it returns nil they survive any crash; only then may the
// server grant the vote or act on the term. On error, nothing is known
// about durability: the server must not act on the new state.
func (s *Store) Put(uid string, term uint64, votedFor ServerID) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	if err := s.db.Set(key(kindState, uid), encodeState(term, votedFor), pebble.Sync); err != nil {
		return fmt.Errorf("meta: put state of %s: %w", uid, err)
	}
	return nil
}

// SetLastApplied records uid's last applied index without syncing: it is
// cheap enough to call periodically. After a crash the stored value may be
// an older one (never a newer one), which only means re-applying a few
// entries from the log or snapshot. Any later synced write (Put, a
// directory change, Close) makes it durable too.
func (s *Store) SetLastApplied(uid string, index uint64) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	if err := s.db.Set(key(kindApplied, uid), wire.AppendUvarint(nil, index), pebble.NoSync); err != nil {
		return fmt.Errorf("meta: set last applied of %s: %w", uid, err)
	}
	return nil
}

// SetLost records, with a synced commit, the last entry (index and term)
// of a log that uid lost: its newest snapshot failed verification and the
// log that continued it had to go. The server keeps refusing to stand for
// election until it has the entries back (see raftserver/core's
// Config.RecoverTo), across restarts. A later call keeps the higher index.
func (s *Store) SetLost(uid string, index, term uint64) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	if old, _, err := s.Lost(uid); err != nil {
		return err
	} else if old >= index {
		return nil
	}
	v := wire.AppendUvarint(wire.AppendUvarint(nil, index), term)
	if err := s.db.Set(key(kindLost, uid), v, pebble.Sync); err != nil {
		return fmt.Errorf("meta: set lost log of %s: %w", uid, err)
	}
	return nil
}

// Lost returns what SetLost recorded for uid (zeros if nothing).
func (s *Store) Lost(uid string) (index, term uint64, err error) {
	if err := checkUID(uid); err != nil {
		return 0, 0, err
	}
	v, ok, err := s.get(key(kindLost, uid))
	if err != nil || !ok {
		return 0, 0, err
	}
	r := wire.NewReader(v)
	index, term = r.Uvarint(), r.Uvarint()
	if err := r.Done(); err != nil {
		return 0, 0, fmt.Errorf("%w: lost log of %s: %w", ErrCorrupt, uid, err)
	}
	return index, term, nil
}

// ClearLost forgets the lost log of uid once it recovered. It does not sync:
// losing the deletion in a crash only makes the server recover again.
func (s *Store) ClearLost(uid string) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	if err := s.db.Delete(key(kindLost, uid), pebble.NoSync); err != nil {
		return fmt.Errorf("meta: clear lost log of %s: %w", uid, err)
	}
	return nil
}

// Delete removes uid's term, vote, last applied index and lost log (synced).
func (s *Store) Delete(uid string) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	err := errors.Join(b.Delete(key(kindState, uid), nil), b.Delete(key(kindApplied, uid), nil),
		b.Delete(key(kindLost, uid), nil))
	if err == nil {
		err = b.Commit(pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("meta: delete %s: %w", uid, err)
	}
	return nil
}

func (s *Store) get(k []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("meta: get %q: %w", k, err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true, nil
}

func encodeState(term uint64, voted ServerID) []byte {
	b := []byte{valueVersion}
	b = wire.AppendUvarint(b, term)
	b = wire.AppendString(b, voted.Name)
	return wire.AppendString(b, voted.Node)
}

func decodeState(v []byte) (term uint64, voted ServerID, err error) {
	r := wire.NewReader(v)
	if ver := r.Uint8(); ver != valueVersion && r.Err() == nil {
		r.Fail("unknown version %d", ver)
	}
	term = r.Uvarint()
	voted.Name = r.String()
	voted.Node = r.String()
	return term, voted, r.Done()
}
