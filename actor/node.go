package actor

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pa "github.com/asynkron/protoactor-go/actor"
	"github.com/rago-raft/rago/internal/wire"
)

// Config configures a node. The zero value of every field but Address
// means its default.
type Config struct {
	// Address is host:port to listen on; it becomes the node's name, which
	// other nodes must use exactly. Port 0 picks a free port; the name
	// then uses the listener's address (see Node.Name).
	Address string
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
	// LinkQueueBytes bounds the encoded messages waiting to be written to
	// one peer; beyond it new messages for that peer are dropped (a peer
	// that stops reading cannot make us grow without bound). Default 64 MiB.
	LinkQueueBytes int
	// MaxMessageBytes bounds one encoded message for another node; larger
	// ones fail with ErrMessageTooLarge. Default 16 MiB.
	MaxMessageBytes int
	// MaxFrameBytes is the size at which the link starts a new frame.
	// Default 1 MiB.
	MaxFrameBytes int
	// ConnectTimeout bounds one connection attempt. Default 5s.
	ConnectTimeout time.Duration
	// ReconnectInterval is how long a lost peer is left alone: messages to
	// it are dropped for that long, and peers with node monitors are
	// retried this often. Default 500ms.
	ReconnectInterval time.Duration
	// ShutdownTimeout bounds how long Stop waits for processes to exit and
	// for the transport to close. Default 5s.
	ShutdownTimeout time.Duration

	// TLS, if set, makes every connection between nodes mutual TLS 1.3:
	// each side presents a certificate for its node name, signed by a CA
	// of the pool, and checks the other's (see TLSConfig and
	// docs/actor.md, "Authentication").
	TLS *TLSConfig
	// ClusterSecret, if set, makes every connection between nodes prove
	// in both directions, by HMAC-SHA256 challenge and response, that the
	// other side knows it; it never travels. At least
	// MinClusterSecretBytes bytes of random data; every node of the
	// cluster needs the same. It can go with TLS or alone.
	//
	// With neither TLS nor ClusterSecret a node accepts every connection
	// that starts with the rago preamble and believes the node name each
	// frame claims: anyone who can reach its port can send to, call, stop
	// and monitor its processes. Use that only on a network where every
	// host is trusted, or in tests.
	ClusterSecret []byte
}

const (
	defaultLinkQueueBytes    = 64 << 20
	defaultMaxMessageBytes   = 16 << 20
	defaultMaxFrameBytes     = 1 << 20
	defaultConnectTimeout    = 5 * time.Second
	defaultReconnectInterval = 500 * time.Millisecond
	defaultShutdownTimeout   = 5 * time.Second
	// keepFrameBufferBytes: a link's writer and reader keep their frame
	// buffer for the next frame up to this capacity; a larger one (after a
	// huge message) is dropped rather than held for ever.
	keepFrameBufferBytes = 4 << 20
	// maxMessageLimit keeps a frame's length within its 4-byte prefix.
	maxMessageLimit = 1 << 30
)

func (c *Config) withDefaults() Config {
	out := *c
	if out.LinkQueueBytes == 0 {
		out.LinkQueueBytes = defaultLinkQueueBytes
	}
	if out.MaxMessageBytes == 0 {
		out.MaxMessageBytes = min(defaultMaxMessageBytes, out.LinkQueueBytes)
	}
	if out.MaxFrameBytes == 0 {
		out.MaxFrameBytes = defaultMaxFrameBytes
	}
	if out.ConnectTimeout == 0 {
		out.ConnectTimeout = defaultConnectTimeout
	}
	if out.ReconnectInterval == 0 {
		out.ReconnectInterval = defaultReconnectInterval
	}
	if out.ShutdownTimeout == 0 {
		out.ShutdownTimeout = defaultShutdownTimeout
	}
	return out
}

// Validate checks the configuration after defaults are applied.
func (c Config) Validate() error {
	d := c.withDefaults()
	host, port, err := net.SplitHostPort(d.Address)
	if err != nil {
		return fmt.Errorf("%w: address %q: %v", ErrInvalidConfig, d.Address, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%w: address %q has no specific host; the node name must be reachable by peers", ErrInvalidConfig, d.Address)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%w: address %q: bad port", ErrInvalidConfig, d.Address)
	}
	switch {
	case d.MaxMessageBytes <= 0 || d.MaxMessageBytes > maxMessageLimit:
		return fmt.Errorf("%w: MaxMessageBytes %d must be in (0, %d]", ErrInvalidConfig, d.MaxMessageBytes, maxMessageLimit)
	case d.LinkQueueBytes < d.MaxMessageBytes:
		return fmt.Errorf("%w: LinkQueueBytes %d must be at least MaxMessageBytes %d", ErrInvalidConfig, d.LinkQueueBytes, d.MaxMessageBytes)
	case d.MaxFrameBytes < 1024 || d.MaxFrameBytes > maxMessageLimit:
		return fmt.Errorf("%w: MaxFrameBytes %d must be in [1024, %d]", ErrInvalidConfig, d.MaxFrameBytes, maxMessageLimit)
	case d.ConnectTimeout < 0 || d.ReconnectInterval < 0 || d.ShutdownTimeout < 0:
		return fmt.Errorf("%w: negative duration (ConnectTimeout %v, ReconnectInterval %v, ShutdownTimeout %v)", ErrInvalidConfig, d.ConnectTimeout, d.ReconnectInterval, d.ShutdownTimeout)
	case d.ClusterSecret != nil && len(d.ClusterSecret) < MinClusterSecretBytes:
		return fmt.Errorf("%w: ClusterSecret of %d bytes, need at least %d", ErrInvalidConfig, len(d.ClusterSecret), MinClusterSecretBytes)
	}
	if d.TLS != nil {
		return d.TLS.validate()
	}
	return nil
}

// newAuthConfig returns how a node named name authenticates its
// connections, nil for not at all. It loads the TLS credentials.
func (c *Config) newAuthConfig(name string) (*authConfig, error) {
	if c.TLS == nil && c.ClusterSecret == nil {
		return nil, nil
	}
	a := &authConfig{}
	if c.ClusterSecret != nil {
		a.mode |= modeSecret
		a.secret = append([]byte(nil), c.ClusterSecret...)
	}
	if c.TLS != nil {
		a.mode |= modeTLS
		s, err := newTLSState(*c.TLS, name)
		if err != nil {
			return nil, err
		}
		a.tls = s
	}
	return a, nil
}

// Node is one actor system reachable at its name (host:port). Its methods
// are safe for concurrent use.
type Node struct {
	name           string
	cfg            Config
	logger         *slog.Logger
	system         *pa.ActorSystem
	dispatcher     *dispatcher          // runs the mailboxes of the node's processes
	highDispatcher *goroutineDispatcher // runs those of its HighPriority processes
	listener       *listener
	incarnation    uint64

	procs sync.Map // name -> *proc
	// exiting holds a process from the moment its name is freed until its
	// exit is complete, so that Wait still finds it (name -> *proc).
	exiting sync.Map
	nextPID atomic.Uint64

	calls  callTable
	kept   keptTable
	mons   monitorTable
	links  sync.Map // peer node name -> *link
	nextID atomic.Uint64

	stats    nodeStats
	badInput badInputLog
	// auth: how connections are authenticated; nil: they are not.
	auth *authConfig
	// authLog rate-limits the logs of refused connections and failed
	// handshakes, apart from badInput so that neither hides the other.
	authLog badInputLog

	// blocked holds the peers a partition test cut off (peer -> block);
	// anyBlocked keeps the lookup off the hot paths when there are none.
	blocked    sync.Map
	anyBlocked atomic.Bool
	// pauses holds the peers whose connections PauseReads paused.
	pauses   readPauses
	stopping atomic.Bool
	stopOnce sync.Once
	stopped  chan struct{}
}

// StartNode starts a node listening on cfg.Address.
func StartNode(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	name := cfg.Address
	if host, port, _ := net.SplitHostPort(cfg.Address); port == "0" {
		_, actual, _ := net.SplitHostPort(ln.Addr().String())
		name = net.JoinHostPort(host, actual)
	}
	auth, err := cfg.newAuthConfig(name)
	if err != nil {
		ln.Close()
		return nil, err
	}

	n := &Node{
		name:        name,
		cfg:         cfg,
		logger:      logger,
		incarnation: randomUint64(),
		auth:        auth,
		stopped:     make(chan struct{}),
	}
	n.dispatcher = newDispatcher(n.stopped)
	n.highDispatcher = newGoroutineDispatcher(n.stopped)
	n.mons.init()
	n.mons.node = n
	n.calls.init(name)
	n.kept.init()
	n.system = sharedSystem()
	n.listener = &listener{node: n, ln: ln, conns: make(map[net.Conn]struct{})}
	n.listener.wg.Add(1)
	go n.listener.serve()
	go n.reconnectLoop()
	n.logger.Debug("node started", "node", n.name)
	return n, nil
}

func randomUint64() uint64 {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return uint64(time.Now().UnixNano())
	}
	return binary.LittleEndian.Uint64(b[:])
}

// Name returns the node's name: the address peers reach it at.
func (n *Node) Name() string { return n.name }

// Logger returns the node's logger.
func (n *Node) Logger() *slog.Logger { return n.logger }

// Authenticated reports whether the node authenticates its peers
// (Config.TLS or Config.ClusterSecret): then every message from another
// node came over a connection that proved the node name its frames carry
// (Context.SourceNode). Without credentials a message's source node is
// only what its frame claims.
func (n *Node) Authenticated() bool { return n.auth != nil }

// Done is closed when the node has stopped.
func (n *Node) Done() <-chan struct{} { return n.stopped }

// Stop shuts the node down: every process exits with ReasonShutdown (their
// monitors are told), queued messages get up to a second to leave, and
// every connection closes. Stop is idempotent and takes at most about
// Config.ShutdownTimeout.
func (n *Node) Stop() {
	n.stopOnce.Do(func() {
		n.stopping.Store(true)
		deadline := time.Now().Add(n.cfg.ShutdownTimeout)
		var procs []*proc
		n.procs.Range(func(_, v any) bool {
			procs = append(procs, v.(*proc))
			return true
		})
		for _, p := range procs {
			p.kill(Shutdown)
		}
		for _, p := range procs {
			select {
			case <-p.done:
			case <-time.After(time.Until(deadline)):
				n.logger.Warn("process did not stop in time", "process", p.ref.String())
			}
		}
		// Let the Downs and replies of the exits leave before the
		// connections close.
		drainUntil := time.Now().Add(min(time.Until(deadline), time.Second))
		n.links.Range(func(_, v any) bool {
			v.(*link).drain(time.Until(drainUntil))
			return true
		})
		n.links.Range(func(_, v any) bool {
			v.(*link).close()
			return true
		})
		n.pauses.endAll()
		n.listener.close()
		n.calls.failAll()
		close(n.stopped)
		n.logger.Debug("node stopped", "node", n.name)
	})
}

// SpawnOption configures a spawned process.
type SpawnOption func(*spawnConfig)

type spawnConfig struct {
	logger *slog.Logger
	// watcher monitors the new process from its birth (monitor watchID):
	// Context.SpawnMonitor.
	watcher *proc
	watchID uint64
	// remoteExits: exit signals from other nodes stop the process
	// (AcceptRemoteExits).
	remoteExits bool
	// high: the process runs outside the dispatcher's queue
	// (HighPriority).
	high bool
}

// WithLogger gives the process its own logger (Context.Logger).
func WithLogger(l *slog.Logger) SpawnOption { return func(c *spawnConfig) { c.logger = l } }

// AcceptRemoteExits lets processes on other nodes stop the process with
// Node.Exit, as Erlang lets any connected node. Without it an exit signal
// from another node is dropped, counted in Stats.RefusedExits and logged:
// only the process's own node (its supervisor, its manager, Node.Exit
// called there) can stop it. Every other signal from other nodes works
// either way: they monitor it and get its Down, and send to and call it.
//
// The default is the safe one because a node that a peer can make stop
// its processes can be taken down by one forged frame, and rago's own
// processes (Raft servers, the WAL, supervisors) are never stopped from
// another node. Give the option to processes that other nodes are meant
// to stop.
func AcceptRemoteExits() SpawnOption { return func(c *spawnConfig) { c.remoteExits = true } }

// HighPriority runs the process outside the queue of the node's
// dispatcher: each activation gets a goroutine of its own (an idle one is
// reused), as Erlang runs processes of high priority before those of
// normal priority. A node's own services (supervisors, managers, the log
// writers, the failure detector) use it, so that they answer at once even
// while thousands of normal processes wait for a worker. Keep it for few
// processes: every busy one is a runnable goroutine that competes with the
// node's connections for the CPU (see docs/actor.md).
func HighPriority() SpawnOption { return func(c *spawnConfig) { c.high = true } }

// Spawn starts p under a generated name ("$" and a number).
func (n *Node) Spawn(p Process, opts ...SpawnOption) (Ref, error) {
	name := "$" + strconv.FormatUint(n.nextPID.Add(1), 36)
	return n.spawn(name, p, opts)
}

// SpawnNamed starts p registered as name on this node. It fails with
// ErrNameTaken if a live process has the name, and ErrInvalidName for an
// empty name, one over 1024 bytes, or one starting with '$'.
func (n *Node) SpawnNamed(name string, p Process, opts ...SpawnOption) (Ref, error) {
	if err := validateName(name); err != nil {
		return Ref{}, err
	}
	return n.spawn(name, p, opts)
}

func (n *Node) spawn(name string, behavior Process, opts []SpawnOption) (Ref, error) {
	if n.stopping.Load() {
		return Ref{}, ErrNodeStopped
	}
	if behavior == nil {
		return Ref{}, fmt.Errorf("%w: nil process for %q", ErrInvalidConfig, name)
	}
	var sc spawnConfig
	for _, o := range opts {
		o(&sc)
	}
	ref := Ref{Name: name, Node: n.name}
	logger := sc.logger
	if logger == nil {
		logger = n.logger.With("process", ref.String())
	}
	p := &proc{
		node:        n,
		ref:         ref,
		behavior:    behavior,
		logger:      logger,
		remoteExits: sc.remoteExits,
		done:        make(chan struct{}),
	}
	if sc.watcher != nil {
		p.watchers.Set(watcherKey{node: n.name, id: sc.watchID}, sc.watcher)
	}
	// Hold mu from publishing the name until the actor exists, so a
	// message sent in between waits in post instead of being lost.
	p.mu.Lock()
	if _, loaded := n.procs.LoadOrStore(name, p); loaded {
		p.mu.Unlock()
		return Ref{}, fmt.Errorf("%w: %s", ErrNameTaken, ref)
	}
	var dispatcher pa.Dispatcher = n.dispatcher
	if sc.high {
		dispatcher = n.highDispatcher
	}
	// The mailbox is protoactor's default one, kept to read its depth.
	// Spawn makes it on this goroutine before it returns.
	var mailbox pa.Mailbox
	props := pa.PropsFromProducer(func() pa.Actor { return p }, pa.WithMailbox(func() pa.Mailbox {
		mailbox = newMailbox()
		return mailbox
	}), pa.WithDispatcher(dispatcher))
	pid := n.system.Root.Spawn(props)
	target, ok := n.system.ProcessRegistry.GetLocal(pid.Id)
	if !ok {
		p.dead = true
		p.mu.Unlock()
		n.procs.CompareAndDelete(name, p)
		return Ref{}, fmt.Errorf("%w: %s: protoactor lost the new actor", ErrNodeStopped, ref)
	}
	p.pid = pid
	p.target.Store(&paTarget{p: target, mailbox: mailbox})
	p.mu.Unlock()
	n.stats.spawned.Add(1)
	return ref, nil
}

// newMailbox makes the unbounded mailbox protoactor gives an actor by
// default.
var newMailbox = pa.Unbounded()

// MailboxDepth returns how many messages wait in the mailbox of the local
// process registered as name: posted and not yet taken by its Receive
// (the message being handled is not counted), and whether such a process
// is registered. Every message counts, the node's own included (calls,
// timers that fired, Downs, NodeUp and NodeDown), but not Started and
// Terminating.
//
// It reads one atomic counter that the mailbox keeps anyway: call it from
// any goroutine, as often as needed, without messaging the process. The
// count is a snapshot; messages may arrive or be taken as it returns.
func (n *Node) MailboxDepth(name string) (int64, bool) {
	p := n.lookup(name)
	if p == nil {
		return 0, false
	}
	t := p.target.Load()
	if t == nil {
		return 0, true // being spawned: messages wait in post, not queued yet
	}
	return int64(t.mailbox.UserMessageCount()), true
}

func (n *Node) unregister(p *proc) { n.procs.CompareAndDelete(p.ref.Name, p) }

func (n *Node) lookup(name string) *proc {
	v, ok := n.procs.Load(name)
	if !ok {
		return nil
	}
	return v.(*proc)
}

// IsLocal reports whether ref names a process on this node.
func (n *Node) IsLocal(ref Ref) bool { return ref.Node == n.name }

// Alive reports whether a process is registered under ref on this node.
// For refs on other nodes it returns false.
func (n *Node) Alive(ref Ref) bool {
	return n.IsLocal(ref) && n.lookup(ref.Name) != nil
}

// Wait blocks until the local process ref has fully exited (its monitors
// are told) or ctx ends. It returns nil at once if there is no such
// process.
func (n *Node) Wait(ctx context.Context, ref Ref) error {
	if !n.IsLocal(ref) {
		return fmt.Errorf("%w: %s", ErrNotLocal, ref)
	}
	p := n.lookup(ref.Name)
	if p == nil {
		// Its name is freed before its Terminating runs: a process in
		// its last steps is no longer registered, but not gone yet.
		v, ok := n.exiting.Load(ref.Name)
		if !ok {
			return nil
		}
		p = v.(*proc)
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for %s to exit: %w", ErrTimeout, ref, ctx.Err())
	}
}

// Send delivers msg to the process to, asynchronously. It never blocks.
// Delivery is not guaranteed: a message to a missing process or a lost node
// is dropped (and counted in Stats). Send returns an error only for a
// message that can never be sent: one without a codec (ErrNotSerializable)
// or too large (ErrMessageTooLarge) for another node.
func (n *Node) Send(to Ref, msg Message) error {
	if to.Node == n.name {
		if p := n.lookup(to.Name); p != nil {
			p.post(msg)
		} else {
			n.stats.droppedNoProcess.Add(1)
		}
		return nil
	}
	return n.sendRemote(to, opSend, nil, msg)
}

// Call sends msg to the process to and waits up to timeout for its reply.
// See CallContext.
func (n *Node) Call(to Ref, msg Message, timeout time.Duration) (Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return n.CallContext(ctx, to, msg)
}

// CallContext sends msg to the process to as a call and waits for the
// reply (Context.Reply or Node.Reply) until ctx ends. A call ends as soon
// as its outcome is known, in a reply or one of these errors:
//   - ErrNoProcess: no process has that name, or the process exited
//     before it took the request (it was queued behind the process's
//     exit, or the process was being killed). The request was not
//     processed: it is safe to retry.
//   - ErrProcessExited: the process took the request and exited (stopped,
//     was killed or crashed, while handling it or later) before anyone
//     replied, even if it had handed the ReplyTo on. The request may or
//     may not have been processed.
//   - ErrNodeDown: the node is known to be unreachable, or the connection
//     attempt the request waited for failed. The request was not sent.
//   - ErrNodeLost: the connection to the node broke (or the node was found
//     restarted, or Node.Disconnect on either side gave it up) while the
//     call waited. The request may or may not have been processed.
//   - ErrTimeout: no reply came before ctx ended. The request may or may
//     not have been processed: the process may be slow, or alive and never
//     replying, or its node may be frozen or partitioned away. A ctx that
//     has already ended fails the call before anything is sent: the
//     request was not processed.
//   - ErrNotSerializable / ErrMessageTooLarge: the request cannot cross
//     nodes.
//   - ErrNodeStopped: this node is stopping or stopped.
func (n *Node) CallContext(ctx context.Context, to Ref, msg Message) (Message, error) {
	if n.stopping.Load() {
		return nil, ErrNodeStopped
	}
	// A caller that already gave up must not have its request processed,
	// nor get a reply by chance: the select below picks at random when
	// both the reply and the end of ctx are there.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: call %s: %w", ErrTimeout, to, err)
	}
	local := to.Node == n.name
	var c *pendingCall
	if local {
		c = n.calls.add("", &callRequest{msg: msg})
	} else {
		c = n.calls.add(to.Node, nil)
	}
	defer func() {
		if n.calls.remove(c.id) && c.req != nil && c.req.owner != nil {
			// Unanswered: the callee need not keep it for an answer.
			c.req.owner.abandon(c.req)
		}
	}()
	if n.stopping.Load() {
		// Stop may have failed the waiting calls before this one was added.
		return nil, ErrNodeStopped
	}
	if local {
		p := n.lookup(to.Name)
		if p == nil || !p.postCall(c.req) {
			return nil, fmt.Errorf("%w: %s", ErrNoProcess, to)
		}
	} else if err := n.sendRemote(to, opCall, c, msg); err != nil {
		return nil, err
	}
	select {
	case r := <-c.ch:
		if r.err != nil {
			return nil, fmt.Errorf("call %s: %w", to, r.err)
		}
		return r.msg, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: call %s: %w", ErrTimeout, to, ctx.Err())
	}
}

// Reply answers the call rt with msg, from any goroutine. A call is
// answered once: a reply for a call already answered (by an earlier reply,
// or with ErrProcessExited because the process that took it exited) or for
// a caller that stopped waiting is dropped. For a caller on another node
// msg needs a Codec.
func (n *Node) Reply(rt ReplyTo, msg Message) error {
	if rt.IsZero() {
		return fmt.Errorf("%w: empty ReplyTo", ErrNoProcess)
	}
	return n.reply(rt, msg, nil)
}

// reply answers rt with msg. req is its call if the replier knows it
// (Context.Reply).
//
// A caller on this node is answered by whoever takes its call from the
// call table: the reply, or the exit of the process that took it. The
// reply then settles the request in that process so that it is not kept.
//
// A caller on another node is answered if settling the request finds it
// unanswered; the request is found among the kept calls when req is nil.
// A ReplyTo this node does not list (a call taken on another node and
// handed here, or one answered already) is answered anyway: the caller's
// call table drops a second answer.
func (n *Node) reply(rt ReplyTo, msg Message, req *callRequest) error {
	if rt.Node == n.name {
		c := n.calls.take(rt.ID)
		if req == nil && c != nil {
			req = c.req
		}
		if req != nil && req.owner != nil {
			req.owner.settle(req)
		}
		if c != nil {
			c.ch <- callResult{msg: msg}
		}
		return nil
	}
	// Encode before settling: a reply that cannot be sent leaves the call
	// unanswered, for another reply or the process's exit to answer.
	buf, err := n.encodeReply(rt, msg)
	if buf != nil {
		defer putItemBuf(buf)
	}
	if err != nil {
		return err
	}
	if n.settleReply(rt, req) {
		n.linkFor(rt.Node).enqueue(*buf)
	}
	return nil
}

// settleReply settles the request of a call from another node; it
// reports whether to send the reply.
func (n *Node) settleReply(rt ReplyTo, req *callRequest) bool {
	if req == nil {
		if req = n.kept.take(rt); req == nil {
			return true
		}
	} else if req.kept {
		n.kept.remove(req)
	}
	return req.owner.settle(req)
}

// replyNotProcessed ends the call rt with ErrNoProcess: the process ref
// exited before it took the request.
func (n *Node) replyNotProcessed(rt ReplyTo, ref Ref) {
	if rt.Node == n.name {
		n.calls.deliver(rt.ID, callResult{err: fmt.Errorf("%w: %s exited before it took the request", ErrNoProcess, ref)})
		return
	}
	n.sendReplyErr(rt.Node, rt.ID, replyErrNoProcess)
}

// replyExited ends the call rt with ErrProcessExited: the process ref took
// the request and exited with reason before anyone answered it.
func (n *Node) replyExited(rt ReplyTo, ref Ref, reason Reason) {
	if rt.Node == n.name {
		n.calls.deliver(rt.ID, callResult{err: fmt.Errorf("%w: %s exited (%s) without answering the request", ErrProcessExited, ref, reason)})
		return
	}
	n.sendReplyErr(rt.Node, rt.ID, replyErrProcessExited)
}

// Exit tells the process ref to exit with reason (use ReasonKilled or your
// own detail); it stops after its current message. It returns ErrNoProcess
// for a local process that does not exist. For a process on another node
// it is best effort, and only a process spawned with AcceptRemoteExits
// there obeys it; the others drop it (see AcceptRemoteExits).
func (n *Node) Exit(ref Ref, reason Reason) error {
	if ref.Node != n.name {
		return n.sendControl(ref.Node, func(b []byte) []byte {
			b = append(b, opControl, ctlExit)
			b = wire.AppendString(b, ref.Name)
			return appendReason(b, reason)
		})
	}
	p := n.lookup(ref.Name)
	if p == nil || !p.kill(reason) {
		return fmt.Errorf("%w: %s", ErrNoProcess, ref)
	}
	return nil
}

// Timer is a message scheduled with Node.SendAfter.
type Timer struct {
	t *time.Timer
}

// Cancel stops the timer. It reports whether the message was still
// pending; false means it was already sent.
func (t *Timer) Cancel() bool { return t.t.Stop() }

// SendAfter sends msg to the process to after d. Processes timing
// themselves should prefer Context.SendAfter, whose cancel is exact.
func (n *Node) SendAfter(d time.Duration, to Ref, msg Message) *Timer {
	return &Timer{t: time.AfterFunc(d, func() { _ = n.Send(to, msg) })}
}

// sharedSystem returns the protoactor ActorSystem that every node of this
// OS process spawns its processes in. Nodes share it because a system is
// mostly fixed cost: its process registry alone takes about 3 MiB (1,024
// concurrent maps of 32 shards each), paid again by every node that a test,
// a benchmark or an embedding application runs in one process. Sharing is
// safe because a node uses the system only to spawn, find and stop its own
// actors, by the ids the registry hands out; names, routing and shutdown
// are the node's. Its logger is slog.Default() as of the first node, with
// protoactor's info and error records, routine for us, lowered to debug.
var sharedSystem = sync.OnceValue(func() *pa.ActorSystem {
	logger := slog.New(levelCapHandler{inner: slog.Default().Handler(), level: slog.LevelDebug}).With("lib", "protoactor")
	return pa.NewActorSystem(pa.WithLoggerFactory(func(*pa.ActorSystem) *slog.Logger { return logger }))
})

// levelCapHandler lowers every record of a noisy library to one level.
type levelCapHandler struct {
	inner slog.Handler
	level slog.Level
}

func (h levelCapHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return h.inner.Enabled(ctx, h.level)
}

func (h levelCapHandler) Handle(ctx context.Context, r slog.Record) error {
	r2 := slog.NewRecord(r.Time, h.level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool { r2.AddAttrs(a); return true })
	return h.inner.Handle(ctx, r2)
}

func (h levelCapHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelCapHandler{inner: h.inner.WithAttrs(as), level: h.level}
}

func (h levelCapHandler) WithGroup(name string) slog.Handler {
	return levelCapHandler{inner: h.inner.WithGroup(name), level: h.level}
}

// block is what Node.Block cut between this node and one peer.
type block struct{ out, in bool }

// Block cuts traffic between this node and peer, to test partitions: with
// out, everything this node sends to peer is silently dropped; with in,
// everything it receives from peer is. Connections stay open, as in a real
// partition, so only the failure detector notices; while the block lasts,
// a loss of peer (Disconnect) does not close the connections peer opened
// to this node, so peer is not told either. Block(peer, false,
// false) heals it. It is a fault-injection switch for tests and drills.
func (n *Node) Block(peer string, out, in bool) {
	if !out && !in {
		n.blocked.Delete(peer)
	} else {
		n.blocked.Store(peer, block{out: out, in: in})
	}
	some := false
	n.blocked.Range(func(_, _ any) bool { some = true; return false })
	n.anyBlocked.Store(some)
}

func (n *Node) blockedTo(peer string) (out, in bool) {
	if !n.anyBlocked.Load() {
		return false, false
	}
	v, ok := n.blocked.Load(peer)
	if !ok {
		return false, false
	}
	b := v.(block)
	return b.out, b.in
}
