package segment

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/rago-raft/rago/wal"
)

// BenchmarkFlushFile measures the segment writer's core step on the real
// disk: one closed WAL file of 16 MiB (256 UIDs, 1 KiB entries) written as
// one pebble batch and made durable with one Flush. Compare its MB/s with
// the WAL's: if flushing is slower than logging, WAL files pile up.
//
//	go test ./segment -run '^$' -bench BenchmarkFlushFile -benchtime 10x
func BenchmarkFlushFile(b *testing.B) {
	store, err := Open(filepath.Join(b.TempDir(), "seg"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	const uids, perUID, size = 256, 64, 1024
	payload := make([]byte, size)
	b.SetBytes(uids * perUID * size)
	b.ResetTimer()
	var total time.Duration
	for n := 0; n < b.N; n++ {
		cf := &wal.ClosedFile{Seq: uint64(n + 1), Path: fmt.Sprint("bench", n)}
		for u := 0; u < uids; u++ {
			es := make([]wal.Entry, perUID)
			for i := range es {
				es[i] = wal.Entry{Index: uint64(n*perUID + i + 1), Term: 1, Payload: payload}
			}
			cf.Tables = append(cf.Tables, wal.ClosedTable{UID: fmt.Sprintf("bench-%04d", u), First: es[0].Index, Entries: es})
		}
		start := time.Now()
		if _, err := store.FlushFile(cf); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/file")
}
