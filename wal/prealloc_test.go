package wal

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

// awaitSpare waits for the next file's preparation, as a rollover that
// comes later than the preparation would find it: it makes the harness's
// use of spares deterministic.
func (h *harness) awaitSpare() { h.o.fw.collect(true) }

// logLines collects what a WAL logs, for tests that check its warnings.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logLines) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// loggedConfig is testConfig with its logs collected.
func loggedConfig(fs walfs.FS) (Config, *logLines) {
	logs := &logLines{}
	cfg := testConfig(fs)
	cfg.Logger = logs.logger()
	return cfg, logs
}

// failTruncates makes every truncate fail: closed files keep their zeros.
func failTruncates(op walfs.Op, name string) error {
	if op == walfs.OpTruncate {
		return syscall.EIO
	}
	return nil
}

// writeFiles writes n rounds of one 500-byte entry for each of "a" and
// "b", one batch per round, waiting for the spare after each: with 4 KiB
// files that is a rollover every few rounds.
func writeFiles(t *testing.T, h *harness, from, n uint64) {
	t.Helper()
	payload := string(make([]byte, 500))
	for i := from; i < from+n; i++ {
		for _, uid := range []string{"a", "b"} {
			require.NoError(t, h.writer(uid).Write(ent(i, 1, "x"+payload)))
		}
		h.flush()
		h.awaitSpare()
	}
}

// requireLogs checks that uid's recovered log holds entries 1..last.
func requireLogs(t *testing.T, o *opened, last uint64) {
	t.Helper()
	for _, uid := range []string{"a", "b"} {
		v := o.tables.Get(uid).View()
		first, _, _ := v.First()
		got, _, _ := v.Last()
		require.Equal(t, uint64(1), first, uid)
		require.Equal(t, last, got, uid)
	}
}

// TestFilesStartInPreparedSpares checks the life of the spare: every file
// after the first starts in it, a closed file is cut to what was written,
// a new spare waits while a file fills, and stopping removes it.
func TestFilesStartInPreparedSpares(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	writeFiles(t, h, 1, 40)
	s := h.o.core.stats.load()
	require.GreaterOrEqual(t, s.Files, int64(5))
	require.Equal(t, s.Files-1, s.Preallocated, "every file after the first starts in a spare")

	spare, err := fs.ReadFile("/wal/" + spareName)
	require.NoError(t, err, "the next file waits, prepared")
	require.Len(t, spare, int(h.cfg.MaxFileBytes))
	require.True(t, allZero(spare))

	// Closed files were cut to their batches; the current one is not yet.
	var total int64
	for seq := uint64(1); seq < h.o.core.file; seq++ {
		data, err := fs.ReadFile("/wal/" + fileName(seq))
		require.NoError(t, err)
		total += int64(len(data))
	}
	cur, err := fs.ReadFile("/wal/" + fileName(h.o.core.file))
	require.NoError(t, err)
	require.Len(t, cur, int(h.cfg.MaxFileBytes), "the current file keeps its zeros while it fills")
	require.Equal(t, s.Bytes, total+h.o.core.fileBytes, "closed files hold their batches and nothing more")

	h.close()
	names, err := fs.List("/wal")
	require.NoError(t, err)
	require.NotContains(t, names, spareName, "stop removes the spare")
	cur, err = fs.ReadFile("/wal/" + fileName(h.o.core.file))
	require.NoError(t, err)
	require.Len(t, cur, int(h.o.core.fileBytes), "stop cuts the current file too")

	h2 := openHarness(t, testConfig(fs.Crash(nil)))
	requireLogs(t, h2.o, 40)
	h2.close()
}

// TestZerosEndAFile crashes while the current file still has its zeros and
// while a closed file kept them (its cut failed): recovery reads both as
// ending with their last batch, cuts nothing and loses nothing.
func TestZerosEndAFile(t *testing.T) {
	fs := walfs.NewMem()
	fs.SetFault(failTruncates)
	cfg, logs := loggedConfig(fs)
	h := openHarness(t, cfg)
	writeFiles(t, h, 1, 30)
	require.GreaterOrEqual(t, h.o.core.stats.load().Preallocated, int64(2))
	require.Contains(t, logs.String(), "cut the unused end", "a failed cut is logged, not fatal")
	closed, err := fs.ReadFile("/wal/" + fileName(h.o.core.file-1))
	require.NoError(t, err)
	require.Len(t, closed, int(h.cfg.MaxFileBytes), "the cut failed, so the zeros stayed")

	// The process dies: no stop, so the current file keeps its zeros too.
	crashed := fs.Crash(nil)
	cfg2, logs2 := loggedConfig(crashed)
	h2 := openHarness(t, cfg2)
	requireLogs(t, h2.o, 30)
	require.NotContains(t, logs2.String(), "torn", "zeros after the last batch are not damage")
	names, err := crashed.List("/wal")
	require.NoError(t, err)
	require.NotContains(t, names, spareName, "recovery removes a leftover spare")

	// The closed file with its zeros scans like any other.
	var records int
	err = ScanFile(bytes.NewReader(closed), func(Record, int64, int) error { records++; return nil })
	require.NoError(t, err)
	require.Positive(t, records)
	h2.close()
}

// TestDataAfterZerosIsDamage: zeros end a file only if nothing but zeros
// follows. A batch after them, in a closed file or in the last one, is
// damage that recovery and ScanFile refuse.
func TestDataAfterZerosIsDamage(t *testing.T) {
	for _, which := range []string{"closed", "last"} {
		t.Run(which, func(t *testing.T) {
			fs := walfs.NewMem()
			fs.SetFault(failTruncates)
			cfg := testConfig(fs)
			cfg.PreallocateBytes = 16 << 10 // room for a batch after the last one
			h := openHarness(t, cfg)
			writeFiles(t, h, 1, 30)
			seq := h.o.core.file
			if which == "closed" {
				seq--
			}
			name := "/wal/" + fileName(seq)
			data, err := fs.ReadFile(name)
			require.NoError(t, err)
			firstBatch := fileHeaderLen
			_, _, n, _, err := decodeBatch(data[firstBatch:], fileFormat{seq: seq})
			require.NoError(t, err)
			// Copy the file's first batch near the end of its zeros.
			at := len(data) - n - 8
			require.True(t, allZero(data[at:at+n]))
			copy(data[at:], data[firstBatch:firstBatch+n])
			crashed := fs.Crash(nil)
			crashed.SetFault(nil)
			rewrite(t, crashed, name, data)

			_, err = tryOpenHarness(t, testConfig(crashed))
			require.ErrorIs(t, err, ErrCorrupt)
			var ce *CorruptionError
			require.True(t, errors.As(err, &ce))
			require.Equal(t, name, ce.File)

			err = ScanFile(bytes.NewReader(data), func(Record, int64, int) error { return nil })
			require.ErrorIs(t, err, ErrCorrupt)
		})
	}
}

// TestTornBatchInASpareIsCut: a batch of which only a part reached a
// preallocated file reads as the start of a torn tail, as in an appended
// file: recovery cuts it and keeps the batches before it.
func TestTornBatchInASpareIsCut(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	rounds := uint64(30)
	writeFiles(t, h, 1, rounds)
	for h.o.core.fileBytes == int64(h.o.core.lastLen) {
		// The last batch started its file; tear one in the middle of a file.
		rounds++
		writeFiles(t, h, rounds, 1)
	}
	require.Positive(t, h.o.core.stats.load().Preallocated)
	name := "/wal/" + fileName(h.o.core.file)
	data, err := fs.ReadFile(name)
	require.NoError(t, err)
	end := int(h.o.core.fileBytes)
	start := end - h.o.core.lastLen
	// The last batch's second half never reached the disk: zeros again.
	clear(data[start+(end-start)/2 : end])
	crashed := fs.Crash(nil)
	rewrite(t, crashed, name, data)

	h2 := openHarness(t, testConfig(crashed))
	for _, uid := range []string{"a", "b"} {
		last, _, _ := h2.o.tables.Get(uid).View().Last()
		require.Equal(t, rounds-1, last, uid)
	}
	cut, err := crashed.ReadFile(name)
	require.NoError(t, err)
	require.Len(t, cut, start, "the torn batch and the zeros after it are cut")
	h2.close()
}

// TestPreparationFailureFallsBackToEmptyFiles: a spare that cannot be
// made (here the disk refuses it) only costs the faster syncs.
func TestPreparationFailureFallsBackToEmptyFiles(t *testing.T) {
	fs := walfs.NewMem()
	fs.SetFault(func(op walfs.Op, name string) error {
		if strings.HasSuffix(name, spareName) {
			return syscall.ENOSPC
		}
		return nil
	})
	cfg, logs := loggedConfig(fs)
	h := openHarness(t, cfg)
	writeFiles(t, h, 1, 30)
	s := h.o.core.stats.load()
	require.GreaterOrEqual(t, s.Files, int64(3))
	require.Zero(t, s.Preallocated)
	require.Zero(t, s.WriteFailures)
	require.Contains(t, logs.String(), "preparing the next file failed")
	h.close()
	h2 := openHarness(t, testConfig(fs.Crash(nil)))
	requireLogs(t, h2.o, 30)
	h2.close()
}

// TestPreallocationOnlyWithDatasync: it is off when asked, and with fsync,
// which commits metadata on every sync anyway.
func TestPreallocationOnlyWithDatasync(t *testing.T) {
	for name, set := range map[string]func(*Config){
		"negative": func(c *Config) { c.PreallocateBytes = -1 },
		"fsync":    func(c *Config) { c.Sync = SyncFull },
		"none":     func(c *Config) { c.Sync = SyncNoneUnsafeForTests },
	} {
		t.Run(name, func(t *testing.T) {
			fs := walfs.NewMem()
			cfg := testConfig(fs)
			set(&cfg)
			h := openHarness(t, cfg)
			writeFiles(t, h, 1, 30)
			require.Zero(t, h.o.core.stats.load().Preallocated)
			names, err := fs.List("/wal")
			require.NoError(t, err)
			require.NotContains(t, names, spareName)
			h.close()
		})
	}
}

// TestPreallocateBytesSizesTheSpare: a spare smaller than a file still
// works; the batches past its end grow the file as appends do.
func TestPreallocateBytesSizesTheSpare(t *testing.T) {
	fs := walfs.NewMem()
	cfg := testConfig(fs)
	cfg.PreallocateBytes = 1000
	h := openHarness(t, cfg)
	writeFiles(t, h, 1, 30)
	require.Positive(t, h.o.core.stats.load().Preallocated)
	spare, err := fs.ReadFile("/wal/" + spareName)
	require.NoError(t, err)
	require.Len(t, spare, 1000)
	h.close()
	h2 := openHarness(t, testConfig(fs.Crash(nil)))
	requireLogs(t, h2.o, 30)
	h2.close()
}

// TestStopEndsAPreparationInProgress stops a WAL on the real file system
// while it zero-fills a large spare: the stop cancels the preparation,
// waits for it and leaves no spare behind.
func TestStopEndsAPreparationInProgress(t *testing.T) {
	n := startNode(t)
	segs, server := inbox(t, n), inbox(t, n)
	dir := t.TempDir()
	cfg := DefaultConfig(dir)
	cfg.MaxFileBytes = 4 << 10
	cfg.PreallocateBytes = 1 << 30 // far more than the test waits for
	w, err := Start(n, cfg, StartOptions{SegmentWriter: segs.Ref()})
	require.NoError(t, err)
	wr, err := w.Register("srv", server.Ref())
	require.NoError(t, err)
	require.NoError(t, wr.Write(Entry{Index: 1, Term: 1, Payload: []byte("x")}))
	receiveWritten(t, server, 0)
	// The preparation started with the first file; let it get going.
	require.Eventually(t, func() bool {
		st, err := os.Stat(filepath.Join(dir, spareName))
		return err == nil && st.Size() > 0
	}, 10*time.Second, time.Millisecond)
	require.NoError(t, w.Stop(30*time.Second))
	_, err = os.Stat(filepath.Join(dir, spareName))
	require.ErrorIs(t, err, os.ErrNotExist)

	o, err := open(DefaultConfig(dir))
	require.NoError(t, err)
	last, _, ok := o.tables.Get("srv").View().Last()
	require.True(t, ok)
	require.Equal(t, uint64(1), last)
	require.NoError(t, o.fw.stop())
}

// TestCancelledPreparationLeavesNothing: the file systems remove a spare
// they could not finish.
func TestCancelledPreparationLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	name := filepath.Join(dir, spareName)
	require.ErrorIs(t, walfs.OS().(walfs.Preallocator).Preallocate(name, 4<<20, pacer(ctx, 1<<30)), context.Canceled)
	_, err := os.Stat(name)
	require.ErrorIs(t, err, os.ErrNotExist)
}
