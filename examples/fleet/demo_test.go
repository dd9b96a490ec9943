package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/fleet/internal/node"
	"github.com/rago-raft/rago/examples/internal/exampletest"
)

// waitPlacement waits until url's /placement shows nodes nodes, all
// reachable and ready, groups groups all converged, and no member moving.
func waitPlacement(t *testing.T, url string, nodes, groups int) node.Placement {
	t.Helper()
	var p node.Placement
	require.Eventually(t, func() bool {
		if getJSON(url+"/placement", &p) != nil || len(p.Nodes) != nodes || len(p.Groups) != groups || p.Converged != groups {
			return false
		}
		for _, m := range p.Moves {
			if m.Kind != "record" { // a routing hint, not a move
				return false
			}
		}
		for _, n := range p.Nodes {
			if !n.Reachable || !n.Ready {
				return false
			}
		}
		return true
	}, waitFor, 200*time.Millisecond, "placement of %d nodes and %d converged groups; last: %d nodes, %d of %d converged, moves %v",
		nodes, groups, len(p.Nodes), p.Converged, len(p.Groups), p.Moves)
	return p
}

// TestDemo runs "fleet demo" with a few shards, writes a key, adds a
// node through the demo's prompt and watches /placement converge with
// members on it; then stops the demo with SIGINT and runs it again: the
// same six nodes come back with the key.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	data := t.TempDir()
	raftPort := exampletest.FreeRange(t, 6)
	httpPort := exampletest.FreeRange(t, 6, raftPort)
	args := []string{"--data", data, "--raft-port", strconv.Itoa(raftPort), "--http-port", strconv.Itoa(httpPort), "--shards", "16"}
	url := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", httpPort+i) }

	start := time.Now()
	d := bin.StartDemo(t, args...)
	d.Out.WaitFor(t, "Started a fleet of 5 nodes with 16 shards")
	d.Out.WaitFor(t, "Raft connections: authenticated with the secret in "+filepath.Join(data, "cluster.secret"))
	st, err := os.Stat(filepath.Join(data, "cluster.secret"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	p := waitPlacement(t, url(0), 5, 17)
	t.Logf("5 nodes, 16 shards and the directory converged %v after the demo started", time.Since(start))
	zones := map[string]string{}
	for _, n := range p.Nodes {
		zones[n.ID] = n.Zone
	}
	require.Equal(t, map[string]string{"n1": "a", "n2": "a", "n3": "b", "n4": "b", "n5": "c"}, zones)

	r := call(t, http.MethodPut, url(0)+"/kv/greeting", "hello, fleet")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var g node.GetResult
	require.NoError(t, getJSON(url(4)+"/kv/greeting", &g))
	require.Equal(t, "hello, fleet", g.Value)

	start = time.Now()
	d.Send(t, "add")
	d.Out.WaitFor(t, "added n6 in zone c")
	p = waitPlacement(t, url(0), 6, 17)
	t.Logf("converged onto n6 %v after 'add'", time.Since(start))
	members := map[string]int{}
	for _, n := range p.Nodes {
		members[n.ID] = n.Members
	}
	require.Positive(t, members["n6"], "members moved to the new node: %v", members)
	d.Send(t, "status")
	d.Out.WaitFor(t, "n6  zone c  pid")
	d.Stop(t)

	d = bin.StartDemo(t, args...)
	d.Out.WaitFor(t, "Restarted a fleet of 6 nodes with 16 shards")
	waitPlacement(t, url(5), 6, 17)
	require.NoError(t, getJSON(url(5)+"/kv/greeting", &g))
	require.Equal(t, "hello, fleet", g.Value)
	d.Stop(t)
}
