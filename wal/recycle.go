package wal

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/rago-raft/rago/wal/walfs"
)

// Recycled files.
//
// A file the segment store copied (rather than kept by hard link) need
// not be deleted: the WAL keeps a few of them under free names and starts
// later files over them instead of filling a spare with zeros. Their
// blocks are allocated and written, so writing over them syncs data only,
// as writing over zeros does, and the zeros are never written: half of
// the bytes the WAL sends to the disk when preallocating.
//
// A recycled file holds the old file's bytes after the new file's last
// batch until it is closed and cut. Batches are bound to their file's
// number (record.go), so recovery never takes the old bytes for the new
// file's; and a closed file is cut durably before the next one starts
// (fileWriter.close fails the WAL if it cannot be), so only the last
// file can hold them after a crash, where they are cut as a torn tail.

// freePrefix starts the names of files kept to be written over. Recovery
// removes them: whether a crash found them whole is not the point, they
// are only ever a head start.
const freePrefix = "free-"

// freeName returns the name file seq is kept under once flushed.
func freeName(seq uint64) string { return fmt.Sprintf("%s%020d", freePrefix, seq) }

// isFreeName reports whether name is a file kept to be written over.
func isFreeName(name string) bool { return strings.HasPrefix(name, freePrefix) }

// freeFiles are the files kept to be written over, oldest first. The
// segment writer adds them (ClosedFile.Recycle), the flusher takes them
// (fileWriter.prepare).
type freeFiles struct {
	mu    sync.Mutex
	paths []string
	max   int // 0: files are removed, never kept
}

// take returns the oldest free file's path, or "" if there is none.
func (f *freeFiles) take() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.paths) == 0 {
		return ""
	}
	p := f.paths[0]
	f.paths = f.paths[1:]
	return p
}

// close keeps no more files from now on (the WAL stopped) and returns
// those kept, for removal.
func (f *freeFiles) close() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.max = 0
	p := f.paths
	f.paths = nil
	return p
}

// has reports whether another file may be kept.
func (f *freeFiles) has() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.paths) < f.max
}

// add keeps p, unless max files are kept already: then it reports false.
func (f *freeFiles) add(p string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.paths) >= f.max {
		return false
	}
	f.paths = append(f.paths, p)
	return true
}

// recycleFile keeps flushed file seq to be written over, or removes it
// when enough are kept, the file system cannot, or another name links to
// it. The rename is durable before the file can be reused, so that a
// crash never brings the old name back over new bytes.
func recycleFile(cfg Config, free *freeFiles, seq uint64) error {
	name := path.Join(cfg.Dir, fileName(seq))
	pre, ok := cfg.FS.(walfs.Preallocator)
	if !ok || !free.has() {
		return removeDurably(cfg, name)
	}
	to := path.Join(cfg.Dir, freeName(seq))
	if err := pre.Recycle(name, to); err != nil {
		if !errors.Is(err, walfs.ErrLinked) {
			cfg.Logger.Warn("wal: keeping a flushed file to write over failed; removing it", "file", name, "err", err)
		}
		return removeDurably(cfg, name)
	}
	if err := cfg.FS.SyncDir(cfg.Dir); err != nil {
		return fmt.Errorf("wal: sync dir %s: %w", cfg.Dir, err)
	}
	if !free.add(to) {
		return removeDurably(cfg, to)
	}
	return nil
}
