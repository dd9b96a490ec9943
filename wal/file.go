package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/rago-raft/rago/wal/walfs"
)

// spareName is the file the WAL prepares as its next file (see
// walfs.Preallocator). Recovery removes it: whether its zeros were all
// made durable before a crash is unknown.
const spareName = "next.spare"

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

	// pre prepares the next file while this one fills; nil when the WAL
	// does not preallocate (see Config.PreallocateBytes).
	pre       walfs.Preallocator
	spareSize int64
	spare     spare
	adopted   bool  // f was a spare: cut its unused zeros when closing it
	recycled  bool  // f was a recycled file: its old bytes must be cut
	written   int64 // bytes written to f
	// free are the flushed files kept to start later files over (see
	// recycle.go); max is 0 when the WAL does not preallocate.
	free   freeFiles
	logger *slog.Logger
	// opened is when f started; lastLife how long the file before it
	// lasted (0 before the first rollover). They pace the preparation.
	opened   time.Time
	lastLife time.Duration
}

// spare is the state of the next file's preparation. Only the flusher
// touches it; the preparing goroutine only reports on done.
type spare struct {
	done     chan error // the running preparation reports here; nil if none runs
	cancel   context.CancelFunc
	ready    bool // a prepared spare waits under spareName
	recycled bool // the ready spare is a recycled file, not zeros
}

// newFileWriter returns the writer of cfg's files. It preallocates when
// the sync is fdatasync (with fsync every write changes metadata anyway),
// PreallocateBytes is not negative and the file system can.
func newFileWriter(cfg Config, stats *statsCounters) *fileWriter {
	w := &fileWriter{fs: cfg.FS, dir: cfg.Dir, sync: cfg.Sync, stats: stats, logger: cfg.Logger}
	if pre, ok := cfg.FS.(walfs.Preallocator); ok && cfg.Sync == SyncData && cfg.PreallocateBytes >= 0 {
		w.pre, w.spareSize = pre, cfg.PreallocateBytes
		if w.spareSize == 0 {
			w.spareSize = cfg.MaxFileBytes
		}
		w.free.max = max(cfg.RecycleFiles, 0)
	}
	return w
}

// write makes b durable according to the sync method. On error the batch
// may be partly on disk; the caller must not acknowledge it and must not
// write to this file again (the WAL is fail-stop).
func (w *fileWriter) write(b *batch) error {
	if b.newFile {
		if w.f != nil {
			w.lastLife = time.Since(w.opened)
		}
		if err := w.close(); err != nil {
			return err
		}
		name := path.Join(w.dir, fileName(b.file))
		f, adopted, err := w.open(name)
		if err != nil {
			w.stats.writeFailures.Add(1)
			return fmt.Errorf("create %s: %w", name, err)
		}
		w.f, w.seq, w.adopted, w.written, w.opened = f, b.file, adopted, 0, time.Now()
		w.recycled = adopted && w.spare.recycled
		w.prepare()
	}
	start := time.Now()
	n, err := w.f.Write(b.out)
	w.stats.write.Since(start)
	w.written += int64(n)
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

// open starts file name: the prepared spare if one is ready, else a new
// file. A spare that cannot be adopted is dropped for a new file: it only
// ever saves time.
func (w *fileWriter) open(name string) (walfs.File, bool, error) {
	w.collect(false) // a spare still being prepared is for a later file
	if w.spare.ready {
		w.spare.ready = false
		f, err := w.pre.Adopt(path.Join(w.dir, spareName), name)
		if err == nil {
			if w.spare.recycled {
				w.stats.recycled.Add(1)
			} else {
				w.stats.preallocated.Add(1)
			}
			return f, true, nil
		}
		w.logger.Warn("wal: adopting the prepared file failed; starting an empty one", "file", name, "err", err)
	}
	f, err := w.fs.Create(name)
	return f, false, err
}

// prepare starts preparing the next file in the background, unless a
// spare is ready or being prepared. It runs when the flusher starts and
// when a file starts, so the spare fills while the current file does.
func (w *fileWriter) prepare() {
	if w.pre == nil || w.spare.ready || w.spare.done != nil {
		return
	}
	if free := w.free.take(); free != "" {
		// A flushed file kept to be written over: no zeros to write.
		err := w.pre.Recycle(free, path.Join(w.dir, spareName))
		if err == nil {
			w.spare.ready, w.spare.recycled = true, true
			return
		}
		w.logger.Warn("wal: taking a flushed file to write over failed; preparing zeros", "file", free, "err", err)
		_ = w.fs.Remove(free)
	}
	w.spare.recycled = false
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w.spare.done, w.spare.cancel = done, cancel
	pre, name, size := w.pre, path.Join(w.dir, spareName), w.spareSize
	pace := pacer(ctx, w.paceRate())
	go func() { done <- pre.Preallocate(name, size, pace) }()
}

// Preparation pace, in bytes per second. Zeros written as fast as the
// disk takes them arrive as a burst that the syncs of the current file
// (and of the other nodes' WALs on the disk, which roll over at the same
// moments when they log the same entries) wait behind. So a preparation
// is spread over three quarters of the last file's life: about the WAL's
// own rate, a little faster, within bounds that keep an idle WAL from
// taking minutes. The first preparation, when the WAL starts, has no file
// to pace by and no syncs of its own to hold up: it goes at the fastest
// pace, so that the first file can start in it too.
const (
	minPace = 16 << 20
	maxPace = 512 << 20
)

// paceRate is the rate at which the next spare is written.
func (w *fileWriter) paceRate() float64 {
	if w.lastLife <= 0 {
		return maxPace
	}
	return min(max(float64(w.spareSize)/(w.lastLife.Seconds()*3/4), minPace), maxPace)
}

// pacer returns the pace function of a preparation at rate bytes per
// second: it sleeps until each chunk is due, and fails once ctx ends.
func pacer(ctx context.Context, rate float64) func(done int64) error {
	start := time.Now()
	var timer *time.Timer
	return func(done int64) error {
		wait := time.Duration(float64(done)/rate*float64(time.Second)) - time.Since(start)
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				timer.Stop()
			case <-timer.C:
			}
		}
		return ctx.Err()
	}
}

// collect takes the result of a preparation that ended; with wait, it
// waits for a running one to end.
func (w *fileWriter) collect(wait bool) {
	if w.spare.done == nil {
		return
	}
	var err error
	if wait {
		err = <-w.spare.done
	} else {
		select {
		case err = <-w.spare.done:
		default:
			return
		}
	}
	w.spare.cancel() // releases the context; the preparation ended
	w.spare.done, w.spare.cancel = nil, nil
	w.spare.ready = err == nil
	if err != nil && !errors.Is(err, context.Canceled) {
		w.logger.Warn("wal: preparing the next file failed; files start empty until it works", "dir", w.dir, "err", err)
	}
}

// close closes the current file, if any. Every batch in it was synced. A
// file that was a spare is first cut, durably, to what was written, so
// that closed files (which the segment store may keep by hard link) hold
// no unused bytes. For zeros the cut is not needed for correctness
// (recovery and ScanFile read a run of zeros to the end of a file as its
// end), so a failed cut is only logged. A recycled file's old bytes must
// go before the next file starts: recovery takes anything but zeros after
// the batches of a file that is not the last for damage. So a failed cut
// there fails the WAL.
func (w *fileWriter) close() error {
	if w.f == nil {
		return nil
	}
	if w.adopted {
		name := path.Join(w.dir, fileName(w.seq))
		if err := w.fs.Truncate(name, w.written); err != nil {
			if w.recycled {
				_ = w.f.Close()
				w.f, w.seq, w.adopted, w.recycled = nil, 0, false, false
				return fmt.Errorf("cut the old bytes after the end of %s: %w", name, err)
			}
			w.logger.Warn("wal: cut the unused end of a file", "file", name, "err", err)
		}
	}
	err := w.f.Close()
	w.f, w.seq, w.adopted, w.recycled = nil, 0, false, false
	if err != nil {
		return fmt.Errorf("close wal file: %w", err)
	}
	return nil
}

// stop ends the file writer: it closes the current file, stops a running
// preparation and waits for it, and removes the spare and the files kept
// to be written over; files flushed later are removed, not kept. Nothing
// of it runs afterwards, so a restarted WAL can recover the directory.
func (w *fileWriter) stop() error {
	err := w.close()
	if w.spare.cancel != nil {
		w.spare.cancel()
	}
	w.collect(true)
	if w.spare.ready {
		w.spare.ready = false
		if rerr := w.fs.Remove(path.Join(w.dir, spareName)); rerr != nil {
			w.logger.Warn("wal: remove the prepared next file", "dir", w.dir, "err", rerr)
		}
	}
	for _, free := range w.free.close() {
		if rerr := w.fs.Remove(free); rerr != nil {
			w.logger.Warn("wal: remove a file kept to write over", "file", free, "err", rerr)
		}
	}
	return err
}
