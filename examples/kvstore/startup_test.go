package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/stretchr/testify/require"
)

// TestNewLeaderTakesWrites: nodes started one after another, the way
// people start them by hand, form a cluster whose leader takes a write as
// soon as it says it leads. The node that starts first probes its peers
// before they run; that view is older than the election and must not make
// the leader refuse the write with no_quorum (it can commit: it was just
// elected by a majority).
func TestNewLeaderTakesWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	c := newTestCluster(t, 3)
	for i, p := range c.nodes {
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		c.spawn(p, p.serveArgs())
	}
	for _, p := range c.nodes {
		if c.awaitAnswer(p) != "" {
			c.start(p) // another process took one of its ports
		}
	}

	// The first node that says it leads takes the first write, at once.
	var leader *proc
	require.Eventually(t, func() bool {
		for _, p := range c.nodes {
			var st api.Status
			code, err := httpGetJSON(p.url()+"/status", &st)
			if err == nil && code == http.StatusOK && st.Role == "leader" && st.Leader == p.id {
				leader = p
				return true
			}
		}
		return false
	}, waitFor, 10*time.Millisecond, "a node that says it leads")
	r := do(t, http.MethodPut, leader.url()+"/kv/first", strings.NewReader("at once"))
	require.Equal(t, http.StatusOK, r.status, "a write to the new leader %s: %s", leader.id, r.body)
	var res api.WriteResult
	require.NoError(t, json.Unmarshal(r.body, &res))
	require.True(t, res.Created)

	// Every other node forwards a write to it just as well.
	for _, p := range c.nodes {
		r := do(t, http.MethodPut, p.url()+"/kv/via-"+p.id, strings.NewReader("x"))
		require.Equal(t, http.StatusOK, r.status, "a write through %s: %s", p.id, r.body)
	}
}
