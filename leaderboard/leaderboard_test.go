package leaderboard

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

type id struct{ Name, Node string }

func TestRecordAndLookup(t *testing.T) {
	var b Board[id]
	_, _, ok := b.Lookup("kv")
	require.False(t, ok)

	members := []id{{"kv", "n1"}, {"kv", "n2"}, {"kv", "n3"}}
	require.True(t, b.Record("kv", id{"kv", "n1"}, members, 1))
	members[0].Node = "changed" // the board keeps its own copy
	leader, got, ok := b.Lookup("kv")
	require.True(t, ok)
	require.Equal(t, id{"kv", "n1"}, leader)
	require.Equal(t, []id{{"kv", "n1"}, {"kv", "n2"}, {"kv", "n3"}}, got)

	// No leader known (election in progress) is a valid entry.
	require.True(t, b.Record("kv", id{}, got, 2))
	leader, _, ok = b.Lookup("kv")
	require.True(t, ok)
	require.Zero(t, leader)

	b.Delete("kv")
	_, _, ok = b.Lookup("kv")
	require.False(t, ok)
}

func TestOlderTermsDoNotOverwrite(t *testing.T) {
	var b Board[id]
	require.True(t, b.Record("c", id{"c", "n2"}, nil, 5))
	require.False(t, b.Record("c", id{"c", "n1"}, nil, 4), "stale report")
	require.False(t, b.Record("c", id{"c", "n2"}, nil, 5), "no change")
	e, ok := b.Get("c")
	require.True(t, ok)
	require.Equal(t, Entry[id]{Leader: id{"c", "n2"}, Term: 5}, e)
	require.True(t, b.Record("c", id{"c", "n3"}, nil, 6))
	require.Equal(t, []string{"c"}, b.Clusters())
}

// TestConcurrentReadersAndWriters is for the race detector: readers never
// see a torn entry (leader and term always agree), and terms never go back.
func TestConcurrentReadersAndWriters(t *testing.T) {
	var b Board[id]
	const writers, readers, rounds = 4, 4, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				term := uint64(r)
				b.Record(fmt.Sprint("c", r%7), id{"c", fmt.Sprint(term)}, []id{{"w", fmt.Sprint(w)}}, term)
			}
		}()
	}
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := map[string]uint64{}
			for range rounds {
				for _, c := range b.Clusters() {
					e, ok := b.Get(c)
					require.True(t, ok)
					require.Equal(t, fmt.Sprint(e.Term), e.Leader.Node, "entry is whole")
					require.GreaterOrEqual(t, e.Term, last[c], "terms never go back")
					last[c] = e.Term
				}
			}
		}()
	}
	wg.Wait()
}

func BenchmarkLookup(b *testing.B) {
	var board Board[id]
	for i := range 1000 {
		board.Record(fmt.Sprint("cluster-", i), id{"s", "n1"}, []id{{"s", "n1"}}, 1)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			board.Lookup("cluster-500")
			i++
		}
	})
}
