package promexport_test

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
	"github.com/rago-raft/rago/metrics"
	"github.com/rago-raft/rago/promexport"
	"github.com/rago-raft/rago/raftserver"
	"github.com/rago-raft/rago/segment"
	"github.com/rago-raft/rago/snapshot"
	"github.com/rago-raft/rago/wal"
)

// fixed is a source that always reports the same metrics.
type fixed raftserver.Metrics

func (f fixed) Metrics() raftserver.Metrics { return raftserver.Metrics(f) }

// families scrapes c as Prometheus would, over HTTP in the text format,
// and parses the answer. The registry is pedantic: it checks that what
// Collect sends matches what Describe declared.
func families(t testing.TB, cs ...prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		require.NoError(t, reg.Register(c))
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"), "content type %q", resp.Header.Get("Content-Type"))
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "the exposition does not parse as Prometheus text")
	return fams
}

// labels returns a metric's labels as a map.
func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// value returns the value of the series of family name whose labels
// include want, and whether there is one; counters and gauges only.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		l := labels(m)
		for k, v := range want {
			if l[k] != v {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue(), true
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// histogram returns the series of histogram family name whose labels
// include want.
func histogram(t testing.TB, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Histogram {
	t.Helper()
	f := fams[name]
	require.NotNil(t, f, "no family %s", name)
	require.Equal(t, dto.MetricType_HISTOGRAM, f.GetType(), name)
next:
	for _, m := range f.GetMetric() {
		l := labels(m)
		for k, v := range want {
			if l[k] != v {
				continue next
			}
		}
		return m.GetHistogram()
	}
	t.Fatalf("no series of %s with %v", name, want)
	return nil
}

func snapshotOf(ds ...time.Duration) metrics.HistogramSnapshot {
	var h metrics.Histogram
	for _, d := range ds {
		h.Observe(d)
	}
	return h.Snapshot()
}

// sample is a node with three servers of three clusters: a leader with
// two followers, a follower, and a server that stopped.
func sample() raftserver.Metrics {
	id := func(name string) raftserver.ServerID { return raftserver.ServerID{Name: name, Node: "10.0.0.1:7001"} }
	peer := func(name, node string) raftserver.ServerID { return raftserver.ServerID{Name: name, Node: node} }
	return raftserver.Metrics{
		Node: "10.0.0.1:7001",
		Transport: actor.Stats{Spawned: 9, DroppedNoProcess: 1, DroppedQueueFull: 2, DroppedLinkDown: 3, DroppedBadMessage: 4,
			FramesSent: 100, FramesReceived: 90, BytesSent: 10000, BytesReceived: 9000, RefusedConnections: 5},
		Peers: []actor.PeerStats{
			{Node: "10.0.0.2:7001", Up: true, MessagesSent: 50, FramesSent: 40, BytesSent: 5000, MessagesReceived: 45, FramesReceived: 35, BytesReceived: 4500},
			{Node: "10.0.0.3:7001", MessagesSent: 50, FramesSent: 60, BytesSent: 5000, MessagesDropped: 6},
		},
		WAL: wal.Stats{Batches: 40, Entries: 120, Bytes: 64000, Files: 3, Preallocated: 1, Recycled: 1,
			Write: snapshotOf(20*time.Microsecond, 40*time.Microsecond), Sync: snapshotOf(2*time.Millisecond, 30*time.Millisecond), SyncFailures: 1},
		Segments:        segment.Stats{Flushes: 1, Entries: 100, Bytes: 50000, Flush: snapshotOf(20 * time.Millisecond), FlushFailures: 2, Linked: 5, LinkedCollected: 3, LinkedReclaimed: 2},
		Snapshots:       snapshot.Stats{SnapshotsWritten: 1, BytesWritten: 4096, Write: snapshotOf(5 * time.Millisecond), WriteFailures: 3, ChunksSent: 2, ChunkBytesSent: 4096, ChunksReceived: 1, ChunkBytesReceived: 2048},
		FailureDetector: failuredetector.Stats{Suspicions: 4, Cleared: 3, Suspected: 1},
		System:          raftserver.SystemStats{RefusedPeerMessages: 7, RefusedSystemRequests: 8},
		Servers: []raftserver.ServerMetrics{
			{
				ID: id("orders1"), Cluster: "orders", Running: true,
				CommandsReceived: 12, CommandsCommitted: 10, CommandsApplied: 10, CommandsRejected: 2,
				CommitLatency: snapshotOf(30*time.Microsecond, 3*time.Millisecond, 20*time.Second),
				ApplyLatency:  snapshotOf(10 * time.Microsecond),
				PreVotes:      2, Elections: 2, ElectionsWon: 1, LeaderChanges: 1,
				SnapshotsTaken: 1, SnapshotsSent: 1, SnapshotBytesSent: 4096, SnapshotSendTime: snapshotOf(300 * time.Millisecond),
				MailboxDepth: 9, Role: "leader", Term: 3, Leader: id("orders1"), Commit: 11, Applied: 11, LastIndex: 14, Sessions: 2,
				FollowerLag: []raftserver.FollowerLag{
					{Follower: peer("orders2", "10.0.0.2:7001"), Entries: 0},
					{Follower: peer("orders3", "10.0.0.3:7001"), Entries: 3},
				},
			},
			{
				ID: id("users1"), Cluster: "users", Running: true,
				CommandsReceived: 1, CommandsApplied: 5, CommandsRejected: 1,
				ApplyLatency: snapshotOf(time.Millisecond, 2*time.Millisecond),
				PreVotes:     1, LeaderChanges: 2, SnapshotsInstalled: 1, SnapshotBytesInstalled: 2048,
				SnapshotInstallTime: snapshotOf(40 * time.Millisecond), MailboxDepth: 2,
				Role: "follower", Term: 5, Leader: peer("users2", "10.0.0.2:7001"), Commit: 6, Applied: 6,
			},
			{
				ID: id("old1"), Cluster: "old", Running: false, Role: "leader", Term: 1,
				CommandsCommitted: 4, CommitLatency: snapshotOf(time.Second), ElectionsWon: 1,
			},
		},
	}
}

// The families, by type, that every scrape has.
var wantTypes = map[string]dto.MetricType{
	"rago_commands_received_total":              dto.MetricType_COUNTER,
	"rago_commands_committed_total":             dto.MetricType_COUNTER,
	"rago_commands_applied_total":               dto.MetricType_COUNTER,
	"rago_commands_rejected_total":              dto.MetricType_COUNTER,
	"rago_poison_commands_total":                dto.MetricType_COUNTER,
	"rago_prevotes_total":                       dto.MetricType_COUNTER,
	"rago_elections_total":                      dto.MetricType_COUNTER,
	"rago_elections_won_total":                  dto.MetricType_COUNTER,
	"rago_quorum_stepdowns_total":               dto.MetricType_COUNTER,
	"rago_leader_changes_total":                 dto.MetricType_COUNTER,
	"rago_snapshots_taken_total":                dto.MetricType_COUNTER,
	"rago_snapshots_sent_total":                 dto.MetricType_COUNTER,
	"rago_snapshot_sent_bytes_total":            dto.MetricType_COUNTER,
	"rago_snapshots_installed_total":            dto.MetricType_COUNTER,
	"rago_snapshot_installed_bytes_total":       dto.MetricType_COUNTER,
	"rago_commit_latency_seconds":               dto.MetricType_HISTOGRAM,
	"rago_apply_latency_seconds":                dto.MetricType_HISTOGRAM,
	"rago_transport_dropped_messages_total":     dto.MetricType_COUNTER,
	"rago_transport_sent_bytes_total":           dto.MetricType_COUNTER,
	"rago_transport_received_bytes_total":       dto.MetricType_COUNTER,
	"rago_wal_batches_total":                    dto.MetricType_COUNTER,
	"rago_wal_entries_total":                    dto.MetricType_COUNTER,
	"rago_wal_written_bytes_total":              dto.MetricType_COUNTER,
	"rago_refused_peer_messages_total":          dto.MetricType_COUNTER,
	"rago_servers":                              dto.MetricType_GAUGE,
	"rago_servers_without_leader":               dto.MetricType_GAUGE,
	"rago_follower_lag_max_entries":             dto.MetricType_GAUGE,
	"rago_mailbox_depth_max":                    dto.MetricType_GAUGE,
	"rago_snapshot_send_seconds":                dto.MetricType_HISTOGRAM,
	"rago_snapshot_install_seconds":             dto.MetricType_HISTOGRAM,
	"rago_wal_write_seconds":                    dto.MetricType_HISTOGRAM,
	"rago_wal_fsync_seconds":                    dto.MetricType_HISTOGRAM,
	"rago_wal_sync_failures_total":              dto.MetricType_COUNTER,
	"rago_segment_flushes_total":                dto.MetricType_COUNTER,
	"rago_segment_flush_seconds":                dto.MetricType_HISTOGRAM,
	"rago_segment_flush_failures_total":         dto.MetricType_COUNTER,
	"rago_segment_linked_files_total":           dto.MetricType_COUNTER,
	"rago_wal_preallocated_files_total":         dto.MetricType_COUNTER,
	"rago_wal_recycled_files_total":             dto.MetricType_COUNTER,
	"rago_segment_linked_files_collected_total": dto.MetricType_COUNTER,
	"rago_segment_linked_files_reclaimed_total": dto.MetricType_COUNTER,
	"rago_snapshots_written_total":              dto.MetricType_COUNTER,
	"rago_snapshot_write_seconds":               dto.MetricType_HISTOGRAM,
	"rago_snapshot_write_failures_total":        dto.MetricType_COUNTER,
	"rago_snapshot_chunks_sent_total":           dto.MetricType_COUNTER,
	"rago_failure_detector_suspicions_total":    dto.MetricType_COUNTER,
	"rago_failure_detector_suspected_nodes":     dto.MetricType_GAUGE,
	"rago_peer_up":                              dto.MetricType_GAUGE,
	"rago_peer_sent_bytes_total":                dto.MetricType_COUNTER,
	"rago_peer_messages_dropped_total":          dto.MetricType_COUNTER,
}

// TestExpositionParses: the exposition parses as Prometheus text, has
// every family with its type, and the per-server series carry cluster
// and server, the lag follower.
func TestExpositionParses(t *testing.T) {
	fams := families(t, promexport.New(fixed(sample()), promexport.Options{}))
	for name, typ := range wantTypes {
		require.Contains(t, fams, name)
		require.Equal(t, typ, fams[name].GetType(), name)
	}
	for name, f := range fams {
		require.True(t, strings.HasPrefix(name, "rago_"), name)
		require.NotEmpty(t, f.GetHelp(), name)
		if f.GetType() == dto.MetricType_COUNTER {
			require.True(t, strings.HasSuffix(name, "_total"), "counter %s", name)
		}
	}
	for _, name := range []string{"rago_server_running", "rago_server_leader", "rago_server_has_leader", "rago_server_term",
		"rago_server_commit_index", "rago_server_applied_index", "rago_server_last_index", "rago_server_sessions", "rago_server_mailbox_depth",
		"rago_follower_lag_entries"} {
		require.Equal(t, dto.MetricType_GAUGE, fams[name].GetType(), name)
	}

	orders := map[string]string{"cluster": "orders", "server": "orders1@10.0.0.1:7001"}
	users := map[string]string{"cluster": "users", "server": "users1@10.0.0.1:7001"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"rago_commands_committed_total", orders, 10},
		{"rago_commands_rejected_total", users, 1},
		{"rago_elections_won_total", orders, 1},
		{"rago_leader_changes_total", users, 2},
		{"rago_snapshot_sent_bytes_total", orders, 4096},
		{"rago_snapshot_installed_bytes_total", users, 2048},
		{"rago_server_leader", orders, 1},
		{"rago_server_leader", users, 0},
		{"rago_server_leader", map[string]string{"cluster": "old"}, 0}, // it led, then stopped
		{"rago_server_running", map[string]string{"cluster": "old"}, 0},
		{"rago_server_has_leader", users, 1},
		{"rago_server_term", users, 5},
		{"rago_server_last_index", orders, 14},
		{"rago_server_sessions", orders, 2},
		{"rago_follower_lag_entries", map[string]string{"cluster": "orders", "server": "orders1@10.0.0.1:7001", "follower": "orders3@10.0.0.3:7001"}, 3},
		{"rago_follower_lag_entries", map[string]string{"follower": "orders2@10.0.0.2:7001"}, 0},
		{"rago_follower_lag_max_entries", nil, 3},
		{"rago_servers", map[string]string{"role": "leader"}, 1},
		{"rago_servers", map[string]string{"role": "follower"}, 1},
		{"rago_servers", map[string]string{"role": "stopped"}, 1},
		{"rago_servers", map[string]string{"role": "candidate"}, 0},
		{"rago_servers_without_leader", nil, 0},
		{"rago_transport_dropped_messages_total", map[string]string{"reason": "queue_full"}, 2},
		{"rago_transport_sent_bytes_total", nil, 10000},
		{"rago_wal_batches_total", nil, 40},
		{"rago_wal_written_bytes_total", nil, 64000},
		{"rago_refused_system_requests_total", nil, 8},
		{"rago_server_mailbox_depth", orders, 9},
		{"rago_mailbox_depth_max", nil, 9},
		{"rago_wal_sync_failures_total", nil, 1},
		{"rago_segment_flushed_bytes_total", nil, 50000},
		{"rago_segment_flush_failures_total", nil, 2},
		{"rago_segment_linked_files_total", nil, 5},
		{"rago_wal_preallocated_files_total", nil, 1},
		{"rago_wal_recycled_files_total", nil, 1},
		{"rago_segment_linked_files_collected_total", nil, 3},
		{"rago_segment_linked_files_reclaimed_total", nil, 2},
		{"rago_snapshot_write_failures_total", nil, 3},
		{"rago_snapshot_chunk_received_bytes_total", nil, 2048},
		{"rago_failure_detector_suspicions_total", nil, 4},
		{"rago_failure_detector_suspected_nodes", nil, 1},
		{"rago_peer_up", map[string]string{"peer": "10.0.0.2:7001"}, 1},
		{"rago_peer_up", map[string]string{"peer": "10.0.0.3:7001"}, 0},
		{"rago_peer_frames_sent_total", map[string]string{"peer": "10.0.0.3:7001"}, 60},
		{"rago_peer_messages_dropped_total", map[string]string{"peer": "10.0.0.3:7001"}, 6},
		{"rago_peer_received_bytes_total", map[string]string{"peer": "10.0.0.2:7001"}, 4500},
	} {
		got, ok := value(fams, c.name, c.labels)
		require.True(t, ok, "no series %s%v", c.name, c.labels)
		require.Equal(t, c.want, got, "%s%v", c.name, c.labels)
	}
	require.EqualValues(t, 2, histogram(t, fams, "rago_wal_fsync_seconds", nil).GetSampleCount())
	require.InDelta(t, 0.032, histogram(t, fams, "rago_wal_fsync_seconds", nil).GetSampleSum(), 1e-9)
	require.EqualValues(t, 1, histogram(t, fams, "rago_snapshot_install_seconds", users).GetSampleCount())
	require.Len(t, fams["rago_peer_sent_bytes_total"].GetMetric(), 2, "one series per peer node")
	require.Len(t, fams["rago_commands_committed_total"].GetMetric(), 3, "one series per server")
	require.Len(t, fams["rago_follower_lag_entries"].GetMetric(), 2, "one series per follower of a leader")
	for _, m := range fams["rago_commit_latency_seconds"].GetMetric() {
		l := labels(m)
		require.NotEmpty(t, l["cluster"])
		require.NotEmpty(t, l["server"])
	}
}

// TestHistogramBuckets: the buckets are cumulative, in seconds, from
// 50 µs up past 10 s, and +Inf is the count.
func TestHistogramBuckets(t *testing.T) {
	fams := families(t, promexport.New(fixed(sample()), promexport.Options{}))
	h := histogram(t, fams, "rago_commit_latency_seconds", map[string]string{"cluster": "orders"})
	bs := h.GetBucket()
	// The text format lists +Inf as a bucket too: the count.
	require.Len(t, bs, metrics.Buckets+1)
	require.True(t, math.IsInf(bs[metrics.Buckets].GetUpperBound(), 1))
	require.Equal(t, h.GetSampleCount(), bs[metrics.Buckets].GetCumulativeCount())
	bs = bs[:metrics.Buckets]
	require.Equal(t, 5e-05, bs[0].GetUpperBound(), "the first bucket ends at 50 µs")
	require.GreaterOrEqual(t, bs[len(bs)-1].GetUpperBound(), 10.0, "a bucket reaches 10 s")
	for i, b := range bs {
		require.Equal(t, float64(metrics.FirstBound<<i)/1e9, b.GetUpperBound())
		if i > 0 {
			require.GreaterOrEqual(t, b.GetCumulativeCount(), bs[i-1].GetCumulativeCount(), "cumulative")
		}
	}
	// 30 µs, 3 ms and 20 s: one in the first bucket, two by 3.2 ms, the
	// third only in +Inf (the count).
	require.EqualValues(t, 1, bs[0].GetCumulativeCount())
	require.Equal(t, 0.0032, math.Round(bs[6].GetUpperBound()*1e6)/1e6)
	require.EqualValues(t, 1, bs[5].GetCumulativeCount())
	require.EqualValues(t, 2, bs[6].GetCumulativeCount())
	require.EqualValues(t, 2, bs[len(bs)-1].GetCumulativeCount())
	require.EqualValues(t, 3, h.GetSampleCount())
	require.InDelta(t, 20.00303, h.GetSampleSum(), 1e-9)
}

// TestAggregate: with per-cluster series off, no series has a cluster or
// server label; counters are the sums over the servers, histograms merge
// theirs, the per-server gauges are gone and the node-wide ones stay.
func TestAggregate(t *testing.T) {
	fams := families(t, promexport.New(fixed(sample()), promexport.Options{Aggregate: true}))
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				require.NotContains(t, []string{"cluster", "server", "follower"}, l.GetName(), "%s has the label %s", name, l.GetName())
			}
		}
		require.False(t, strings.HasPrefix(name, "rago_server_"), "per-server gauge %s", name)
	}
	require.NotContains(t, fams, "rago_follower_lag_entries")
	for name, typ := range wantTypes {
		require.Contains(t, fams, name)
		require.Equal(t, typ, fams[name].GetType(), name)
	}
	for _, c := range []struct {
		name string
		want float64
	}{
		{"rago_commands_received_total", 13},
		{"rago_commands_committed_total", 14},
		{"rago_commands_applied_total", 15},
		{"rago_commands_rejected_total", 3},
		{"rago_elections_won_total", 2},
		{"rago_leader_changes_total", 3},
		{"rago_follower_lag_max_entries", 3},
		{"rago_mailbox_depth_max", 9},
	} {
		require.Len(t, fams[c.name].GetMetric(), 1, c.name)
		got, _ := value(fams, c.name, nil)
		require.Equal(t, c.want, got, c.name)
	}
	commit := histogram(t, fams, "rago_commit_latency_seconds", nil)
	require.EqualValues(t, 4, commit.GetSampleCount())
	require.InDelta(t, 21.00303, commit.GetSampleSum(), 1e-9)
	require.Len(t, fams["rago_peer_up"].GetMetric(), 2, "per-peer series stay: their number is that of nodes")
	require.EqualValues(t, 1, histogram(t, fams, "rago_snapshot_send_seconds", nil).GetSampleCount())
	apply := histogram(t, fams, "rago_apply_latency_seconds", nil)
	require.EqualValues(t, 3, apply.GetSampleCount())
	require.EqualValues(t, 1, apply.GetBucket()[0].GetCumulativeCount())
}

// TestConstLabels: constant labels go on every series.
func TestConstLabels(t *testing.T) {
	for _, aggregate := range []bool{false, true} {
		fams := families(t, promexport.New(fixed(sample()), promexport.Options{Aggregate: aggregate, ConstLabels: prometheus.Labels{"node": "10.0.0.1:7001"}}))
		for name, f := range fams {
			for _, m := range f.GetMetric() {
				require.Equal(t, "10.0.0.1:7001", labels(m)["node"], name)
			}
		}
	}
}

// TestNoServers: a node that hosts nothing still exports its rooms, and
// histograms and sums of nothing with Aggregate.
func TestNoServers(t *testing.T) {
	m := sample()
	m.Servers = nil
	fams := families(t, promexport.New(fixed(m), promexport.Options{}))
	require.NotContains(t, fams, "rago_commands_committed_total")
	require.Contains(t, fams, "rago_wal_batches_total")
	fams = families(t, promexport.New(fixed(m), promexport.Options{Aggregate: true}))
	got, ok := value(fams, "rago_commands_committed_total", nil)
	require.True(t, ok)
	require.Zero(t, got)
	require.Zero(t, histogram(t, fams, "rago_commit_latency_seconds", nil).GetSampleCount())
}

// series counts the series of a scrape as Prometheus stores them: a
// histogram is one per bucket, +Inf included, and its sum and count.
func series(fams map[string]*dto.MetricFamily) int {
	n := 0
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			n++
			if h := m.GetHistogram(); h != nil {
				n += len(h.GetBucket()) + 1
			}
		}
	}
	return n
}

// TestAggregateIsBounded: with per-cluster series off, a node of 10,000
// clusters exports as many series as a node of three: a few hundred,
// whose number grows with the number of peer nodes only.
func TestAggregateIsBounded(t *testing.T) {
	few := series(families(t, promexport.New(fixed(sample()), promexport.Options{Aggregate: true})))
	require.Less(t, few, 400)
	m := sample()
	one := m.Servers[0]
	m.Servers = make([]raftserver.ServerMetrics, 10_000)
	for i := range m.Servers {
		s := one
		s.Cluster = fmt.Sprint("c", i)
		m.Servers[i] = s
	}
	fams := families(t, promexport.New(fixed(m), promexport.Options{Aggregate: true}))
	require.Equal(t, few, series(fams))
	got, _ := value(fams, "rago_commands_committed_total", nil)
	require.Equal(t, 10_000*float64(one.CommandsCommitted), got)
	t.Logf("%d series with per-cluster series off, for 3 or 10,000 clusters", few)
}
