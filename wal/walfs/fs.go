// Package walfs is the small file-system interface every byte of the
// write-ahead log goes through, with two implementations: the operating
// system's (OS) and an in-memory one (Mem) that tests use to inject write
// errors, simulate a full disk, and crash by dropping unsynced bytes.
//
// The interface is deliberately narrow: the WAL only creates files, appends
// to them, syncs them, reads whole files back during recovery, truncates a
// torn tail, removes flushed files and lists its directory. Keeping it this
// small keeps the in-memory crash model honest: every operation has one
// clearly defined durability rule (see Mem).
package walfs

import (
	"errors"
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
