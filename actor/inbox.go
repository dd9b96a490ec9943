package actor

import (
	"context"
	"fmt"
	"time"
)

// Inbox is a process whose messages arrive on a Go channel, for code that
// is not itself a process: tests, command-line tools, clients waiting for
// notifications. Messages wait in the process's mailbox while the channel
// is full, so a slow reader never loses any.
type Inbox struct {
	node *Node
	ref  Ref
	ch   chan Message
	done chan struct{}
}

type inboxOp struct {
	fn   func(ctx *Context)
	done chan struct{}
}

// NewInbox spawns an inbox process under a generated name.
func (n *Node) NewInbox() (*Inbox, error) {
	ib := &Inbox{node: n, ch: make(chan Message, 256), done: make(chan struct{})}
	ref, err := n.Spawn(ProcessFunc(ib.receive))
	if err != nil {
		return nil, err
	}
	ib.ref = ref
	return ib, nil
}

func (ib *Inbox) receive(ctx *Context, msg Message) {
	if ctx.lifecycle {
		if _, ok := msg.(Terminating); ok {
			close(ib.done)
		}
		return
	}
	switch m := msg.(type) {
	case inboxOp:
		m.fn(ctx)
		close(m.done)
	default:
		select {
		case ib.ch <- msg:
		case <-ib.done:
		}
	}
}

// do runs fn on the inbox's process, where process-owned state lives.
func (ib *Inbox) do(fn func(ctx *Context)) {
	op := inboxOp{fn: fn, done: make(chan struct{})}
	if err := ib.node.Send(ib.ref, op); err != nil {
		return
	}
	select {
	case <-op.done:
	case <-ib.done:
	}
}

// Ref returns the inbox's process ref; send to it to reach the channel.
func (ib *Inbox) Ref() Ref { return ib.ref }

// C returns the channel messages arrive on.
func (ib *Inbox) C() <-chan Message { return ib.ch }

// Receive waits for the next message until ctx ends.
func (ib *Inbox) Receive(ctx context.Context) (Message, error) {
	select {
	case m := <-ib.ch:
		return m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: inbox %s: %w", ErrTimeout, ib.ref, ctx.Err())
	}
}

// ReceiveTimeout waits up to d for the next message.
func (ib *Inbox) ReceiveTimeout(d time.Duration) (Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return ib.Receive(ctx)
}

// Monitor monitors ref on behalf of the inbox; its Down arrives on C.
func (ib *Inbox) Monitor(ref Ref) MonitorRef {
	var m MonitorRef
	ib.do(func(ctx *Context) { m = ctx.Monitor(ref) })
	return m
}

// Demonitor stops a monitor started with Monitor.
func (ib *Inbox) Demonitor(m MonitorRef) bool {
	var ok bool
	ib.do(func(ctx *Context) { ok = ctx.Demonitor(m) })
	return ok
}

// MonitorNode subscribes the inbox to node's NodeUp / NodeDown.
func (ib *Inbox) MonitorNode(node string) { ib.do(func(ctx *Context) { ctx.MonitorNode(node) }) }

// DemonitorNode undoes one MonitorNode.
func (ib *Inbox) DemonitorNode(node string) { ib.do(func(ctx *Context) { ctx.DemonitorNode(node) }) }

// Close stops the inbox process. Messages not yet received are dropped.
func (ib *Inbox) Close() {
	_ = ib.node.Exit(ib.ref, Normal)
	<-ib.done
}
