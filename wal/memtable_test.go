package wal

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func writesOf(reset bool, first, term uint64, n int) []memWrite {
	ws := make([]memWrite, n)
	for i := range ws {
		idx := first + uint64(i)
		ws[i] = memWrite{Entry: Entry{Index: idx, Term: term, Payload: []byte(fmt.Sprint(idx, "@", term))}, reset: reset && i == 0}
	}
	return ws
}

func TestMemLogAppendOverwriteAcrossFiles(t *testing.T) {
	m := newMemLog("u")
	m.publish(1, writesOf(false, 1, 1, 10)) // file 1: 1..10 @1
	m.publish(2, writesOf(false, 11, 1, 5)) // file 2: 11..15 @1
	m.publish(2, writesOf(false, 6, 2, 3))  // overwrite at 6 in file 2: log is 1..8
	v := m.View()
	last, term, ok := v.Last()
	require.True(t, ok)
	require.Equal(t, uint64(8), last)
	require.Equal(t, uint64(2), term)
	e, p := v.Get(5)
	require.Equal(t, Present, p)
	require.Equal(t, "5@1", string(e.Payload))
	e, p = v.Get(7)
	require.Equal(t, Present, p)
	require.Equal(t, "7@2", string(e.Payload))
	_, p = v.Get(9)
	require.Equal(t, Absent, p, "stale entry 9 of file 1 must stay hidden")
	_, p = v.Get(12)
	require.Equal(t, Absent, p)
	first, reset, ok := v.First()
	require.True(t, ok)
	require.False(t, reset)
	require.Equal(t, uint64(1), first)

	// Dropping file 1 (flushed to segments) leaves indexes below 6 to the
	// segments.
	m.DropFile(1)
	_, p = m.View().Get(3)
	require.Equal(t, Unknown, p)
	_, p = m.View().Get(9)
	require.Equal(t, Absent, p)
}

func TestMemLogResetHidesOlder(t *testing.T) {
	m := newMemLog("u")
	m.publish(1, writesOf(false, 1, 1, 5))
	m.publish(2, writesOf(true, 100, 3, 2))
	v := m.View()
	_, p := v.Get(3)
	require.Equal(t, Absent, p)
	first, reset, _ := v.First()
	require.True(t, reset)
	require.Equal(t, uint64(100), first)
	last, _, _ := v.Last()
	require.Equal(t, uint64(101), last)
}

func TestMemLogOldViewUnchangedByOverwrite(t *testing.T) {
	m := newMemLog("u")
	m.publish(1, writesOf(false, 1, 1, 4))
	old := m.View()
	m.publish(1, writesOf(false, 2, 2, 3))
	e, _ := old.Get(3)
	require.Equal(t, "3@1", string(e.Payload), "a view must be a stable snapshot")
	e, _ = m.View().Get(3)
	require.Equal(t, "3@2", string(e.Payload))
}

// TestMemLogConcurrentReaders runs readers against a publisher that
// appends, overwrites, rolls files and drops them; every view a reader
// loads must be internally consistent: a contiguous run ending at Last,
// each entry carrying its own index. Run with -race.
func TestMemLogConcurrentReaders(t *testing.T) {
	m := newMemLog("u")
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				v := m.View()
				last, _, ok := v.Last()
				if !ok {
					continue
				}
				first, _, _ := v.First()
				for i := first; i <= last; i++ {
					e, p := v.Get(i)
					if p == Unknown {
						continue // dropped older file: would be in segments
					}
					if p != Present || e.Index != i || string(e.Payload) != fmt.Sprint(i, "@", e.Term) {
						t.Errorf("index %d: presence %v entry %+v", i, p, e)
						return
					}
				}
				if _, p := v.Get(last + 1); p != Absent {
					t.Errorf("index past last %d: presence %v", last+1, p)
					return
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var last, term uint64
	file := uint64(1)
	for i := 0; i < 3000; i++ {
		switch k := rng.IntN(10); {
		case k == 0 && last > 1:
			at := 1 + rng.Uint64N(last)
			term++
			n := 1 + rng.IntN(5)
			m.publish(file, writesOf(false, at, term, n))
			last = at + uint64(n) - 1
		case k == 1:
			file++
			if file > 3 {
				m.DropFile(file - 3)
			}
		default:
			n := 1 + rng.IntN(8)
			m.publish(file, writesOf(false, last+1, term, n))
			last += uint64(n)
		}
	}
	stop.Store(true)
	wg.Wait()
}

func TestMemLogReleaseDropsOnlyCoveredOldestTables(t *testing.T) {
	m := newMemLog("u")
	m.publish(1, writesOf(false, 1, 1, 10)) // file 1: 1..10
	m.publish(2, writesOf(false, 11, 1, 5)) // file 2: 11..15
	m.publish(3, writesOf(false, 16, 1, 5)) // file 3: 16..20
	before := m.View()

	m.Release(12) // file 2 still holds 13..15: only file 1 goes
	v := m.View()
	_, p := v.Get(5)
	require.Equal(t, Unknown, p, "below the mem tables now")
	e, p := v.Get(13)
	require.Equal(t, Present, p)
	require.Equal(t, "13@1", string(e.Payload))
	_, p = before.Get(5)
	require.Equal(t, Present, p, "a view taken before is unchanged")

	m.Release(15)
	_, p = m.View().Get(14)
	require.Equal(t, Unknown, p)
	last, _, ok := m.View().Last()
	require.True(t, ok)
	require.Equal(t, uint64(20), last)

	// A newer table that overwrote an older one's suffix keeps shadowing
	// it: the older one is kept while it has entries above through.
	m2 := newMemLog("v")
	m2.publish(1, writesOf(false, 1, 1, 10)) // 1..10 @1
	m2.publish(2, writesOf(false, 4, 2, 2))  // overwrite: 4..5 @2, the log ends at 5
	m2.Release(5)
	_, p = m2.View().Get(8)
	require.Equal(t, Absent, p, "the overwritten suffix stays hidden")
	m2.Release(10)
	require.True(t, m2.View().Empty())
}
