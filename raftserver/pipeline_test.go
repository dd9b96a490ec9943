package raftserver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// collect reads n results, failing on a repeat.
func collect(t *testing.T, p *Pipeline, n int) map[uint64]PipelineResult {
	t.Helper()
	got := map[uint64]PipelineResult{}
	timeout := time.After(waitFor)
	for len(got) < n {
		select {
		case r, ok := <-p.Results():
			require.True(t, ok, "results closed after %d of %d", len(got), n)
			_, seen := got[r.Seq]
			require.False(t, seen, "command %d reported twice", r.Seq)
			got[r.Seq] = r
		case <-timeout:
			t.Fatalf("%d of %d results", len(got), n)
		}
	}
	return got
}

// TestPipelineFollowsTheLeader sends commands through a follower with a
// window smaller than their number: the pipeline follows the leader the
// follower names, and reports each command once, applied, with its reply.
func TestPipelineFollowsTheLeader(t *testing.T) {
	c := startFixedCluster(t, 3)
	ctx := c.ctx()
	_, leader, err := c.systems[0].ProcessCommand(ctx, c.members[0], []byte("set a 0"))
	require.NoError(t, err)
	follower := c.members[(c.index(leader)+1)%3]
	p, err := c.systems[0].NewPipeline(follower, PipelineOptions{Window: 50})
	require.NoError(t, err)
	defer p.Close()

	const n = 300
	done := make(chan map[uint64]PipelineResult)
	go func() { done <- collect(t, p, n) }()
	seqs := map[uint64]int{}
	buf := make([]byte, 0, 32)
	for i := range n {
		buf = fmt.Appendf(buf[:0], "set k%d v%d", i, i)
		seq, err := p.Submit(ctx, buf) // the buffer is reused at once
		require.NoError(t, err)
		seqs[seq] = i
	}
	got := <-done
	for seq, i := range seqs {
		r := got[seq]
		require.NoError(t, r.Err, "command %d", i)
		require.Equal(t, leader, r.Leader)
		require.Empty(t, r.Reply, "a new key has no old value")
		v, _, err := c.systems[1].ConsistentQuery(ctx, leader, fmt.Appendf(nil, "get k%d", i))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("v%d", i), string(v))
	}
	p.Close()
	_, ok := <-p.Results()
	require.False(t, ok, "closed once everything was reported")
	_, err = p.Submit(ctx, []byte("set late 1"))
	require.ErrorIs(t, err, ErrShuttingDown)
}

// TestPipelineReportsUnansweredCommands: commands sent to a member whose
// node is down get no answer. Each is reported once, with ErrTimeout,
// when Timeout passes; Close reports those still in flight the same way.
func TestPipelineReportsUnansweredCommands(t *testing.T) {
	c := startFixedCluster(t, 3)
	require.NoError(t, c.systems[2].Stop())
	c.systems[2] = nil
	p, err := c.systems[0].NewPipeline(c.members[2], PipelineOptions{Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	ctx := c.ctx()
	for i := range 10 {
		_, err := p.Submit(ctx, fmt.Appendf(nil, "set k%d v", i))
		require.NoError(t, err)
	}
	for _, r := range collect(t, p, 10) {
		require.ErrorIs(t, r.Err, ErrTimeout)
	}

	// A window of one: the second Submit waits for the first's outcome.
	p2, err := c.systems[0].NewPipeline(c.members[2], PipelineOptions{Window: 1, Timeout: time.Hour})
	require.NoError(t, err)
	seq, err := p2.Submit(ctx, []byte("set x 1"))
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = p2.Submit(short, []byte("set y 1"))
	require.ErrorIs(t, err, ErrTimeout, "the window is full")
	p2.Close()
	r := <-p2.Results()
	require.Equal(t, seq, r.Seq)
	require.ErrorIs(t, r.Err, ErrTimeout, "closed in flight: outcome unknown")
	_, ok := <-p2.Results()
	require.False(t, ok)
}

// TestPipelineRetriesWhileNoLeaderIsKnown: a member without a leader
// refuses commands (they were not applied). The pipeline sends them again
// after a pause until a leader takes them, or until Timeout, when it
// reports the refusal, not an unknown outcome.
func TestPipelineRetriesWhileNoLeaderIsKnown(t *testing.T) {
	c := startFixedCluster(t, 3)
	ctx := c.ctx()
	for i := 1; i <= 2; i++ {
		require.NoError(t, c.systems[i].Stop())
		c.systems[i] = nil
	}
	p, err := c.systems[0].NewPipeline(c.members[0], PipelineOptions{Timeout: time.Second})
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Submit(ctx, []byte("set lonely 1"))
	require.NoError(t, err)
	r := collect(t, p, 1)
	for _, r := range r {
		require.Error(t, r.Err)
		require.NotErrorIs(t, r.Err, ErrTimeout, "refused, so known not applied: %v", r.Err)
		require.True(t, errors.Is(r.Err, ErrNoLeader) || errors.Is(r.Err, ErrNotLeader), "%v", r.Err)
	}

	// Sent while the others are down, applied once they are back.
	p2, err := c.systems[0].NewPipeline(c.members[0], PipelineOptions{Timeout: waitFor})
	require.NoError(t, err)
	defer p2.Close()
	_, err = p2.Submit(ctx, []byte("set back 1"))
	require.NoError(t, err)
	time.Sleep(3 * retryBackoffMax)
	c.restart(1)
	c.restart(2)
	for _, r := range collect(t, p2, 1) {
		require.NoError(t, r.Err)
	}
}
