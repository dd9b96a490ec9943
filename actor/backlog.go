package actor

import (
	"sync"
	"sync/atomic"
)

// Unread returns how many bytes peer has sent to this node that this node
// has not handled yet: waiting in the kernel's receive buffers of the
// connections peer opened to it (Linux only; elsewhere this part counts
// zero), or read by their readers and not yet delivered.
//
// A failure detector uses it to tell a silent peer from a busy node: when
// the goroutines reading peer's connections wait seconds to be scheduled,
// peer's heartbeats arrive late although peer is fine, and bytes from it
// pile up here meanwhile. It counts only connections whose hello arrived;
// it is cheap, but it makes a system call per connection on Linux, so it
// is meant for the moment a peer looks silent, not for every message.
func (n *Node) Unread(peer string) int {
	v, ok := n.links.Load(peer)
	if !ok {
		return 0
	}
	l := v.(*link)
	l.mu.Lock()
	conns := make([]*inConn, 0, len(l.inbound))
	for ic := range l.inbound {
		conns = append(conns, ic)
	}
	l.mu.Unlock()
	total := 0
	for _, ic := range conns {
		total += int(ic.unread.Load()) + kernelUnread(ic.c)
	}
	return total
}

// PauseReads stops (pause) or resumes this node's reading of the
// connections peer opened to it, as if their reader goroutines got no CPU:
// what peer sends waits in the sockets, and Unread counts it. Nothing is
// lost; resuming delivers it in order. It is a fault-injection switch for
// tests and drills, like Block. Node.Stop ends a pause.
func (n *Node) PauseReads(peer string, pause bool) {
	n.pauses.set(peer, pause)
}

// readPauses holds the peers whose connections PauseReads paused; any
// keeps the lookup off the readers' hot path when there are none.
type readPauses struct {
	any   atomic.Bool
	mu    sync.Mutex
	gates map[string]chan struct{} // peer -> closed when its pause ends
}

func (p *readPauses) set(peer string, pause bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pause {
		if p.gates == nil {
			p.gates = make(map[string]chan struct{})
		}
		if _, ok := p.gates[peer]; !ok {
			p.gates[peer] = make(chan struct{})
		}
	} else if g, ok := p.gates[peer]; ok {
		close(g)
		delete(p.gates, peer)
	}
	p.any.Store(len(p.gates) > 0)
}

// gate returns the channel a reader of a connection from peer waits on
// before its next frame, or nil if it need not wait.
func (p *readPauses) gate(peer string) <-chan struct{} {
	if !p.any.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gates[peer]
}

// endAll ends every pause, for a node that stops.
func (p *readPauses) endAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for peer, g := range p.gates {
		close(g)
		delete(p.gates, peer)
	}
	p.any.Store(false)
}
