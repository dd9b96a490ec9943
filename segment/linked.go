package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/wal"
)

// Linked WAL files.
//
// Copying a closed WAL file into sstables writes every entry a second
// time, and with large commands that second stream of bytes competes with
// the WAL's syncs for the disk. When one server's run makes up nearly all
// of a closed file, the store keeps the file itself instead: it hard-links
// it into the store's directory and ingests, under the run's entry keys,
// small references (file, offset, length) in place of the entries. Smaller
// runs are copied as before.
//
// Order of a linking flush, each step durable before the next:
//  1. link the WAL file into the store's directory;
//  2. commit the flush's deletions (as without linking);
//  3. ingest the references together with the file's record (kindLinked),
//     in one atomic ingest;
//  4. (the segment writer) drop the mem tables and remove the WAL file.
//
// A crash before 3 leaves a link no record names: Open removes it, and the
// WAL file, still there, is flushed again. Once every entry key of a run
// is deleted or overwritten (by a snapshot's truncation, a follower's
// overwrite, a deleted server), the file is dead and collected, record
// first, then the file; Open finishes a collection a crash interrupted.
//
// The WAL never writes into a closed file again, so a linked file is
// immutable; each reference is one checksummed WAL record, and a reader
// checks its UID and index as well.

const (
	// linkPrefix names the linked files in the store's directory.
	linkPrefix = "rago-wal-"
	// defaultLinkMinBytes is the smallest run that is linked.
	defaultLinkMinBytes = 1 << 20
	// maxOpenLinked bounds the linked files kept open for reads.
	maxOpenLinked = 32
)

// errCannotLink: the file system refused the hard link (the WAL on
// another file system, one without hard links).
var errCannotLink = errors.New("cannot link")

// refMarker opens every reference value. An inline value opens with its
// term as a minimal uvarint, which never starts 0x80 0x00.
var refMarker = [2]byte{0x80, 0x00}

// ref locates one entry's WAL record in linked file id.
type ref struct {
	id  uint64
	off int64
	n   int
}

func appendRef(dst []byte, r ref) []byte {
	dst = append(dst, refMarker[:]...)
	dst = binary.AppendUvarint(dst, r.id)
	dst = binary.AppendUvarint(dst, uint64(r.off))
	return binary.AppendUvarint(dst, uint64(r.n))
}

func isRef(v []byte) bool { return len(v) >= 2 && v[0] == refMarker[0] && v[1] == refMarker[1] }

func decodeRef(v []byte) (ref, error) {
	var xs [3]uint64
	rest := v[len(refMarker):]
	for i := range xs {
		x, n := binary.Uvarint(rest)
		if n <= 0 {
			return ref{}, fmt.Errorf("%w: bad reference value %x", ErrCorrupt, v)
		}
		xs[i], rest = x, rest[n:]
	}
	if len(rest) != 0 || xs[1] > 1<<62 || xs[2] == 0 || xs[2] > 1<<31 {
		return ref{}, fmt.Errorf("%w: bad reference value %x", ErrCorrupt, v)
	}
	return ref{id: xs[0], off: int64(xs[1]), n: int(xs[2])}, nil
}

// linkKey is the key of linked file id's record:
//
//	linked     0x04 | id (8 bytes, big endian)
//	           value: first (uvarint) | last (uvarint) | uid
func linkKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{kindLinked}, id)
}

func linkValue(uid string, first, last uint64) []byte {
	v := binary.AppendUvarint(nil, first)
	v = binary.AppendUvarint(v, last)
	return append(v, uid...)
}

func decodeLinkRecord(k, v []byte) (*linkedFile, error) {
	if len(k) != 9 || k[0] != kindLinked {
		return nil, fmt.Errorf("%w: linked file key %x", ErrCorrupt, k)
	}
	first, n1 := binary.Uvarint(v)
	if n1 <= 0 {
		return nil, fmt.Errorf("%w: linked file record %x", ErrCorrupt, v)
	}
	last, n2 := binary.Uvarint(v[n1:])
	if n2 <= 0 || n1+n2 == len(v) || last < first {
		return nil, fmt.Errorf("%w: linked file record %x", ErrCorrupt, v)
	}
	return &linkedFile{id: binary.BigEndian.Uint64(k[1:]), uid: string(v[n1+n2:]), first: first, last: last}, nil
}

func linkName(id uint64) string { return fmt.Sprintf("%s%016x.log", linkPrefix, id) }

func parseLinkName(name string) (uint64, bool) {
	hex, ok := strings.CutPrefix(name, linkPrefix)
	if !ok {
		return 0, false
	}
	hex, ok = strings.CutSuffix(hex, ".log")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 64)
	return id, err == nil
}

// linkedFile is a WAL file the store keeps: run first..last of uid.
type linkedFile struct {
	id          uint64
	uid         string
	first, last uint64
	path        string
	f           vfs.File // open for reads, or nil
	size        int64    // of f, once opened
}

// linkTable holds the live linked files. Its mutex also serializes the
// reads of references, which are rare (a lagging follower, a restart),
// so that a file is never closed under a read.
type linkTable struct {
	mu    sync.Mutex
	files map[uint64]*linkedFile
	open  []*linkedFile // with f != nil, oldest opened first
}

func (t *linkTable) add(lf *linkedFile) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.files == nil {
		t.files = map[uint64]*linkedFile{}
	}
	t.files[lf.id] = lf
}

// remove forgets id and closes its file if open.
func (t *linkTable) remove(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lf := t.files[id]
	if lf == nil {
		return
	}
	delete(t.files, id)
	t.closeLocked(lf)
}

func (t *linkTable) closeLocked(lf *linkedFile) {
	if lf.f == nil {
		return
	}
	_ = lf.f.Close()
	lf.f = nil
	for i, o := range t.open {
		if o == lf {
			t.open = append(t.open[:i], t.open[i+1:]...)
			break
		}
	}
}

// of returns uid's linked files whose run overlaps from..to.
func (t *linkTable) of(uid string, from, to uint64) []*linkedFile {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*linkedFile
	for _, lf := range t.files {
		if lf.uid == uid && lf.last >= from && lf.first <= to {
			out = append(out, lf)
		}
	}
	return out
}

func (t *linkTable) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, lf := range t.open {
		_ = lf.f.Close()
		lf.f = nil
	}
	t.open = nil
}

// read returns the bytes of r. A file no longer in the table was
// collected: its entries are gone (ErrNotFound).
func (t *linkTable) read(fs vfs.FS, r ref) ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lf := t.files[r.id]
	if lf == nil {
		return nil, fmt.Errorf("%w: linked file %d was collected", ErrNotFound, r.id)
	}
	if lf.f == nil {
		f, err := fs.Open(lf.path)
		if err != nil {
			return nil, fmt.Errorf("segment: open linked file %s: %w", lf.path, err)
		}
		st, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("segment: stat linked file %s: %w", lf.path, err)
		}
		if len(t.open) >= maxOpenLinked {
			t.closeLocked(t.open[0])
		}
		lf.f, lf.size = f, st.Size()
		t.open = append(t.open, lf)
	}
	// A damaged reference must not make a read allocate beyond the file.
	if r.off+int64(r.n) > lf.size {
		return nil, fmt.Errorf("%w: linked file %s ends before offset %d+%d", ErrCorrupt, lf.path, r.off, r.n)
	}
	buf := make([]byte, r.n)
	if _, err := lf.f.ReadAt(buf, r.off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: linked file %s ends before offset %d+%d", ErrCorrupt, lf.path, r.off, r.n)
		}
		return nil, fmt.Errorf("segment: read linked file %s: %w", lf.path, err)
	}
	return buf, nil
}

// readRef returns the term and payload of uid's entry at index, whose
// value v is a reference.
func (s *Store) readRef(uid string, index uint64, v []byte) (uint64, []byte, error) {
	r, err := decodeRef(v)
	if err != nil {
		return 0, nil, err
	}
	b, err := s.links.read(s.fs, r)
	if err != nil {
		return 0, nil, err
	}
	rec, err := wal.DecodeRecord(b)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: linked file %d at offset %d: %w", ErrCorrupt, r.id, r.off, err)
	}
	if rec.UID != uid || rec.Index != index {
		return 0, nil, fmt.Errorf("%w: linked file %d at offset %d holds %s index %d, not %s index %d",
			ErrCorrupt, r.id, r.off, rec.UID, rec.Index, uid, index)
	}
	return rec.Term, rec.Payload, nil
}

// linkCandidate returns the index in runs of the run to link, or -1: a
// run of at least linkMinBytes whose server wrote at least nine tenths
// of the payload bytes of the file, so that a kept file wastes little.
// The server's entries that a snapshot covered since they were written
// (below its floor, not in the run) count as its own: they take space in
// the file only until that server's next truncation, which is also what
// frees the run. Copying the run instead would write it a second time,
// and a server that snapshots often would have all its files copied.
func (s *Store) linkCandidate(cf *wal.ClosedFile, runs []run) int {
	if s.linkMinBytes < 0 {
		return -1
	}
	var total int64
	wrote := make(map[string]int64, len(cf.Tables))
	for _, t := range cf.Tables {
		total += t.Entries.Bytes()
		wrote[t.UID] += t.Entries.Bytes()
	}
	for i, r := range runs {
		if int64(r.bytes()) >= s.linkMinBytes && wrote[r.uid]*10 >= total*9 {
			return i
		}
	}
	return -1
}

// link hard-links cf into the store's directory and points at the record
// of each entry of r in it, where the WAL said it wrote them. It returns
// the file and the references; on error (the caller then copies the run)
// nothing is left behind.
func (s *Store) link(cf *wal.ClosedFile, r run) (lf *linkedFile, refs []ref, err error) {
	id := s.nextLink
	s.nextLink++
	name := s.fs.PathJoin(s.dir, linkName(id))
	if err := s.fs.Link(cf.Path, name); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", errCannotLink, cf.Path, err)
	}
	defer func() {
		if err != nil {
			_ = s.fs.Remove(name)
		}
	}()
	f, err := s.fs.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer f.Close()
	n := r.entries.Len()
	first := r.entries.At(0).Index
	last := first + uint64(n) - 1
	refs = make([]ref, n)
	if !r.entries.Records(func(i int, off int64, size int) { refs[i] = ref{id: id, off: off, n: size} }) {
		return nil, nil, fmt.Errorf("%s: the entries carry no record offsets", cf.Path)
	}
	// The WAL said where the records are: check the first and the last
	// rather than read the whole file back.
	for _, i := range []int{0, n - 1} {
		if err := checkRecord(f, refs[i], r.uid, r.entries.At(i)); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	// The link's directory entry needs no sync of its own: the ingest
	// that makes the references durable syncs this same directory (the
	// ingested sstables are linked into it) before it commits.
	return &linkedFile{id: id, uid: r.uid, first: first, last: last, path: name}, refs, nil
}

// checkRecord reads the record rf points at and checks that it is e's.
func checkRecord(f vfs.File, rf ref, uid string, e wal.Entry) error {
	b := make([]byte, rf.n)
	if _, err := f.ReadAt(b, rf.off); err != nil {
		return fmt.Errorf("read the record of index %d at offset %d: %w", e.Index, rf.off, err)
	}
	rec, err := wal.DecodeRecord(b)
	if err != nil {
		return fmt.Errorf("record of index %d at offset %d: %w", e.Index, rf.off, err)
	}
	if rec.UID != uid || rec.Index != e.Index || rec.Term != e.Term || !bytes.Equal(rec.Payload, e.Payload) {
		return fmt.Errorf("offset %d holds %s index %d term %d, not the mem tables' index %d term %d",
			rf.off, rec.UID, rec.Index, rec.Term, e.Index, e.Term)
	}
	return nil
}

// linkAlive reports whether any entry key of lf's run still refers to it.
func (s *Store) linkAlive(lf *linkedFile) (bool, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: entryKey(lf.uid, lf.first),
		UpperBound: entryKey(lf.uid, lf.last+1),
	})
	if err != nil {
		return false, err
	}
	alive := false
	for ok := it.First(); ok && !alive; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return false, errors.Join(err, it.Close())
		}
		if isRef(v) {
			r, err := decodeRef(v)
			if err != nil {
				return false, errors.Join(err, it.Close())
			}
			alive = r.id == lf.id
		}
	}
	return alive, errors.Join(it.Error(), it.Close())
}

// collectLinked drops uid's linked files overlapping from..to that no
// entry key refers to any more. The deletions that killed them are made
// durable first: a crash must not bring back references to a removed
// file. The record's deletion need not be: Open collects a record whose
// references are gone.
func (s *Store) collectLinked(uid string, from, to uint64) error {
	var dead []*linkedFile
	for _, lf := range s.links.of(uid, from, to) {
		alive, err := s.linkAlive(lf)
		if err != nil {
			return fmt.Errorf("segment: check linked file %s: %w", lf.path, err)
		}
		if !alive {
			dead = append(dead, lf)
		}
	}
	if len(dead) == 0 {
		return nil
	}
	if s.unsynced {
		if err := s.db.Flush(); err != nil {
			return fmt.Errorf("segment: flush before collecting linked files: %w", err)
		}
		s.unsynced = false
	}
	return s.dropLinked(dead)
}

// dropLinked deletes the records of files and removes them.
func (s *Store) dropLinked(files []*linkedFile) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, lf := range files {
		if err := b.Delete(linkKey(lf.id), nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("segment: delete linked file records: %w", err)
	}
	s.unsynced = true
	var errs []error
	reclaim := s.reclaim.Load()
	for _, lf := range files {
		s.links.remove(lf.id) // no read can reach the file from here on
		s.stats.linkedCollected.Add(1)
		if reclaim != nil && (*reclaim)(lf.path) {
			s.stats.linkedReclaimed.Add(1)
			continue
		}
		if err := s.fs.Remove(lf.path); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("segment: remove linked file %s: %w", lf.path, err))
		}
	}
	return errors.Join(errs...)
}

// SetReclaim sets the function that collected linked files are offered
// to before they are removed (nil: they are removed): the WAL they came
// from takes them to write later files over (wal.WAL.Reclaim), and
// returns true if it did, after which the store does not touch the file
// again. It is called with the store's write lock held, after the
// deletions that left no entry in the file are durable, so that no crash
// brings back a reference to it. Safe from any goroutine.
func (s *Store) SetReclaim(fn func(path string) bool) {
	if fn == nil {
		s.reclaim.Store(nil)
		return
	}
	s.reclaim.Store(&fn)
}

// openLinked reconciles the linked files in the directory with their
// records after a restart: links without a record (a crash before the
// ingest) and records without references (a crash before a collection
// finished) are removed. A record whose references live on but whose file
// is gone is corruption.
func (s *Store) openLinked() error {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return err
	}
	onDisk := map[uint64]string{}
	for _, name := range names {
		if id, ok := parseLinkName(name); ok {
			onDisk[id] = s.fs.PathJoin(s.dir, name)
			s.nextLink = max(s.nextLink, id+1)
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindLinked}, UpperBound: []byte{kindLinked + 1}})
	if err != nil {
		return err
	}
	var records []*linkedFile
	for ok := it.First(); ok; ok = it.Next() {
		lf, err := decodeLinkRecord(it.Key(), it.Value())
		if err != nil {
			return errors.Join(err, it.Close())
		}
		records = append(records, lf)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	var dead []*linkedFile
	for _, lf := range records {
		s.nextLink = max(s.nextLink, lf.id+1)
		path, present := onDisk[lf.id]
		delete(onDisk, lf.id)
		lf.path = s.fs.PathJoin(s.dir, linkName(lf.id))
		alive, err := s.linkAlive(lf)
		if err != nil {
			return err
		}
		switch {
		case alive && !present:
			return fmt.Errorf("%w: linked WAL file %s of %s (entries %d..%d) is missing", ErrCorrupt, lf.path, lf.uid, lf.first, lf.last)
		case alive:
			lf.path = path
			s.links.add(lf)
		default:
			dead = append(dead, lf)
		}
	}
	for _, path := range onDisk {
		if err := s.fs.Remove(path); err != nil {
			return err
		}
		s.logger.Info("segment: removed linked WAL file without a record", "file", path)
	}
	if len(dead) > 0 {
		if err := s.dropLinked(dead); err != nil {
			return err
		}
		s.logger.Info("segment: collected dead linked WAL files", "files", len(dead))
	}
	return nil
}
