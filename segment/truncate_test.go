package segment

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// TestTruncateLater: a queued truncation happens without the caller
// waiting for the store's lock, Settle carries out what is still queued
// for a UID at once, Close what is queued for any, and a truncation
// queued for a UID that is then deleted leaves nothing behind.
func TestTruncateLater(t *testing.T) {
	e := newLinkEnv(t)
	s := e.open(e.fs)
	for _, uid := range []string{"a", "b", "c", "d"} {
		e.write(uid, entries(1, 1, 10))
	}
	_, err := s.FlushFile(e.closeFile())
	require.NoError(t, err)
	firstOf := func(s *Store, uid string) uint64 {
		first, _, ok, err := s.Bounds(uid)
		require.NoError(t, err)
		if !ok {
			return 0
		}
		return first
	}

	// Held lock: the caller goes on, the truncation waits for the lock.
	s.mu.Lock()
	done := make(chan struct{})
	go func() {
		s.TruncateLater("a", 4)
		s.TruncateLater("a", 3) // folds into the highest
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("TruncateLater waited for the store's lock")
	}
	require.Equal(t, uint64(1), firstOf(s, "a"), "not truncated while a flush holds the lock")
	s.mu.Unlock()
	require.Eventually(t, func() bool { return firstOf(s, "a") == 5 }, 10*time.Second, time.Millisecond)

	// Settle: at once, also while the goroutine is held up elsewhere.
	s.mu.Lock()
	s.TruncateLater("c", 8) // the goroutine takes it and waits for the lock
	require.Eventually(t, func() bool {
		s.trunc.mu.Lock()
		defer s.trunc.mu.Unlock()
		return s.trunc.running["c"]
	}, 10*time.Second, time.Millisecond)
	s.TruncateLater("b", 6)
	settled := make(chan error, 1)
	go func() { settled <- s.Settle("b") }()
	s.mu.Unlock()
	require.NoError(t, <-settled)
	require.Equal(t, uint64(7), firstOf(s, "b"))
	require.NoError(t, s.Settle("c"), "waits for the running truncation of c")
	require.Equal(t, uint64(9), firstOf(s, "c"))
	require.NoError(t, s.Settle("d"), "nothing queued")
	require.Equal(t, uint64(1), firstOf(s, "d"))

	// A UID deleted with a truncation queued: no floor comes back.
	s.mu.Lock()
	s.TruncateLater("d", 5)
	s.mu.Unlock()
	require.NoError(t, s.DeleteUID("d"))
	floor, err := s.Floor("d")
	require.NoError(t, err)
	require.Zero(t, floor)
	require.NoError(t, s.Truncate("d", 7), "a deleted UID has nothing to truncate")
	floor, err = s.Floor("d")
	require.NoError(t, err)
	require.Zero(t, floor)

	// Close carries out what is queued and makes it durable.
	s.mu.Lock()
	s.TruncateLater("b", 9)
	s.mu.Unlock()
	require.NoError(t, s.Close())
	s.TruncateLater("b", 10) // after Close: nothing happens
	s2 := e.open(e.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
	defer s2.Close()
	require.Equal(t, uint64(10), firstOf(s2, "b"))
}
