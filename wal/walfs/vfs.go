package walfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FromVFS returns an FS whose every operation goes through fsys, pebble's
// file-system interface, so that the WAL can share one file system with a
// node's pebble stores: the operating system's (vfs.Default), an in-memory
// one (vfs.NewMem, vfs.NewCrashableMem) or a wrapper that injects faults.
//
// Durability is exactly fsys's: File.Sync calls Sync on the vfs file,
// File.Datasync calls SyncData, and SyncDir opens the directory with
// OpenDir and Syncs it, as pebble does.
//
// A vfs.File has no truncate. Truncate uses the file's own
// Truncate(int64) error method when it has one (the files of vfs.Default
// do) and syncs the file; otherwise it writes the kept prefix to name +
// ".truncating", syncs it, renames it over name and syncs the directory, so
// the cut is atomic and durable either way. A crash in the middle of that
// copy can leave the ".truncating" file behind; the WAL ignores names it
// does not know.
func FromVFS(fsys vfs.FS) FS { return vfsFS{fs: fsys} }

type vfsFS struct{ fs vfs.FS }

// truncater is the optional method of vfs files backed by an *os.File.
type truncater interface{ Truncate(size int64) error }

func (v vfsFS) Create(name string) (File, error) {
	f, err := v.fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	return &vfsFile{f: f}, nil
}

// Preallocate has no way to start a chunk's writeback early through a
// vfs.File; the final sync writes them all.
func (v vfsFS) Preallocate(name string, size int64, pace func(int64) error) error {
	f, err := v.Create(name)
	if err != nil {
		return err
	}
	err = fillZeros(f, size, nil, pace)
	if err == nil {
		err = f.Datasync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = v.fs.Remove(name)
		return fmt.Errorf("walfs: preallocate %s: %w", name, err)
	}
	return nil
}

// Adopt uses the vfs's ReuseForWrite: a rename, then an open for writing
// from offset 0 without truncating.
func (v vfsFS) Adopt(spare, name string) (File, error) {
	f, err := v.fs.ReuseForWrite(spare, name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	return &vfsFile{f: f}, nil
}

// Recycle checks the link count where the vfs reports the operating
// system's file information, then renames.
func (v vfsFS) Recycle(name, free string) error {
	fi, err := v.fs.Stat(name)
	if err != nil {
		return err
	}
	if err := onlyLink(name, fi); err != nil {
		return err
	}
	return v.fs.Rename(name, free)
}

// Reclaim reads the head through the vfs; a vfs that does not report
// the operating system's file information (an in-memory one) cannot say
// how many links a file has, so it refuses every file.
func (v vfsFS) Reclaim(name, free string, n int, accept func(head []byte) error) error {
	f, err := v.fs.Open(name)
	if err != nil {
		return err
	}
	stat := func() (os.FileInfo, error) { return f.Stat() }
	return reclaimOpened(f, stat, name, n, accept, func() error { return v.fs.Rename(name, free) })
}

func (v vfsFS) ReadFile(name string) ([]byte, error) {
	f, err := v.fs.Open(name)
	if err != nil {
		return nil, err
	}
	data, rerr := io.ReadAll(f)
	cerr := f.Close()
	if rerr != nil {
		return nil, fmt.Errorf("walfs: read %s: %w", name, rerr)
	}
	if cerr != nil {
		return nil, fmt.Errorf("walfs: close %s: %w", name, cerr)
	}
	return data, nil
}

func (v vfsFS) Truncate(name string, size int64) error {
	// OpenReadWrite creates a missing file, where the OS version fails:
	// check first, so a missing file is an fs.ErrNotExist here too.
	if _, err := v.fs.Stat(name); err != nil {
		return err
	}
	f, err := v.fs.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if t, ok := f.(truncater); ok {
		if err := t.Truncate(size); err != nil {
			_ = f.Close()
			return fmt.Errorf("walfs: truncate %s: %w", name, err)
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return fmt.Errorf("walfs: sync %s: %w", name, err)
		}
		return f.Close()
	}
	prefix, err := readPrefix(f, size)
	cerr := f.Close()
	if err != nil {
		return fmt.Errorf("walfs: truncate %s: %w", name, err)
	}
	if cerr != nil {
		return fmt.Errorf("walfs: close %s: %w", name, cerr)
	}
	return v.replace(name, prefix)
}

// replace makes data the durable content of name through a synced
// temporary file and a rename, for file systems without truncate.
func (v vfsFS) replace(name string, data []byte) error {
	tmp := name + ".truncating"
	f, err := v.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("walfs: truncate %s: %w", name, err)
	}
	// Write may modify its argument; data is not used again.
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("walfs: truncate %s: write %s: %w", name, tmp, err)
	}
	// The copy must be durable before the rename can make it the file.
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("walfs: truncate %s: sync %s: %w", name, tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("walfs: truncate %s: close %s: %w", name, tmp, err)
	}
	if err := v.fs.Rename(tmp, name); err != nil {
		return fmt.Errorf("walfs: truncate %s: %w", name, err)
	}
	if err := v.SyncDir(v.fs.PathDir(name)); err != nil {
		return fmt.Errorf("walfs: truncate %s: %w", name, err)
	}
	return nil
}

// readPrefix returns the first size bytes of f, zero-filled past its end
// as a truncate that grows a file would.
func readPrefix(f vfs.File, size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("negative size %d: %w", size, fs.ErrInvalid)
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

func (v vfsFS) Remove(name string) error { return v.fs.Remove(name) }

func (v vfsFS) List(dir string) ([]string, error) {
	names, err := v.fs.List(dir)
	if err != nil {
		return nil, err
	}
	// vfs lists in no particular order; FS promises sorted names.
	sort.Strings(names)
	return names, nil
}

func (v vfsFS) MkdirAll(dir string) error { return v.fs.MkdirAll(dir, 0o755) }

func (v vfsFS) SyncDir(dir string) error {
	d, err := v.fs.OpenDir(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return errors.Join(serr, cerr)
}

// vfsFile is a File over a vfs.File.
type vfsFile struct {
	f vfs.File
	// buf is the copy Write hands to the vfs file: vfs.File.Write may
	// modify its argument (pebble's MemFS scrambles it in race builds),
	// and the WAL's batch buffer must stay as it was.
	buf []byte
}

func (o *vfsFile) Write(p []byte) (int, error) {
	o.buf = append(o.buf[:0], p...)
	return o.f.Write(o.buf)
}

func (o *vfsFile) Sync() error     { return o.f.Sync() }
func (o *vfsFile) Datasync() error { return o.f.SyncData() }
func (o *vfsFile) Close() error    { return o.f.Close() }
