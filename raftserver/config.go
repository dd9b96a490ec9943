package raftserver

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
	"github.com/rago-raft/rago/wal"
)

// SystemConfig configures a node's Raft system. Zero-valued optional
// fields take the defaults their comments give; System.Config returns the
// settings in effect.
type SystemConfig struct {
	// DataDir holds the node's WAL, segments and meta store. Required.
	DataDir string
	// FS is the file system every byte of the node's storage goes through:
	// the directories under DataDir, the meta and segment stores, the WAL
	// and the snapshot store. nil means the operating system's (vfs.Default;
	// the WAL and the snapshot store then use their own OS implementations,
	// which behave the same). Tests set an in-memory one, such as
	// vfs.NewCrashableMem(), to run a node without a disk and to crash it
	// by restarting on a CrashClone. SnapshotStore.FS, if set, wins for the
	// snapshot store.
	FS vfs.FS
	// Address is the node's host:port, also its name. Required; port 0
	// picks a free port (System.Name says which).
	Address string
	// Machines are the machine kinds this node can run, by name. A node
	// must know the kind of every server it hosts, to rebuild them after a
	// restart.
	Machines map[string]MachineFactory
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Node tunes the actor node (Address and Logger are taken from above).
	Node actor.Config
	// WALSync is how the WAL makes batches durable (default wal.SyncData).
	WALSync wal.SyncMethod
	// WALMaxFileBytes is the WAL file size at which it rolls over.
	// Default 8 MiB. The entries of the current file and of closed files
	// not yet in the segments stay in memory (the mem tables), so with
	// WALMaxClosedFiles (default 4) they bound the log memory of a node at
	// about (1 + WALMaxClosedFiles) x WALMaxFileBytes. Rollover counts
	// each entry 64 bytes more than its record, and a payload the mem
	// tables keep rather than copy (wal.Entry.Shared) also what its
	// allocation may hold beyond it, so the bound holds for tiny and for
	// large entries (see wal.Config.MaxFileBytes).
	WALMaxFileBytes   int64
	WALMaxClosedFiles int
	// WALPreallocateBytes sizes the spare file the WAL fills with zeros in
	// the background and starts its next file in, so that its fdatasyncs
	// sync data only (see wal.Config.PreallocateBytes). Default 0: the
	// size of a file. Negative turns it off, which saves writing each
	// file's size in zeros once and one spare file on disk.
	WALPreallocateBytes int64
	// WALRecycleFiles is how many flushed WAL files whose entries were
	// copied to segments the WAL keeps to start later files over instead
	// of filling spares with zeros (see wal.Config.RecycleFiles). Default
	// 0: 2. Negative turns it off. Only with preallocation.
	WALRecycleFiles int
	// Raft holds the Raft timing and flow-control settings of every server
	// on this node.
	Raft RaftConfig
	// ServerRestartIntensity restarts of one server within
	// ServerRestartPeriod are tolerated; beyond that the server stays down
	// (a crash loop) until RestartServer. Defaults 5 in 10s.
	ServerRestartIntensity int
	ServerRestartPeriod    time.Duration
	// LogRestartIntensity restarts of the node's log processes (the WAL,
	// the segment writer and the snapshot writer, restarted together with
	// the node's servers when one of them fails) within LogRestartPeriod
	// are tolerated; one more failure and the node gives up: its servers
	// stay down and System.Err reports it. Defaults 5 in 5s.
	LogRestartIntensity int
	LogRestartPeriod    time.Duration
	// ShutdownTimeout bounds each step of Stop. Default 10s.
	ShutdownTimeout time.Duration
	// MachineTick is how often leaders call Tick on machines that
	// implement Ticker. Default 1s.
	MachineTick time.Duration
	// SessionTTLEntries: a client session unused for this many log entries
	// is forgotten (default 1<<20). MaxSessions bounds the sessions of one
	// cluster (default 10000; the least recently used goes). Both must be
	// the same on every node of a cluster.
	SessionTTLEntries uint64
	MaxSessions       int
	// FailureDetector configures the node's failure detector; nil means
	// failuredetector.DefaultConfig() with CheckInterval = Interval,
	// AcceptablePause = 1.5s and Disconnect off. Its Logger defaults to
	// Logger.
	FailureDetector *failuredetector.Config
	// ElectionRate and ElectionBurst pace the elections of this node's
	// servers: a burst of ElectionBurst starts at once, then at most
	// ElectionRate per second (defaults 2000 and 200), so that the
	// clusters that lost their leaders with a node re-elect without a storm.
	ElectionRate  int
	ElectionBurst int
	// Snapshots decides when servers snapshot machines that implement
	// Snapshotter (see SnapshotPolicy; zero fields take its defaults).
	Snapshots SnapshotPolicy
	// SnapshotStore tunes the node's snapshot store (its FS, block size);
	// its Logger defaults to Logger, and its FS to FS (above) when that is
	// set. Keep stays 1: a server drops its log up
	// to its newest snapshot, so an older one could not be used.
	SnapshotStore snapshot.Options
	// AllowRemoteDelete lets other nodes delete this node's servers and
	// their data (ForceDeleteServer and DeleteCluster called on another
	// node, and the clean-up of a StartCluster there that failed). Off by
	// default: a delete cannot be undone, so only this node's own
	// System deletes its servers, and other nodes get ErrNotPermitted.
	// Starting, restarting and stopping servers from other nodes is
	// allowed either way (from authenticated nodes only, when the node
	// has credentials; see docs/raftserver.md, "Who may send what").
	AllowRemoteDelete bool
}

// RaftConfig holds the Raft settings of a node's servers. Zero fields take
// the defaults given. Durations are kept to the millisecond.
type RaftConfig struct {
	// ElectionTimeout is the base election timeout. A follower that has
	// no live leader campaigns after a random time in [d, 2d), where d is
	// the base doubled per failed round, up to 2^MaxElectionBackoff times.
	// Idle clusters send no heartbeats: a follower learns of a leader's
	// loss from a process monitor or the failure detector, not from
	// silence. Default 300 ms.
	ElectionTimeout time.Duration
	// LeaderLostTimeout is the base delay before a follower whose leader
	// is known to be gone (its process is down, or its node suspected)
	// starts a pre-vote, randomized over [base, 2*base) so that the
	// followers of one cluster do not all stand at once. The evidence is
	// direct, so it is short. Default 60 ms, or ElectionTimeout if that is
	// shorter; at most ElectionTimeout.
	LeaderLostTimeout time.Duration
	// MaxElectionBackoff caps the doubling of the election timeout after
	// rounds that elected nobody, so that a lone survivor retries rarely.
	// In [0, 16]; default 4.
	MaxElectionBackoff int
	// TickInterval is the period of the timer a leader runs while clients
	// wait on it (uncommitted entries, reads, a transfer) or a follower
	// lags: it re-sends to quiet followers and runs check-quorum. Default
	// 100 ms.
	TickInterval time.Duration
	// CheckQuorumWindow is the check-quorum window: a voter heard from in
	// this window or the one before counts as reachable whatever the
	// failure detector says (silence alone never deposes a leader). Also
	// the time a leader transfer may take. At least twice TickInterval;
	// default 1 s.
	CheckQuorumWindow time.Duration
	// SnapshotRetry is how long a leader waits for a follower to confirm
	// that it installed a snapshot before it sends it again, doubled per
	// attempt up to 16 times. At least TickInterval; default 30 s.
	SnapshotRetry time.Duration
	// MaxInFlight bounds, per follower, how many entries the leader streams
	// beyond the follower's acknowledged index. Default 1000.
	MaxInFlight uint64
	// MaxAppendBytes bounds the entry bytes in one AppendEntries message
	// (one entry always goes, however large). Default 1 MiB.
	MaxAppendBytes int
}

// defaultLeaderLostTimeout: see RaftConfig.LeaderLostTimeout.
const defaultLeaderLostTimeout = 60 * time.Millisecond

func (c RaftConfig) withDefaults() RaftConfig {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = ms(core.DefaultElectionTimeoutMs)
	}
	if c.LeaderLostTimeout == 0 {
		c.LeaderLostTimeout = min(defaultLeaderLostTimeout, c.ElectionTimeout)
	}
	if c.MaxElectionBackoff == 0 {
		c.MaxElectionBackoff = core.DefaultMaxElectionBackoff
	}
	if c.TickInterval == 0 {
		c.TickInterval = ms(core.DefaultTickMs)
	}
	if c.CheckQuorumWindow == 0 {
		c.CheckQuorumWindow = ms(core.DefaultCheckQuorumMs)
	}
	if c.SnapshotRetry == 0 {
		c.SnapshotRetry = ms(core.DefaultSnapshotRetryMs)
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = core.DefaultMaxInFlight
	}
	if c.MaxAppendBytes == 0 {
		c.MaxAppendBytes = core.DefaultMaxAppendBytes
	}
	return c
}

// problems lists what is wrong with c, zero fields standing for their
// defaults.
func (c RaftConfig) problems() []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: Raft."+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ElectionTimeout", c.ElectionTimeout},
		{"LeaderLostTimeout", c.LeaderLostTimeout},
		{"TickInterval", c.TickInterval},
		{"CheckQuorumWindow", c.CheckQuorumWindow},
		{"SnapshotRetry", c.SnapshotRetry},
	} {
		if d.v < 0 || (d.v > 0 && d.v < time.Millisecond) {
			bad("%s is %v, must be 0 (the default) or at least 1ms", d.name, d.v)
		}
	}
	if c.MaxElectionBackoff < 0 || c.MaxElectionBackoff > 16 {
		bad("MaxElectionBackoff is %d, must be in [0, 16]", c.MaxElectionBackoff)
	}
	if c.MaxAppendBytes < 0 {
		bad("MaxAppendBytes is %d, must be 0 (the default) or more", c.MaxAppendBytes)
	}
	if len(errs) > 0 {
		return errs // the relations below would repeat them
	}
	d := c.withDefaults()
	if d.LeaderLostTimeout > d.ElectionTimeout {
		bad("LeaderLostTimeout is %v, must be at most ElectionTimeout (%v)", d.LeaderLostTimeout, d.ElectionTimeout)
	}
	if d.CheckQuorumWindow < 2*d.TickInterval {
		bad("CheckQuorumWindow is %v, must be at least twice TickInterval (%v)", d.CheckQuorumWindow, d.TickInterval)
	}
	if d.SnapshotRetry < d.TickInterval {
		bad("SnapshotRetry is %v, must be at least TickInterval (%v)", d.SnapshotRetry, d.TickInterval)
	}
	return errs
}

// core returns the core's configuration for c (with defaults), without
// the per-server fields (ID, members, snapshot, seed, logger).
func (c RaftConfig) core() core.Config {
	c = c.withDefaults()
	return core.Config{
		MaxInFlight:         c.MaxInFlight,
		MaxAppendBytes:      c.MaxAppendBytes,
		ElectionTimeoutMs:   c.ElectionTimeout.Milliseconds(),
		LeaderLostTimeoutMs: c.LeaderLostTimeout.Milliseconds(),
		MaxElectionBackoff:  c.MaxElectionBackoff,
		TickMs:              c.TickInterval.Milliseconds(),
		CheckQuorumMs:       c.CheckQuorumWindow.Milliseconds(),
		SnapshotRetryMs:     c.SnapshotRetry.Milliseconds(),
	}
}

func (c SystemConfig) withDefaults() SystemConfig {
	if c.ServerRestartIntensity == 0 {
		c.ServerRestartIntensity = 5
	}
	if c.ServerRestartPeriod == 0 {
		c.ServerRestartPeriod = 10 * time.Second
	}
	if c.LogRestartIntensity == 0 {
		c.LogRestartIntensity = 5
	}
	if c.LogRestartPeriod == 0 {
		c.LogRestartPeriod = 5 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.ElectionRate == 0 {
		c.ElectionRate = 2000
	}
	if c.ElectionBurst == 0 {
		c.ElectionBurst = 200
	}
	if c.MachineTick == 0 {
		c.MachineTick = time.Second
	}
	if c.SessionTTLEntries == 0 {
		c.SessionTTLEntries = 1 << 20
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 10000
	}
	if c.WALMaxFileBytes == 0 {
		c.WALMaxFileBytes = 8 << 20
	}
	if c.WALMaxClosedFiles == 0 {
		c.WALMaxClosedFiles = 4
	}
	c.Raft = c.Raft.withDefaults()
	c.Snapshots = c.Snapshots.withDefaults()
	return c
}

// Validate checks the configuration. It names every value out of range,
// each error wrapping ErrInvalidConfig (joined with errors.Join). Zero
// stands for a field's default wherever it has one.
func (c SystemConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.DataDir == "" {
		bad("DataDir is required")
	}
	if c.Address == "" {
		bad("Address is required")
	} else if host, port, err := net.SplitHostPort(c.Address); err != nil {
		bad("Address %q is not host:port: %v", c.Address, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || host == "" {
		bad("Address %q needs a host and a port in [0, 65535]", c.Address)
	}
	negative := []struct {
		name string
		v    int64
	}{
		{"WALMaxFileBytes", c.WALMaxFileBytes},
		{"WALMaxClosedFiles", int64(c.WALMaxClosedFiles)},
		{"ServerRestartIntensity", int64(c.ServerRestartIntensity)},
		{"ServerRestartPeriod", int64(c.ServerRestartPeriod)},
		{"LogRestartIntensity", int64(c.LogRestartIntensity)},
		{"LogRestartPeriod", int64(c.LogRestartPeriod)},
		{"ShutdownTimeout", int64(c.ShutdownTimeout)},
		{"MachineTick", int64(c.MachineTick)},
		{"MaxSessions", int64(c.MaxSessions)},
		{"ElectionRate", int64(c.ElectionRate)},
		{"ElectionBurst", int64(c.ElectionBurst)},
		{"Snapshots.Bytes", c.Snapshots.Bytes},
		{"Snapshots.MinInterval", int64(c.Snapshots.MinInterval)},
	}
	for _, f := range negative {
		if f.v < 0 {
			bad("%s is negative (%d); 0 means the default", f.name, f.v)
		}
	}
	if c.SnapshotStore.Keep > 1 {
		bad("SnapshotStore.Keep is %d; servers keep their log only from the newest snapshot, so only 1 makes sense", c.SnapshotStore.Keep)
	}
	for kind, f := range c.Machines {
		if kind == "" || f == nil {
			bad("machine kind %q has no factory", kind)
		}
	}
	errs = append(errs, c.Raft.problems()...)
	return errors.Join(errs...)
}

// Config returns the system's configuration with every default filled in:
// the settings in effect. Its Machines map is a copy.
func (s *System) Config() SystemConfig {
	c := s.cfg
	c.Address = s.Name() // the port, if 0 was asked for
	c.Machines = maps.Clone(c.Machines)
	return c
}
