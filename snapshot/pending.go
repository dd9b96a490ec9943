package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// Pending is a snapshot being written: Store.Begin writes its header to a
// temporary file, Write streams the machine's data into checksummed
// blocks, and Commit makes it durable and visible. Until Commit returns
// nil nothing of it is visible; Abort (or a failed Commit) removes it.
//
// A Pending is used by one goroutine at a time. The writer process uses
// one per Write request on its job goroutine; a server may also use one
// directly, off its own goroutine.
type Pending struct {
	store *Store
	uid   string
	gen   uint64
	path  string
	f     File
	enc   encoder
	began time.Time // Begin's start, for Stats.Write

	// stopped, if set, is polled by Write: once it reports true, Write
	// fails with ErrStopped (the writer process is shutting down).
	stopped func() bool

	done bool // committed or aborted
}

// Begin starts writing snapshot index/term of uid with the server's meta
// blob (opaque here; at most MaxMetaBytes). It fails with ErrStale when a
// snapshot at index or above is already durable, ErrInvalid for bad
// arguments, ErrIO when the file cannot be created.
func (s *Store) Begin(uid string, index, term uint64, meta []byte) (*Pending, error) {
	if err := validUID(uid); err != nil {
		return nil, err
	}
	if index == 0 {
		return nil, fmt.Errorf("%w: snapshot index 0", ErrInvalid)
	}
	if len(meta) > MaxMetaBytes {
		return nil, fmt.Errorf("%w: meta of %d bytes exceeds %d", ErrInvalid, len(meta), MaxMetaBytes)
	}
	began := time.Now()
	st := s.state(uid)
	st.mu.Lock()
	gen := st.gen
	err := s.ensureDirLocked(uid, st)
	if err == nil {
		err = s.staleLocked(uid, st, index)
	}
	st.mu.Unlock()
	if err != nil {
		if !errors.Is(err, ErrStale) {
			s.stats.writeFailures.Add(1)
		}
		return nil, err
	}
	path := filepath.Join(s.uidDir(uid), tempName(index, term))
	f, err := s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err != nil {
		s.stats.writeFailures.Add(1)
		if errors.Is(err, fs.ErrNotExist) && s.generation(uid) != gen {
			return nil, fmt.Errorf("%w: %s while starting snapshot %d", ErrDeleted, uid, index)
		}
		return nil, ioErr("create "+path, err)
	}
	p := &Pending{store: s, uid: uid, gen: gen, path: path, f: f, began: began}
	if err := p.enc.start(f, path, s.blockBytes, header{index: index, term: term, id: newFileID()}, meta); err != nil {
		p.Abort()
		return nil, err
	}
	return p, nil
}

func (s *Store) generation(uid string) uint64 {
	st := s.state(uid)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.gen
}

// newFileID returns a random non-zero file identity.
func newFileID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// Write appends machine data. It never keeps b. After the first error
// every call returns it (the snapshot is then lost: Commit fails).
func (p *Pending) Write(b []byte) (int, error) {
	if p.done {
		return 0, ErrFinished
	}
	if p.enc.err == nil && p.stopped != nil && p.stopped() {
		p.enc.err = ErrStopped
	}
	return p.enc.write(b)
}

// Commit finishes the file (last block, trailer), fsyncs it, renames it
// to its final name and fsyncs the directory; only then is the snapshot
// visible, and older snapshots beyond Options.Keep are removed. On any
// error (an earlier Write's included) the temporary file is removed and
// nothing becomes visible: ErrIO, ErrStale (a snapshot at this index or
// above became durable meanwhile), ErrDeleted, ErrStopped.
func (p *Pending) Commit() (Info, error) {
	if p.done {
		return Info{}, ErrFinished
	}
	info, err := p.commit()
	p.store.stats.wrote(p.began, info, err)
	return info, err
}

// commit is Commit without the counting.
func (p *Pending) commit() (Info, error) {
	err := p.enc.finish()
	if err == nil {
		if err = p.f.Sync(); err != nil {
			err = ioErr("sync "+p.path, err)
		}
	}
	if err != nil {
		p.discard()
		return Info{}, err
	}
	p.done = true
	if err := p.f.Close(); err != nil {
		p.store.removeQuietly(p.path)
		return Info{}, ioErr("close "+p.path, err)
	}
	info := p.enc.info()
	info.UID = p.uid
	if err := p.store.install(p.path, p.gen, info); err != nil {
		return Info{}, err
	}
	return info, nil
}

// Abort discards the snapshot and removes its temporary file. It does
// nothing after Commit or a previous Abort.
func (p *Pending) Abort() {
	if p.done {
		return
	}
	p.store.stats.writeFailures.Add(1)
	p.discard()
}

// discard closes and removes the temporary file.
func (p *Pending) discard() {
	p.done = true
	_ = p.f.Close()
	p.store.removeQuietly(p.path)
}

func (s *Store) removeQuietly(path string) {
	if err := s.fs.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.logger.Error("snapshot: could not remove a discarded file", "file", path, "err", err)
	}
}
