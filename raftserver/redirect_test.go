package raftserver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// hop is one scripted answer: what the server asked answers.
type hop struct {
	to     ServerID // the server the request must go to
	leader ServerID // the leader it names
	err    error
}

// runScript drives followLeader through script and returns the pauses it
// took; it fails if the request goes anywhere the script does not say.
func runScript(t *testing.T, ctx context.Context, via ServerID, script []hop) (ServerID, error, []time.Duration) {
	t.Helper()
	i := 0
	var pauses []time.Duration
	leader, err := followLeader(ctx, via, func(to ServerID) (ServerID, error) {
		require.Less(t, i, len(script), "a request beyond the script, to %s", to)
		h := script[i]
		i++
		require.Equal(t, h.to, to, "hop %d", i)
		return h.leader, h.err
	}, func(ctx context.Context, d time.Duration) error {
		pauses = append(pauses, d)
		return ctx.Err()
	})
	require.Equal(t, len(script), i, "the request stopped before the script's end")
	return leader, err, pauses
}

func notLeader(server, leader ServerID) error { return &NotLeaderError{Server: server, Leader: leader} }

func TestRedirectGoesBackToViaWhenAHintLeadsNowhere(t *testing.T) {
	a, b, c := ServerID{Name: "a", Node: "n1"}, ServerID{Name: "b", Node: "n2"}, ServerID{Name: "c", Node: "n3"}
	gone := fmt.Errorf("%w: %s", ErrNoSuchServer, a)
	// The bug: b still names a, the leader that removed itself and
	// stopped. The request goes back to b (not to a again), which by
	// then knows no leader, then names c, which serves it.
	leader, err, pauses := runScript(t, context.Background(), b, []hop{
		{to: b, err: notLeader(b, a)},
		{to: a, err: gone},
		{to: b, err: ErrNoLeader},
		{to: b, err: notLeader(b, c)},
		{to: c, leader: c},
	})
	require.NoError(t, err)
	require.Equal(t, c, leader)
	require.Equal(t, []time.Duration{retryBackoffMin, 2 * retryBackoffMin}, pauses, "each round backs off more")

	// Every dead end behind a hint goes back to via: unreachable,
	// shutting down, not leader with no hint, no leader.
	for _, deadEnd := range []error{
		fmt.Errorf("%w: %s", ErrUnreachable, a),
		fmt.Errorf("%w: %s", ErrShuttingDown, a),
		notLeader(a, ServerID{}),
		fmt.Errorf("%w: %s", ErrNoLeader, a),
	} {
		_, err, pauses := runScript(t, context.Background(), b, []hop{
			{to: b, err: notLeader(b, a)},
			{to: a, err: deadEnd},
			{to: b, leader: b},
		})
		require.NoError(t, err, "after %v", deadEnd)
		require.Len(t, pauses, 1)
	}
}

func TestRedirectBouncingHintsGoBackToViaAndEndWithCtx(t *testing.T) {
	a, b := ServerID{Name: "a", Node: "n1"}, ServerID{Name: "b", Node: "n2"}
	// a and b name each other: after maxRedirects hops the request pauses
	// and starts again at via; when ctx ends it returns the last answer.
	var script []hop
	for round := 0; round < 2; round++ {
		script = append(script, hop{to: a, err: notLeader(a, b)})
		for i := 0; i < maxRedirects; i++ {
			if i%2 == 0 {
				script = append(script, hop{to: b, err: notLeader(b, a)})
			} else {
				script = append(script, hop{to: a, err: notLeader(a, b)})
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := followLeader(ctx, a, func(to ServerID) (ServerID, error) {
		require.Less(t, n, len(script))
		h := script[n]
		n++
		require.Equal(t, h.to, to, "hop %d", n)
		return h.leader, h.err
	}, func(ctx context.Context, d time.Duration) error {
		if n == len(script) {
			cancel()
		}
		return ctx.Err()
	})
	require.ErrorIs(t, err, ErrNotLeader)
	require.Equal(t, len(script), n)
}

func TestRedirectStopsAtAnswersThatEndTheRequest(t *testing.T) {
	a, b := ServerID{Name: "a", Node: "n1"}, ServerID{Name: "b", Node: "n2"}
	for _, final := range []error{
		fmt.Errorf("%w: %s", ErrNoSuchServer, a), // via itself does not exist
		fmt.Errorf("%w: %s", ErrShuttingDown, a), // via itself is stopping
		fmt.Errorf("%w: boom", ErrMachine),
		ErrLeadershipLost,
		fmt.Errorf("%w: %s", ErrTimeout, a),
		fmt.Errorf("%w: full", ErrMembershipChange),
	} {
		_, err, pauses := runScript(t, context.Background(), a, []hop{{to: a, err: final}})
		require.ErrorIs(t, err, final)
		require.Empty(t, pauses)
	}
	// An outcome that is unknown behind a hint ends the request too: a
	// command must not be sent twice.
	_, err, _ := runScript(t, context.Background(), a, []hop{
		{to: a, err: notLeader(a, b)},
		{to: b, err: ErrLeadershipLost},
	})
	require.True(t, errors.Is(err, ErrLeadershipLost))
}

func TestRedirectBackoffIsCapped(t *testing.T) {
	a := ServerID{Name: "a", Node: "n1"}
	var script []hop
	for i := 0; i < 10; i++ {
		script = append(script, hop{to: a, err: ErrNoLeader})
	}
	script = append(script, hop{to: a, leader: a})
	_, err, pauses := runScript(t, context.Background(), a, script)
	require.NoError(t, err)
	require.Len(t, pauses, 10)
	for i, d := range pauses {
		require.LessOrEqual(t, d, retryBackoffMax)
		if i > 0 {
			require.GreaterOrEqual(t, d, pauses[i-1])
		}
	}
	require.Equal(t, retryBackoffMax, pauses[len(pauses)-1])
}
