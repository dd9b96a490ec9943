package snapshot

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FS is the file-system interface every byte of a snapshot goes through.
// OSFS is the real one; tests wrap it to inject errors (a full disk, a
// failed sync or rename). Paths are as the Store builds them: the store
// directory joined with a UID and a file name.
//
// Implementations must be safe for concurrent use; a File is used by one
// goroutine at a time.
type FS interface {
	// OpenFile opens name with os.OpenFile's flag meaning (O_RDONLY,
	// O_RDWR|O_CREATE|O_EXCL, ...), permission 0644 for new files.
	OpenFile(name string, flag int) (File, error)
	// Rename atomically replaces newname with oldname. The change is
	// durable only after SyncDir of the parent.
	Rename(oldname, newname string) error
	// Remove deletes one file or empty directory.
	Remove(name string) error
	// RemoveAll deletes path and everything under it; a missing path is
	// not an error.
	RemoveAll(path string) error
	// MkdirAll creates dir and missing parents (permission 0755).
	MkdirAll(dir string) error
	// ReadDir lists the entries of dir, sorted by name.
	ReadDir(dir string) ([]fs.DirEntry, error)
	// SyncDir makes the entries of dir (created, renamed, removed names)
	// durable.
	SyncDir(dir string) error
}

// File is an open snapshot file. *os.File implements it.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Seeker
	io.Closer
	// Sync makes the file's data and size durable (fsync).
	Sync() error
	// Truncate changes the file's size.
	Truncate(size int64) error
}

// OSFS is the FS of the operating system.
type OSFS struct{}

// OpenFile implements FS.
func (OSFS) OpenFile(name string, flag int) (File, error) {
	f, err := os.OpenFile(name, flag, 0o644)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Rename implements FS.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// RemoveAll implements FS.
func (OSFS) RemoveAll(path string) error { return os.RemoveAll(path) }

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// ReadDir implements FS.
func (OSFS) ReadDir(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(filepath.Clean(dir))
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return serr
	}
	return cerr
}
