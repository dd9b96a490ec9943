package wal

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/rago-raft/rago/wal/walfs"
)

// fileSuffix ends every WAL file name; the stem is the file's sequence
// number, zero-padded to 20 digits so names sort in sequence order.
const fileSuffix = ".wal"

// fileName returns the base name of WAL file seq.
func fileName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, fileSuffix) }

// parseFileName returns the sequence number of a WAL file name.
func parseFileName(name string) (uint64, bool) {
	stem, ok := strings.CutSuffix(name, fileSuffix)
	if !ok || len(stem) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(stem, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}

// fileWriter owns the current WAL file handle and performs a batch's I/O:
// open the next file if the batch starts one, one write, one sync. It is
// used by one goroutine at a time (the flusher), never concurrently.
type fileWriter struct {
	fs   walfs.FS
	dir  string
	sync SyncMethod
	f    walfs.File
	seq  uint64 // sequence of f; 0 when no file is open
	// stats gets the write and sync latencies and failures (the core's
	// counters: the flusher and the process update disjoint fields).
	stats *statsCounters
}

// write makes b durable according to the sync method. On error the batch
// may be partly on disk; the caller must not acknowledge it and must not
// write to this file again (the WAL is fail-stop).
func (w *fileWriter) write(b *batch) error {
	if b.newFile {
		if err := w.close(); err != nil {
			return err
		}
		name := path.Join(w.dir, fileName(b.file))
		f, err := w.fs.Create(name)
		if err != nil {
			w.stats.writeFailures.Add(1)
			return fmt.Errorf("create %s: %w", name, err)
		}
		w.f, w.seq = f, b.file
	}
	start := time.Now()
	n, err := w.f.Write(b.out)
	w.stats.write.Since(start)
	if err != nil {
		w.stats.writeFailures.Add(1)
		return fmt.Errorf("write %d bytes (%d done) to %s: %w", len(b.out), n, fileName(w.seq), err)
	}
	if w.sync != SyncNoneUnsafeForTests {
		start = time.Now()
		if w.sync == SyncFull {
			err = w.f.Sync()
		} else {
			err = w.f.Datasync()
		}
		w.stats.sync.Since(start)
		if err != nil {
			w.stats.syncFailures.Add(1)
			return fmt.Errorf("sync %s: %w", fileName(w.seq), err)
		}
	}
	if b.newFile && w.sync != SyncNoneUnsafeForTests {
		// The name must be durable too, or a crash could lose the whole
		// file with acknowledged entries in it.
		if err := w.fs.SyncDir(w.dir); err != nil {
			w.stats.syncFailures.Add(1)
			return fmt.Errorf("sync dir %s: %w", w.dir, err)
		}
	}
	return nil
}

// close closes the current file, if any. Every batch in it was synced.
func (w *fileWriter) close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f, w.seq = nil, 0
	if err != nil {
		return fmt.Errorf("close wal file: %w", err)
	}
	return nil
}
