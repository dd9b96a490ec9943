package promexport_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/promexport"
	"github.com/rago-raft/rago/raftserver"
)

const waitFor = 20 * time.Second

// kv is a tiny machine: "key=value" sets a key.
type kv struct {
	mu sync.Mutex
	m  map[string]string
}

func (k *kv) Apply(_ *raftserver.ApplyContext, cmd []byte) []byte {
	key, val, _ := strings.Cut(string(cmd), "=")
	k.mu.Lock()
	k.m[key] = val
	k.mu.Unlock()
	return nil
}

// cluster is three nodes in this process with a cluster "kv" of one
// member on each, and a collector of each node's metrics.
type cluster struct {
	t          *testing.T
	systems    []*raftserver.System
	members    []raftserver.ServerID
	collectors []*promexport.Collector
}

func startCluster(t *testing.T) *cluster {
	c := &cluster{t: t}
	machines := map[string]raftserver.MachineFactory{
		"kv": func([]byte) (raftserver.Machine, error) { return &kv{m: map[string]string{}}, nil },
	}
	for i := range 3 {
		sys, err := raftserver.StartSystem(raftserver.SystemConfig{
			DataDir:         t.TempDir(),
			Address:         "127.0.0.1:0",
			Machines:        machines,
			ShutdownTimeout: 5 * time.Second,
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = sys.Stop() })
		c.systems = append(c.systems, sys)
		c.members = append(c.members, raftserver.ServerID{Name: fmt.Sprint("kv", i+1), Node: sys.Name()})
		c.collectors = append(c.collectors, promexport.New(sys, promexport.Options{}))
	}
	_, notStarted, err := c.systems[0].StartCluster(c.ctx(), "kv", raftserver.MachineSpec{Kind: "kv"}, c.members)
	require.NoError(t, err)
	require.Empty(t, notStarted)
	return c
}

func (c *cluster) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	c.t.Cleanup(cancel)
	return ctx
}

// scrape returns every node's families, by member index.
func (c *cluster) scrape() []map[string]*dto.MetricFamily {
	out := make([]map[string]*dto.MetricFamily, len(c.systems))
	for i, col := range c.collectors {
		out[i] = families(c.t, col)
	}
	return out
}

// of returns member i's value of family name in a scrape.
func (c *cluster) of(s []map[string]*dto.MetricFamily, i int, name string) float64 {
	c.t.Helper()
	v, ok := value(s[i], name, map[string]string{"cluster": "kv", "server": c.members[i].String()})
	require.True(c.t, ok, "node %d has no %s for %s", i, name, c.members[i])
	return v
}

// sum returns the sum over the members of family name in a scrape.
func (c *cluster) sum(s []map[string]*dto.MetricFamily, name string) float64 {
	total := 0.0
	for i := range c.members {
		total += c.of(s, i, name)
	}
	return total
}

// leader waits until exactly one member says it leads and every member
// follows it, and returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	lead := -1
	require.Eventually(c.t, func() bool {
		s := c.scrape()
		lead = -1
		for i := range c.members {
			if c.of(s, i, "rago_server_leader") == 1 {
				if lead >= 0 {
					return false
				}
				lead = i
			}
			if c.of(s, i, "rago_server_has_leader") != 1 {
				return false
			}
		}
		return lead >= 0
	}, waitFor, 20*time.Millisecond, "one leader that every member knows")
	return lead
}

// quiet waits until every member applied what the leader committed.
func (c *cluster) quiet(lead int) {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		s := c.scrape()
		commit := c.of(s, lead, "rago_server_commit_index")
		for i := range c.members {
			if c.of(s, i, "rago_server_applied_index") < commit {
				return false
			}
		}
		return true
	}, waitFor, 20*time.Millisecond, "every member applied the leader's commit index")
}

// TestCountersFollowAWorkload runs a scripted workload on a real cluster
// of three nodes and reads what the exporter says after each step: N
// commands through the leader are +N received and committed there, N
// commit latencies, +N applied on every member; a leadership transfer is
// exactly one more election won, summed over the servers, and one more
// leader change on every member.
func TestCountersFollowAWorkload(t *testing.T) {
	c := startCluster(t)
	// The first command waits for the first election.
	_, _, err := c.systems[0].ProcessCommand(c.ctx(), c.members[0], []byte("warm=up"))
	require.NoError(t, err)
	lead := c.leader()
	c.quiet(lead)
	before := c.scrape()
	require.GreaterOrEqual(t, c.sum(before, "rago_elections_won_total"), 1.0, "the cluster elected a leader")
	for i := range c.members {
		var leaders float64
		for _, role := range []string{"leader", "follower"} {
			v, ok := value(before[i], "rago_servers", map[string]string{"role": role})
			require.True(t, ok)
			leaders += v
		}
		require.Equal(t, 1.0, leaders, "node %d hosts one running server", i)
	}

	const n = 25
	for k := range n {
		_, _, err := c.systems[lead].ProcessCommand(c.ctx(), c.members[lead], fmt.Appendf(nil, "k%d=v", k))
		require.NoError(t, err)
	}
	after := c.scrape()
	for _, name := range []string{"rago_commands_received_total", "rago_commands_committed_total"} {
		require.Equal(t, float64(n), c.of(after, lead, name)-c.of(before, lead, name), name)
	}
	require.Zero(t, c.of(after, lead, "rago_commands_rejected_total")-c.of(before, lead, "rago_commands_rejected_total"))
	server := map[string]string{"server": c.members[lead].String()}
	require.EqualValues(t, n, histogram(t, after[lead], "rago_commit_latency_seconds", server).GetSampleCount()-
		histogram(t, before[lead], "rago_commit_latency_seconds", server).GetSampleCount())
	require.Greater(t, c.of(after, lead, "rago_server_commit_index"), c.of(before, lead, "rago_server_commit_index"))
	wal := func(s []map[string]*dto.MetricFamily) float64 {
		v, _ := value(s[lead], "rago_wal_entries_total", nil)
		return v
	}
	// Each WAL batch is one fsync, timed. A command commits once a quorum
	// has it, which may be before the leader's own batch is done: wait.
	require.Eventually(t, func() bool {
		now := c.scrape()
		batches, _ := value(now[lead], "rago_wal_batches_total", nil)
		was, _ := value(before[lead], "rago_wal_batches_total", nil)
		syncs := histogram(t, now[lead], "rago_wal_fsync_seconds", nil).GetSampleCount() - histogram(t, before[lead], "rago_wal_fsync_seconds", nil).GetSampleCount()
		return wal(now)-wal(before) >= n && syncs > 0 && float64(syncs) == batches-was
	}, waitFor, 20*time.Millisecond, "the leader's WAL took every entry, one fsync per batch")
	// The leader's node talks to both peers.
	for _, m := range after[lead]["rago_peer_up"].GetMetric() {
		require.Equal(t, 1.0, m.GetGauge().GetValue(), "peer %v", labels(m))
	}
	require.Len(t, after[lead]["rago_peer_sent_bytes_total"].GetMetric(), 2)
	for i := range c.members {
		require.Eventually(t, func() bool {
			s := c.scrape()
			return c.of(s, i, "rago_commands_applied_total")-c.of(before, i, "rago_commands_applied_total") == n
		}, waitFor, 20*time.Millisecond, "member %d applied %d commands", i, n)
	}
	// Followers caught up: the leader reports no lag for either.
	require.Eventually(t, func() bool {
		s := c.scrape()
		f := s[lead]["rago_follower_lag_entries"]
		if f == nil || len(f.GetMetric()) != 2 {
			return false
		}
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() != 0 {
				return false
			}
		}
		most, _ := value(s[lead], "rago_follower_lag_max_entries", nil)
		return most == 0
	}, waitFor, 20*time.Millisecond, "the followers' lag reaches zero")

	// One election: a transfer to another member.
	to := (lead + 1) % len(c.members)
	before = c.scrape()
	require.NoError(t, c.systems[lead].TransferLeadership(c.ctx(), c.members[lead], c.members[to]))
	require.Equal(t, to, c.leader())
	require.Eventually(t, func() bool {
		s := c.scrape()
		for i := range c.members {
			if c.of(s, i, "rago_leader_changes_total")-c.of(before, i, "rago_leader_changes_total") != 1 {
				return false
			}
		}
		return c.sum(s, "rago_elections_won_total")-c.sum(before, "rago_elections_won_total") == 1
	}, waitFor, 20*time.Millisecond, "one more election won, one more leader change everywhere")
	after = c.scrape()
	require.Equal(t, 1.0, c.of(after, to, "rago_elections_won_total")-c.of(before, to, "rago_elections_won_total"))
	require.Equal(t, 1.0, c.sum(after, "rago_elections_won_total")-c.sum(before, "rago_elections_won_total"))
	require.GreaterOrEqual(t, c.sum(after, "rago_elections_total")-c.sum(before, "rago_elections_total"), 1.0)
	require.NotContains(t, after[lead], "rago_follower_lag_entries", "a former leader reports no lag")
	require.Len(t, after[to]["rago_follower_lag_entries"].GetMetric(), 2)

	// A command through a follower: received and rejected there (the
	// caller follows to the leader, which commits it).
	before = c.scrape()
	_, _, err = c.systems[lead].ProcessCommand(c.ctx(), c.members[lead], []byte("via=follower"))
	require.NoError(t, err)
	after = c.scrape()
	require.Equal(t, 1.0, c.of(after, lead, "rago_commands_rejected_total")-c.of(before, lead, "rago_commands_rejected_total"))
	require.Equal(t, 1.0, c.of(after, to, "rago_commands_committed_total")-c.of(before, to, "rago_commands_committed_total"))

	// Per-cluster series off: the same node, no cluster or server label,
	// and the node's one server's counters as they are.
	agg := families(t, promexport.New(c.systems[to], promexport.Options{Aggregate: true}))
	for name, f := range agg {
		for _, m := range f.GetMetric() {
			l := labels(m)
			require.NotContains(t, l, "cluster", name)
			require.NotContains(t, l, "server", name)
		}
	}
	got, ok := value(agg, "rago_commands_committed_total", nil)
	require.True(t, ok)
	require.Equal(t, c.of(after, to, "rago_commands_committed_total"), got)
	require.Equal(t, histogram(t, after[to], "rago_commit_latency_seconds", nil).GetSampleCount(),
		histogram(t, agg, "rago_commit_latency_seconds", nil).GetSampleCount())
}
