package node

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/raftserver"
	"github.com/stretchr/testify/require"
)

func TestLacksQuorum(t *testing.T) {
	view := func(reachable, voters int, leader string) api.Cluster {
		return api.Cluster{Reachable: reachable, Voters: voters, Quorum: voters/2 + 1, Leader: leader}
	}
	for _, tc := range []struct {
		name string
		v    api.Cluster
		want bool
	}{
		{"no probe yet", api.Cluster{}, false},
		{"a quorum reachable", view(2, 3, "n2"), false},
		{"alone, no leader", view(1, 3, ""), true},
		{"alone, and leading", view(1, 3, "n1"), true},
		// n1 forwards to n2, which may reach the others: not n1's call.
		{"reaches a leader elsewhere", view(2, 5, "n2"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, lacksQuorum(tc.v, "n1"))
		})
	}
}

// The errors of a request forwarded to a leader on another node say what
// happened there, not that this node is stopping.
func TestRaftErrorOfAForwardedRequest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{cfg: Config{ID: "n1"}, stopCtx: ctx, stop: cancel}
	unreachable := fmt.Errorf("%w: n2@127.0.0.1:7002: node down", raftserver.ErrUnreachable)
	stopping := fmt.Errorf("%w: n2@127.0.0.1:7002 is stopping", raftserver.ErrShuttingDown)

	for _, err := range []error{unreachable, stopping} {
		e := n.raftError(err, true)
		require.Equal(t, http.StatusServiceUnavailable, e.Status, "%v", err)
		require.Equal(t, api.CodeNoLeader, e.Code, "%v", err)
		require.False(t, e.OutcomeUnknown)
		require.Equal(t, retryAfterSeconds, e.RetryAfterSeconds)
	}

	// Once this node stops, it says so.
	cancel()
	e := n.raftError(stopping, true)
	require.Equal(t, api.CodeShuttingDown, e.Code)
}
