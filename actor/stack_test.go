package actor

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Producers push while one consumer empties the stack: every value comes
// out exactly once, and each producer's values in the order it pushed
// them. Run with -race.
func TestPushStackDeliversEachValueOnceInOrderPerProducer(t *testing.T) {
	const producers, each = 8, 5000
	var s pushStack[[2]int]
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s.push([2]int{p, i})
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	next := make([]int, producers)
	take := func() {
		s.takeAll(func(v [2]int) {
			require.Equal(t, next[v[0]], v[1], "producer %d", v[0])
			next[v[0]]++
		})
	}
	for {
		select {
		case <-done:
			take()
			for p := range producers {
				require.Equal(t, each, next[p], "producer %d", p)
			}
			require.False(t, s.takeAll(func([2]int) {}), "nothing is left")
			return
		default:
			take()
		}
	}
}
