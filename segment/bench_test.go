package segment

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

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
