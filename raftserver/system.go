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
	hostConf  *hostConfig // cfg.host(), shared by every server's host
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
	logMu sync.Mutex
	// walEarlier sums the counters of the WALs a restart replaced, so
	// that Metrics counts on across restarts.
	walEarlier wal.Stats
	logErr     atomic.Pointer[error] // why the log supervisor gave up
	pacer      *electionPacer
	fd         *failuredetector.Detector

	stats    systemStats
	refusals refusalLog
	metrics  metricsRegistry

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
	hc := cfg.host()
	s.hostConf = &hc
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
	wcfg.PreallocateBytes = cfg.WALPreallocateBytes
	if cfg.WALRecycleFiles != 0 {
		wcfg.RecycleFiles = cfg.WALRecycleFiles
	}
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
	// Linked WAL files that snapshots emptied go back to the WAL of the
	// moment (it restarts with the log processes), to be written over.
	s.segments.SetReclaim(func(path string) bool { return s.currentWAL().Reclaim(path) })
	// The manager starts no server until the log supervisor's last child
	// asks it to (managerResume), once the log processes run.
	// The node's services run at high priority: a call to the manager or
	// a write to the WAL never waits behind a thousand servers that
	// recover or catch up (docs/actor.md).
	if s.manager, err = s.node.SpawnNamed(managerName, &manager{sys: s, servers: map[string]*managed{}, suspended: true}, actor.HighPriority()); err != nil {
		return nil, err
	}
	high := []actor.SpawnOption{actor.HighPriority()}
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
			{Name: s.segw.Ref().Name, Restart: actor.Transient, ShutdownTimeout: cfg.ShutdownTimeout, Options: high, Start: func() actor.Process {
				_, p := segment.NewWriter(s.node, s.segments, segment.WriterOptions{Logger: logger})
				return p
			}},
			{Name: wal.DefaultName, Restart: actor.Transient, ShutdownTimeout: cfg.ShutdownTimeout, Options: high, Start: func() actor.Process {
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
				s.walEarlier.Add(s.wal.Stats())
				s.wal = w
				s.logMu.Unlock()
				return p
			}},
			{Name: s.snapw.Ref().Name, Restart: actor.Transient, ShutdownTimeout: cfg.ShutdownTimeout, Options: high, Start: func() actor.Process {
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
			{Name: logServersName, Restart: actor.Transient, ShutdownTimeout: 2*cfg.ShutdownTimeout + time.Minute, Options: high, Start: func() actor.Process {
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

// directoryMembers updates the member list of uid's directory record, if
// it changed.
func (s *System) directoryMembers(uid string, members []meta.ServerID) error {
	_, err := s.meta.SetServerMembers(uid, members)
	return err
}

func encodeSpec(spec MachineSpec) []byte { return appendSpec(nil, spec) }

func decodeSpec(b []byte) (MachineSpec, error) {
	r := wire.NewReader(b)
	spec := readSpec(r)
	return spec, r.Done()
}
