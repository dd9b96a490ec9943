package raftserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
	"github.com/rago-raft/rago/internal/wire"
	"github.com/rago-raft/rago/leaderboard"
	"github.com/rago-raft/rago/meta"
	"github.com/rago-raft/rago/segment"
	"github.com/rago-raft/rago/snapshot"
	"github.com/rago-raft/rago/wal"
	"github.com/rago-raft/rago/wal/walfs"
)

// System is one node's Raft system: the actor node, the shared WAL, the
// segment store and writer, the meta store, the leaderboard, and the
// servers on this node. Its methods are safe for concurrent use.
type System struct {
	cfg       SystemConfig
	logger    *slog.Logger
	node      *actor.Node
	meta      *meta.Store
	segments  *segment.Store
	segw      *segment.Writer
	snapshots *snapshot.Store
	snapw     *snapshot.Writer
	wal       *wal.WAL
	board     leaderboard.Board[ServerID]
	manager   actor.Ref
	pacer     *electionPacer
	fd        *failuredetector.Detector

	stopOnce sync.Once
	stopErr  error
}

// managerName is the registered name of every node's system manager, which
// starts, stops and deletes the servers of its node on behalf of local and
// remote callers.
const managerName = "rago_system"

// StartSystem opens (or creates) the node's storage, recovers the WAL,
// starts the node and restarts every server recorded in its directory.
func StartSystem(cfg SystemConfig) (sys *System, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &System{cfg: cfg, logger: logger, pacer: newElectionPacer(cfg.ElectionRate, cfg.ElectionBurst)}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	fsys := cfg.FS
	if fsys == nil {
		fsys = vfs.Default
	}
	if err := makeDataDirs(fsys, cfg.DataDir, "meta", "segments", "wal", "snapshots"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	if s.meta, err = meta.Open(filepath.Join(cfg.DataDir, "meta"), meta.Options{Logger: logger, FS: cfg.FS}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	closers = append(closers, func() { _ = s.meta.Close() })
	if s.segments, err = segment.Open(filepath.Join(cfg.DataDir, "segments"), segment.Options{Logger: logger, FS: cfg.FS}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	closers = append(closers, func() { _ = s.segments.Close() })
	sopts := cfg.SnapshotStore
	if sopts.Logger == nil {
		sopts.Logger = logger
	}
	if sopts.FS == nil && cfg.FS != nil {
		sopts.FS = snapshot.FromVFS(cfg.FS)
	}
	if s.snapshots, err = snapshot.Open(filepath.Join(cfg.DataDir, "snapshots"), sopts); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}

	ncfg := cfg.Node
	ncfg.Address, ncfg.Logger = cfg.Address, logger
	if s.node, err = actor.StartNode(ncfg); err != nil {
		return nil, err
	}
	closers = append(closers, s.node.Stop)
	fdcfg := failuredetector.DefaultConfig()
	// Checks ride on the heartbeat timer: one wake-up per interval on an
	// idle node instead of three, for up to one interval later detection.
	fdcfg.CheckInterval = fdcfg.Interval
	// A suspicion only starts pre-votes in the clusters led from the
	// suspected node (and steps down leaders cut off from a majority);
	// breaking the connection as well would fire every
	// monitor on it and drop the messages in flight, which turns a false
	// suspicion under load into an election in every cluster.
	fdcfg.Disconnect = false
	// A suspicion is costly here: every cluster led from the suspected
	// node (thousands on one node) starts a pre-vote. A busy machine
	// delays heartbeats by a second or more, and a node that just started
	// has no history to tell a late heartbeat from a lost node, so each
	// false suspicion added a burst of elections to a machine that was
	// behind already. A stopped or killed node is seen at once anyway
	// (its connections break and monitors fire); the pause only delays
	// noticing a frozen or partitioned one.
	fdcfg.AcceptablePause = 1500 * time.Millisecond
	if cfg.FailureDetector != nil {
		fdcfg = *cfg.FailureDetector
	}
	if fdcfg.Logger == nil {
		fdcfg.Logger = logger
	}
	if s.fd, err = failuredetector.Start(s.node, fdcfg); err != nil {
		return nil, err
	}
	closers = append(closers, s.fd.Stop)
	if s.segw, err = segment.StartWriter(s.node, s.segments, segment.WriterOptions{Logger: logger}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	closers = append(closers, func() { _ = s.segw.Stop(cfg.ShutdownTimeout) })
	if s.snapw, err = snapshot.StartWriter(s.node, s.snapshots, snapshot.WriterOptions{Logger: logger}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	closers = append(closers, func() { _ = s.snapw.Stop(cfg.ShutdownTimeout) })
	wcfg := wal.DefaultConfig(filepath.Join(cfg.DataDir, "wal"))
	wcfg.Sync, wcfg.Logger = cfg.WALSync, logger
	wcfg.MaxFileBytes = cfg.WALMaxFileBytes
	wcfg.MaxClosedFiles = cfg.WALMaxClosedFiles
	if cfg.FS != nil {
		wcfg.FS = walfs.FromVFS(cfg.FS)
	}
	if s.wal, err = wal.Start(s.node, wcfg, wal.StartOptions{SegmentWriter: s.segw.Ref()}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	closers = append(closers, func() { _ = s.wal.Stop(cfg.ShutdownTimeout) })
	if s.manager, err = s.node.SpawnNamed(managerName, &manager{sys: s, servers: map[string]*managed{}}); err != nil {
		return nil, err
	}
	// The manager restarts the recorded servers as its first act; wait
	// for that so the caller sees them. It is local work that always
	// ends, however many servers there are, so the wait has no deadline
	// worth choosing.
	if _, err := s.node.Call(s.manager, &managerSync{}, time.Hour); err != nil {
		return nil, err
	}
	return s, nil
}

// Node returns the system's actor node.
func (s *System) Node() *actor.Node { return s.node }

// Name returns the node's name (its address).
func (s *System) Name() string { return s.node.Name() }

// FailureDetector returns the node's failure detector (its Status shows
// what it thinks of the peers).
func (s *System) FailureDetector() *failuredetector.Detector { return s.fd }

// Leaderboard returns the node's table of known leaders, kept current by
// the servers on this node.
func (s *System) Leaderboard() *leaderboard.Board[ServerID] { return &s.board }

// Stop shuts the system down in order: the servers first, then the WAL
// after a final sync, then the segment writer, the node and the stores.
// Later calls return the first call's result.
func (s *System) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *System) stop() error {
	var errs []error
	// The manager waits at most ShutdownTimeout for its servers; give the
	// call room for that wait and for exiting them all first.
	if _, err := s.node.Call(s.manager, &managerStopAll{}, 2*s.cfg.ShutdownTimeout+time.Minute); err != nil && !errors.Is(err, actor.ErrNodeStopped) {
		errs = append(errs, err)
	}
	if err := s.snapw.Stop(s.cfg.ShutdownTimeout); err != nil {
		errs = append(errs, err)
	}
	if err := s.wal.Stop(s.cfg.ShutdownTimeout); err != nil {
		errs = append(errs, err)
	}
	if err := s.segw.Stop(s.cfg.ShutdownTimeout); err != nil {
		errs = append(errs, err)
	}
	s.fd.Stop()
	s.node.Stop()
	if err := s.segments.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := s.meta.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *System) newMachine(spec MachineSpec) (Machine, error) {
	f, ok := s.cfg.Machines[spec.Kind]
	if !ok {
		return nil, fmt.Errorf("%w: %q on node %s", ErrUnknownMachine, spec.Kind, s.node.Name())
	}
	m, err := f(spec.Config)
	if err != nil {
		return nil, fmt.Errorf("%w: machine %q: %w", ErrMachine, spec.Kind, err)
	}
	return m, nil
}

// directoryMembers updates the member list of uid's directory record.
func (s *System) directoryMembers(uid string, members []meta.ServerID) error {
	rec, ok, err := s.meta.Server(uid)
	if err != nil || !ok {
		return err
	}
	rec.Members = members
	return s.meta.PutServer(rec)
}

func encodeSpec(spec MachineSpec) []byte { return appendSpec(nil, spec) }

func decodeSpec(b []byte) (MachineSpec, error) {
	r := wire.NewReader(b)
	spec := readSpec(r)
	return spec, r.Done()
}

// manager is the system manager process of a node. It owns the node's
// list of servers and supervises them, each with a restart budget of its
// own, so a server in a crash loop gives up alone (see start).
type manager struct {
	sys     *System
	servers map[string]*managed // by server name
}

type managed struct {
	uid      string
	cfg      ServerConfig
	initial  []ServerID // the cluster's first config, as created
	ref      actor.Ref
	mon      actor.MonitorRef
	running  bool
	restarts []time.Time // recent restarts, for the intensity limit
}

type (
	managerSync    struct{}
	managerStopAll struct{}
	managerList    struct{}
)

func (m *manager) Receive(ctx *actor.Context, msg actor.Message) {
	switch r := msg.(type) {
	case actor.Started:
		m.restartRecorded(ctx)
	case *managerSync:
		_ = ctx.Reply(true)
	case *managerList:
		out := make([]ServerConfig, 0, len(m.servers))
		for _, s := range m.servers {
			if s.running {
				out = append(out, s.cfg)
			}
		}
		_ = ctx.Reply(out)
	case *managerStopAll:
		m.stopAll(ctx)
		_ = ctx.Reply(true)
	case *systemReq:
		_ = ctx.Reply(&systemResult{Err: toRemote(m.handle(ctx, r))})
	case actor.Down:
		for name, s := range m.servers {
			if s.running && s.mon == r.Monitor {
				s.running = false
				m.serverDown(ctx, name, s, r.Reason)
			}
		}
	case actor.Terminating:
		m.stopAll(ctx)
	}
}

func (m *manager) restartRecorded(ctx *actor.Context) {
	recs, err := m.sys.meta.Servers()
	if err != nil {
		m.sys.logger.Error("cannot read the server directory", "err", err)
		return
	}
	for _, rec := range recs {
		spec, err := decodeSpec(rec.MachineConfig)
		if err != nil {
			m.sys.logger.Error("directory record does not decode; server not restarted", "uid", rec.UID, "err", err)
			continue
		}
		members := make([]ServerID, len(rec.Members))
		for i, id := range rec.Members {
			members[i] = ServerID(id)
		}
		initial := make([]ServerID, len(rec.InitialMembers))
		for i, id := range rec.InitialMembers {
			initial[i] = ServerID(id)
		}
		s := &managed{uid: rec.UID, initial: initial, cfg: ServerConfig{
			ID:             ServerID{Name: rec.ServerName, Node: m.sys.node.Name()},
			Cluster:        rec.ClusterName,
			Machine:        spec,
			InitialMembers: members,
		}}
		m.servers[rec.ServerName] = s
		if err := m.start(ctx, s); err != nil {
			m.sys.logger.Error("recorded server did not restart", "server", rec.ServerName, "err", err)
		}
	}
}

func (m *manager) handle(ctx *actor.Context, r *systemReq) error {
	name := r.Name
	if r.Op == sysStart || r.Op == sysStartOrRestart {
		name = r.Config.ID.Name
	}
	s, exists := m.servers[name]
	switch r.Op {
	case sysStart, sysStartOrRestart:
		if exists {
			if r.Op == sysStart || s.cfg.Cluster != r.Config.Cluster {
				return fmt.Errorf("%w: server %s (cluster %s) exists on %s", ErrClusterExists, name, s.cfg.Cluster, m.sys.node.Name())
			}
			if s.running {
				return nil
			}
			return m.start(ctx, s)
		}
		return m.create(ctx, r.Config, r.preloaded)
	}
	if !exists {
		return fmt.Errorf("%w: %s on %s", ErrNoSuchServer, name, m.sys.node.Name())
	}
	switch r.Op {
	case sysRestart:
		if s.running {
			return nil
		}
		return m.start(ctx, s)
	case sysStop:
		m.stop(ctx, s)
		return nil
	case sysDelete:
		return m.delete(ctx, name, s)
	}
	return fmt.Errorf("%w: system operation %d", ErrInvalidConfig, r.Op)
}

// create records and starts a new server. A restore passes the UID it
// stored the server's first snapshot under (preloaded); otherwise the
// server gets a new one.
func (m *manager) create(ctx *actor.Context, cfg ServerConfig, preloaded string) error {
	if cfg.ID.Node != m.sys.node.Name() {
		return fmt.Errorf("%w: server %s asked to start on %s", ErrInvalidConfig, cfg.ID, m.sys.node.Name())
	}
	if cfg.ID.Name == "" || cfg.Cluster == "" {
		return fmt.Errorf("%w: server needs a name and a cluster", ErrInvalidConfig)
	}
	if _, ok := m.sys.cfg.Machines[cfg.Machine.Kind]; !ok {
		return fmt.Errorf("%w: %q on node %s", ErrUnknownMachine, cfg.Machine.Kind, m.sys.node.Name())
	}
	uid := preloaded
	if uid == "" {
		uid = newUID(cfg.ID.Name)
	}
	members := make([]meta.ServerID, len(cfg.InitialMembers))
	for i, id := range cfg.InitialMembers {
		members[i] = meta.ServerID(id)
	}
	err := m.sys.meta.PutServer(meta.Server{
		UID:            uid,
		ServerName:     cfg.ID.Name,
		ClusterName:    cfg.Cluster,
		MachineConfig:  encodeSpec(cfg.Machine),
		Members:        members,
		InitialMembers: members,
	})
	if err != nil {
		return fmt.Errorf("%w: record server %s: %w", ErrStorage, cfg.ID, err)
	}
	s := &managed{uid: uid, cfg: cfg, initial: cfg.InitialMembers}
	m.servers[cfg.ID.Name] = s
	return m.start(ctx, s)
}

// start spawns the server process and monitors it. The manager is the
// supervisor of the node's servers: it restarts a server that failed (see
// serverDown), each with a restart budget of its own, so one server in a
// crash loop gives up alone. It costs no process per server.
func (m *manager) start(ctx *actor.Context, s *managed) error {
	sys := m.sys
	ref, err := sys.node.SpawnNamed(s.cfg.ID.Name, newServer(sys, s.cfg, s.uid, s.initial))
	if err != nil {
		if errors.Is(err, actor.ErrNameTaken) {
			return fmt.Errorf("%w: the name %s is taken on %s", ErrClusterExists, s.cfg.ID.Name, sys.node.Name())
		}
		return err
	}
	s.ref, s.mon, s.running = ref, ctx.Monitor(ref), true
	return nil
}

// serverDown handles the exit of a running server: a failure is restarted
// unless the server failed more than ServerRestartIntensity times within
// ServerRestartPeriod; a normal exit (a removed member) is final.
func (m *manager) serverDown(ctx *actor.Context, name string, s *managed, why actor.Reason) {
	if !why.Abnormal() {
		return
	}
	now := time.Now()
	kept := s.restarts[:0]
	for _, t := range s.restarts {
		if now.Sub(t) < m.sys.cfg.ServerRestartPeriod {
			kept = append(kept, t)
		}
	}
	s.restarts = kept
	if len(s.restarts) >= m.sys.cfg.ServerRestartIntensity {
		m.sys.logger.Error("server keeps failing; not restarting it", "server", name, "reason", why.String(),
			"restarts", len(s.restarts), "period", m.sys.cfg.ServerRestartPeriod)
		return
	}
	s.restarts = append(s.restarts, now)
	m.sys.logger.Warn("server failed; restarting it", "server", name, "reason", why.String())
	if err := m.start(ctx, s); err != nil {
		m.sys.logger.Error("restarting a server failed", "server", name, "err", err)
	}
}

// stopAll stops every running server, all at once, and waits for them.
func (m *manager) stopAll(ctx *actor.Context) {
	var refs []actor.Ref
	for _, s := range m.servers {
		if s.running {
			ctx.Demonitor(s.mon)
			s.running = false
			if m.sys.node.Exit(s.ref, actor.Shutdown) == nil {
				refs = append(refs, s.ref)
			}
		}
	}
	wctx, cancel := context.WithTimeout(context.Background(), m.sys.cfg.ShutdownTimeout)
	defer cancel()
	for _, ref := range refs {
		if err := m.sys.node.Wait(wctx, ref); err != nil {
			m.sys.logger.Error("server did not stop in time", "server", ref.String(), "err", err)
		}
	}
}

func (m *manager) stop(ctx *actor.Context, s *managed) {
	if !s.running {
		return
	}
	ctx.Demonitor(s.mon)
	s.running = false
	if err := m.sys.node.Exit(s.ref, actor.Shutdown); err != nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.Background(), m.sys.cfg.ShutdownTimeout)
	defer cancel()
	if err := m.sys.node.Wait(wctx, s.ref); err != nil {
		m.sys.logger.Error("server did not stop in time", "server", s.cfg.ID.String(), "err", err)
	}
}

// delete stops the server and removes every trace of it: WAL state, log
// segments, term/vote and the directory record.
func (m *manager) delete(ctx *actor.Context, name string, s *managed) error {
	m.stop(ctx, s)
	sys := m.sys
	var errs []error
	if err := sys.wal.Forget(s.uid); err != nil {
		errs = append(errs, err)
	}
	if err := sys.segments.DeleteUID(s.uid); err != nil {
		errs = append(errs, err)
	}
	if err := sys.meta.Delete(s.uid); err != nil {
		errs = append(errs, err)
	}
	if err := sys.meta.DeleteServer(s.uid); err != nil {
		errs = append(errs, err)
	}
	if err := sys.snapshots.Delete(s.uid); err != nil {
		errs = append(errs, err)
	}
	delete(m.servers, name)
	others := false
	for _, o := range m.servers {
		others = others || o.cfg.Cluster == s.cfg.Cluster
	}
	if !others {
		sys.board.Delete(s.cfg.Cluster)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: delete %s: %w", ErrStorage, s.cfg.ID, err)
	}
	return nil
}
