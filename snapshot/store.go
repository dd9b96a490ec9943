package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Options configures a Store. The zero value of every field means its
// default.
type Options struct {
	// FS is the file system; nil means OSFS.
	FS FS
	// Logger receives the store's logs (corrupt snapshots skipped, failed
	// clean-ups); nil discards them.
	Logger *slog.Logger
	// BlockBytes is the data per block in files this store writes, in
	// [1, MaxBlockBytes]. A reader holds one block in memory. Default
	// DefaultBlockBytes.
	BlockBytes int
	// Keep is how many durable snapshots of a UID are kept: 1 (default) or
	// more. Older ones are removed as soon as a newer one is durable. Keep
	// more than one only if the server also keeps its log from the oldest
	// kept snapshot's index on; otherwise an older snapshot cannot be
	// combined with the log and only costs disk (see docs/snapshots.md).
	Keep int
}

// Info identifies one durable snapshot of one server.
type Info struct {
	UID   string // the server's UID
	Index uint64 // last log index the snapshot covers
	Term  uint64 // term of that entry
	// ID is the random identity the writer put in the file's header: two
	// files with the same index and term but different bytes have
	// different IDs. 0 means unknown (List does not read headers).
	ID uint64
	// Size is the whole file in bytes, DataSize the machine's data in it
	// (0 when unknown, as from List).
	Size     int64
	DataSize int64
}

// String formats the snapshot as uid/index-term.
func (i Info) String() string { return fmt.Sprintf("%s/%d-%d", i.UID, i.Index, i.Term) }

// Store keeps the snapshot files of every server of a node, one directory
// per UID under its root. All methods are safe for concurrent use; work on
// one UID is serialised by a per-UID lock (verification in Latest holds it
// while it reads), different UIDs proceed in parallel.
//
// Layout: <root>/<uid>/ holds
//
//	%016x-%016x.snap           durable snapshots (index-term, hex)
//	%016x-%016x.%016x.tmp      a snapshot being written (random suffix)
//	%016x-%016x-%016x.part     a snapshot being received (index-term-id)
//	%016x-%016x.snap.corrupt   a snapshot that failed verification
//
// Only .snap files are ever read as snapshots. A .tmp becomes a .snap by
// one rename after it was fully written and fsynced, followed by an fsync
// of the directory; Open removes the .tmp files a crash left behind.
type Store struct {
	dir        string
	fs         FS
	logger     *slog.Logger
	blockBytes int
	keep       int

	mu   sync.Mutex
	uids map[string]*uidState // entries are never removed, so generations stay monotonic

	stats statsCounters
}

// uidState is the store's knowledge of one UID, guarded by mu.
type uidState struct {
	mu sync.Mutex
	// gen is bumped by Delete; writes and receptions begun under an older
	// generation fail with ErrDeleted instead of resurrecting the UID.
	gen      uint64
	dirReady bool // the UID directory exists and its entry was synced
	scanned  bool // newest* reflect the directory
	// newest is the index and term of the newest .snap file (by index),
	// valid when scanned; has is false when there is none.
	newestIndex, newestTerm uint64
	has                     bool
}

// Open opens (creating if needed) the store rooted at dir and removes the
// temporary files a crash left behind. Partly received snapshots (.part)
// newer than the UID's newest snapshot are kept so a transfer can resume;
// they are verified before reuse.
func Open(dir string, opts Options) (*Store, error) {
	if opts.FS == nil {
		opts.FS = OSFS{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BlockBytes == 0 {
		opts.BlockBytes = DefaultBlockBytes
	}
	if opts.Keep == 0 {
		opts.Keep = 1
	}
	if opts.BlockBytes < 1 || opts.BlockBytes > MaxBlockBytes {
		return nil, fmt.Errorf("%w: BlockBytes %d outside [1, %d]", ErrInvalid, opts.BlockBytes, MaxBlockBytes)
	}
	if opts.Keep < 1 {
		return nil, fmt.Errorf("%w: Keep %d must be at least 1", ErrInvalid, opts.Keep)
	}
	s := &Store{
		dir:        dir,
		fs:         opts.FS,
		logger:     opts.Logger,
		blockBytes: opts.BlockBytes,
		keep:       opts.Keep,
		uids:       make(map[string]*uidState),
	}
	if err := s.fs.MkdirAll(dir); err != nil {
		return nil, ioErr("create "+dir, err)
	}
	ents, err := s.fs.ReadDir(dir)
	if err != nil {
		return nil, ioErr("list "+dir, err)
	}
	for _, e := range ents {
		if !e.IsDir() || validUID(e.Name()) != nil {
			continue
		}
		if err := s.cleanDir(filepath.Join(dir, e.Name())); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// cleanDir removes what a crash or an abandoned transfer left in one UID
// directory: every .tmp file, and .part files at or below the newest
// durable snapshot (they can never be installed).
func (s *Store) cleanDir(udir string) error {
	ents, err := s.fs.ReadDir(udir)
	if err != nil {
		return ioErr("list "+udir, err)
	}
	var newest uint64
	for _, e := range ents {
		if k, p := parseName(e.Name()); k == nameSnap {
			newest = max(newest, p.index)
		}
	}
	removed := 0
	for _, e := range ents {
		kind, p := parseName(e.Name())
		if kind != nameTemp && !(kind == namePart && p.index <= newest) {
			continue
		}
		path := filepath.Join(udir, e.Name())
		if err := s.fs.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return ioErr("remove leftover "+path, err)
		}
		s.logger.Info("snapshot: removed a leftover file", "file", path)
		removed++
	}
	if removed > 0 {
		if err := s.fs.SyncDir(udir); err != nil {
			return ioErr("sync "+udir, err)
		}
	}
	return nil
}

// Dir returns the store's root directory.
func (s *Store) Dir() string { return s.dir }

// validUID accepts non-empty names of at most 255 bytes in the base64url
// alphabet, which are safe as directory names.
func validUID(uid string) error {
	if uid == "" || len(uid) > 255 {
		return fmt.Errorf("%w: uid %q must be 1-255 bytes", ErrInvalid, uid)
	}
	for i := 0; i < len(uid); i++ {
		c := uid[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: uid %q has %q outside the base64url alphabet", ErrInvalid, uid, c)
		}
	}
	return nil
}

func (s *Store) state(uid string) *uidState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.uids[uid]
	if !ok {
		st = &uidState{}
		s.uids[uid] = st
	}
	return st
}

func (s *Store) uidDir(uid string) string { return filepath.Join(s.dir, uid) }

// File names. Hex fields are zero-padded to 16 digits so names sort by
// index.
type nameKind uint8

const (
	nameOther nameKind = iota
	nameSnap
	nameTemp
	namePart
	nameCorrupt
)

type parsedName struct {
	index, term, id uint64
}

func snapName(index, term uint64) string { return fmt.Sprintf("%016x-%016x.snap", index, term) }

func tempName(index, term uint64) string {
	return fmt.Sprintf("%016x-%016x.%016x.tmp", index, term, rand.Uint64())
}

func partName(index, term, id uint64) string {
	return fmt.Sprintf("%016x-%016x-%016x.part", index, term, id)
}

func parseHex16(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

// parseName classifies a file name of a UID directory.
func parseName(name string) (nameKind, parsedName) {
	var p parsedName
	var ok1, ok2, ok3 bool
	switch {
	case strings.HasSuffix(name, ".snap.corrupt") && len(name) == 33+13:
		p.index, ok1 = parseHex16(name[:16])
		p.term, ok2 = parseHex16(name[17:33])
		if ok1 && ok2 && name[16] == '-' {
			return nameCorrupt, p
		}
	case strings.HasSuffix(name, ".snap") && len(name) == 33+5:
		p.index, ok1 = parseHex16(name[:16])
		p.term, ok2 = parseHex16(name[17:33])
		if ok1 && ok2 && name[16] == '-' && p.index > 0 {
			return nameSnap, p
		}
	case strings.HasSuffix(name, ".tmp") && len(name) == 50+4:
		p.index, ok1 = parseHex16(name[:16])
		p.term, ok2 = parseHex16(name[17:33])
		_, ok3 = parseHex16(name[34:50])
		if ok1 && ok2 && ok3 && name[16] == '-' && name[33] == '.' {
			return nameTemp, p
		}
	case strings.HasSuffix(name, ".part") && len(name) == 50+5:
		p.index, ok1 = parseHex16(name[:16])
		p.term, ok2 = parseHex16(name[17:33])
		p.id, ok3 = parseHex16(name[34:50])
		if ok1 && ok2 && ok3 && name[16] == '-' && name[33] == '-' {
			return namePart, p
		}
	}
	return nameOther, parsedName{}
}

// listLocked returns the UID's file names of one kind, parsed, newest
// (highest index) first. A missing directory is an empty list.
func (s *Store) listLocked(uid string, kind nameKind) ([]string, []parsedName, error) {
	ents, err := s.fs.ReadDir(s.uidDir(uid))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, ioErr("list "+s.uidDir(uid), err)
	}
	var names []string
	var parsed []parsedName
	for i := len(ents) - 1; i >= 0; i-- { // ReadDir sorts by name, so by index
		k, p := parseName(ents[i].Name())
		if k == kind {
			names = append(names, ents[i].Name())
			parsed = append(parsed, p)
		}
	}
	return names, parsed, nil
}

// newestLocked fills st's view of the newest .snap file.
func (s *Store) newestLocked(uid string, st *uidState) error {
	if st.scanned {
		return nil
	}
	_, parsed, err := s.listLocked(uid, nameSnap)
	if err != nil {
		return err
	}
	st.has = len(parsed) > 0
	if st.has {
		st.newestIndex, st.newestTerm = parsed[0].index, parsed[0].term
	}
	st.scanned = true
	return nil
}

// ensureDirLocked creates the UID directory and makes its entry durable.
func (s *Store) ensureDirLocked(uid string, st *uidState) error {
	if st.dirReady {
		return nil
	}
	if err := s.fs.MkdirAll(s.uidDir(uid)); err != nil {
		return ioErr("create "+s.uidDir(uid), err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return ioErr("sync "+s.dir, err)
	}
	st.dirReady = true
	return nil
}

// Latest returns the newest snapshot of uid that verifies completely
// (every checksum, the structure and the header's index and term against
// the file name). Newer snapshots that fail verification are skipped:
// each is logged at error level, renamed to a .corrupt file so it is
// never considered again (and removed with the next durable snapshot),
// and returned in corrupt, newest first. The error is ErrNotFound
// (wrapped) when no snapshot verifies, corrupt may then be non-empty; any
// other error is the file system's (ErrIO), and nothing was skipped for
// it.
//
// Latest reads every byte of the file it returns, and of each corrupt one
// up to the damage. Call it when a server starts, before it accepts a
// transfer (a corrupt newest file would otherwise make a transfer of the
// same index look stale).
func (s *Store) Latest(uid string) (info Info, corrupt []*CorruptError, err error) {
	if err := validUID(uid); err != nil {
		return Info{}, nil, err
	}
	st := s.state(uid)
	st.mu.Lock()
	defer st.mu.Unlock()
	names, parsed, err := s.listLocked(uid, nameSnap)
	if err != nil {
		return Info{}, nil, err
	}
	for i, name := range names {
		path := filepath.Join(s.uidDir(uid), name)
		info, err := s.verifyFile(path, &header{index: parsed[i].index, term: parsed[i].term})
		if err == nil {
			info.UID = uid
			return info, corrupt, nil
		}
		var ce *CorruptError
		if !errors.As(err, &ce) {
			return Info{}, corrupt, err
		}
		s.logger.Error("snapshot: skipping a corrupt snapshot", "uid", uid, "file", ce.File, "offset", ce.Offset, "reason", ce.Reason)
		corrupt = append(corrupt, ce)
		if err := s.fs.Rename(path, path+".corrupt"); err != nil {
			s.logger.Error("snapshot: could not set a corrupt snapshot aside", "file", path, "err", err)
		}
		st.scanned = false
	}
	return Info{}, corrupt, fmt.Errorf("%w: no valid snapshot of %s", ErrNotFound, uid)
}

// SetAside returns the snapshots of uid that Latest set aside as corrupt
// and that are still on disk (the next durable snapshot removes them),
// newest first, with Index and Term from their names. A server uses them
// to know how far its state reached before the damage.
func (s *Store) SetAside(uid string) ([]Info, error) {
	if err := validUID(uid); err != nil {
		return nil, err
	}
	st := s.state(uid)
	st.mu.Lock()
	defer st.mu.Unlock()
	_, parsed, err := s.listLocked(uid, nameCorrupt)
	if err != nil {
		return nil, err
	}
	out := make([]Info, len(parsed))
	for i, p := range parsed {
		out[i] = Info{UID: uid, Index: p.index, Term: p.term}
	}
	return out, nil
}

// List returns the durable snapshots of uid, newest first, without
// verifying them: Index, Term and Size are filled, ID and DataSize are 0.
// An unknown UID has none.
func (s *Store) List(uid string) ([]Info, error) {
	if err := validUID(uid); err != nil {
		return nil, err
	}
	st := s.state(uid)
	st.mu.Lock()
	defer st.mu.Unlock()
	names, parsed, err := s.listLocked(uid, nameSnap)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(names))
	for i, name := range names {
		size, err := s.fileSize(filepath.Join(s.uidDir(uid), name))
		if err != nil {
			return nil, err
		}
		out = append(out, Info{UID: uid, Index: parsed[i].index, Term: parsed[i].term, Size: size})
	}
	return out, nil
}

func (s *Store) fileSize(path string) (int64, error) {
	f, err := s.fs.OpenFile(path, os.O_RDONLY)
	if err != nil {
		return 0, openErr(path, err)
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, ioErr("size of "+path, err)
	}
	return n, nil
}

func openErr(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	return ioErr("open "+path, err)
}

// Verify reads the whole snapshot info names and checks it: every
// checksum, the structure, and the header against info (index, term, and
// ID when non-zero). It returns nil, a *CorruptError, ErrNotFound or ErrIO.
// It does not quarantine a corrupt file (Latest does).
func (s *Store) Verify(info Info) error {
	if err := validUID(info.UID); err != nil {
		return err
	}
	_, err := s.verifyFile(s.snapPath(info), &header{index: info.Index, term: info.Term, id: info.ID})
	return err
}

func (s *Store) snapPath(info Info) string {
	return filepath.Join(s.uidDir(info.UID), snapName(info.Index, info.Term))
}

// verifyFile streams a whole file through a verifier.
func (s *Store) verifyFile(path string, expect *header) (Info, error) {
	f, err := s.fs.OpenFile(path, os.O_RDONLY)
	if err != nil {
		return Info{}, openErr(path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return Info{}, ioErr("seek "+path, err)
	}
	v := newVerifier(path, expect)
	// Small snapshots (most of a node's many servers) get a small buffer.
	buf := make([]byte, min(1<<20, max(size, 1)))
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			if err := v.write(buf[:n]); err != nil {
				return Info{}, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return Info{}, ioErr("read "+path, rerr)
		}
	}
	if err := v.finish(); err != nil {
		return Info{}, err
	}
	return Info{Index: v.hdr.index, Term: v.hdr.term, ID: v.hdr.id, Size: v.off, DataSize: v.data}, nil
}

// Delete removes every file of uid: durable snapshots, ones being written
// or received. Writes and receptions of uid in progress fail with
// ErrDeleted when they try to complete, and leave nothing behind. The
// UID's data is gone once Delete returns nil.
func (s *Store) Delete(uid string) error {
	if err := validUID(uid); err != nil {
		return err
	}
	st := s.state(uid)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.gen++
	st.dirReady, st.scanned, st.has = false, false, false
	if err := s.fs.RemoveAll(s.uidDir(uid)); err != nil {
		return ioErr("remove "+s.uidDir(uid), err)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return ioErr("sync "+s.dir, err)
	}
	return nil
}

// staleLocked returns ErrStale if a snapshot at index or above is durable.
func (s *Store) staleLocked(uid string, st *uidState, index uint64) error {
	if err := s.newestLocked(uid, st); err != nil {
		return err
	}
	if st.has && st.newestIndex >= index {
		return fmt.Errorf("%w: %s already has a snapshot at index %d (term %d), not taking %d",
			ErrStale, uid, st.newestIndex, st.newestTerm, index)
	}
	return nil
}

// install makes the fully written and fsynced file src the durable
// snapshot info: rename to its final name, fsync the directory, then
// remove what the new snapshot makes useless. On failure src is removed.
func (s *Store) install(src string, gen uint64, info Info) error {
	st := s.state(info.UID)
	st.mu.Lock()
	defer st.mu.Unlock()
	fail := func(err error) error {
		if rerr := s.fs.Remove(src); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			s.logger.Error("snapshot: could not remove a discarded file", "file", src, "err", rerr)
		}
		return err
	}
	if st.gen != gen {
		return fail(fmt.Errorf("%w: %s while writing snapshot %d", ErrDeleted, info.UID, info.Index))
	}
	if err := s.staleLocked(info.UID, st, info.Index); err != nil {
		return fail(err)
	}
	dst := s.snapPath(info)
	if err := s.fs.Rename(src, dst); err != nil {
		return fail(ioErr("rename to "+dst, err))
	}
	if err := s.fs.SyncDir(s.uidDir(info.UID)); err != nil {
		// The rename may or may not survive a crash: the file is complete
		// either way, but a failed sync means the disk is in trouble, so
		// do not report success.
		st.scanned = false
		return fail(ioErr("sync "+s.uidDir(info.UID), err))
	}
	st.scanned, st.has = true, true
	st.newestIndex, st.newestTerm = info.Index, info.Term
	s.pruneLocked(info)
	return nil
}

// pruneLocked removes, after info became durable: .snap files beyond the
// Keep newest, .corrupt files, and .part files at or below info's index.
// Failures are logged; the next prune retries.
func (s *Store) pruneLocked(info Info) {
	udir := s.uidDir(info.UID)
	ents, err := s.fs.ReadDir(udir)
	if err != nil {
		s.logger.Error("snapshot: list for pruning", "dir", udir, "err", err)
		return
	}
	var snaps []string
	var doomed []string
	for _, e := range ents {
		k, p := parseName(e.Name())
		switch {
		case k == nameSnap:
			snaps = append(snaps, e.Name())
		case k == nameCorrupt:
			doomed = append(doomed, e.Name())
		case k == namePart && p.index <= info.Index:
			doomed = append(doomed, e.Name())
		}
	}
	slices.Reverse(snaps) // newest first
	if len(snaps) > s.keep {
		doomed = append(doomed, snaps[s.keep:]...)
	}
	for _, name := range doomed {
		if err := s.fs.Remove(filepath.Join(udir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.logger.Error("snapshot: remove an old file", "file", filepath.Join(udir, name), "err", err)
		}
	}
	if len(doomed) > 0 {
		if err := s.fs.SyncDir(udir); err != nil {
			s.logger.Error("snapshot: sync after pruning", "dir", udir, "err", err)
		}
	}
}
