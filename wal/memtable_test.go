package wal

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
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

// TestMemLogCompactStorageProperty drives one file's table through random
// appends, overwrites and resets, with payloads from empty to larger than a
// chunk, and checks that the newest view holds exactly the model's log and
// that every view taken on the way still reads what it held then: the
// compact storage never moves or overwrites bytes a published view can see.
func TestMemLogCompactStorageProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := newMemLog("u")
		type snap struct {
			view View
			log  []Entry
		}
		var snaps []snap
		var log []Entry // the model: the log from log[0].Index on
		term := uint64(1)
		payload := func(index uint64) []byte {
			size := rapid.SampledFrom([]int{0, 1, 16, 200, 1024, bigPayloadBytes + 1, maxChunkBytes + 3}).Draw(t, "size")
			p := make([]byte, size)
			for i := range p {
				p[i] = byte(index*31 + term*7 + uint64(i))
			}
			return p
		}
		write := func(from uint64, n int, reset bool) {
			ws := make([]memWrite, n)
			for i := range ws {
				idx := from + uint64(i)
				ws[i] = memWrite{Entry: Entry{Index: idx, Term: term, Payload: payload(idx), Shared: rapid.Bool().Draw(t, "shared")}, reset: reset && i == 0}
			}
			m.publish(1, ws)
			if reset || len(log) == 0 {
				log = nil
			} else {
				log = log[: from-log[0].Index : from-log[0].Index] // a fresh backing array below
			}
			for _, w := range ws {
				log = append(log, w.Entry)
			}
		}
		write(1+rapid.Uint64Range(0, 100).Draw(t, "first"), rapid.IntRange(1, 5).Draw(t, "n"), false)
		steps := rapid.IntRange(1, 60).Draw(t, "steps")
		for range steps {
			lo, hi := log[0].Index, log[len(log)-1].Index
			n := rapid.IntRange(1, 40).Draw(t, "n")
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0: // a follower's log overwritten from inside the table
				term++
				write(rapid.Uint64Range(lo, hi).Draw(t, "at"), n, false)
			case 1: // a snapshot installed: the log restarts anywhere
				term++
				write(rapid.Uint64Range(1, hi+100).Draw(t, "reset"), n, true)
			default:
				write(hi+1, n, false)
			}
			snaps = append(snaps, snap{view: m.View(), log: log})
		}
		for i, s := range snaps {
			last, lastTerm, ok := s.view.Last()
			require.True(t, ok)
			require.Equal(t, s.log[len(s.log)-1].Index, last, "view %d", i)
			require.Equal(t, s.log[len(s.log)-1].Term, lastTerm, "view %d", i)
			for _, want := range s.log {
				got, p := s.view.Get(want.Index)
				require.Equal(t, Present, p, "view %d index %d", i, want.Index)
				require.Equal(t, want.Index, got.Index)
				require.Equal(t, want.Term, got.Term, "view %d index %d", i, want.Index)
				require.True(t, bytes.Equal(want.Payload, got.Payload), "view %d index %d: payload changed", i, want.Index)
				require.Equal(t, len(got.Payload), cap(got.Payload), "a payload must not be appendable into the chunk")
				if len(got.Payload) > 0 {
					kept := &got.Payload[0] == &want.Payload[0]
					require.Equal(t, want.Shared && len(want.Payload) >= sharedMinBytes, kept,
						"view %d index %d: a shared payload of %d bytes is kept, anything else copied", i, want.Index, len(want.Payload))
				}
			}
			_, p := s.view.Get(last + 1)
			require.Equal(t, Absent, p)
			// Walks in order (the segment writer's) agree with lookups.
			for _, tb := range s.view.tables {
				es := tableEntries(tb).From(rapid.IntRange(0, tb.len()).Draw(t, "from"))
				var sum int64
				j := 0
				for got := range es.All() {
					want := tb.at(es.from + j)
					require.Equal(t, want.Index, got.Index)
					require.Equal(t, want.Term, got.Term)
					require.True(t, bytes.Equal(want.Payload, got.Payload), "view %d index %d: walked payload differs", i, got.Index)
					sum += int64(len(got.Payload))
					j++
				}
				require.Equal(t, es.Len(), j)
				require.Equal(t, sum, es.Bytes())
			}
		}
	})
}

// TestEntriesOfAClosedTable checks the view a closed file gives the
// segment writer: its length, bytes, suffixes and order.
func TestEntriesOfAClosedTable(t *testing.T) {
	es := PackEntries(
		Entry{Index: 7, Term: 1, Payload: []byte("a")},
		Entry{Index: 8, Term: 1, Payload: nil},
		Entry{Index: 9, Term: 3, Payload: bytes.Repeat([]byte("z"), maxChunkBytes+1)},
		Entry{Index: 10, Term: 3, Payload: []byte("dd")},
	)
	require.Equal(t, 4, es.Len())
	require.Equal(t, int64(1+maxChunkBytes+1+2), es.Bytes())
	var got []uint64
	for e := range es.From(1).All() {
		got = append(got, e.Index*10+e.Term)
	}
	require.Equal(t, []uint64{81, 93, 103}, got)
	require.Equal(t, "dd", string(es.At(3).Payload))
	require.Equal(t, 0, es.From(9).Len())
	require.Equal(t, 0, PackEntries().Len())
}
