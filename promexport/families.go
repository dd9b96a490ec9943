package promexport

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rago-raft/rago/metrics"
	"github.com/rago-raft/rago/raftserver"
)

// The tables below are every family the collector exports. Names are
// given without the rago_ prefix.

// nodeFamily is a node-wide counter or gauge family. collect calls emit
// once per series, with the values of labels in order.
type nodeFamily struct {
	name, help string
	typ        prometheus.ValueType
	labels     []string
	collect    func(m *raftserver.Metrics, emit func(v float64, labelValues ...string))
}

// nodeCounter is a node-wide counter without labels.
func nodeCounter[T int64 | uint64](name, help string, get func(m *raftserver.Metrics) T) nodeFamily {
	return nodeFamily{name: name, help: help, typ: prometheus.CounterValue,
		collect: func(m *raftserver.Metrics, emit func(float64, ...string)) { emit(float64(get(m))) }}
}

// nodeGauge is a node-wide gauge without labels.
func nodeGauge(name, help string, get func(m *raftserver.Metrics) float64) nodeFamily {
	return nodeFamily{name: name, help: help, typ: prometheus.GaugeValue,
		collect: func(m *raftserver.Metrics, emit func(float64, ...string)) { emit(get(m)) }}
}

// dropReasons are the values of the reason label of
// rago_transport_dropped_messages_total.
var dropReasons = []struct {
	reason string
	get    func(m *raftserver.Metrics) uint64
}{
	{"no_process", func(m *raftserver.Metrics) uint64 { return m.Transport.DroppedNoProcess }},
	{"queue_full", func(m *raftserver.Metrics) uint64 { return m.Transport.DroppedQueueFull }},
	{"link_down", func(m *raftserver.Metrics) uint64 { return m.Transport.DroppedLinkDown }},
	{"bad_message", func(m *raftserver.Metrics) uint64 { return m.Transport.DroppedBadMessage }},
}

// roles are the values of the role label of rago_servers: the roles of
// ServerMetrics.Role, and stopped for a server whose process does not run.
var roles = []string{"leader", "follower", "candidate", "pre_vote", "stopped"}

func roleOf(s *raftserver.ServerMetrics) string {
	if !s.Running {
		return "stopped"
	}
	return s.Role
}

// nodeFamilies are the node-wide counters and gauges: the node's rooms
// (transport, WAL, system), and gauges over its servers that stay
// bounded whatever their number.
var nodeFamilies = []nodeFamily{
	nodeCounter("transport_processes_spawned_total", "Processes spawned on the node.",
		func(m *raftserver.Metrics) uint64 { return m.Transport.Spawned }),
	{name: "transport_dropped_messages_total", typ: prometheus.CounterValue, labels: []string{"reason"},
		help: "Messages the node's transport dropped, by reason: no_process (no process of that name), queue_full (a peer's queue was full), link_down (queued for a peer that was lost), bad_message (did not decode).",
		collect: func(m *raftserver.Metrics, emit func(float64, ...string)) {
			for _, r := range dropReasons {
				emit(float64(r.get(m)), r.reason)
			}
		}},
	nodeCounter("transport_frames_sent_total", "Frames the node sent to peers.",
		func(m *raftserver.Metrics) uint64 { return m.Transport.FramesSent }),
	nodeCounter("transport_frames_received_total", "Frames the node received from peers.",
		func(m *raftserver.Metrics) uint64 { return m.Transport.FramesReceived }),
	nodeCounter("transport_sent_bytes_total", "Bytes the node sent to peers.",
		func(m *raftserver.Metrics) uint64 { return m.Transport.BytesSent }),
	nodeCounter("transport_received_bytes_total", "Bytes the node received from peers.",
		func(m *raftserver.Metrics) uint64 { return m.Transport.BytesReceived }),
	nodeCounter("transport_refused_version_total", "Connections, frames and messages from peers refused for a protocol version the node does not speak.",
		func(m *raftserver.Metrics) uint64 { return m.Transport.RefusedVersion }),
	nodeCounter("transport_refused_connections_total", "Connections from peers that the node closed: not rago, another version or security mode, failed authentication, or a frame from another node than the one authenticated.",
		func(m *raftserver.Metrics) uint64 { return m.Transport.RefusedConnections }),
	nodeCounter("transport_failed_handshakes_total", "Connections the node opened and gave up during the handshake.",
		func(m *raftserver.Metrics) uint64 { return m.Transport.FailedHandshakes }),
	nodeCounter("transport_refused_exits_total", "Exit signals from other nodes refused because their target does not take them.",
		func(m *raftserver.Metrics) uint64 { return m.Transport.RefusedExits }),

	nodeCounter("wal_batches_total", "Write-ahead log batches made durable (one write and one sync each).",
		func(m *raftserver.Metrics) int64 { return m.WAL.Batches }),
	nodeCounter("wal_entries_total", "Entries in the write-ahead log batches.",
		func(m *raftserver.Metrics) int64 { return m.WAL.Entries }),
	nodeCounter("wal_written_bytes_total", "Bytes written to write-ahead log files, framing included.",
		func(m *raftserver.Metrics) int64 { return m.WAL.Bytes }),
	nodeCounter("wal_files_total", "Write-ahead log files started.",
		func(m *raftserver.Metrics) int64 { return m.WAL.Files }),

	nodeCounter("refused_peer_messages_total", "Raft messages, snapshot chunks and acks dropped because their sender was not on the node they came from or not a member as the receiving server knew it.",
		func(m *raftserver.Metrics) uint64 { return m.System.RefusedPeerMessages }),
	nodeCounter("refused_system_requests_total", "Requests from other nodes to start, stop or delete a server, refused as not permitted.",
		func(m *raftserver.Metrics) uint64 { return m.System.RefusedSystemRequests }),

	{name: "servers", typ: prometheus.GaugeValue, labels: []string{"role"},
		help: "Servers the node hosts, by role; stopped counts those whose process does not run.",
		collect: func(m *raftserver.Metrics, emit func(float64, ...string)) {
			n := map[string]int{}
			for i := range m.Servers {
				n[roleOf(&m.Servers[i])]++
			}
			for _, r := range roles {
				emit(float64(n[r]), r)
			}
		}},
	nodeGauge("servers_without_leader", "Running servers of the node that know no leader of their cluster.",
		func(m *raftserver.Metrics) float64 {
			n := 0
			for _, s := range m.Servers {
				if s.Running && s.Leader.IsZero() {
					n++
				}
			}
			return float64(n)
		}),
	nodeGauge("follower_lag_max_entries", "The largest lag, in entries, of any follower of any cluster this node's servers lead (0 when they lead none).",
		func(m *raftserver.Metrics) float64 {
			var most uint64
			for _, s := range m.Servers {
				for _, l := range s.FollowerLag {
					most = max(most, l.Entries)
				}
			}
			return float64(most)
		}),
}

// nodeHistogram is a node-wide histogram.
type nodeHistogram struct {
	name, help string
	get        func(m *raftserver.Metrics) metrics.HistogramSnapshot
}

// nodeHistograms are the node-wide histograms.
var nodeHistograms = []nodeHistogram{}

// serverCounter is a per-server counter, summed over servers with
// Options.Aggregate.
type serverCounter struct {
	name, help string
	get        func(s *raftserver.ServerMetrics) uint64
}

var serverCounters = []serverCounter{
	{"commands_received_total", "Client commands that reached the server, leader or not.",
		func(s *raftserver.ServerMetrics) uint64 { return s.CommandsReceived }},
	{"commands_committed_total", "Commands the server, as leader, saw commit (their callers got the reply).",
		func(s *raftserver.ServerMetrics) uint64 { return s.CommandsCommitted }},
	{"commands_applied_total", "Command entries the server applied to its machine (every member applies every command).",
		func(s *raftserver.ServerMetrics) uint64 { return s.CommandsApplied }},
	{"commands_rejected_total", "Commands answered with an error before they were applied: not the leader (the caller follows to the leader), no leader, leadership lost, stopping.",
		func(s *raftserver.ServerMetrics) uint64 { return s.CommandsRejected }},
	{"poison_commands_total", "Commands whose Apply panicked.",
		func(s *raftserver.ServerMetrics) uint64 { return s.PoisonCommands }},
	{"prevotes_total", "Pre-votes the server started.",
		func(s *raftserver.ServerMetrics) uint64 { return s.PreVotes }},
	{"elections_total", "Elections the server started as a candidate.",
		func(s *raftserver.ServerMetrics) uint64 { return s.Elections }},
	{"elections_won_total", "Elections the server won.",
		func(s *raftserver.ServerMetrics) uint64 { return s.ElectionsWon }},
	{"quorum_stepdowns_total", "Times the server stepped down as leader because it lost touch with a quorum.",
		func(s *raftserver.ServerMetrics) uint64 { return s.QuorumStepDowns }},
	{"leader_changes_total", "Times the server learned of a leader other than the last it knew.",
		func(s *raftserver.ServerMetrics) uint64 { return s.LeaderChanges }},
	{"snapshots_taken_total", "Snapshots of the server's machine made durable.",
		func(s *raftserver.ServerMetrics) uint64 { return s.SnapshotsTaken }},
	{"snapshots_sent_total", "Snapshot transfers to followers completed.",
		func(s *raftserver.ServerMetrics) uint64 { return s.SnapshotsSent }},
	{"snapshot_sent_bytes_total", "Bytes of the snapshot transfers to followers completed.",
		func(s *raftserver.ServerMetrics) uint64 { return s.SnapshotBytesSent }},
	{"snapshots_installed_total", "Snapshots received from a leader and installed.",
		func(s *raftserver.ServerMetrics) uint64 { return s.SnapshotsInstalled }},
	{"snapshot_installed_bytes_total", "Bytes of the snapshots received from a leader and installed.",
		func(s *raftserver.ServerMetrics) uint64 { return s.SnapshotBytesInstalled }},
}

// serverGauge is a per-server gauge, not exported with Options.Aggregate.
type serverGauge struct {
	name, help string
	get        func(s *raftserver.ServerMetrics) float64
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var serverGauges = []serverGauge{
	{"server_running", "1 while the server's process runs, 0 after it stopped, was removed or gave up.",
		func(s *raftserver.ServerMetrics) float64 { return bit(s.Running) }},
	{"server_leader", "1 while the server runs and leads its cluster, else 0.",
		func(s *raftserver.ServerMetrics) float64 { return bit(s.Running && s.Role == "leader") }},
	{"server_has_leader", "1 while the server runs and knows a leader of its cluster, else 0.",
		func(s *raftserver.ServerMetrics) float64 { return bit(s.Running && !s.Leader.IsZero()) }},
	{"server_term", "The server's current term.",
		func(s *raftserver.ServerMetrics) float64 { return float64(s.Term) }},
	{"server_commit_index", "The highest log index the server knows to be committed.",
		func(s *raftserver.ServerMetrics) float64 { return float64(s.Commit) }},
	{"server_applied_index", "The highest log index the server applied to its machine.",
		func(s *raftserver.ServerMetrics) float64 { return float64(s.Applied) }},
	{"server_last_index", "The last index of the server's log, as it last published it as leader (0 on a server that never led).",
		func(s *raftserver.ServerMetrics) float64 { return float64(s.LastIndex) }},
	{"server_sessions", "Client sessions the server's machine host tracks.",
		func(s *raftserver.ServerMetrics) float64 { return float64(s.Sessions) }},
}

// serverHistogram is a per-server histogram, merged over servers with
// Options.Aggregate.
type serverHistogram struct {
	name, help string
	get        func(s *raftserver.ServerMetrics) metrics.HistogramSnapshot
}

var serverHistograms = []serverHistogram{
	{"commit_latency_seconds", "From a command's arrival at the leader to its commit, on the leader.",
		func(s *raftserver.ServerMetrics) metrics.HistogramSnapshot { return s.CommitLatency }},
	{"apply_latency_seconds", "The machine's Apply of one command, on every member.",
		func(s *raftserver.ServerMetrics) metrics.HistogramSnapshot { return s.ApplyLatency }},
}
