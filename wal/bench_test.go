package wal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal/walfs"
)

// The WAL benchmark measures, in one run and on the same disk:
//
//   - the raw fdatasync rate (append 4 KiB + fdatasync, one writer), the
//     baseline every ratio below is against;
//   - the disk's sequential write bandwidth: 1 GiB in 1 MiB appends with
//     an fdatasync after each;
//   - WAL throughput for 1, 16, 256 and 4096 writers with 16 B and 1 KiB
//     payloads: entries/s, payload MB/s, mean batch, p99 Write->Written.
//
// Reproduce with:
//
//	go test ./wal -run '^$' -bench BenchmarkWAL -benchtime 1000000x
//
// (1,000,000 entries per configuration: 1 GiB at 1 KiB, the same volume
// as the sequential baseline.)
//
// RAGO_BENCH_DIR chooses the directory (default: the system temp dir).

type diskBaseline struct {
	fsyncPerSec float64 // 4 KiB append + fdatasync per second
	seqMBps     float64 // MB/s of 1 GiB in 1 MiB appends with an fdatasync each
}

var (
	baselineOnce sync.Once
	baseline     diskBaseline
	baselineErr  error
)

func benchDir(b *testing.B) string {
	b.Helper()
	root := os.Getenv("RAGO_BENCH_DIR")
	if root == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(root, "rago-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func measureDisk(dir string) (diskBaseline, error) {
	fs := walfs.OS()
	var out diskBaseline
	f, err := fs.Create(filepath.Join(dir, "fsync.bench"))
	if err != nil {
		return out, err
	}
	buf := make([]byte, 4096)
	n := 0
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		if _, err := f.Write(buf); err != nil {
			return out, err
		}
		if err := f.Datasync(); err != nil {
			return out, err
		}
		n++
	}
	out.fsyncPerSec = float64(n) / time.Since(start).Seconds()
	if err := f.Close(); err != nil {
		return out, err
	}

	// Sequential bandwidth: 1 GiB in 1 MiB appends with an fdatasync after
	// each. The volume matters on this kind of disk: short bursts are
	// absorbed by a device cache at several times the sustained rate, so
	// the baseline writes as much as one 1 KiB WAL configuration does.
	mbps, err := measureSequential(fs, filepath.Join(dir, "seq.bench"), 1<<20, 1<<30)
	if err != nil {
		return out, err
	}
	out.seqMBps = mbps
	return out, nil
}

func measureSequential(fs walfs.FS, name string, chunkSize, volume int) (float64, error) {
	g, err := fs.Create(name)
	if err != nil {
		return 0, err
	}
	chunk := make([]byte, chunkSize)
	for i := range chunk {
		chunk[i] = byte(i * 31)
	}
	start := time.Now()
	for written := 0; written < volume; written += chunkSize {
		if _, err := g.Write(chunk); err != nil {
			return 0, err
		}
		if err := g.Datasync(); err != nil {
			return 0, err
		}
	}
	mbps := float64(volume) / 1e6 / time.Since(start).Seconds()
	if err := g.Close(); err != nil {
		return 0, err
	}
	return mbps, fs.Remove(name)
}

func disk(b *testing.B) diskBaseline {
	baselineOnce.Do(func() {
		dir := benchDir(b)
		baseline, baselineErr = measureDisk(dir)
		if baselineErr == nil {
			fmt.Printf("disk baseline: fdatasync(4 KiB append) %.0f/s, sequential write %.0f MB/s (dir %s)\n", baseline.fsyncPerSec, baseline.seqMBps, dir)
		}
	})
	if baselineErr != nil {
		b.Fatal(baselineErr)
	}
	return baseline
}

// BenchmarkDisk reports the baseline on its own.
func BenchmarkDisk(b *testing.B) {
	base := disk(b)
	b.ReportMetric(base.fsyncPerSec, "fdatasync/s")
	b.ReportMetric(base.seqMBps, "seqMB/s")
}

func BenchmarkWAL(b *testing.B) {
	base := disk(b)
	for _, size := range []int{16, 1024} {
		for _, writers := range []int{1, 16, 256, 4096} {
			b.Run(fmt.Sprintf("payload=%d/writers=%d", size, writers), func(b *testing.B) {
				runWALBench(b, base, writers, size, false, nil)
			})
		}
	}
}

// BenchmarkRecycledFiles is BenchmarkWAL's 1 KiB cell with 256 writers
// and 8 MiB files (the files of a raftserver node) in both ways a flushed
// file can go: removed, so that every file starts over zeros the WAL
// wrote ahead, or handed back to be written over (ClosedFile.Recycle, as
// the segment writer does when it copied the file's entries, which is the
// case with many clusters per node). zero-MB/s is the rate of zeros in
// the spares that files started in, on top of the files' own bytes
// (file-MB/s). -count runs each sub-benchmark's rounds one after the
// other; docs/benchmarks.md alternates them instead:
//
//	go test ./wal -run '^$' -bench BenchmarkRecycledFiles -benchtime 200000x
func BenchmarkRecycledFiles(b *testing.B) {
	base := disk(b)
	for _, recycle := range []bool{false, true} {
		name := "removed"
		if recycle {
			name = "recycled"
		}
		b.Run(name, func(b *testing.B) {
			runWALBench(b, base, 256, 1024, recycle, func(c *Config) { c.MaxFileBytes = 8 << 20 })
		})
	}
}

// totalWindow is how many entries all writers together keep in flight:
// each writer pipelines totalWindow/writers entries (at least 4), like a
// Raft leader streaming commands, so every configuration offers the WAL
// about the same load and only its spread over writers changes.
const totalWindow = 4096

// startBenchWAL starts a node and a WAL on it, in a directory of the
// benchmark's, whose closed files a stand-in segment writer removes at
// once (or, with recycle, hands back to be written over, as after a copy
// into segments): the WAL's cost only. stop stops both (the benchmark
// function runs more than once per benchmark, so it is not left to
// b.Cleanup).
func startBenchWAL(b *testing.B, recycle bool, set func(*Config)) (node *actor.Node, w *WAL, stop func()) {
	node, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	sink, err := node.NewInbox()
	if err != nil {
		node.Stop()
		b.Fatal(err)
	}
	go func() {
		for m := range sink.C() {
			if cf, ok := m.(*ClosedFile); ok {
				if recycle {
					_ = cf.Recycle()
				} else {
					_ = cf.Remove()
				}
			}
		}
	}()
	cfg := DefaultConfig(filepath.Join(benchDir(b), "wal"))
	set(&cfg)
	w, err = Start(node, cfg, StartOptions{SegmentWriter: sink.Ref()})
	if err != nil {
		sink.Close()
		node.Stop()
		b.Fatal(err)
	}
	return node, w, func() {
		_ = w.Stop(time.Minute)
		sink.Close()
		node.Stop()
	}
}

func runWALBench(b *testing.B, base diskBaseline, writers, size int, recycle bool, set func(*Config)) {
	window := max(4, totalWindow/writers)
	var spare int64
	node, w, stop := startBenchWAL(b, recycle, func(c *Config) {
		c.MaxInFlightEntries = window
		if set != nil {
			set(c)
		}
		spare = c.MaxFileBytes
	})
	defer stop()

	perWriter := max(1, b.N/writers)
	total := perWriter * writers
	type result struct {
		lat []time.Duration
		err error
	}
	results := make([]result, writers)
	payload := make([]byte, size)
	var ready, wg sync.WaitGroup
	startGun := make(chan struct{})
	for i := 0; i < writers; i++ {
		ib, err := node.NewInbox()
		if err != nil {
			b.Fatal(err)
		}
		defer ib.Close()
		wr, err := w.Register(fmt.Sprintf("bench-%04d", i), ib.Ref())
		if err != nil {
			b.Fatal(err)
		}
		ready.Add(1)
		wg.Add(1)
		go func(r *result) {
			defer wg.Done()
			sent := make([]time.Time, window+1)
			r.lat = make([]time.Duration, 0, perWriter)
			ready.Done()
			<-startGun
			next, acked := uint64(1), uint64(0)
			for acked < uint64(perWriter) {
				for next <= uint64(perWriter) && next-acked <= uint64(window) {
					sent[next%uint64(len(sent))] = time.Now()
					if err := wr.Write(Entry{Index: next, Term: 1, Payload: payload}); err != nil {
						break // backpressure: wait for the next Written
					}
					next++
				}
				m := <-ib.C()
				wn, ok := m.(Written)
				if !ok {
					r.err = fmt.Errorf("unexpected %#v", m)
					return
				}
				now := time.Now()
				for i := wn.From; i <= wn.To; i++ {
					r.lat = append(r.lat, now.Sub(sent[i%uint64(len(sent))]))
				}
				acked = wn.To
			}
		}(&results[i])
	}
	ready.Wait()
	before := w.Stats()
	b.ResetTimer()
	start := time.Now()
	close(startGun)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	stats := w.Stats()
	var lat []time.Duration
	for _, r := range results {
		if r.err != nil {
			b.Fatal(r.err)
		}
		lat = append(lat, r.lat...)
	}
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	eps := float64(total) / elapsed.Seconds()
	mbps := eps * float64(size) / 1e6
	batches := stats.Batches - before.Batches
	b.ReportMetric(eps, "entries/s")
	b.ReportMetric(float64(stats.Bytes-before.Bytes)/1e6/elapsed.Seconds(), "file-MB/s")
	b.ReportMetric(float64((stats.Preallocated-before.Preallocated)*spare)/1e6/elapsed.Seconds(), "zero-MB/s")
	b.ReportMetric(mbps, "MB/s")
	b.ReportMetric(float64(stats.Entries-before.Entries)/float64(max(batches, 1)), "entries/batch")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(p99.Microseconds()), "p99-us")
	b.ReportMetric(eps/base.fsyncPerSec, "x-fsync-rate")
	b.ReportMetric(100*mbps/base.seqMBps, "%-seq-bw")
}

// BenchmarkOneWrite writes one entry at a time and waits for its Written,
// so each op is one batch: one write and one fdatasync, and the op's time
// is the WAL's latency. It runs with files started empty (appends, whose
// syncs also commit the file's size) and in preallocated spares (data-only
// syncs), alternated in rounds within one run:
//
//	go test ./wal -run '^$' -bench BenchmarkOneWrite -benchtime 20000x -count 3
//
// 20,000 entries of 1 KiB make about 2.7 files of 8 MiB, so rollovers and
// the paced preparation are part of it; the first file, which starts
// before any spare can be ready, is left out.
func BenchmarkOneWrite(b *testing.B) {
	for _, size := range []int{16, 1024} {
		for _, mode := range []struct {
			name string
			pre  int64
		}{{"empty", -1}, {"spare", 0}} {
			b.Run(fmt.Sprintf("payload=%d/files=%s", size, mode.name), func(b *testing.B) {
				runOneWrite(b, size, mode.pre)
			})
		}
	}
}

func runOneWrite(b *testing.B, size int, prealloc int64) {
	node, w, stop := startBenchWAL(b, false, func(c *Config) {
		c.MaxFileBytes = 8 << 20 // as a raftserver node's
		c.PreallocateBytes = prealloc
	})
	defer stop()
	ib, err := node.NewInbox()
	if err != nil {
		b.Fatal(err)
	}
	defer ib.Close()
	wr, err := w.Register("one", ib.Ref())
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, size)
	write := func(i uint64) {
		if err := wr.Write(Entry{Index: i, Term: 1, Payload: payload}); err != nil {
			b.Fatal(err)
		}
		if m := <-ib.C(); m != (Written{UID: "one", Term: 1, From: i, To: i}) {
			b.Fatalf("unexpected %#v", m)
		}
	}
	// The first file starts with the first write, before the spare
	// prepared at start can be ready; the measured writes start in the
	// second file, as a node's do once it has run for a moment.
	write(1)
	if err := w.Rollover(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	write(2)
	lat := make([]time.Duration, 0, b.N)
	before := w.Stats()
	b.ResetTimer()
	for i := 3; i < 3+b.N; i++ {
		start := time.Now()
		write(uint64(i))
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	stats := w.Stats()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
	b.ReportMetric(float64(stats.Preallocated-before.Preallocated), "spares")
	b.ReportMetric(float64(stats.Files-before.Files), "files")
}
