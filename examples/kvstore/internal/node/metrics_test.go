package node

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/metrics"
	"github.com/rago-raft/rago/raftserver"
)

// TestMetricsSummarySamples: each sample holds the rates and commit
// latency quantiles of its interval only, and a leader's lag by follower
// id; the first reading is only a baseline, a counter that starts again
// counts from zero, and two minutes are kept.
func TestMetricsSummarySamples(t *testing.T) {
	self := raftserver.ServerID{Name: "n1", Node: "127.0.0.1:7001"}
	var cur raftserver.ServerMetrics
	var lat metrics.Histogram
	s := &sampler{self: self, read: func() raftserver.Metrics {
		m := cur
		m.CommitLatency = lat.Snapshot()
		other := raftserver.ServerMetrics{ID: raftserver.ServerID{Name: "x", Node: self.Node}, CommandsCommitted: 1000}
		return raftserver.Metrics{Servers: []raftserver.ServerMetrics{other, m}}
	}}
	t0 := time.UnixMilli(1_000_000)
	cur = raftserver.ServerMetrics{ID: self, Running: true, Role: "leader", CommandsCommitted: 50, CommandsApplied: 50}
	for range 50 {
		lat.Observe(100 * time.Millisecond) // before the first sample: not in any interval
	}
	s.sample(t0)
	require.Empty(t, s.since(0), "the first reading is a baseline")

	cur.CommandsCommitted, cur.CommandsApplied = 70, 90
	for range 99 {
		lat.Observe(time.Millisecond)
	}
	lat.Observe(time.Second)
	cur.FollowerLag = []raftserver.FollowerLag{{Follower: raftserver.ServerID{Name: "n2", Node: "b:1"}, Entries: 4}, {Follower: raftserver.ServerID{Name: "n3", Node: "c:1"}}}
	s.sample(t0.Add(2 * time.Second))
	got := s.since(0)
	require.Len(t, got, 1)
	smp := got[0]
	require.Equal(t, t0.Add(2*time.Second).UnixMilli(), smp.Time)
	require.Equal(t, "leader", smp.Role)
	require.Equal(t, 10.0, smp.CommitsPerSecond)
	require.Equal(t, 20.0, smp.AppliedPerSecond)
	require.NotNil(t, smp.CommitP50Ms)
	require.InDelta(t, 1.0, *smp.CommitP50Ms, 0.7, "p50 of this interval, not of the 100 ms before it")
	require.Greater(t, *smp.CommitP99Ms, 1.0)
	require.Less(t, *smp.CommitP99Ms, 100.0)
	require.Equal(t, map[string]uint64{"n2": 4, "n3": 0}, smp.Lag)

	// Nothing committed: no latency; a follower has no lag; the member
	// created anew counts from zero.
	cur = raftserver.ServerMetrics{ID: self, Running: true, Role: "follower", CommandsApplied: 3}
	s.sample(t0.Add(3 * time.Second))
	smp = s.since(t0.Add(2 * time.Second).UnixMilli())[0]
	require.Nil(t, smp.CommitP50Ms)
	require.Nil(t, smp.Lag)
	require.Equal(t, 3.0, smp.AppliedPerSecond)
	require.Zero(t, smp.CommitsPerSecond)

	for i := range 2 * summaryKeep {
		s.sample(t0.Add(time.Duration(4+i) * time.Second))
	}
	all := s.since(0)
	require.Len(t, all, summaryKeep)
	require.Equal(t, t0.Add(time.Duration(3+2*summaryKeep)*time.Second).UnixMilli(), all[len(all)-1].Time, "the newest kept")

	// Over HTTP: JSON, open to other origins, since filters.
	n := &Node{cfg: Config{ID: "n1"}, samples: s}
	w := httptest.NewRecorder()
	n.handleMetricsSummary(w, httptest.NewRequest(http.MethodGet, "/metrics/summary?since="+strconv.FormatInt(all[len(all)-2].Time, 10), nil))
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "*", w.Header().Get("Access-Control-Allow-Origin"))
	var sum api.MetricsSummary
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &sum))
	require.Equal(t, "n1", sum.Node)
	require.Equal(t, 1.0, sum.IntervalSeconds)
	require.Len(t, sum.Samples, 1)
	w = httptest.NewRecorder()
	n.handleMetricsSummary(w, httptest.NewRequest(http.MethodGet, "/metrics/summary?since=yesterday", nil))
	require.Equal(t, http.StatusBadRequest, w.Code)
}
