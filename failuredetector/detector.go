package failuredetector

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/smallmap"
)

// ProcessName is the name the detector process is registered under on
// every node. Detectors address each other by it, so it is the same on
// every node and at most one Detector runs per node.
const ProcessName = "rago_fd"

// stopTimeout bounds how long Stop waits for the process to exit.
const stopTimeout = 5 * time.Second

// Suspected tells a watcher that Node has been silent long enough to be
// suspected (its phi reached Config.Threshold). A watcher also gets it at
// once from Watch if the node is already suspected then.
type Suspected struct {
	Node string
}

// Up tells a watcher that a node it was told was Suspected was heard from
// again. A watcher gets no Up without a Suspected before it: a node is
// presumed up when Watch is called.
type Up struct {
	Node string
}

// NodeStatus is the detector's view of one node, for overviews and
// operators. It is a snapshot from the detector's last check.
type NodeStatus struct {
	// Suspected: the node is suspected (watchers were told so).
	Suspected bool
	// Phi is the suspicion level at At.
	Phi float64
	// Silence is the time since the last heartbeat (or since tracking
	// began) at At, less any time the detector itself could not run.
	Silence time.Duration
	// Timeout is the silence at which the node is suspected, given its
	// window.
	Timeout time.Duration
	// LastHeartbeat is when its last heartbeat arrived; zero if none did
	// since it was tracked.
	LastHeartbeat time.Time
	// Samples, MeanInterval and StdDev describe its window; MeanInterval
	// and StdDev are the values in use (the prior before MinSamples
	// samples, the floor applied).
	Samples      int
	MeanInterval time.Duration
	StdDev       time.Duration
	// Watchers is the number of local processes watching the node.
	Watchers int
	// RemoteWatching: processes on the node watch this node, so this node
	// heartbeats it even with no local watcher.
	RemoteWatching bool
	// Incarnation is the node's detector incarnation (0 until heard from);
	// Restarts counts the changes seen.
	Incarnation uint64
	Restarts    uint64
	// HeartbeatsSent and HeartbeatsReceived count heartbeats to and from
	// the node since it was last tracked; StaleDropped counts received
	// ones dropped as older than one already taken.
	HeartbeatsSent     uint64
	HeartbeatsReceived uint64
	StaleDropped       uint64
	// Excused counts checks at which the node's silence had reached its
	// timeout while bytes from it were waiting to be read on this node,
	// so it was not suspected: this node was behind, not the node silent.
	Excused uint64
	// At is when the snapshot was taken.
	At time.Time
}

// Detector is a handle on a node's failure detector process. Its methods
// are safe for concurrent use, including from inside processes' Receive.
type Detector struct {
	node *actor.Node
	ref  actor.Ref
	cfg  Config

	stopped  atomic.Bool
	stopOnce sync.Once
	stats    statsCounters

	mu     sync.Mutex
	status map[string]NodeStatus
	// suspectChecks: per node, how many checks passed between its last
	// heartbeat and its latest suspicion; tests bound it.
	suspectChecks map[string]int
	// rounds counts heartbeat rounds (one heartbeat to every tracked node
	// per round), published with status so that tests can compare it with
	// the heartbeats sent.
	rounds uint64
}

// Start spawns the node's failure detector process under ProcessName. It
// fails with ErrInvalidConfig for a bad cfg or a nil node, and with an
// error wrapping actor.ErrNameTaken if a detector already runs on node
// (or actor.ErrNodeStopped if node is stopping).
func Start(node *actor.Node, cfg Config) (*Detector, error) {
	if node == nil {
		return nil, fmt.Errorf("%w: nil node", ErrInvalidConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("node", node.Name(), "process", ProcessName)
	d := &Detector{node: node, cfg: cfg}
	p := &process{
		d:        d,
		cfg:      cfg,
		zStar:    zForPhi(cfg.Threshold),
		self:     node.Name(),
		inc:      newIncarnation(),
		now:      time.Now,
		unread:   node.Unread,
		log:      logger,
		peers:    make(map[string]*peer),
		watchers: make(map[actor.Ref]*watcher),
		deaf:     make(map[string]bool),
	}
	ref, err := node.SpawnNamed(ProcessName, p, actor.WithLogger(logger), actor.HighPriority())
	if err != nil {
		return nil, fmt.Errorf("failuredetector: start on %s: %w", node.Name(), err)
	}
	d.ref = ref
	return d, nil
}

func newIncarnation() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// Ref returns the detector process's ref.
func (d *Detector) Ref() actor.Ref { return d.ref }

// Watch asks the detector to tell watcher, a process on the detector's
// node, about node: Suspected when it becomes suspected, Up when it is
// heard from again. Both come from the detector process, so the notices
// about one node reach a watcher in the order they were decided. If node
// is suspected already, the watcher gets Suspected at once; otherwise it
// gets nothing until something changes.
//
// Registrations are counted per (watcher, node): each Watch needs its
// Unwatch, and a watcher watching a node twice still gets each notice
// once. Heartbeats go once per node pair whatever the number of watchers.
// A watcher that exits is forgotten with all its registrations.
// Watching the detector's own node is allowed and never yields a notice.
//
// Watch is asynchronous and never blocks. It fails with ErrInvalidWatch
// for an empty node or a watcher on another node, and with ErrStopped if
// the detector is not running.
func (d *Detector) Watch(watcher actor.Ref, node string) error {
	return d.sendWatch(watcher, node, +1)
}

// Unwatch undoes one Watch of node by watcher. When nobody on this node
// watches node any more and node does not watch this node, the detector
// stops heartbeating it. Unwatching what was not watched does nothing.
// Errors are those of Watch.
func (d *Detector) Unwatch(watcher actor.Ref, node string) error {
	return d.sendWatch(watcher, node, -1)
}

func (d *Detector) sendWatch(watcher actor.Ref, node string, delta int) error {
	switch {
	case node == "":
		return fmt.Errorf("%w: empty node name (watcher %s)", ErrInvalidWatch, watcher)
	case watcher.Node != d.node.Name() || watcher.Name == "":
		return fmt.Errorf("%w: watcher %s is not a process of node %s", ErrInvalidWatch, watcher, d.node.Name())
	}
	if err := d.alive(); err != nil {
		return err
	}
	return d.node.Send(d.ref, watchMsg{watcher: watcher, node: node, delta: delta})
}

// DropHeartbeatsFrom is a test hook: while drop is true the detector
// ignores every heartbeat from node, as if the network lost all traffic
// from node to this node (a one-way partition, as far as failure
// detection is concerned). The node becomes suspected here while it may
// still consider this node up. Other traffic is not affected, except
// through Config.Disconnect. It fails with ErrStopped if the detector is
// not running.
func (d *Detector) DropHeartbeatsFrom(node string, drop bool) error {
	if err := d.alive(); err != nil {
		return err
	}
	return d.node.Send(d.ref, dropMsg{node: node, drop: drop})
}

// Status returns the detector's view of every node it tracks, keyed by
// node name, as of its last check (every Config.CheckInterval while it
// tracks any node). It returns an empty map after Stop.
func (d *Detector) Status() map[string]NodeStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]NodeStatus, len(d.status))
	for k, v := range d.status {
		out[k] = v
	}
	return out
}

// Stop stops the detector process and waits (up to a few seconds) for it
// to exit. Watchers get no further notices, and peers that watch this node
// will suspect it, since nothing vouches for it any more. Stop is
// idempotent.
func (d *Detector) Stop() {
	d.stopOnce.Do(func() {
		d.stopped.Store(true)
		if err := d.node.Exit(d.ref, actor.Normal); err != nil {
			return // already gone
		}
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		_ = d.node.Wait(ctx, d.ref)
	})
}

func (d *Detector) alive() error {
	if d.stopped.Load() || !d.node.Alive(d.ref) {
		return fmt.Errorf("%w: %s", ErrStopped, d.ref)
	}
	return nil
}

func (d *Detector) publish(status map[string]NodeStatus, rounds uint64) {
	d.mu.Lock()
	d.status = status
	d.rounds = rounds
	d.mu.Unlock()
}

func (d *Detector) recordSuspicion(node string, checks int) {
	d.mu.Lock()
	if d.suspectChecks == nil {
		d.suspectChecks = make(map[string]int)
	}
	d.suspectChecks[node] = checks
	d.mu.Unlock()
}

// Messages of the detector process (local only, except heartbeat).
type (
	watchMsg struct {
		watcher actor.Ref
		node    string
		delta   int // +1 watch, -1 unwatch
	}
	dropMsg struct {
		node string
		drop bool
	}
	heartbeatTick struct{}
	checkTick     struct{}
)

// process is the detector process. It owns all the state; the Detector
// handle only sends it messages and reads the status it publishes.
type process struct {
	d     *Detector
	cfg   Config
	zStar float64
	self  string
	inc   uint64
	seq   uint64 // last heartbeat sequence number sent, to any node
	// rounds counts heartbeat rounds.
	rounds uint64
	now    func() time.Time
	log    *slog.Logger
	// unread returns the bytes a node sent that this node has not
	// handled yet (actor.Node.Unread).
	unread func(node string) int

	// peers: the nodes tracked. Invariant: a node is in peers iff local
	// processes watch it or its last heartbeat said it watches us.
	peers    map[string]*peer
	watchers map[actor.Ref]*watcher
	deaf     map[string]bool // DropHeartbeatsFrom

	// Each timer re-arms itself while peers is not empty; a timer that
	// found peers empty stays off until a peer is tracked again.
	hbArmed, checkArmed bool
	lastCheck           time.Time // zero after the check timer was off
}

// peer is what the process knows of one tracked node.
type peer struct {
	win            *Window
	watchers       map[actor.Ref]struct{} // distinct local watchers
	remoteWatching bool
	suspected      bool
	inc, lastSeq   uint64
	lastArrival    time.Time
	checksSilent   int // checks since the last heartbeat
	sent, received uint64
	stale          uint64
	restarts       uint64
	excused        uint64
}

// watcher is one local process's registrations.
type watcher struct {
	mon actor.MonitorRef
	// nodes: node -> Watch count. A small map: a Raft server watches the
	// node of its leader or those of its followers, one or two, and a node
	// may have thousands of servers.
	nodes smallmap.Map[string, int]
}

// Receive implements actor.Process.
func (p *process) Receive(ctx *actor.Context, msg actor.Message) {
	switch m := msg.(type) {
	case actor.Started:
		p.publish()
	case watchMsg:
		if m.delta > 0 {
			p.watch(ctx, m.watcher, m.node)
		} else {
			p.unwatch(ctx, m.watcher, m.node)
		}
		p.publish()
	case dropMsg:
		if m.drop {
			p.deaf[m.node] = true
		} else {
			delete(p.deaf, m.node)
		}
	case heartbeat:
		p.onHeartbeat(ctx, m)
	case heartbeatTick:
		p.hbArmed = false
		p.sendRound(ctx)
		if p.checkWithHeartbeat() {
			p.runCheck(ctx)
		}
		p.armTimers(ctx)
	case checkTick:
		p.checkArmed = false
		p.runCheck(ctx)
		p.armTimers(ctx)
	case actor.Down:
		p.watcherDown(ctx, m.Ref)
		p.publish()
	case actor.Terminating:
		// Tell the nodes that only answer us that they may stop. Nodes
		// watching us keep waiting for heartbeats and will suspect us,
		// which is right: nothing vouches for this node any more.
		for name := range p.peers {
			p.sendHeartbeat(ctx, name, false)
		}
		p.d.stats.suspected.Store(0) // nothing is tracked any more
		p.d.publish(nil, p.rounds)
	default:
		p.log.Debug("unexpected message", "type", fmt.Sprintf("%T", msg))
	}
}

func (p *process) watch(ctx *actor.Context, who actor.Ref, node string) {
	w := p.watchers[who]
	if w == nil {
		w = &watcher{mon: ctx.Monitor(who)}
		p.watchers[who] = w
	}
	c, _ := w.nodes.Get(node)
	w.nodes.Set(node, c+1)
	if c > 0 || node == p.self {
		return
	}
	pr, _ := p.track(ctx, node)
	first := len(pr.watchers) == 0
	pr.watchers[who] = struct{}{}
	if pr.suspected {
		p.notify(ctx, who, Suspected{Node: node})
	}
	if first {
		// Tell the node at once that we watch it, so it starts answering
		// well before our window's timeout.
		p.sendHeartbeat(ctx, node, true)
	}
}

func (p *process) unwatch(ctx *actor.Context, who actor.Ref, node string) {
	w := p.watchers[who]
	c := 0
	if w != nil {
		c, _ = w.nodes.Get(node)
	}
	if c == 0 {
		p.log.Debug("unwatch of a node not watched", "watcher", who.String(), "peer", node)
		return
	}
	if c > 1 {
		w.nodes.Set(node, c-1)
	} else {
		w.nodes.Delete(node)
		p.dropWatcher(ctx, who, node)
	}
	if w.nodes.Len() == 0 {
		ctx.Demonitor(w.mon)
		delete(p.watchers, who)
	}
}

// watcherDown forgets every registration of a watcher that exited.
func (p *process) watcherDown(ctx *actor.Context, who actor.Ref) {
	w := p.watchers[who]
	if w == nil {
		return
	}
	delete(p.watchers, who)
	for node := range w.nodes.All() {
		p.dropWatcher(ctx, who, node)
	}
}

// dropWatcher removes who from node's watchers and lets the node go if
// nobody is interested any more.
func (p *process) dropWatcher(ctx *actor.Context, who actor.Ref, node string) {
	pr := p.peers[node]
	if pr == nil {
		return // the own node, never tracked
	}
	delete(pr.watchers, who)
	if len(pr.watchers) == 0 && !pr.remoteWatching {
		p.forget(ctx, node, true)
	}
}

// track returns node's state, creating it (and starting the timers) if
// node was not tracked.
func (p *process) track(ctx *actor.Context, node string) (*peer, bool) {
	if pr := p.peers[node]; pr != nil {
		return pr, false
	}
	pr := &peer{
		win:      newWindow(p.cfg, p.zStar, p.now()),
		watchers: make(map[actor.Ref]struct{}),
	}
	p.peers[node] = pr
	p.armTimers(ctx)
	p.log.Debug("tracking node", "peer", node)
	return pr, true
}

// forget stops tracking node. With goodbye it first sends a heartbeat
// saying we do not watch it, so that a node that only answers us can stop
// at once instead of waiting to suspect us.
func (p *process) forget(ctx *actor.Context, node string, goodbye bool) {
	if goodbye {
		p.sendHeartbeat(ctx, node, false)
	}
	if pr := p.peers[node]; pr != nil && pr.suspected {
		p.d.stats.suspected.Add(-1)
	}
	delete(p.peers, node)
	p.log.Debug("stopped tracking node", "peer", node)
}

func (p *process) onHeartbeat(ctx *actor.Context, hb heartbeat) {
	if hb.From == p.self || p.deaf[hb.From] {
		return
	}
	pr := p.peers[hb.From]
	created := false
	if pr == nil {
		if !hb.Watching {
			// A goodbye, or a late heartbeat from a node we stopped
			// tracking: nobody on either side needs the other.
			return
		}
		pr, created = p.track(ctx, hb.From)
	}
	now := p.now()
	switch {
	case pr.inc == hb.Incarnation && hb.Seq <= pr.lastSeq:
		pr.stale++
		return
	case pr.inc != 0 && pr.inc != hb.Incarnation:
		// The node's detector restarted: its past heartbeats say nothing
		// about the new one.
		pr.win = newWindow(p.cfg, p.zStar, now)
		pr.restarts++
		p.log.Info("node restarted", "peer", hb.From)
	}
	pr.inc, pr.lastSeq = hb.Incarnation, hb.Seq
	pr.received++
	pr.win.Heartbeat(now)
	pr.lastArrival = now
	pr.checksSilent = 0
	pr.remoteWatching = hb.Watching
	if pr.suspected {
		pr.suspected = false
		p.d.stats.cleared.Add(1)
		p.d.stats.suspected.Add(-1)
		p.log.Info("node up", "peer", hb.From, "watchers", len(pr.watchers))
		for who := range pr.watchers {
			p.notify(ctx, who, Up{Node: hb.From})
		}
	}
	if created {
		// Answer at once, so the node learns of us before its timeout.
		p.sendHeartbeat(ctx, hb.From, false)
	}
	if len(pr.watchers) == 0 && !pr.remoteWatching {
		p.forget(ctx, hb.From, true)
	}
}

func (p *process) sendRound(ctx *actor.Context) {
	for name, pr := range p.peers {
		p.sendHeartbeat(ctx, name, len(pr.watchers) > 0)
	}
	p.rounds++
}

func (p *process) sendHeartbeat(ctx *actor.Context, node string, watching bool) {
	p.seq++
	hb := heartbeat{From: p.self, Incarnation: p.inc, Seq: p.seq, Watching: watching}
	if err := ctx.Send(actor.Ref{Name: ProcessName, Node: node}, hb); err != nil {
		// Only a codec failure can get here, which is a bug.
		p.log.Error("heartbeat not sent", "peer", node, "err", err)
		return
	}
	if pr := p.peers[node]; pr != nil {
		pr.sent++
	}
}

// blindTime returns how much later than scheduled this check runs, if
// that is more than Interval: then this process itself was not running
// (frozen by SIGSTOP, starved of CPU, stopped by the runtime) and could not
// have received heartbeats either. Smaller delays are ordinary jitter.
func (p *process) blindTime(now time.Time) time.Duration {
	if p.lastCheck.IsZero() {
		return 0
	}
	late := now.Sub(p.lastCheck) - p.cfg.CheckInterval
	if late <= p.cfg.Interval {
		return 0
	}
	return late
}

func (p *process) check(ctx *actor.Context) {
	now := p.now()
	blind := p.blindTime(now)
	if blind > 0 {
		p.log.Info("detector did not run for a while; excusing its peers' silence", "blind", blind)
	}
	p.lastCheck = now
	for name, pr := range p.peers {
		if pr.suspected {
			continue // stays suspected until a heartbeat comes
		}
		if blind > 0 {
			// Only the blind time is excused: under sustained overload
			// the silence still grows by a CheckInterval per check, so a
			// dead peer is still caught.
			pr.win.Excuse(now, blind)
		}
		pr.checksSilent++
		if !pr.win.Suspected(now) {
			continue
		}
		if n := p.unread(name); n > 0 {
			// The node's bytes wait here unread: the goroutines reading
			// its connections are starved of CPU, and its heartbeat is
			// likely among those bytes. Suspecting it would disconnect a
			// live node and make an overloaded node busier still. Once
			// they are read, either a heartbeat was among them or the
			// silence is the node's and the next check suspects it.
			pr.excused++
			p.log.Debug("silence excused: bytes from the node wait to be read", "peer", name, "unread", n, "silence", pr.win.Elapsed(now))
			continue
		}
		if len(pr.watchers) == 0 {
			// Only the node was interested in us, and it went quiet.
			p.forget(ctx, name, false)
			continue
		}
		pr.suspected = true
		p.d.stats.suspicions.Add(1)
		p.d.stats.suspected.Add(1)
		p.d.recordSuspicion(name, pr.checksSilent)
		p.log.Info("node suspected", "peer", name, "silence", pr.win.Elapsed(now), "phi", pr.win.Phi(now), "window", pr.win.String(), "watchers", len(pr.watchers))
		for who := range pr.watchers {
			p.notify(ctx, who, Suspected{Node: name})
		}
		if p.cfg.Disconnect {
			ctx.Node().Disconnect(name)
		}
	}
}

func (p *process) notify(ctx *actor.Context, who actor.Ref, msg actor.Message) {
	// Watchers are local, so Send cannot fail; a watcher that just exited
	// drops the notice, and its Down will clean up.
	_ = ctx.Send(who, msg)
}

// checkWithHeartbeat reports whether checks ride on the heartbeat timer:
// when they are as frequent as heartbeats, one timer is enough, and an
// idle node wakes up half as often.
func (p *process) checkWithHeartbeat() bool { return p.cfg.CheckInterval >= p.cfg.Interval }

func (p *process) runCheck(ctx *actor.Context) {
	p.check(ctx)
	p.publish()
	if len(p.peers) == 0 {
		// The timer stops here; when it starts again, its first check
		// must not take the gap for a pause of its own.
		p.lastCheck = time.Time{}
	}
}

// armTimers starts the timers that are off, if any node is tracked.
func (p *process) armTimers(ctx *actor.Context) {
	if len(p.peers) == 0 {
		return
	}
	if !p.hbArmed {
		ctx.SendAfter(p.cfg.Interval, heartbeatTick{})
		p.hbArmed = true
	}
	if !p.checkArmed && !p.checkWithHeartbeat() {
		ctx.SendAfter(p.cfg.CheckInterval, checkTick{})
		p.checkArmed = true
	}
}

func (p *process) publish() {
	now := p.now()
	out := make(map[string]NodeStatus, len(p.peers))
	for name, pr := range p.peers {
		out[name] = NodeStatus{
			Suspected:          pr.suspected,
			Phi:                pr.win.Phi(now),
			Silence:            pr.win.Elapsed(now),
			Timeout:            pr.win.Timeout(),
			LastHeartbeat:      pr.lastArrival,
			Samples:            pr.win.Samples(),
			MeanInterval:       pr.win.Mean(),
			StdDev:             pr.win.StdDev(),
			Watchers:           len(pr.watchers),
			RemoteWatching:     pr.remoteWatching,
			Incarnation:        pr.inc,
			Restarts:           pr.restarts,
			HeartbeatsSent:     pr.sent,
			HeartbeatsReceived: pr.received,
			StaleDropped:       pr.stale,
			Excused:            pr.excused,
			At:                 now,
		}
	}
	p.d.publish(out, p.rounds)
}
