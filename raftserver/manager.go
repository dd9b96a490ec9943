package raftserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/meta"
)

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
	if err := m.authorize(ctx, r); err != nil {
		m.sys.stats.refusedSystemRequests.Add(1)
		m.sys.refusals.log(m.sys, "refused a system request from another node", "op", sysOpName(r.Op), "from", ctx.SourceNode(), "err", err)
		return err
	}
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

// authorize refuses the requests this node does not take from the node
// that sent r: all of them from a node that did not authenticate, when
// this node has credentials (without credentials nobody authenticates,
// and every node is trusted as before), and deletes from any other node
// unless SystemConfig.AllowRemoteDelete. Requests from this node are
// always taken.
func (m *manager) authorize(ctx *actor.Context, r *systemReq) error {
	self, src := m.sys.node.Name(), ctx.SourceNode()
	if src == self {
		return nil
	}
	if m.sys.node.Authenticated() && !ctx.SourceAuthenticated() {
		return fmt.Errorf("%w: node %s takes system requests only from authenticated nodes, and %s did not authenticate", ErrNotPermitted, self, src)
	}
	if r.Op == sysDelete && !m.sys.cfg.AllowRemoteDelete {
		return fmt.Errorf("%w: node %s does not delete its servers for other nodes (SystemConfig.AllowRemoteDelete is off): %s asked to delete %s", ErrNotPermitted, self, src, r.Name)
	}
	return nil
}

// sysOpName names a system operation for logs.
func sysOpName(op uint8) string {
	switch op {
	case sysStart:
		return "start"
	case sysStartOrRestart:
		return "start or restart"
	case sysRestart:
		return "restart"
	case sysStop:
		return "stop"
	case sysDelete:
		return "delete"
	}
	return fmt.Sprintf("op %d", op)
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
	sys.metrics.drop(name)
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
