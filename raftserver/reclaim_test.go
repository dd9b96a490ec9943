package raftserver

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEmptiedLinkedWALFilesGoBackToTheWAL: with one busy server the
// segment store keeps whole WAL files by hard link; once snapshots have
// truncated their entries, the WAL takes them back and starts later files
// over them instead of over zeros, and what was written survives a
// restart.
func TestEmptiedLinkedWALFilesGoBackToTheWAL(t *testing.T) {
	c := startClusterOf(t, 1, "kv", func(cfg *SystemConfig) {
		cfg.WALMaxFileBytes = 2 << 20
		// Snapshots rarer than rollovers: files are flushed, and linked,
		// before a snapshot covers their entries.
		cfg.Snapshots = SnapshotPolicy{Entries: 5000, MinInterval: 20 * time.Millisecond}
	})
	s := c.systems[0]
	pad := strings.Repeat("v", 1024)
	var mu sync.Mutex
	acked := map[string]string{}
	reclaimedAndReused := func() bool {
		m := s.Metrics()
		return m.Segments.LinkedReclaimed > 0 && m.WAL.Recycled > 0
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for n := 0; n < 4000 && !reclaimedAndReused(); n++ {
				key, val := fmt.Sprintf("w%d-%d", w, n%10), fmt.Sprintf("%d-%s", n, pad)
				if _, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set "+key+" "+val)); err != nil {
					t.Errorf("set %s: %v", key, err)
					return
				}
				mu.Lock()
				acked[key] = val
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	m := s.Metrics()
	require.Positive(t, m.Segments.Linked, "the server's runs filled WAL files")
	require.Positive(t, m.Segments.LinkedReclaimed, "snapshots emptied linked files and the WAL took them back: %+v", m.Segments)
	require.Positive(t, m.WAL.Recycled, "a WAL file started over a file taken back")

	require.NoError(t, s.Stop())
	c.systems[0] = nil
	c.restart(0)
	c.check(c.systems[0], acked)
}
