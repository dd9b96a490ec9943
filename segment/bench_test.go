package segment

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal"
)

// BenchmarkFlushFile measures the segment writer's core step on the real
// disk: closed WAL files of 16 MiB of 1 KiB entries, flushed one after
// the other, either from 256 UIDs (64 KiB each: they share sstables, which
// pebble compacts) or from 4 (4 MiB each: an sstable of their own, in the
// bottom level). Compare its MB/s with the WAL's: if flushing is slower
// than logging, WAL files pile up.
//
//	go test ./segment -run '^$' -bench BenchmarkFlushFile -benchtime 40x
func BenchmarkFlushFile(b *testing.B) {
	b.Run("uids=256", func(b *testing.B) { benchmarkFlushFile(b, 256, 64) })
	b.Run("uids=4", func(b *testing.B) { benchmarkFlushFile(b, 4, 4096) })
}

func benchmarkFlushFile(b *testing.B, uids, perUID int) {
	store, err := Open(filepath.Join(b.TempDir(), "seg"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	const size = 1024
	// Different random bytes per entry: as incompressible as most
	// commands, and no block compresses by repeating one payload.
	pool := make([]byte, uids*perUID*size)
	_, _ = rand.Read(pool)
	b.SetBytes(int64(uids * perUID * size))
	b.ResetTimer()
	var total time.Duration
	for n := 0; n < b.N; n++ {
		cf := &wal.ClosedFile{Seq: uint64(n + 1), Path: fmt.Sprint("bench", n)}
		for u := range uids {
			es := make([]wal.Entry, perUID)
			for i := range es {
				at := (u*perUID + i) * size
				es[i] = wal.Entry{Index: uint64(n*perUID + i + 1), Term: 1, Payload: pool[at : at+size]}
			}
			cf.Tables = append(cf.Tables, wal.ClosedTable{UID: fmt.Sprintf("bench-%04d", u), First: es[0].Index, Entries: wal.PackEntries(es...)})
		}
		start := time.Now()
		if _, err := store.FlushFile(cf); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/file")
	// Compactions run in the background and are not in ms/file; what
	// they wrote shows here, per byte of entries.
	m := store.db.Metrics().Total()
	written := m.TableBytesFlushed + m.TableBytesCompacted // Total counts ingested bytes as flushed
	b.ReportMetric(float64(written)/float64(b.N*uids*perUID*size), "written/byte")
}

// BenchmarkFlushLinkedFile measures a flush of a real closed WAL file of
// 16 MiB of 1 KiB entries of one UID, on the real disk: copied into an
// sstable, or kept by hard link with an sstable of references. The WAL's
// writing of the file is not in ms/file (ns/op includes it).
//
//	go test ./segment -run '^$' -bench BenchmarkFlushLinkedFile -benchtime 20x
func BenchmarkFlushLinkedFile(b *testing.B) {
	b.Run("copied", func(b *testing.B) { benchmarkFlushLinkedFile(b, -1) })
	b.Run("linked", func(b *testing.B) { benchmarkFlushLinkedFile(b, 0) })
}

func benchmarkFlushLinkedFile(b *testing.B, linkMinBytes int64) {
	dir := b.TempDir()
	store, err := Open(filepath.Join(dir, "seg"), Options{LinkMinBytes: linkMinBytes})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	node, err := actor.StartNode(actor.Config{Address: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Stop()
	segs, err := node.NewInbox()
	if err != nil {
		b.Fatal(err)
	}
	acks, err := node.NewInbox()
	if err != nil {
		b.Fatal(err)
	}
	cfg := wal.DefaultConfig(filepath.Join(dir, "wal"))
	cfg.MaxFileBytes = 1 << 30 // the benchmark rolls over itself
	w, err := wal.Start(node, cfg, wal.StartOptions{Name: "bench-wal", SegmentWriter: segs.Ref()})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop(10 * time.Second)
	wr, err := w.Register("bench", acks.Ref())
	if err != nil {
		b.Fatal(err)
	}
	tick, err := w.Register("tick", acks.Ref())
	if err != nil {
		b.Fatal(err)
	}
	const size, perFile, perWrite = 1024, 16 << 10, 64
	pool := make([]byte, perFile*size)
	_, _ = rand.Read(pool)
	write := func(wr *wal.Writer, es []wal.Entry) {
		if err := wr.Write(es...); err != nil {
			b.Fatal(err)
		}
		if _, err := acks.ReceiveTimeout(10 * time.Second); err != nil {
			b.Fatal(err)
		}
	}
	var total time.Duration
	next := uint64(1)
	for n := 0; n < b.N; n++ {
		for i := 0; i < perFile; i += perWrite {
			es := make([]wal.Entry, perWrite)
			for j := range es {
				at := (i + j) * size
				es[j] = wal.Entry{Index: next, Term: 1, Payload: pool[at : at+size]}
				next++
			}
			write(wr, es)
		}
		if err := w.Rollover(); err != nil {
			b.Fatal(err)
		}
		write(tick, []wal.Entry{{Index: uint64(n + 1), Term: 1}})
		m, err := segs.ReceiveTimeout(10 * time.Second)
		if err != nil {
			b.Fatal(err)
		}
		cf := m.(*wal.ClosedFile)
		start := time.Now()
		if _, err := store.FlushFile(cf); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		for _, t := range cf.Tables {
			t.Log.DropFile(cf.Seq)
		}
		if err := cf.Remove(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/file")
	m := store.db.Metrics().Total()
	b.ReportMetric(float64(m.TableBytesFlushed+m.TableBytesCompacted)/float64(b.N*perFile*size), "written/byte")
	if linkMinBytes >= 0 && store.Stats().Linked != int64(b.N) {
		b.Fatalf("linked %d of %d files", store.Stats().Linked, b.N)
	}
}
