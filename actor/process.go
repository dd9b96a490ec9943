package actor

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	pa "github.com/asynkron/protoactor-go/actor"

	"github.com/rago-raft/rago/internal/smallmap"
)

// Process is the behaviour of a process. Receive is called for one message
// at a time, in arrival order, on whatever goroutine the runtime picks; it
// may keep state in its receiver without locks. The first message is
// Started, the last Terminating. A panic in Receive ends the process with a
// crash reason.
//
// Receive must not block for long: messages wait behind it. ctx is valid
// only during the call.
type Process interface {
	Receive(ctx *Context, msg Message)
}

// Message is anything a process receives. Messages sent within a node are
// passed as they are; messages sent to another node need a Codec.
type Message = any

// ProcessFunc adapts a function to Process.
type ProcessFunc func(ctx *Context, msg Message)

// Receive calls f.
func (f ProcessFunc) Receive(ctx *Context, msg Message) { f(ctx, msg) }

// Started is the first message every process receives.
type Started struct{}

// Terminating is the last message a process receives, with the reason it
// is exiting. The process is already unregistered; messages sent now are
// still delivered elsewhere, but none will reach it.
type Terminating struct {
	Reason Reason
}

// Down tells a monitoring process that the process it monitored is gone.
// Each monitor produces exactly one Down, unless demonitored first.
type Down struct {
	Monitor MonitorRef
	Ref     Ref
	Reason  Reason
}

// NodeDown tells a node monitor that the connection to Node was lost or
// could not be established.
type NodeDown struct {
	Node string
}

// NodeUp tells a node monitor that Node is connected.
type NodeUp struct {
	Node string
}

// Internal mailbox messages.
type (
	// callRequest is a call in a mailbox. From post to dequeue it is also
	// in its process's list of queued calls (proc.calls), so that the
	// process answers it (ErrNoProcess) if it exits before it takes it.
	// From dequeue to its answer it is in the list of taken calls
	// (proc.taken), so that the process answers it (ErrProcessExited) if
	// it exits before anyone replies.
	callRequest struct {
		msg   Message // nil once handed to Receive
		from  ReplyTo
		owner *proc
		state callState // under owner.mu
		// abandoned: its caller (on this node) stopped waiting while it
		// was queued; once taken it is done at once. Under owner.mu.
		abandoned bool
		// kept: listed in the node's keptTable, because the process read
		// the ReplyTo of a call from another node and may hand it on.
		// Owned by the process goroutine.
		kept bool
		// authed: a call from another node that came over a connection
		// authenticated as from.Node (Context.SourceAuthenticated).
		authed     bool
		prev, next *callRequest // the list state says, under owner.mu
	}
	// remoteSend is a message another node sent, with the node it came
	// from (Context.SourceNode). The readers of connections take them from
	// remoteSends and the process puts them back as it takes the message
	// out, so that tagging each message with its source costs no
	// allocation.
	remoteSend struct {
		src    string
		authed bool
		msg    Message
	}
	timerFired struct {
		id uint64
	}
	downSignal struct {
		id     uint64
		ref    Ref
		reason Reason
	}
	nodeSignal struct {
		node string
		up   bool
	}
)

var remoteSends = sync.Pool{New: func() any { return new(remoteSend) }}

// callState is where a call is in its callee: each call goes from queued
// to taken (or straight to done) to done, under its process's mu, and
// whoever moves it to done answers it: exactly once.
type callState uint8

const (
	callQueued callState = iota // in proc.calls
	callTaken                   // in proc.taken: handed to Receive, unanswered
	callDone                    // answered, or being answered
)

// watcherKey names one monitor on its target: the watcher's node and the
// monitor id, which is unique on that node.
type watcherKey struct {
	node string
	id   uint64
}

// proc is one process: the protoactor actor that runs it, and the state
// other goroutines need (monitors, exit reason) under mu.
type proc struct {
	node     *Node
	ref      Ref
	behavior Process
	logger   *slog.Logger
	// remoteExits: exit signals from other nodes stop it
	// (AcceptRemoteExits); otherwise they are refused.
	remoteExits bool

	// target is set once the protoactor actor exists; post reads it.
	pid    *pa.PID
	target atomic.Pointer[paTarget]

	mu       sync.Mutex
	dead     bool
	reason   Reason
	exitWith *Reason // reason requested by Exit, first wins
	// watchers and owned are small maps: most processes are watched by a
	// few others and hold a few monitors, and a Go map with one entry costs
	// hundreds of bytes, a lot for an idle process on a node with
	// thousands of them.
	watchers smallmap.Map[watcherKey, *proc] // monitors on this process; nil value = remote watcher
	owned    smallmap.Map[uint64, Ref]       // monitors this process holds
	nodeMons map[string]int                  // nodes this process monitors (count of MonitorNode calls)
	calls    *callRequest                    // calls posted and not yet taken, newest first
	taken    *callRequest                    // calls taken and not yet answered, newest first
	done     chan struct{}                   // closed once fully terminated

	// Owned by the process goroutine.
	ctx       Context
	nodeState map[string]bool                  // last NodeUp (true) / NodeDown delivered, per node
	timers    smallmap.Map[uint64, timerEntry] // pending, usually one or two
	nextTimer uint64
	stopping  bool
}

type paTarget struct {
	p pa.Process
	// mailbox is the actor's mailbox, whose count of user messages (every
	// message of ours: protoactor's own Started and Stop are system
	// messages) is Node.MailboxDepth.
	mailbox pa.Mailbox
}

type timerEntry struct {
	t   *time.Timer
	msg Message
}

// post appends msg to the mailbox. It never blocks.
func (p *proc) post(msg any) {
	t := p.target.Load()
	if t == nil {
		// Spawn publishes the name before the protoactor actor exists and
		// holds mu until it does; wait for that.
		p.mu.Lock()
		t = p.target.Load()
		p.mu.Unlock()
		if t == nil {
			return // spawn failed; the name is being released
		}
	}
	t.p.SendUserMessage(p.pid, msg)
}

// postCall posts a call's request. If the process is already dead it
// does not, and returns false: the request will never be processed, and
// the caller must be told so. Otherwise the request is queued, and exactly
// one of the process taking it (Receive) and the process exiting first
// (terminate) answers it.
func (p *proc) postCall(req *callRequest) bool {
	p.mu.Lock()
	if p.dead {
		// Dead, or the spawn failed: no actor will ever take it.
		p.mu.Unlock()
		return false
	}
	req.owner = p
	req.state = callQueued
	pushCall(&p.calls, req)
	// Not dead under mu means spawn published the target (it holds mu
	// until it did or marked the process dead).
	t := p.target.Load()
	p.mu.Unlock()
	t.p.SendUserMessage(p.pid, req)
	return true
}

// pushCall puts req at the head of the list at head.
func pushCall(head **callRequest, req *callRequest) {
	req.prev = nil
	req.next = *head
	if *head != nil {
		(*head).prev = req
	}
	*head = req
}

// unlinkCall takes req out of the list at head.
func unlinkCall(head **callRequest, req *callRequest) {
	if req.prev != nil {
		req.prev.next = req.next
	} else {
		*head = req.next
	}
	if req.next != nil {
		req.next.prev = req.prev
	}
	req.prev, req.next = nil, nil
}

// takeCall removes req from the queued calls as the process dequeues it,
// into the taken calls if keep, or done. It returns false if req was
// already answered by terminate.
func (p *proc) takeCall(req *callRequest, keep bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.state != callQueued {
		return false
	}
	unlinkCall(&p.calls, req)
	if keep && !req.abandoned {
		req.state = callTaken
		pushCall(&p.taken, req)
	} else {
		req.state = callDone
	}
	return true
}

// settle marks a taken call answered. It reports whether it was still
// unanswered.
func (p *proc) settle(req *callRequest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.state != callTaken {
		return false
	}
	unlinkCall(&p.taken, req)
	req.state = callDone
	return true
}

// abandon lets go of a local call whose caller stopped waiting: nobody
// needs its answer, so the process does not keep it for one.
func (p *proc) abandon(req *callRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch req.state {
	case callQueued:
		req.abandoned = true // still processed, as a message
	case callTaken:
		unlinkCall(&p.taken, req)
		req.state = callDone
	}
}

// Receive implements protoactor's Actor.
func (p *proc) Receive(c pa.Context) {
	switch m := c.Message().(type) {
	case *pa.Started:
		p.ctx = Context{proc: p, pa: c, lifecycle: true}
		p.invoke(c, Started{}, nil)
		p.ctx.lifecycle = false
	case *pa.Stopping, *pa.Restarting, *pa.ReceiveTimeout:
		// Stopping: the Stopped that follows does the work. Restarting
		// cannot happen: panics never reach protoactor's supervision.
	case *pa.Stopped:
		p.terminate()
	case *callRequest:
		// Exiting after the current message: this one is not taken.
		taking := !p.stopping
		if !p.takeCall(m, taking) {
			return
		}
		if !taking {
			p.node.replyNotProcessed(m.from, p.ref)
			return
		}
		msg := m.msg
		m.msg = nil // a kept call holds on to its request no longer than Receive does
		p.invoke(c, msg, m)
	case *remoteSend:
		msg := m.msg
		p.ctx.src, p.ctx.srcAuthed = m.src, m.authed
		*m = remoteSend{}
		remoteSends.Put(m)
		p.invoke(c, msg, nil)
	case timerFired:
		if e, ok := p.timers.Delete(m.id); ok {
			p.invoke(c, e.msg, nil)
		}
	case downSignal:
		p.mu.Lock()
		_, ok := p.owned.Delete(m.id)
		p.mu.Unlock()
		if ok {
			p.invoke(c, Down{Monitor: MonitorRef{m.id}, Ref: m.ref, Reason: m.reason}, nil)
		}
	case nodeSignal:
		p.mu.Lock()
		_, ok := p.nodeMons[m.node]
		p.mu.Unlock()
		if last, seen := p.nodeState[m.node]; ok && seen && last == m.up {
			ok = false // a repeat of the state already reported
		}
		if ok {
			if p.nodeState == nil {
				p.nodeState = make(map[string]bool)
			}
			p.nodeState[m.node] = m.up
			if m.up {
				p.invoke(c, NodeUp{Node: m.node}, nil)
			} else {
				p.invoke(c, NodeDown{Node: m.node}, nil)
			}
		}
	default:
		p.invoke(c, m, nil)
	}
}

// invoke runs the behaviour for one message (req is its call, if it came
// in one), turning a panic into a crash exit so that protoactor's
// supervision never restarts a process behind its monitors' backs.
func (p *proc) invoke(c pa.Context, msg Message, req *callRequest) {
	if p.stopping {
		return
	}
	if req != nil {
		p.ctx.from = req.from
		p.ctx.req = req
		if req.from.Node != p.node.name {
			p.ctx.src, p.ctx.srcAuthed = req.from.Node, req.authed
		}
	}
	p.ctx.pa = c
	defer func() {
		if r := recover(); r != nil {
			p.logger.Error("process crashed", "process", p.ref.String(), "panic", fmt.Sprint(r), "message", fmt.Sprintf("%T", msg), "stack", string(debug.Stack()))
			p.exit(Reason{Kind: ReasonCrash, Detail: fmt.Sprint(r)})
		}
		p.ctx.from = ReplyTo{}
		p.ctx.req = nil
		p.ctx.src, p.ctx.srcAuthed = "", false
	}()
	p.behavior.Receive(&p.ctx, msg)
}

// exit ends the process from its own goroutine: no more messages reach the
// behaviour, and protoactor stops the actor after the current message.
func (p *proc) exit(r Reason) {
	p.mu.Lock()
	if p.exitWith == nil {
		p.exitWith = &r
	}
	p.mu.Unlock()
	p.stopping = true
	p.ctx.pa.Stop(p.pid)
}

// kill asks the process to exit from another goroutine. It returns false
// if the process is already dead.
func (p *proc) kill(r Reason) bool {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return false
	}
	if p.exitWith == nil {
		p.exitWith = &r
	}
	t := p.target.Load()
	p.mu.Unlock()
	if t != nil {
		t.p.SendSystemMessage(p.pid, &pa.Stop{})
	}
	return true
}

// terminate runs on the process goroutine once protoactor stopped the
// actor: unregister, give the behaviour its last message, release timers
// and monitors, and tell the watchers.
func (p *proc) terminate() {
	p.mu.Lock()
	reason := Normal
	if p.exitWith != nil {
		reason = *p.exitWith
	}
	p.dead = true
	p.reason = reason
	watchers := p.watchers
	p.watchers = smallmap.Map[watcherKey, *proc]{}
	owned := p.owned
	p.owned = smallmap.Map[uint64, Ref]{}
	nodeMons := p.nodeMons
	p.nodeMons = nil
	queued := p.calls
	p.calls = nil
	for req := queued; req != nil; req = req.next {
		req.state = callDone
	}
	p.mu.Unlock()

	// Free the name first: a supervisor reacting to Down may register it again.
	p.node.exiting.Store(p.ref.Name, p) // before the name is freed: Wait finds one or the other
	p.node.unregister(p)

	// The runtime drops what is still in the mailbox; the calls in it are
	// answered here, so their callers need not wait out their deadlines.
	// Calls posted from now on see dead and are answered by their poster.
	for req := queued; req != nil; {
		next := req.next
		req.prev, req.next = nil, nil
		p.node.replyNotProcessed(req.from, p.ref)
		req = next
	}

	p.stopping = false
	p.invokeLast(reason)
	p.stopping = true

	// The calls the process took and nobody answered, not even its
	// Terminating: no answer can come from it any more. A reply racing
	// with this (from a process the ReplyTo was handed to) either settled
	// its call before this takes the list, or finds it done and is
	// dropped; for a caller on this node, whichever of the two takes the
	// call-table entry first answers.
	p.mu.Lock()
	taken := p.taken
	p.taken = nil
	for req := taken; req != nil; req = req.next {
		req.state = callDone
	}
	p.mu.Unlock()
	for req := taken; req != nil; {
		next := req.next
		req.prev, req.next = nil, nil
		if req.kept {
			p.node.kept.remove(req)
		}
		p.node.replyExited(req.from, p.ref, reason)
		req = next
	}

	for _, e := range p.timers.All() {
		e.t.Stop()
	}
	p.timers.Clear()
	for id, target := range owned.All() {
		p.node.dropMonitor(p, id, target)
	}
	for node := range nodeMons {
		p.node.dropNodeMonitor(p, node)
	}
	for k, w := range watchers.All() {
		p.node.notifyDown(k, w, p.ref, reason)
	}
	close(p.done)
	p.node.exiting.CompareAndDelete(p.ref.Name, p)
}

func (p *proc) invokeLast(reason Reason) {
	defer func() {
		if r := recover(); r != nil {
			p.logger.Error("process crashed while terminating", "process", p.ref.String(), "panic", fmt.Sprint(r))
		}
	}()
	p.ctx.from = ReplyTo{}
	p.ctx.src, p.ctx.srcAuthed = "", false
	p.ctx.lifecycle = true
	p.behavior.Receive(&p.ctx, Terminating{Reason: reason})
}

// Context is what Receive gets besides the message: the process's own ref
// and the operations that act on behalf of the process. It is valid only
// during the Receive call it was passed to.
type Context struct {
	proc *proc
	pa   pa.Context
	from ReplyTo
	// req is the call being processed while it is unanswered by this
	// Context's Reply.
	req *callRequest
	// lifecycle is set while the runtime delivers the process's own
	// Started or Terminating (as opposed to one sent to it as data).
	lifecycle bool
	// src is the node the current message came from if it is another
	// node, "" otherwise; srcAuthed says whether its connection proved
	// that name.
	src       string
	srcAuthed bool
}

// Self returns the running process's ref.
func (c *Context) Self() Ref { return c.proc.ref }

// Node returns the node the process runs on.
func (c *Context) Node() *Node { return c.proc.node }

// Logger returns a logger that names the process.
func (c *Context) Logger() *slog.Logger { return c.proc.logger }

// SourceNode returns the node the current message came from: the sending
// node for a message or call that arrived from another node, and this
// node's name for everything else (sends and calls within the node,
// timers, Downs, NodeUp and NodeDown, Started and Terminating). Unlike a
// sender named inside a message, it cannot be forged by a node that
// authenticated (Node.Authenticated): each connection proves its node's
// name and a frame that claims another is refused. A process checks with
// it that a message claiming to be from a process of node X came from X.
func (c *Context) SourceNode() string {
	if c.src != "" {
		return c.src
	}
	return c.proc.node.name
}

// SourceAuthenticated reports whether SourceNode was proved: true for a
// message from this node, and for one from another node when it came over
// an authenticated connection (always, on a node with credentials; never
// without).
func (c *Context) SourceAuthenticated() bool { return c.src == "" || c.srcAuthed }

// Send sends msg to the process to; see Node.Send.
func (c *Context) Send(to Ref, msg Message) error { return c.proc.node.Send(to, msg) }

// ReplyTo returns the caller of the current message if it came from a call.
// The process may keep it and answer later with Node.Reply, or hand it to
// another process to answer; if the process exits while the call is still
// unanswered, the caller gets ErrProcessExited.
func (c *Context) ReplyTo() (ReplyTo, bool) {
	if req := c.req; req != nil && !req.kept && req.from.Node != c.proc.node.name {
		// Node.Reply may answer it from now on, from anywhere. (A local
		// caller's call is found through the call table.)
		req.kept = true
		c.proc.node.kept.add(req)
	}
	return c.from, !c.from.IsZero()
}

// Reply answers the call being processed. It returns ErrNoProcess if the
// current message is not a call. A call is answered once: a second reply
// (or a reply to a call already answered through its ReplyTo) is dropped.
func (c *Context) Reply(msg Message) error {
	if c.from.IsZero() {
		return fmt.Errorf("%w: the current message of %s is not a call", ErrNoProcess, c.proc.ref)
	}
	err := c.proc.node.reply(c.from, msg, c.req)
	if err == nil {
		c.req = nil
	}
	return err
}

// Monitor starts monitoring ref: the process gets exactly one Down for it,
// unless it calls Demonitor first.
func (c *Context) Monitor(ref Ref) MonitorRef { return c.proc.node.monitor(c.proc, ref) }

// SpawnMonitor starts p registered as name on this node, like
// Node.SpawnNamed, and monitors it from the calling process in the same
// step (Erlang's spawn_monitor). Monitor after SpawnNamed cannot tell a
// process that failed at once from one that never existed: if the process
// has already finished, its Down says noproc. With SpawnMonitor the Down
// always carries the exit reason.
func (c *Context) SpawnMonitor(name string, p Process, opts ...SpawnOption) (Ref, MonitorRef, error) {
	if err := validateName(name); err != nil {
		return Ref{}, MonitorRef{}, err
	}
	n, w := c.proc.node, c.proc
	ref := Ref{Name: name, Node: n.name}
	id := n.nextID.Add(1)
	w.mu.Lock()
	w.owned.Set(id, ref)
	w.mu.Unlock()
	// Full slice: the caller's array (a ChildSpec's Options) is not ours
	// to append into.
	opts = append(opts[:len(opts):len(opts)], func(sc *spawnConfig) { sc.watcher, sc.watchID = w, id })
	if _, err := n.spawn(name, p, opts); err != nil {
		w.mu.Lock()
		w.owned.Delete(id)
		w.mu.Unlock()
		return Ref{}, MonitorRef{}, err
	}
	return ref, MonitorRef{id}, nil
}

// Demonitor stops a monitor. After it returns the process will not receive
// that monitor's Down, even one already in its mailbox. It reports whether
// the monitor was still active.
func (c *Context) Demonitor(m MonitorRef) bool { return c.proc.node.demonitor(c.proc, m.id) }

// MonitorNode subscribes the process to node's connection state: NodeUp or
// NodeDown as soon as the state is known, then one message per change.
// Calls nest: each MonitorNode needs its DemonitorNode.
func (c *Context) MonitorNode(node string) { c.proc.node.monitorNode(c.proc, node) }

// DemonitorNode undoes one MonitorNode.
func (c *Context) DemonitorNode(node string) {
	if c.proc.node.demonitorNode(c.proc, node) {
		delete(c.proc.nodeState, node)
	}
}

// SendAfter delivers msg to the process itself after d, unless CancelTimer
// is called first. A cancelled timer's message is never delivered, even if
// the timer already fired.
func (c *Context) SendAfter(d time.Duration, msg Message) TimerRef {
	p := c.proc
	p.nextTimer++
	id := p.nextTimer
	t := time.AfterFunc(d, func() { p.post(timerFired{id: id}) })
	p.timers.Set(id, timerEntry{t: t, msg: msg})
	return TimerRef{id: id}
}

// CancelTimer cancels a timer started with SendAfter. It reports whether
// the timer was still pending (false if its message was already received).
func (c *Context) CancelTimer(t TimerRef) bool {
	e, ok := c.proc.timers.Delete(t.id)
	if !ok {
		return false
	}
	e.t.Stop()
	return true
}

// Stop ends the process normally after the current message. Messages still
// in its mailbox are dropped, except calls: each of those fails at once
// with ErrNoProcess (not processed), as does every call that arrives
// later. The calls it took and has not answered (the current one
// included) fail with ErrProcessExited once its Terminating returned.
func (c *Context) Stop() { c.proc.exit(Normal) }

// Exit ends the process with reason after the current message. Queued
// and taken calls fail as with Stop.
func (c *Context) Exit(reason Reason) { c.proc.exit(reason) }
