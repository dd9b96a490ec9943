package promexport

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rago-raft/rago/actor"
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

// peerFamily is a node-wide family with one series per peer node, with
// the label peer (its name).
func peerFamily(name string, typ prometheus.ValueType, help string, get func(p *actor.PeerStats) float64) nodeFamily {
	return nodeFamily{name: name, help: help, typ: typ, labels: []string{"peer"},
		collect: func(m *raftserver.Metrics, emit func(float64, ...string)) {
			for i := range m.Peers {
				emit(get(&m.Peers[i]), m.Peers[i].Node)
			}
		}}
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
	nodeCounter("wal_preallocated_files_total", "Write-ahead log files started in a spare prepared with zeros, whose syncs write data only.",
		func(m *raftserver.Metrics) int64 { return m.WAL.Preallocated }),
	nodeCounter("wal_recycled_files_total", "Write-ahead log files started over a flushed file kept to be written over, whose syncs write data only and which needed no zeros.",
		func(m *raftserver.Metrics) int64 { return m.WAL.Recycled }),
	nodeCounter("wal_write_failures_total", "Write-ahead log batches whose file creation or write failed (the WAL then stops).",
		func(m *raftserver.Metrics) int64 { return m.WAL.WriteFailures }),
	nodeCounter("wal_sync_failures_total", "Write-ahead log batches whose file or directory sync failed (the WAL then stops).",
		func(m *raftserver.Metrics) int64 { return m.WAL.SyncFailures }),

	nodeCounter("segment_flushes_total", "Write-ahead log files made durable in the segment store.",
		func(m *raftserver.Metrics) int64 { return m.Segments.Flushes }),
	nodeCounter("segment_flushed_entries_total", "Entries those flushes wrote.",
		func(m *raftserver.Metrics) int64 { return m.Segments.Entries }),
	nodeCounter("segment_flushed_bytes_total", "Payload bytes of the entries those flushes wrote.",
		func(m *raftserver.Metrics) int64 { return m.Segments.Bytes }),
	nodeCounter("segment_flush_failures_total", "Flushes of a write-ahead log file into the segment store that failed (each is retried).",
		func(m *raftserver.Metrics) int64 { return m.Segments.FlushFailures }),
	nodeCounter("segment_linked_files_total", "Write-ahead log files the segment store kept by hard link instead of copying their entries.",
		func(m *raftserver.Metrics) int64 { return m.Segments.Linked }),
	nodeCounter("segment_linked_files_collected_total", "Linked write-ahead log files removed once no entry referred to them.",
		func(m *raftserver.Metrics) int64 { return m.Segments.LinkedCollected }),
	nodeCounter("segment_linked_files_reclaimed_total", "Collected linked write-ahead log files that the write-ahead log took back to write later files over.",
		func(m *raftserver.Metrics) int64 { return m.Segments.LinkedReclaimed }),

	nodeCounter("snapshots_written_total", "Snapshots of the node's servers made durable.",
		func(m *raftserver.Metrics) int64 { return m.Snapshots.SnapshotsWritten }),
	nodeCounter("snapshot_written_bytes_total", "File bytes of the snapshots made durable.",
		func(m *raftserver.Metrics) int64 { return m.Snapshots.BytesWritten }),
	nodeCounter("snapshot_write_failures_total", "Snapshot writes that did not become durable.",
		func(m *raftserver.Metrics) int64 { return m.Snapshots.WriteFailures }),
	nodeCounter("snapshot_chunks_sent_total", "Snapshot chunks sent to followers, resent ones included.",
		func(m *raftserver.Metrics) int64 { return m.Snapshots.ChunksSent }),
	nodeCounter("snapshot_chunk_sent_bytes_total", "Snapshot bytes in the chunks sent.",
		func(m *raftserver.Metrics) int64 { return m.Snapshots.ChunkBytesSent }),
	nodeCounter("snapshot_chunks_received_total", "Snapshot chunks received from leaders, duplicates and rejected ones included.",
		func(m *raftserver.Metrics) int64 { return m.Snapshots.ChunksReceived }),
	nodeCounter("snapshot_chunk_received_bytes_total", "Snapshot bytes in the chunks received.",
		func(m *raftserver.Metrics) int64 { return m.Snapshots.ChunkBytesReceived }),

	nodeCounter("failure_detector_suspicions_total", "Times a node this node watches went from trusted to suspected.",
		func(m *raftserver.Metrics) int64 { return m.FailureDetector.Suspicions }),
	nodeCounter("failure_detector_cleared_total", "Times a suspected node was heard from again and trusted.",
		func(m *raftserver.Metrics) int64 { return m.FailureDetector.Cleared }),
	nodeGauge("failure_detector_suspected_nodes", "Nodes suspected now.",
		func(m *raftserver.Metrics) float64 { return float64(m.FailureDetector.Suspected) }),

	peerFamily("peer_up", prometheus.GaugeValue, "1 while the connection this node sends to the peer over is up, else 0.",
		func(p *actor.PeerStats) float64 { return bit(p.Up) }),
	peerFamily("peer_messages_sent_total", prometheus.CounterValue, "Messages written to the peer's connection.",
		func(p *actor.PeerStats) float64 { return float64(p.MessagesSent) }),
	peerFamily("peer_frames_sent_total", prometheus.CounterValue, "Frames sent to the peer.",
		func(p *actor.PeerStats) float64 { return float64(p.FramesSent) }),
	peerFamily("peer_sent_bytes_total", prometheus.CounterValue, "Bytes sent to the peer, frame headers excluded.",
		func(p *actor.PeerStats) float64 { return float64(p.BytesSent) }),
	peerFamily("peer_messages_dropped_total", prometheus.CounterValue, "Messages for the peer accepted and never written: its queue was full or the link down.",
		func(p *actor.PeerStats) float64 { return float64(p.MessagesDropped) }),
	peerFamily("peer_messages_received_total", prometheus.CounterValue, "Messages in frames read from the peer.",
		func(p *actor.PeerStats) float64 { return float64(p.MessagesReceived) }),
	peerFamily("peer_frames_received_total", prometheus.CounterValue, "Frames read from the peer.",
		func(p *actor.PeerStats) float64 { return float64(p.FramesReceived) }),
	peerFamily("peer_received_bytes_total", prometheus.CounterValue, "Bytes read from the peer, length prefixes excluded.",
		func(p *actor.PeerStats) float64 { return float64(p.BytesReceived) }),

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
	nodeGauge("mailbox_depth_max", "The most messages waiting in the mailbox of any server of the node.",
		func(m *raftserver.Metrics) float64 {
			var most int64
			for _, s := range m.Servers {
				most = max(most, s.MailboxDepth)
			}
			return float64(most)
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
var nodeHistograms = []nodeHistogram{
	{"wal_write_seconds", "The write of each write-ahead log batch to its file.",
		func(m *raftserver.Metrics) metrics.HistogramSnapshot { return m.WAL.Write }},
	{"wal_fsync_seconds", "The file sync (fdatasync, or fsync) of each write-ahead log batch: every commit waits for one.",
		func(m *raftserver.Metrics) metrics.HistogramSnapshot { return m.WAL.Sync }},
	{"segment_flush_seconds", "Each flush of a write-ahead log file into the segment store, to a synced table.",
		func(m *raftserver.Metrics) metrics.HistogramSnapshot { return m.Segments.Flush }},
	{"snapshot_write_seconds", "Each snapshot written, from its start to its file and directory synced.",
		func(m *raftserver.Metrics) metrics.HistogramSnapshot { return m.Snapshots.Write }},
}

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
	{"server_mailbox_depth", "Messages waiting in the server's mailbox.",
		func(s *raftserver.ServerMetrics) float64 { return float64(s.MailboxDepth) }},
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
	{"snapshot_send_seconds", "Each completed snapshot transfer to a follower, from its start to the last acknowledgement.",
		func(s *raftserver.ServerMetrics) metrics.HistogramSnapshot { return s.SnapshotSendTime }},
	{"snapshot_install_seconds", "Each install of a snapshot received from a leader: restoring the machine and resetting the log.",
		func(s *raftserver.ServerMetrics) metrics.HistogramSnapshot { return s.SnapshotInstallTime }},
}
