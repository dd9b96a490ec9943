package pebblesched

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// fakeDB wants `want` compactions and allows `allowed` at once.
type fakeDB struct {
	mu      sync.Mutex
	allowed int
	want    int
	handles []pebble.CompactionGrantHandle
}

func (f *fakeDB) GetAllowedWithoutPermission() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.allowed
}

func (f *fakeDB) GetWaitingCompaction() (bool, pebble.WaitingCompaction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.want > 0, pebble.WaitingCompaction{}
}

func (f *fakeDB) Schedule(h pebble.CompactionGrantHandle) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.want == 0 {
		return false
	}
	f.want--
	f.handles = append(f.handles, h)
	return true
}

func (f *fakeDB) granted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.handles)
}

func TestGrantsOnEventsWithinTheLimit(t *testing.T) {
	db := &fakeDB{allowed: 1, want: 3}
	s := New()
	s.Register(1, db)
	defer s.Unregister()

	ok, h := s.TrySchedule()
	require.True(t, ok)
	ok, _ = s.TrySchedule()
	require.False(t, ok, "one at a time")

	// Raising the limit and telling the scheduler grants another.
	db.mu.Lock()
	db.allowed = 2
	db.mu.Unlock()
	s.UpdateGetAllowedWithoutPermission()
	require.Eventually(t, func() bool { return db.granted() == 1 }, 5*time.Second, time.Millisecond)

	// Finishing one lets the next waiting one start.
	h.Done()
	require.Eventually(t, func() bool { return db.granted() == 2 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	require.Equal(t, 2, db.granted(), "never more than allowed")
}

func TestUnregisterStopsGranting(t *testing.T) {
	db := &fakeDB{allowed: 4, want: 4}
	s := New()
	s.Register(1, db)
	s.Unregister()
	ok, _ := s.TrySchedule()
	require.False(t, ok)
	s.UpdateGetAllowedWithoutPermission()
	time.Sleep(10 * time.Millisecond)
	require.Zero(t, db.granted())
}

// TestPebbleCompactsWithIt writes enough flushed tables for pebble to want
// compactions, and checks that they run.
func TestPebbleCompactsWithIt(t *testing.T) {
	opts := &pebble.Options{FS: vfs.NewMem(), L0CompactionThreshold: 2}
	opts.Experimental.CompactionScheduler = New()
	db, err := pebble.Open("db", opts)
	require.NoError(t, err)
	defer db.Close()
	for i := range 12 {
		for j := range 100 {
			require.NoError(t, db.Set([]byte(fmt.Sprintf("k%03d-%03d", j, i)), []byte("v"), pebble.NoSync))
		}
		require.NoError(t, db.Flush())
	}
	require.Eventually(t, func() bool { return db.Metrics().Compact.Count > 0 }, 10*time.Second, 5*time.Millisecond)
}
