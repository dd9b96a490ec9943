package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/internal/exampletest"

	"github.com/rago-raft/rago/examples/fleet/internal/shard"
	"github.com/rago-raft/rago/fleet"
)

// waitFor bounds every wait for the fleet to reach a state: a deadline,
// not a measurement.
const waitFor = 60 * time.Second

func freeAddr(t *testing.T) string { return exampletest.FreeAddr(t) }

// testFleet is a fleet of nodes in this process, on free ports.
type testFleet struct {
	t     *testing.T
	nodes []*Node
	cfgs  []Config
}

func fleetConfigs(t *testing.T, n, shards int, zones ...string) []Config {
	raft := make([]string, n)
	for i := range raft {
		raft[i] = freeAddr(t)
	}
	seeds := raft[:min(3, n)]
	var out []Config
	for i := range n {
		out = append(out, Config{
			ID: fmt.Sprintf("n%d", i+1), RaftAddr: raft[i], HTTPAddr: "127.0.0.1:0",
			DataDir: filepath.Join(t.TempDir(), "data"), Zone: zones[i%len(zones)],
			Seeds: seeds, Shards: shards, Activate: true,
			ClusterSecret: []byte("a test secret of more than 16 bytes"),
			Fleet:         fleet.Config{Interval: 200 * time.Millisecond, SeenInterval: 500 * time.Millisecond},
		})
	}
	return out
}

func startFleet(t *testing.T, cfgs []Config) *testFleet {
	f := &testFleet{t: t, cfgs: cfgs}
	for _, c := range cfgs {
		n, err := Start(c)
		require.NoError(t, err)
		f.nodes = append(f.nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range f.nodes {
			if n != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_ = n.Stop(ctx)
				cancel()
			}
		}
	})
	return f
}

type response struct {
	status int
	body   []byte
}

func call(t *testing.T, method, url, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{resp.StatusCode, b}
}

func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	r := call(t, http.MethodGet, url, "")
	require.Equal(t, http.StatusOK, r.status, "%s: %s", url, r.body)
	var v T
	require.NoError(t, json.Unmarshal(r.body, &v))
	return v
}

// waitConverged waits until /placement of node shows every group
// converged, the given number of nodes, every one reachable and ready,
// and no move in flight.
func waitConverged(t *testing.T, n *Node, groups, nodes int) Placement {
	t.Helper()
	var p Placement
	require.Eventually(t, func() bool {
		p = getJSON[Placement](t, n.HTTPURL()+"/placement")
		if len(p.Nodes) != nodes || len(p.Groups) != groups || p.Converged != groups || len(p.Moves) != 0 {
			return false
		}
		for _, v := range p.Nodes {
			if !v.Reachable || !v.Ready {
				return false
			}
		}
		return true
	}, waitFor, 200*time.Millisecond, "convergence; last placement: %d of %d groups converged, moves %v", p.Converged, len(p.Groups), p.Moves)
	return p
}

// TestHTTPAPI runs a fleet of three nodes in three zones with 8 shards:
// keys written through one node read back through the others, every
// consistency; deletes; the errors; then a fourth node joins and the
// placement view shows the groups converge onto it too.
func TestHTTPAPI(t *testing.T) {
	cfgs := fleetConfigs(t, 4, 8, "a", "b", "c")
	f := startFleet(t, cfgs[:3])
	start := time.Now()
	p := waitConverged(t, f.nodes[0], 9, 3)
	t.Logf("8 shards and the directory converged on 3 nodes in %v", time.Since(start))
	require.Len(t, p.Nodes, 3)
	for _, v := range p.Nodes {
		require.Equal(t, 9, v.Members, "%s: every group on every node", v.ID)
		require.Equal(t, "active", v.State)
	}

	u := func(i int) string { return f.nodes[i].HTTPURL() }
	for i := range 20 {
		r := call(t, http.MethodPut, fmt.Sprintf("%s/kv/key-%d", u(i%3), i), fmt.Sprintf("value %d", i))
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var w WriteResult
		require.NoError(t, json.Unmarshal(r.body, &w))
		require.True(t, w.Created)
	}
	for i := range 20 {
		for _, c := range []string{"", "?consistency=leader", "?consistency=local"} {
			if c == "?consistency=local" {
				// A local read on a follower may lag; the leader's does
				// not, so it is read below only from the leader.
				continue
			}
			g := getJSON[GetResult](t, fmt.Sprintf("%s/kv/key-%d%s", u((i+1)%3), i, c))
			require.Equal(t, fmt.Sprintf("value %d", i), g.Value)
		}
	}
	require.Eventually(t, func() bool {
		r := call(t, http.MethodGet, u(2)+"/kv/key-3?consistency=local", "")
		return r.status == http.StatusOK && strings.Contains(string(r.body), `"value 3"`)
	}, waitFor, 50*time.Millisecond, "a local read catches up")
	r := call(t, http.MethodGet, u(0)+"/kv/key-3?raw=1", "")
	require.Equal(t, "value 3", string(r.body))

	r = call(t, http.MethodDelete, u(1)+"/kv/key-3", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = call(t, http.MethodGet, u(2)+"/kv/key-3", "")
	require.Equal(t, http.StatusNotFound, r.status, "%s", r.body)
	require.Contains(t, string(r.body), CodeKeyNotFound)
	r = call(t, http.MethodDelete, u(1)+"/kv/key-3", "")
	require.Equal(t, http.StatusNotFound, r.status)
	r = call(t, http.MethodGet, u(0)+"/kv/k?consistency=eventual", "")
	require.Equal(t, http.StatusBadRequest, r.status)
	r = call(t, http.MethodPost, u(0)+"/kv/k", "")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	r = call(t, http.MethodGet, u(0)+"/nope", "")
	require.Equal(t, http.StatusNotFound, r.status)
	r = call(t, http.MethodPut, u(0)+"/kv/big", strings.Repeat("x", DefaultMaxValueBytes+1))
	require.Equal(t, http.StatusRequestEntityTooLarge, r.status)

	st := getJSON[Status](t, u(1)+"/status")
	require.Equal(t, "n2", st.ID)
	require.True(t, st.Ready)
	require.Equal(t, "active", st.State)
	require.Equal(t, "secret", st.RaftAuth)
	require.Equal(t, 9, st.Books.Groups)
	require.Equal(t, 9, st.Replicas)
	reps := getJSON[Replicas](t, u(1)+"/replicas")
	require.Equal(t, "n2", reps.ID)
	var groups []string
	for _, rv := range reps.Replicas {
		groups = append(groups, rv.Group)
	}
	want := []string{DirectoryGroup}
	for i := range 8 {
		want = append(want, shard.Name(i))
	}
	require.ElementsMatch(t, want, groups, "every group runs a replica on every node of three")

	// A fourth node, in zone a again: placement now wants some members on
	// it, and the groups move until converged.
	n4, err := Start(cfgs[3])
	require.NoError(t, err)
	f.nodes = append(f.nodes, n4)
	start = time.Now()
	p = waitConverged(t, f.nodes[0], 9, 4)
	t.Logf("converged onto a fourth node in %v", time.Since(start))
	require.Len(t, p.Nodes, 4)
	total := 0
	for _, v := range p.Nodes {
		total += v.Members
	}
	require.Equal(t, 27, total, "3 members per group, none left behind")
	require.Positive(t, p.Nodes[slicesIndex(p.Nodes, "n4")].Members)
	for i := range 20 {
		if i == 3 {
			continue
		}
		g := getJSON[GetResult](t, fmt.Sprintf("%s/kv/key-%d", n4.HTTPURL(), i))
		require.Equal(t, fmt.Sprintf("value %d", i), g.Value, "after the moves")
	}
}

func slicesIndex(nodes []NodeView, id string) int {
	for i, v := range nodes {
		if v.ID == id {
			return i
		}
	}
	return -1
}
