package raftserver

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestElectionPacerLetsABurstGoThenSpreads(t *testing.T) {
	p := newElectionPacer(1000, 10) // 1 ms apart after a burst of 10
	now := time.Unix(1000, 0)
	want := 50 * time.Millisecond
	var got []time.Duration
	for range 30 {
		got = append(got, p.delay(now, want))
	}
	for i := range 10 {
		require.Equal(t, want, got[i], "election %d is in the burst", i)
	}
	for i := 10; i < 30; i++ {
		require.Greater(t, got[i], got[i-1], "election %d waits longer than the one before", i)
	}
	require.Equal(t, want+20*time.Millisecond, got[29])

	// Once the bucket refilled, the burst is available again.
	later := now.Add(time.Second)
	require.Equal(t, want, p.delay(later, want))
}

func TestElectionPacerDoesNotPushUrgentElectionsBehindSlowOnes(t *testing.T) {
	p := newElectionPacer(1000, 1)
	now := time.Unix(0, 0)
	require.Equal(t, 3*time.Second, p.delay(now, 3*time.Second), "a backed-off timer")
	later := now.Add(10 * time.Millisecond)
	require.Equal(t, 5*time.Millisecond, p.delay(later, 5*time.Millisecond), "a leader-lost timer right after it")
}
