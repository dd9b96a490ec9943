package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FromVFS returns an FS whose every operation goes through fsys, pebble's
// file-system interface, so that the snapshot store can share one file
// system with a node's pebble stores: the operating system's
// (vfs.Default), an in-memory one (vfs.NewMem, vfs.NewCrashableMem) or a
// wrapper that injects faults.
//
// Durability is exactly fsys's: File.Sync calls Sync on the vfs file and
// SyncDir opens the directory with OpenDir and Syncs it, as pebble does.
// Where the adapter has to point a name at a new vfs file to emulate an
// operation vfs lacks (see below), the next File.Sync also syncs the
// parent directory, so that Sync still makes the file's data and size
// durable.
//
// OpenFile accepts O_RDONLY, O_RDWR or O_WRONLY with O_CREATE, O_EXCL and
// O_TRUNC; other flags fail with errors.ErrUnsupported. vfs has no
// exclusive create, so O_EXCL is a check and a create made atomic among
// the callers of this FS value only. O_TRUNC on an existing file replaces
// it with a new one (vfs.FS.Create). A vfs.File has no truncate:
// File.Truncate uses the file's own Truncate(int64) error method when it
// has one (the files of vfs.Default do); otherwise it writes the kept
// prefix to name + ".truncating", syncs it and renames it over name. A
// crash in the middle of that copy can leave the ".truncating" file
// behind; the store ignores names it does not know.
func FromVFS(fsys vfs.FS) FS { return &vfsFS{fs: fsys} }

type vfsFS struct {
	fs vfs.FS
	// createMu makes the check and the create of O_EXCL one step for the
	// callers of this FS.
	createMu sync.Mutex
}

// truncater is the optional method of vfs files backed by an *os.File.
type truncater interface{ Truncate(size int64) error }

// OpenFile implements FS.
func (v *vfsFS) OpenFile(name string, flag int) (File, error) {
	const known = os.O_RDONLY | os.O_WRONLY | os.O_RDWR | os.O_CREATE | os.O_EXCL | os.O_TRUNC
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	if flag&^known != 0 || (!writable && flag != os.O_RDONLY) {
		return nil, fmt.Errorf("snapshot: open %s: flags %#x: %w", name, flag, errors.ErrUnsupported)
	}
	if !writable {
		f, err := v.fs.Open(name)
		if err != nil {
			return nil, err
		}
		return &vfsFile{fsys: v, name: name, f: f}, nil
	}
	var replaced bool
	switch {
	case flag&os.O_EXCL != 0 && flag&os.O_CREATE != 0:
		v.createMu.Lock()
		defer v.createMu.Unlock()
		if _, err := v.fs.Stat(name); err == nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err := v.create(name); err != nil {
			return nil, err
		}
	case flag&os.O_TRUNC != 0:
		_, err := v.fs.Stat(name)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if !exists && flag&os.O_CREATE == 0 {
			return nil, err
		}
		if err := v.create(name); err != nil {
			return nil, err
		}
		replaced = exists
	case flag&os.O_CREATE == 0:
		// OpenReadWrite creates a missing file; os.OpenFile does not.
		if _, err := v.fs.Stat(name); err != nil {
			return nil, err
		}
	}
	// WriteAt, which a seekable File needs, is only promised for files
	// opened with OpenReadWrite.
	f, err := v.fs.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	return &vfsFile{fsys: v, name: name, f: f, writable: true, syncDir: replaced}, nil
}

// create creates (or replaces) name, empty.
func (v *vfsFS) create(name string) error {
	f, err := v.fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	return f.Close()
}

// Rename implements FS.
func (v *vfsFS) Rename(oldname, newname string) error { return v.fs.Rename(oldname, newname) }

// Remove implements FS.
func (v *vfsFS) Remove(name string) error { return v.fs.Remove(name) }

// RemoveAll implements FS.
func (v *vfsFS) RemoveAll(path string) error { return v.fs.RemoveAll(path) }

// MkdirAll implements FS.
func (v *vfsFS) MkdirAll(dir string) error { return v.fs.MkdirAll(dir, 0o755) }

// ReadDir implements FS.
func (v *vfsFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	names, err := v.fs.List(dir)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	ents := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		info, err := v.fs.Stat(v.fs.PathJoin(dir, n))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing, as os.ReadDir would not see it
		}
		if err != nil {
			return nil, err
		}
		ents = append(ents, dirEntry{name: n, info: info})
	}
	return ents, nil
}

// SyncDir implements FS.
func (v *vfsFS) SyncDir(dir string) error {
	d, err := v.fs.OpenDir(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return errors.Join(serr, cerr)
}

// dirEntry is an fs.DirEntry named as listed (a vfs FileInfo's name need
// not be the base name).
type dirEntry struct {
	name string
	info fs.FileInfo
}

func (d dirEntry) Name() string               { return d.name }
func (d dirEntry) IsDir() bool                { return d.info.IsDir() }
func (d dirEntry) Type() fs.FileMode          { return d.info.Mode().Type() }
func (d dirEntry) Info() (fs.FileInfo, error) { return d.info, nil }

// vfsFile is a File over a vfs.File. vfs files cannot seek, so it keeps
// its own offset and reads and writes at it.
type vfsFile struct {
	fsys     *vfsFS
	name     string
	f        vfs.File
	pos      int64
	writable bool
	// syncDir: name was pointed at a new vfs file (a replacing O_TRUNC or
	// a truncate by copy), which is durable only once the directory is
	// synced; the next Sync does that.
	syncDir bool
}

// Read implements io.Reader.
func (o *vfsFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := o.f.ReadAt(p, o.pos)
	o.pos += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil // as *os.File: data now, io.EOF on the next call
	}
	return n, err
}

// ReadAt implements io.ReaderAt.
func (o *vfsFile) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }

// Write implements io.Writer.
func (o *vfsFile) Write(p []byte) (int, error) {
	if !o.writable {
		return 0, &fs.PathError{Op: "write", Path: o.name, Err: fs.ErrPermission}
	}
	n, err := o.f.WriteAt(p, o.pos)
	o.pos += int64(n)
	return n, err
}

// Seek implements io.Seeker.
func (o *vfsFile) Seek(offset int64, whence int) (int64, error) {
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = o.pos
	case io.SeekEnd:
		st, err := o.f.Stat()
		if err != nil {
			return 0, err
		}
		base = st.Size()
	default:
		return 0, &fs.PathError{Op: "seek", Path: o.name, Err: fs.ErrInvalid}
	}
	if base+offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: o.name, Err: fs.ErrInvalid}
	}
	o.pos = base + offset
	return o.pos, nil
}

// Sync implements File: the data, and the name if it moved to a new file.
func (o *vfsFile) Sync() error {
	if err := o.f.Sync(); err != nil {
		return err
	}
	if o.syncDir {
		if err := o.fsys.SyncDir(o.fsys.fs.PathDir(o.name)); err != nil {
			return fmt.Errorf("snapshot: sync the directory of %s: %w", o.name, err)
		}
		o.syncDir = false
	}
	return nil
}

// Truncate implements File. The offset does not move, as with *os.File.
func (o *vfsFile) Truncate(size int64) error {
	if !o.writable {
		return &fs.PathError{Op: "truncate", Path: o.name, Err: fs.ErrPermission}
	}
	if size < 0 {
		return &fs.PathError{Op: "truncate", Path: o.name, Err: fs.ErrInvalid}
	}
	if t, ok := o.f.(truncater); ok {
		return t.Truncate(size)
	}
	buf := make([]byte, size)
	if _, err := o.f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("snapshot: truncate %s: %w", o.name, err)
	}
	v, tmp := o.fsys.fs, o.name+".truncating"
	nf, err := v.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("snapshot: truncate %s: %w", o.name, err)
	}
	// Write may modify its argument; buf is not used again.
	_, err = nf.Write(buf)
	if err == nil {
		// The copy must be durable before the rename can make it the file.
		err = nf.Sync()
	}
	if cerr := nf.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = v.Rename(tmp, o.name)
	}
	if err != nil {
		_ = v.Remove(tmp)
		return fmt.Errorf("snapshot: truncate %s: %w", o.name, err)
	}
	f, err := v.OpenReadWrite(o.name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("snapshot: truncate %s: reopen: %w", o.name, err)
	}
	old := o.f
	o.f, o.syncDir = f, true
	if err := old.Close(); err != nil {
		return fmt.Errorf("snapshot: truncate %s: close the old file: %w", o.name, err)
	}
	return nil
}

// Close implements io.Closer.
func (o *vfsFile) Close() error { return o.f.Close() }
