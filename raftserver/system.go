package raftserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
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
	logSup    actor.Ref
	// logMu guards wal and snapw, which a restart of the log processes
	// replaces. Servers read them unlocked: they run only between the
	// restarts (see logServers), which orders their reads after the write.
	logMu  sync.Mutex
	logErr atomic.Pointer[error] // why the log supervisor gave up
	pacer  *electionPacer
	fd     *failuredetector.Detector

	stopOnce sync.Once
	stopErr  error
}

// managerName is the registered name of every node's system manager, which
// starts, stops and deletes the servers of its node on behalf of local and
// remote callers.
const managerName = "rago_system"

// logSupName is the registered name of every node's log supervisor, which
// restarts the segment writer, the WAL, the snapshot writer and (through
// the manager) the servers when one of the log processes fails.
const logSupName = "rago_log_sup"

// logServersName is the log supervisor's last child, which stands for the
// node's servers (see logServers).
const logServersName = "rago_log_servers"

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
	s.segw, _ = segment.NewWriter(s.node, s.segments, segment.WriterOptions{Logger: logger})
	snapOpts := snapshot.WriterOptions{Logger: logger}
	var snapp actor.Process
	if s.snapw, snapp, err = snapshot.NewWriter(s.node, s.snapshots, snapOpts); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	wcfg := wal.DefaultConfig(filepath.Join(cfg.DataDir, "wal"))
	wcfg.Sync, wcfg.Logger = cfg.WALSync, logger
	wcfg.MaxFileBytes = cfg.WALMaxFileBytes
	wcfg.MaxClosedFiles = cfg.WALMaxClosedFiles
	if cfg.FS != nil {
		wcfg.FS = walfs.FromVFS(cfg.FS)
	}
	wopts := wal.StartOptions{SegmentWriter: s.segw.Ref()}
	// The first recovery runs here, so that a damaged WAL fails
	// StartSystem with its error instead of a loop of restarts.
	var walp actor.Process
	if s.wal, walp, err = wal.Open(s.node, wcfg, wopts); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	// The manager starts no server until the log supervisor's last child
	// asks it to (managerResume), once the log processes run.
	if s.manager, err = s.node.SpawnNamed(managerName, &manager{sys: s, servers: map[string]*managed{}, suspended: true}); err != nil {
		return nil, err
	}
	logSpec := actor.SupervisorSpec{
		// The WAL hands its closed files to the segment writer, which holds
		// the WAL's mem tables and removes its files: neither survives the
		// other's restart (see docs/raftserver.md). The servers hold the
		// WAL's Writers and mem tables, and wait for the snapshot writer's
		// answers, so they restart with them.
		Strategy:  actor.OneForAll,
		Intensity: cfg.LogRestartIntensity,
		Period:    cfg.LogRestartPeriod,
		Children: []actor.ChildSpec{
			{Name: s.segw.Ref().Name, Restart: actor.Transient, ShutdownTimeout: cfg.ShutdownTimeout, Start: func() actor.Process {
				_, p := segment.NewWriter(s.node, s.segments, segment.WriterOptions{Logger: logger})
				return p
			}},
			{Name: wal.DefaultName, Restart: actor.Transient, ShutdownTimeout: cfg.ShutdownTimeout, Start: func() actor.Process {
				if walp != nil { // the first start: recovered above
					p := walp
					walp = nil
					return p
				}
				w, p, err := wal.Open(s.node, wcfg, wopts)
				if err != nil {
					return failedStart{err: fmt.Errorf("%w: restart the wal: %w", ErrStorage, err)}
				}
				s.logMu.Lock()
				s.wal = w
				s.logMu.Unlock()
				return p
			}},
			{Name: s.snapw.Ref().Name, Restart: actor.Transient, ShutdownTimeout: cfg.ShutdownTimeout, Start: func() actor.Process {
				if snapp != nil {
					p := snapp
					snapp = nil
					return p
				}
				w, p, err := snapshot.NewWriter(s.node, s.snapshots, snapOpts)
				if err != nil {
					return failedStart{err: fmt.Errorf("%w: restart the snapshot writer: %w", ErrStorage, err)}
				}
				s.logMu.Lock()
				s.snapw = w
				s.logMu.Unlock()
				return p
			}},
			{Name: logServersName, Restart: actor.Transient, ShutdownTimeout: 2*cfg.ShutdownTimeout + time.Minute, Start: func() actor.Process {
				return &logServers{sys: s}
			}},
		},
	}
	// The manager monitors the supervisor from the first resume, which
	// can come before StartSupervisor returns: name it beforehand.
	s.logSup = actor.Ref{Name: logSupName, Node: s.node.Name()}
	if _, err = s.node.StartSupervisor(logSupName, logSpec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStorage, err)
	}
	closers = append(closers, func() { s.stopLog() })
	// The last child has the manager restart the recorded servers as its
	// first act; wait for that so the caller sees them. It is local work
	// that always ends, however many servers there are, so the wait has
	// no deadline worth choosing.
	if _, err := s.node.Call(actor.Ref{Name: logServersName, Node: s.node.Name()}, &managerSync{}, time.Hour); err != nil {
		return nil, err
	}
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

// Err returns nil while the node's log processes run (or are being
// restarted), and the reason once their supervisor gave up on them: an
// error wrapping ErrStorage and ErrRestartLimit. From then on the node's
// servers stay down and every System operation on this node fails with
// that error; only a Stop and a new StartSystem bring the node back.
func (s *System) Err() error {
	if p := s.logErr.Load(); p != nil {
		return *p
	}
	return nil
}

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
	if err := s.stopLog(); err != nil {
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

// stopLog stops the log processes: each gracefully (the WAL syncs what it
// received, the segment writer flushes what it was handed), which as a
// normal exit its supervisor does not restart, and then the supervisor.
// After the supervisor gave up there is nothing left to stop.
func (s *System) stopLog() error {
	var errs []error
	if s.Err() == nil {
		s.logMu.Lock()
		snapw, w := s.snapw, s.wal
		s.logMu.Unlock()
		if err := snapw.Stop(s.cfg.ShutdownTimeout); err != nil {
			errs = append(errs, err)
		}
		if err := w.Stop(s.cfg.ShutdownTimeout); err != nil {
			errs = append(errs, err)
		}
		if err := s.segw.Stop(s.cfg.ShutdownTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if s.node.Exit(s.logSup, actor.Shutdown) == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.ShutdownTimeout+time.Minute)
		defer cancel()
		if err := s.node.Wait(ctx, s.logSup); err != nil {
			errs = append(errs, fmt.Errorf("%w: the log supervisor did not stop: %w", ErrStorage, err))
		}
	}
	return errors.Join(errs...)
}

// currentWAL returns the WAL of the log processes' current incarnation.
func (s *System) currentWAL() *wal.WAL {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.wal
}

// submitSnapshot hands a snapshot to the current snapshot writer.
func (s *System) submitSnapshot(w snapshot.Write) error {
	s.logMu.Lock()
	snapw := s.snapw
	s.logMu.Unlock()
	return snapw.Submit(w)
}

// logServers is the log supervisor's last child and stands for the node's
// servers there: starting it has the manager start the servers, stopping it
// has the manager stop them. So when one of the log processes fails and
// the supervisor restarts them all, the servers stop before the log
// processes they use and start after the new ones run, re-registering with
// the new WAL and reading their state from disk. It costs one process, not
// one child per server.
type logServers struct{ sys *System }

func (g *logServers) Receive(ctx *actor.Context, msg actor.Message) {
	switch msg.(type) {
	case actor.Started:
		if _, err := ctx.Node().Call(g.sys.manager, &managerResume{}, time.Hour); err != nil {
			g.sys.logger.Error("the servers were not started after the log processes", "err", err)
		}
	case *managerSync:
		_ = ctx.Reply(true)
	case actor.Terminating:
		if _, err := ctx.Node().Call(g.sys.manager, &managerSuspend{}, 2*g.sys.cfg.ShutdownTimeout+time.Minute); err != nil && !errors.Is(err, actor.ErrNodeStopped) {
			g.sys.logger.Error("the servers were not stopped before the log processes", "err", err)
		}
	}
}

// failedStart is what a log process's restart spawns when the process
// could not be made (its WAL directory does not recover, say): it exits at
// once with the error, which the supervisor counts as another failure.
type failedStart struct{ err error }

func (f failedStart) Receive(ctx *actor.Context, msg actor.Message) {
	if _, ok := msg.(actor.Started); ok {
		ctx.Exit(actor.ErrorReason(f.err))
	}
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
// own, so a server in a crash loop gives up alone (see start). It runs no
// server while the log processes are down or restarting (suspended), and
// none at all once their supervisor gave up (failed).
type manager struct {
	sys     *System
	servers map[string]*managed // by server name

	suspended bool  // the log processes are not running: start no server
	resumed   bool  // the log processes ran once: the directory was read
	stopping  bool  // Stop began: start nothing again
	failed    error // the log supervisor gave up; wraps ErrStorage
	logMon    actor.MonitorRef
}

type managed struct {
	uid      string
	cfg      ServerConfig
	initial  []ServerID // the cluster's first config, as created
	ref      actor.Ref
	mon      actor.MonitorRef
	running  bool
	restarts []time.Time // recent restarts, for the intensity limit
	// resume: the server was running when the log processes went down, so
	// it starts again when they are back.
	resume bool
	// gaveUp says why the manager stopped restarting the server (it wraps
	// ErrRestartLimit); nil while it is restarted.
	gaveUp error
}

type (
	managerSync    struct{}
	managerStopAll struct{}
	managerList    struct{}
	// managerSuspend stops the servers before the log processes stop
	// (sent by logServers, which the log supervisor stops first).
	managerSuspend struct{}
	// managerResume starts the servers once the log processes run (sent
	// by logServers, which the log supervisor starts last).
	managerResume struct{}
	managerState  struct{ name string }
)

// errLogRestart is the exit reason of servers stopped because the log
// processes they use restart.
var errLogRestart = fmt.Errorf("%w: the node's log processes restart", ErrStorage)

func (m *manager) Receive(ctx *actor.Context, msg actor.Message) {
	switch r := msg.(type) {
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
	case *managerState:
		_ = ctx.Reply(m.state(r.name))
	case *managerStopAll:
		m.stopping = true
		m.stopAll(ctx, actor.Shutdown)
		_ = ctx.Reply(true)
	case *managerSuspend:
		m.suspend(ctx)
		_ = ctx.Reply(true)
	case *managerResume:
		m.resume(ctx)
		_ = ctx.Reply(true)
	case *systemReq:
		_ = ctx.Reply(&systemResult{Err: toRemote(m.handle(ctx, r))})
	case actor.Down:
		if m.resumed && r.Monitor == m.logMon {
			m.logDown(ctx, r.Reason)
			return
		}
		for name, s := range m.servers {
			if s.running && s.mon == r.Monitor {
				s.running = false
				m.serverDown(ctx, name, s, r.Reason)
			}
		}
	case actor.Terminating:
		m.stopAll(ctx, actor.Shutdown)
	}
}

// suspend stops every running server, to start it again at resume.
func (m *manager) suspend(ctx *actor.Context) {
	if m.suspended {
		return
	}
	m.suspended = true
	for _, s := range m.servers {
		if s.running {
			s.resume = true
		}
	}
	if !m.stopping {
		m.sys.logger.Warn("the node's log processes restart; stopping its servers until they run again")
	}
	m.stopAll(ctx, actor.ErrorReason(errLogRestart))
}

// resume starts the servers again once the log processes run: the first
// time every server of the directory, after a restart of the log
// processes those that ran before it (or failed in it).
func (m *manager) resume(ctx *actor.Context) {
	if m.stopping || m.failed != nil {
		return
	}
	m.suspended = false
	if !m.resumed {
		m.resumed = true
		// Whoever monitors the supervisor hears when it gives up.
		m.logMon = ctx.Monitor(m.sys.logSup)
		m.restartRecorded(ctx)
		return
	}
	for name, s := range m.servers {
		if !s.resume {
			continue
		}
		s.resume = false
		if err := m.start(ctx, s); err != nil {
			m.sys.logger.Error("server did not restart after the log processes", "server", name, "err", err)
		}
	}
}

// logDown handles the end of the log supervisor: if it gave up, the node
// cannot write anything any more, so its servers stay down and every
// request is answered with the failure.
func (m *manager) logDown(ctx *actor.Context, why actor.Reason) {
	if !why.Abnormal() {
		return // Stop
	}
	err := fmt.Errorf("%w: %w: node %s: its log processes failed more than %d times within %v and are not restarted: %s",
		ErrStorage, ErrRestartLimit, m.sys.node.Name(), m.sys.cfg.LogRestartIntensity, m.sys.cfg.LogRestartPeriod, why)
	m.failed = err
	m.sys.logErr.Store(&err)
	m.sys.logger.Error("the node's log processes keep failing; its servers stay down", "err", err)
	m.suspended = true
	m.stopAll(ctx, actor.ErrorReason(err))
}

// state reports one server's state (LocalServer).
func (m *manager) state(name string) managerStateResult {
	s, ok := m.servers[name]
	if !ok {
		return managerStateResult{err: fmt.Errorf("%w: %s on %s", ErrNoSuchServer, name, m.sys.node.Name())}
	}
	s.restarts = m.recentRestarts(s, time.Now())
	st := LocalServer{Config: s.cfg, Running: s.running, Restarts: len(s.restarts), Err: s.gaveUp}
	if m.failed != nil {
		st.Err = m.failed
	}
	return managerStateResult{state: st}
}

type managerStateResult struct {
	state LocalServer
	err   error
}

// LocalServer is what a node's manager knows of one of its servers.
type LocalServer struct {
	Config ServerConfig
	// Running: the server's process runs.
	Running bool
	// Restarts counts the restarts after failures within the last
	// ServerRestartPeriod.
	Restarts int
	// Err says why the server is down for good: it failed more than
	// ServerRestartIntensity times within ServerRestartPeriod (Err wraps
	// ErrRestartLimit and gives its last exit reason; RestartServer
	// clears it), or the node's log processes failed (Err wraps ErrStorage
	// and ErrRestartLimit, as System.Err). Nil otherwise.
	Err error
}

// LocalServer reports what this node's manager knows of its server name:
// whether it runs, how often it was restarted lately, and why it is down
// if the manager gave up on it. It fails with ErrNoSuchServer if the node
// has no such server.
func (s *System) LocalServer(ctx context.Context, name string) (LocalServer, error) {
	res, err := s.node.CallContext(ctx, s.manager, &managerState{name: name})
	if err != nil {
		return LocalServer{}, callError("system on node "+s.node.Name(), err)
	}
	r := res.(managerStateResult)
	return r.state, r.err
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
	if m.failed != nil {
		return m.failed
	}
	if m.suspended && r.Op != sysStop {
		// Nothing could start, and a delete could not reach the WAL.
		return fmt.Errorf("%w: node %s: the log processes restart; try again", ErrStorage, m.sys.node.Name())
	}
	switch r.Op {
	case sysStart, sysStartOrRestart:
		if exists {
			if r.Op == sysStart || s.cfg.Cluster != r.Config.Cluster {
				return fmt.Errorf("%w: server %s (cluster %s) exists on %s", ErrClusterExists, name, s.cfg.Cluster, m.sys.node.Name())
			}
			if s.running {
				return nil
			}
			s.restarts = nil // asked for: a fresh budget
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
		s.restarts = nil // asked for: a fresh budget
		return m.start(ctx, s)
	case sysStop:
		s.resume = false
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
	// Monitored from its birth: a server that fails at once (its machine
	// cannot be made, say) counts as a failure, not as a normal exit.
	ref, mon, err := ctx.SpawnMonitor(s.cfg.ID.Name, newServer(sys, s.cfg, s.uid, s.initial))
	if err != nil {
		if errors.Is(err, actor.ErrNameTaken) {
			return fmt.Errorf("%w: the name %s is taken on %s", ErrClusterExists, s.cfg.ID.Name, sys.node.Name())
		}
		return err
	}
	s.ref, s.mon, s.running, s.gaveUp = ref, mon, true, nil
	return nil
}

// serverDown handles the exit of a running server: a failure is restarted
// unless the server failed more than ServerRestartIntensity times within
// ServerRestartPeriod; a normal exit (a removed member) is final. A server
// that fails while the log processes are down (its WAL is gone) is not to
// blame: it starts again with them, and its budget is left alone.
func (m *manager) serverDown(ctx *actor.Context, name string, s *managed, why actor.Reason) {
	if !why.Abnormal() {
		return
	}
	if m.suspended || m.sys.currentWAL().Closed() {
		s.resume = !m.stopping
		return
	}
	now := time.Now()
	s.restarts = m.recentRestarts(s, now)
	if len(s.restarts) >= m.sys.cfg.ServerRestartIntensity {
		s.gaveUp = fmt.Errorf("%w: server %s failed %d times within %v; last: %s",
			ErrRestartLimit, s.cfg.ID, len(s.restarts)+1, m.sys.cfg.ServerRestartPeriod, why)
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

// recentRestarts returns s's restarts within ServerRestartPeriod of now.
func (m *manager) recentRestarts(s *managed, now time.Time) []time.Time {
	kept := s.restarts[:0]
	for _, t := range s.restarts {
		if now.Sub(t) < m.sys.cfg.ServerRestartPeriod {
			kept = append(kept, t)
		}
	}
	return kept
}

// stopAll stops every running server, all at once, with reason, and waits
// for them.
func (m *manager) stopAll(ctx *actor.Context, reason actor.Reason) {
	var refs []actor.Ref
	for _, s := range m.servers {
		if s.running {
			ctx.Demonitor(s.mon)
			s.running = false
			if m.sys.node.Exit(s.ref, reason) == nil {
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
	if err := sys.currentWAL().Forget(s.uid); err != nil {
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
