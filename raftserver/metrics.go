package raftserver

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
	"github.com/rago-raft/rago/metrics"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/segment"
	"github.com/rago-raft/rago/snapshot"
	"github.com/rago-raft/rago/wal"
)

// Metrics are a node's counters and gauges at one moment: those of its
// rooms (transport, WAL) and of each server it hosts. Reading them sends no
// message and takes no lock a hot path holds, so scraping is cheap even
// with many servers; its cost grows with the number of servers.
type Metrics struct {
	// Node is the node's name.
	Node string
	// Transport counts the node's messages, frames, bytes and refusals;
	// Peers the traffic with each peer node.
	Transport actor.Stats
	Peers     []actor.PeerStats
	// WAL counts the node's write-ahead log batches, entries, bytes, write
	// and sync times, summed over the WALs the node ran since it started
	// (a log restart opens a new one).
	WAL wal.Stats
	// Segments counts the segment writer's flushes; Snapshots the
	// snapshots written and the chunks sent and received.
	Segments  segment.Stats
	Snapshots snapshot.Stats
	// FailureDetector counts suspicions of other nodes.
	FailureDetector failuredetector.Stats
	// System counts what the node's Raft system refused.
	System SystemStats
	// Servers are the node's servers, sorted by cluster and name.
	Servers []ServerMetrics
}

// Metrics returns the node's counters and gauges and those of every
// server it hosts (see Metrics). Safe from any goroutine.
func (s *System) Metrics() Metrics {
	m := Metrics{
		Node:            s.node.Name(),
		Transport:       s.node.Stats(),
		Peers:           s.node.PeerStats(),
		Segments:        s.segments.Stats(),
		Snapshots:       s.snapshots.Stats(),
		FailureDetector: s.fd.Stats(),
		System:          s.Stats(),
		Servers:         s.metrics.all(s.node),
	}
	s.logMu.Lock()
	m.WAL = s.walEarlier
	w := s.wal
	s.logMu.Unlock()
	if w != nil {
		m.WAL.Add(w.Stats())
	}
	return m
}

// ServerMetrics are one server's counters and gauges at one moment
// (System.Metrics). Counters are cumulative over the server's life on this
// node: they survive restarts of its process and start again at zero when
// the node's System starts. Gauges (Role to FollowerLag) are as the server
// last published them.
type ServerMetrics struct {
	ID      ServerID
	Cluster string
	// Running: the server's process runs (false after it stopped, was
	// removed or gave up).
	Running bool

	// CommandsReceived: client commands that reached this server, leader
	// or not. CommandsCommitted: commands this server, as leader, saw
	// commit (their callers were answered with the reply). CommandsApplied:
	// command entries this server applied to its machine (every member).
	// CommandsRejected: commands answered with an error before they were
	// applied: not the leader, no leader, leadership lost (outcome
	// unknown) or the server stopping.
	CommandsReceived, CommandsCommitted, CommandsApplied, CommandsRejected uint64
	// CommitLatency: from a command's arrival at the leader to its commit.
	// ApplyLatency: the machine's Apply of one command, on every member.
	CommitLatency, ApplyLatency metrics.HistogramSnapshot
	// PoisonCommands: commands whose Apply panicked (see ErrMachine).
	PoisonCommands uint64

	// PreVotes, Elections, ElectionsWon and QuorumStepDowns are as in
	// core.Counters, summed over the server's restarts. LeaderChanges:
	// times the server learned of a leader other than the last it knew.
	PreVotes, Elections, ElectionsWon, QuorumStepDowns, LeaderChanges uint64

	// SnapshotsTaken: snapshots of this server's own machine made durable.
	// SnapshotsSent: transfers to followers completed, with SnapshotBytesSent.
	// SnapshotsInstalled: snapshots received from a leader and installed,
	// with SnapshotBytesInstalled.
	SnapshotsTaken, SnapshotsSent, SnapshotBytesSent, SnapshotsInstalled, SnapshotBytesInstalled uint64
	// SnapshotSendTime: from the start of a completed transfer to its
	// last acknowledgement. SnapshotInstallTime: restoring the machine
	// from a received snapshot and resetting the log. (The time to write
	// a snapshot is the node's, in Metrics.Snapshots.)
	SnapshotSendTime, SnapshotInstallTime metrics.HistogramSnapshot

	// Role ("follower", "pre_vote", "candidate", "leader"), Term, Leader,
	// Commit, Applied and LastIndex as the server last published them.
	Role                       string
	Term                       uint64
	Leader                     ServerID
	Commit, Applied, LastIndex uint64
	// Sessions: client sessions the machine host tracks (see Session).
	Sessions int
	// MailboxDepth: messages waiting in the server's mailbox (0 when it
	// does not run).
	MailboxDepth int64
	// FollowerLag is a leader's view of how far each follower is behind
	// its log, in entries (nil unless the server leads).
	FollowerLag []FollowerLag
}

// FollowerLag is how many entries of the leader's log a follower does not
// yet hold durably.
type FollowerLag struct {
	Follower ServerID
	Entries  uint64
}

// serverMetrics are the counters of one server on this node. The server's
// host writes them (one goroutine at a time: its process, or a process
// started again after it); System.Metrics reads them from any goroutine.
// Everything is an atomic or behind the small view lock, which the host
// takes only when its role, leader or followers' lag change.
type serverMetrics struct {
	id      ServerID
	cluster string
	running atomic.Bool

	received, committed, applied, rejected, poison atomic.Uint64
	commitLatency, applyLatency                    lazyHistogram

	// Election counters: base holds the sums of the server's earlier
	// processes, cur the running process's core.Counters.
	elections     atomic.Pointer[electionCounts]
	leaderChanges atomic.Uint64

	snapsTaken, snapsSent, snapBytesSent, snapsInstalled, snapBytesInstalled atomic.Uint64
	snapSendLatency, snapInstallLatency                                      lazyHistogram

	commit, appliedIndex, lastIndex, term atomic.Uint64
	sessions                              atomic.Int64

	mu     sync.Mutex
	role   core.Role
	leader ServerID
	// lastLeader is the last nonzero leader known (LeaderChanges).
	lastLeader ServerID
	lag        []FollowerLag
}

// lazyHistogram is a metrics.Histogram made on its first observation. A
// histogram is 168 bytes, and a node may host thousands of servers that sit
// idle: most never take or install a snapshot, followers commit nothing,
// and a server without commands applies none, so their histograms would
// stay empty. Until the first Observe, Snapshot returns the zero snapshot,
// as an empty Histogram's would. Safe for concurrent use.
type lazyHistogram struct {
	h atomic.Pointer[metrics.Histogram]
}

// Observe records d, making the histogram first if need be.
func (l *lazyHistogram) Observe(d time.Duration) {
	h := l.h.Load()
	if h == nil {
		// Two first observations may race; the loser's histogram is
		// dropped before anything was recorded in it.
		l.h.CompareAndSwap(nil, new(metrics.Histogram))
		h = l.h.Load()
	}
	h.Observe(d)
}

// Snapshot returns the histogram's counts, zero before the first Observe.
func (l *lazyHistogram) Snapshot() metrics.HistogramSnapshot {
	if h := l.h.Load(); h != nil {
		return h.Snapshot()
	}
	return metrics.HistogramSnapshot{}
}

// electionCounts are a server's election counters: those of its earlier
// processes (base) and of the running one (cur).
type electionCounts struct {
	base, cur core.Counters
}

func newServerMetrics(id ServerID, cluster string) *serverMetrics {
	return &serverMetrics{id: id, cluster: cluster} // elections nil: see electionCounts
}

// electionCounts returns the election counters, zero before the server's
// first process started. (The first one is stored then, not by
// newServerMetrics, whose would be replaced at once: garbage among the
// long-lived allocations of every server start.)
func (m *serverMetrics) electionCounts() *electionCounts {
	if e := m.elections.Load(); e != nil {
		return e
	}
	return &noElections
}

// noElections are the counters before the first process; never written.
var noElections electionCounts

// processStarted folds the counters of the server's previous process into
// the base: a new process's core counts from zero.
func (m *serverMetrics) processStarted() {
	e := m.electionCounts()
	b := e.base
	b.PreVotes += e.cur.PreVotes
	b.Elections += e.cur.Elections
	b.ElectionsWon += e.cur.ElectionsWon
	b.QuorumStepDowns += e.cur.QuorumStepDowns
	m.elections.Store(&electionCounts{base: b})
	m.running.Store(true)
}

// countElections publishes the running process's election counters.
func (m *serverMetrics) countElections(c core.Counters) {
	e := m.electionCounts()
	if e.cur != c {
		m.elections.Store(&electionCounts{base: e.base, cur: c})
	}
}

// roleChanged publishes the server's role, term and leader, counting a
// change of leader.
func (m *serverMetrics) roleChanged(role core.Role, term uint64, leader ServerID) {
	m.term.Store(term)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !leader.IsZero() && leader != m.lastLeader {
		m.leaderChanges.Add(1)
		m.lastLeader = leader
	}
	m.leader, m.role = leader, role
	if role != core.RoleLeader {
		m.lag = nil
	}
}

// publishLag records a leader's followers' lag behind last.
func (m *serverMetrics) publishLag(last uint64, progress []core.Progress) {
	lag := make([]FollowerLag, len(progress))
	for i, p := range progress {
		lag[i] = FollowerLag{Follower: p.ID, Entries: last - min(p.Match, last)}
	}
	m.lastIndex.Store(last)
	m.mu.Lock()
	m.lag = lag
	m.mu.Unlock()
}

func (m *serverMetrics) snapshot() ServerMetrics {
	e := m.electionCounts()
	m.mu.Lock()
	role, leader, lag := m.role, m.leader, slices.Clone(m.lag)
	m.mu.Unlock()
	return ServerMetrics{
		ID:                     m.id,
		Cluster:                m.cluster,
		Running:                m.running.Load(),
		CommandsReceived:       m.received.Load(),
		CommandsCommitted:      m.committed.Load(),
		CommandsApplied:        m.applied.Load(),
		CommandsRejected:       m.rejected.Load(),
		CommitLatency:          m.commitLatency.Snapshot(),
		ApplyLatency:           m.applyLatency.Snapshot(),
		PoisonCommands:         m.poison.Load(),
		PreVotes:               e.base.PreVotes + e.cur.PreVotes,
		Elections:              e.base.Elections + e.cur.Elections,
		ElectionsWon:           e.base.ElectionsWon + e.cur.ElectionsWon,
		QuorumStepDowns:        e.base.QuorumStepDowns + e.cur.QuorumStepDowns,
		LeaderChanges:          m.leaderChanges.Load(),
		SnapshotsTaken:         m.snapsTaken.Load(),
		SnapshotsSent:          m.snapsSent.Load(),
		SnapshotBytesSent:      m.snapBytesSent.Load(),
		SnapshotsInstalled:     m.snapsInstalled.Load(),
		SnapshotBytesInstalled: m.snapBytesInstalled.Load(),
		SnapshotSendTime:       m.snapSendLatency.Snapshot(),
		SnapshotInstallTime:    m.snapInstallLatency.Snapshot(),
		Role:                   role.String(),
		Term:                   m.term.Load(),
		Leader:                 leader,
		Commit:                 m.commit.Load(),
		Applied:                m.appliedIndex.Load(),
		LastIndex:              m.lastIndex.Load(),
		Sessions:               int(m.sessions.Load()),
		FollowerLag:            lag,
	}
}

// commandAnswered counts the answer to tok if it is a command's: once its
// entry was applied (applied), it counts as committed, with its commit
// latency; answered before, as rejected. Other tokens are not counted.
func (m *serverMetrics) commandAnswered(tok any, now time.Time, applied bool) {
	var at time.Time
	switch t := tok.(type) {
	case syncToken:
		at = t.at
	case pipeToken:
		at = t.at
	default:
		return
	}
	if applied {
		m.committed.Add(1)
		m.commitLatency.Observe(now.Sub(at))
		return
	}
	m.rejected.Add(1)
}

// metricsRegistry holds the counters of the node's servers, by name, for
// System.Metrics. The manager adds a server's counters when it creates or
// recovers the server and drops them when it deletes it.
type metricsRegistry struct {
	mu      sync.RWMutex
	servers map[string]*serverMetrics
}

// forServer returns the counters of the server id, made on first use.
func (r *metricsRegistry) forServer(id ServerID, cluster string) *serverMetrics {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.servers[id.Name]; m != nil && m.cluster == cluster {
		return m
	}
	if r.servers == nil {
		r.servers = map[string]*serverMetrics{}
	}
	m := newServerMetrics(id, cluster)
	r.servers[id.Name] = m
	return m
}

func (r *metricsRegistry) drop(name string) {
	r.mu.Lock()
	delete(r.servers, name)
	r.mu.Unlock()
}

// all returns every server's metrics, sorted by cluster and name, with
// their mailbox depths on node.
func (r *metricsRegistry) all(node *actor.Node) []ServerMetrics {
	r.mu.RLock()
	out := make([]ServerMetrics, 0, len(r.servers))
	for name, m := range r.servers {
		sm := m.snapshot()
		if sm.Running {
			sm.MailboxDepth, _ = node.MailboxDepth(name)
		}
		out = append(out, sm)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b ServerMetrics) int {
		if a.Cluster != b.Cluster {
			if a.Cluster < b.Cluster {
				return -1
			}
			return 1
		}
		if a.ID.Name < b.ID.Name {
			return -1
		}
		if a.ID.Name > b.ID.Name {
			return 1
		}
		return 0
	})
	return out
}
