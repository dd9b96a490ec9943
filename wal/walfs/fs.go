// Package walfs is the small file-system interface every byte of the
// write-ahead log goes through, with two implementations: the operating
// system's (OS) and an in-memory one (Mem) that tests use to inject write
// errors, simulate a full disk, and crash by dropping unsynced bytes.
//
// The interface is deliberately narrow: the WAL only creates files, appends
// to them, syncs them, reads whole files back during recovery, truncates a
// torn tail, removes flushed files and lists its directory. Keeping it this
// small keeps the in-memory crash model honest: every operation has one
// clearly defined durability rule (see Mem). Preallocated files are an
// optional extension (Preallocator) that all three implementations have.
package walfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
)

// ErrNoSpace is returned (wrapped) by Mem when a write would exceed its
// configured capacity. errors.Is(err, syscall.ENOSPC) also holds, so callers
// can treat a simulated and a real full disk alike.
var ErrNoSpace = noSpaceError{}

type noSpaceError struct{}

func (noSpaceError) Error() string        { return "walfs: no space left on device" }
func (noSpaceError) Is(target error) bool { return target == syscall.ENOSPC }

// FS is the set of file operations the WAL needs. Names are paths as given
// to the implementation; the WAL always joins them under its directory.
type FS interface {
	// Create creates name (truncating an existing file) for appending.
	// The new directory entry is durable only after SyncDir of its parent.
	Create(name string) (File, error)
	// ReadFile returns the whole content of name.
	ReadFile(name string) ([]byte, error)
	// Truncate cuts name to size bytes and makes the cut durable before
	// returning (it syncs the file).
	Truncate(name string, size int64) error
	// Remove deletes name. The removal is durable after SyncDir.
	Remove(name string) error
	// List returns the names (not paths) of the entries of dir, sorted.
	List(dir string) ([]string, error)
	// MkdirAll creates dir and any missing parents.
	MkdirAll(dir string) error
	// SyncDir makes the directory entries of dir durable (created and
	// removed names).
	SyncDir(dir string) error
}

// File is a file opened by Create: append-only writes plus the two kinds of
// sync. Write may return a short count with an error; the bytes before the
// count may or may not have reached the file.
type File interface {
	io.Writer
	// Sync flushes data and metadata (fsync).
	Sync() error
	// Datasync flushes data and the metadata needed to read it back, such
	// as the size (fdatasync). On platforms without fdatasync it is Sync.
	Datasync() error
	Close() error
}

// Preallocator is the optional part of an FS that prepares files ahead of
// use. A file system where appending changes the file's size must commit
// that size with every fdatasync (a journal commit on ext4 and xfs);
// writing over bytes that were already written and synced is data only, a
// cheaper sync. So the WAL fills its next file with zeros in the
// background, and starts the file by adopting it.
type Preallocator interface {
	// Preallocate creates name (truncating an existing file) holding size
	// zero bytes, and makes those bytes durable before it returns (the
	// name itself is durable only after SyncDir). It writes in chunks of
	// PreallocateChunk bytes and starts each chunk's way to the disk at
	// once where the platform can, so that no burst of them later holds
	// up the syncs of the file being written. After each chunk it calls
	// pace, if not nil, with the bytes written so far: pace may sleep to
	// spread the chunks out, and an error from it stops the preallocation
	// and is returned. On any error Preallocate removes what it created.
	Preallocate(name string, size int64, pace func(done int64) error) error
	// Adopt renames spare, a file made by Preallocate or Recycle, to name
	// and opens it for writing from its start. Writes replace the bytes
	// that were there; the bytes after the last write stay as they were
	// (zeros, or a recycled file's old bytes). As with Create, the new
	// name is durable only after SyncDir; until then a crash may leave
	// spare instead, with whatever the writes made durable.
	Adopt(spare, name string) (File, error)
	// Recycle renames name, a file whose bytes are all synced, to free,
	// bytes and all, so that Adopt can later start a file over it: its
	// blocks are allocated and written, so writes over them, like writes
	// over preallocated zeros, sync data only. The rename is durable after
	// SyncDir. It fails with ErrLinked, renaming nothing, if another name
	// links to the file: its bytes are not the caller's to write over.
	Recycle(name, free string) error
	// Reclaim is Recycle for a file that another part of the node kept
	// under a name of its own (the segment store's hard links to closed
	// WAL files) and now gives up. It first reads the file's first n
	// bytes (fewer if the file is shorter) and passes them to accept; an
	// error from accept is returned and nothing is renamed, so that the
	// caller takes only a file it recognizes. The caller never knew the
	// file's other names, so Reclaim fails with ErrLinked, renaming
	// nothing, unless the file system reports that name is the file's
	// only link.
	Reclaim(name, free string, n int, accept func(head []byte) error) error
}

// ErrLinked is returned (wrapped) by Recycle for a file that has another
// hard link.
var ErrLinked = errors.New("walfs: file has other links")

// PreallocateChunk is the unit in which Preallocate writes and paces.
const PreallocateChunk = 256 << 10

// zeros is the source of preallocation writes; never written to.
var zeros = make([]byte, PreallocateChunk)

// fillZeros writes size zero bytes to w in chunks. After each, written
// (if not nil) learns the chunk's place, then pace (if not nil) the total.
func fillZeros(w io.Writer, size int64, written func(off, n int64), pace func(int64) error) error {
	for done := int64(0); done < size; {
		n, err := w.Write(zeros[:min(int64(len(zeros)), size-done)])
		if err != nil {
			return err
		}
		if written != nil {
			written(done, int64(n))
		}
		done += int64(n)
		if pace != nil {
			if err := pace(done); err != nil {
				return err
			}
		}
	}
	return nil
}

// OS returns the FS backed by the operating system.
func OS() FS { return osFS{} }

type osFS struct{}

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Preallocate(name string, size int64, pace func(int64) error) error {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	err = fillZeros(f, size, func(off, n int64) { startWriteback(f, off, n) }, pace)
	if err == nil {
		err = datasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("walfs: preallocate %s: %w", name, err)
	}
	return nil
}

func (osFS) Adopt(spare, name string) (File, error) {
	if err := os.Rename(spare, name); err != nil {
		return nil, err
	}
	// Neither O_TRUNC nor O_APPEND: writes go over the zeros from offset 0.
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Recycle(name, free string) error {
	fi, err := os.Lstat(name)
	if err != nil {
		return err
	}
	if err := onlyLink(name, fi); err != nil {
		return err
	}
	return os.Rename(name, free)
}

func (osFS) Reclaim(name, free string, n int, accept func(head []byte) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	return reclaimOpened(f, f.Stat, name, n, accept, func() error { return os.Rename(name, free) })
}

// reclaimOpened is Reclaim once name is open as f: it closes f.
func reclaimOpened(f io.ReadCloser, stat func() (os.FileInfo, error), name string, n int, accept func(head []byte) error, rename func() error) error {
	head, err := readHead(f, stat, name, n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := accept(head); err != nil {
		return err
	}
	return rename()
}

// readHead checks that f, open as name, is the file's only link (by its
// stat), and reads its first n bytes (fewer if it is shorter).
func readHead(f io.Reader, stat func() (os.FileInfo, error), name string, n int) ([]byte, error) {
	fi, err := stat()
	if err != nil {
		return nil, err
	}
	if err := soleLink(name, fi); err != nil {
		return nil, err
	}
	head := make([]byte, n)
	k, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("walfs: read %s: %w", name, err)
	}
	return head[:k], nil
}

// onlyLink fails with ErrLinked if fi, the file name, has more than one
// link, where the platform says.
func onlyLink(name string, fi os.FileInfo) error {
	if n, ok := linkCount(fi); ok && n > 1 {
		return &os.PathError{Op: "recycle", Path: name, Err: fmt.Errorf("%w (%d)", ErrLinked, n)}
	}
	return nil
}

// soleLink is onlyLink for a file whose other names the caller cannot
// know: a platform that does not report links fails it too.
func soleLink(name string, fi os.FileInfo) error {
	n, ok := linkCount(fi)
	switch {
	case !ok:
		return &os.PathError{Op: "reclaim", Path: name, Err: fmt.Errorf("%w (the file system does not report links)", ErrLinked)}
	case n != 1:
		return &os.PathError{Op: "reclaim", Path: name, Err: fmt.Errorf("%w (%d)", ErrLinked, n)}
	}
	return nil
}

func (osFS) ReadFile(name string) ([]byte, error) { return os.ReadFile(name) }

func (osFS) Truncate(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func (osFS) Remove(name string) error { return os.Remove(name) }

func (osFS) List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

func (osFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return errors.Join(serr, cerr)
}

type osFile struct{ f *os.File }

func (o osFile) Write(p []byte) (int, error) { return o.f.Write(p) }
func (o osFile) Sync() error                 { return o.f.Sync() }
func (o osFile) Datasync() error             { return datasync(o.f) }
func (o osFile) Close() error                { return o.f.Close() }
