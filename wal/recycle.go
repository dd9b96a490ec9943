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

// freeName returns the name of the n-th file kept since the WAL started.
// Kept files are numbered apart from the WAL's files: a reclaimed file
// (WAL.Reclaim) may come from before a restart that numbered the WAL's
// files from 1 again.
func freeName(n uint64) string { return fmt.Sprintf("%s%020d", freePrefix, n) }

// isFreeName reports whether name is a file kept to be written over.
func isFreeName(name string) bool { return strings.HasPrefix(name, freePrefix) }

// freeFiles are the files kept to be written over, oldest first. The
// segment writer adds them (ClosedFile.Recycle), the flusher takes them
// (fileWriter.prepare).
type freeFiles struct {
	mu    sync.Mutex
	paths []string
	max   int    // 0: files are removed, never kept
	named uint64 // free names handed out (nextName)
}

// nextName returns the path in dir of a free name not used before.
func (f *freeFiles) nextName(dir string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.named++
	return path.Join(dir, freeName(f.named))
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
	to := free.nextName(cfg.Dir)
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

// reclaimFile takes name, a file this WAL wrote once and that another
// part of the node kept since (the segment store's hard link to a closed
// file), to write over like a recycled file, if one more may be kept. It
// reports whether it took the file: then the caller must not touch name
// again. It takes a version 2 file numbered below next, the number of
// the next file the WAL starts: every file the WAL starts from now on is
// numbered next or more, so that the old file's batches, bound to their
// own number, never pass for a new file's. A file of version 1, whose
// batches are bound to no file, or numbered next or more (a file from
// before a restart that numbered files from 1 again), or with another
// link, is left to the caller.
func reclaimFile(cfg Config, free *freeFiles, next uint64, name string) (bool, error) {
	pre, ok := cfg.FS.(walfs.Preallocator)
	if !ok || !free.has() {
		return false, nil
	}
	to := free.nextName(cfg.Dir)
	err := pre.Reclaim(name, to, fileHeaderLen, func(head []byte) error {
		f, err := parseFileHeader(head)
		switch {
		case err != nil:
			return err
		case f.v1:
			return errors.New("a version 1 file")
		case f.seq >= next:
			return fmt.Errorf("numbered %d, not below the next file's %d", f.seq, next)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if err := cfg.FS.SyncDir(cfg.Dir); err != nil {
		// Ours now: recovery removes free names, whatever a crash left.
		_ = cfg.FS.Remove(to)
		return true, fmt.Errorf("wal: sync dir %s: %w", cfg.Dir, err)
	}
	if !free.add(to) {
		return true, removeDurably(cfg, to)
	}
	return true, nil
}
