package actor

import (
	"fmt"
	"sync"

	"github.com/rago-raft/rago/internal/wire"
)

// monitorTable holds the monitors that cross nodes, and node monitors.
// Monitors between processes of this node live on the target process
// (proc.watchers) only.
//
// Exactly-once Down: every monitor has one entry in one place (the
// target's watchers, or out here for a remote target), and whoever removes
// the entry is the only one that may deliver its Down. The watcher drops a
// Down whose id it no longer owns (demonitored).
type monitorTable struct {
	node *Node

	mu sync.Mutex
	// out: monitors held by local processes on processes of a peer,
	// by peer and monitor id.
	out map[string]map[uint64]outMonitor
	// in: monitors held by a peer's processes on local processes, by
	// peer and the peer's monitor id, so a lost peer's entries can go.
	in map[string]map[uint64]*proc
	// nodeWatchers: local processes monitoring a peer.
	nodeWatchers map[string]map[*proc]struct{}
}

type outMonitor struct {
	watcher *proc
	target  Ref
}

func (t *monitorTable) init() {
	t.out = make(map[string]map[uint64]outMonitor)
	t.in = make(map[string]map[uint64]*proc)
	t.nodeWatchers = make(map[string]map[*proc]struct{})
}

func (n *Node) monitor(w *proc, target Ref) MonitorRef {
	id := n.nextID.Add(1)
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return MonitorRef{id}
	}
	w.owned.Set(id, target)
	w.mu.Unlock()

	if target.Node == n.name {
		t := n.lookup(target.Name)
		if t == nil {
			w.post(downSignal{id: id, ref: target, reason: NoProc})
			return MonitorRef{id}
		}
		t.mu.Lock()
		if t.dead {
			r := t.reason
			t.mu.Unlock()
			w.post(downSignal{id: id, ref: target, reason: r})
			return MonitorRef{id}
		}
		t.watchers.Set(watcherKey{node: n.name, id: id}, w)
		t.mu.Unlock()
		return MonitorRef{id}
	}

	n.mons.mu.Lock()
	m := n.mons.out[target.Node]
	if m == nil {
		m = make(map[uint64]outMonitor)
		n.mons.out[target.Node] = m
	}
	m[id] = outMonitor{watcher: w, target: target}
	n.mons.mu.Unlock()
	// If the peer cannot be reached, the failed connection attempt
	// reports it lost and onPeerLost delivers noconnection.
	_ = n.sendControl(target.Node, func(b []byte) []byte {
		b = append(b, opControl, ctlMonitor)
		b = wire.AppendUvarint(b, id)
		b = wire.AppendString(b, w.ref.Name)
		return wire.AppendString(b, target.Name)
	})
	return MonitorRef{id}
}

func (n *Node) demonitor(w *proc, id uint64) bool {
	w.mu.Lock()
	target, ok := w.owned.Delete(id)
	w.mu.Unlock()
	if !ok {
		return false
	}
	n.dropMonitor(w, id, target)
	return true
}

// dropMonitor removes the entry of monitor id wherever it lives.
func (n *Node) dropMonitor(w *proc, id uint64, target Ref) {
	if target.Node == n.name {
		if t := n.lookup(target.Name); t != nil {
			t.mu.Lock()
			t.watchers.Delete(watcherKey{node: n.name, id: id})
			t.mu.Unlock()
		}
		return
	}
	n.mons.mu.Lock()
	_, ok := n.mons.out[target.Node][id]
	delete(n.mons.out[target.Node], id)
	n.mons.mu.Unlock()
	if ok {
		_ = n.sendControl(target.Node, func(b []byte) []byte {
			b = append(b, opControl, ctlDemonitor)
			b = wire.AppendUvarint(b, id)
			return wire.AppendString(b, target.Name)
		})
	}
}

// notifyDown delivers the Down of one monitor on a process that exited:
// to a local watcher directly, to a remote one through its node.
func (n *Node) notifyDown(k watcherKey, w *proc, ref Ref, reason Reason) {
	if w != nil {
		w.post(downSignal{id: k.id, ref: ref, reason: reason})
		return
	}
	n.mons.mu.Lock()
	delete(n.mons.in[k.node], k.id)
	n.mons.mu.Unlock()
	_ = n.sendControl(k.node, func(b []byte) []byte {
		b = append(b, opControl, ctlDown)
		b = wire.AppendUvarint(b, k.id)
		return appendReason(b, reason)
	})
}

func (n *Node) monitorNode(w *proc, peer string) {
	w.mu.Lock()
	if w.dead {
		w.mu.Unlock()
		return
	}
	if w.nodeMons == nil {
		w.nodeMons = make(map[string]int)
	}
	w.nodeMons[peer]++
	first := w.nodeMons[peer] == 1
	w.mu.Unlock()
	if peer == n.name {
		w.post(nodeSignal{node: peer, up: true})
		return
	}
	if first {
		n.mons.mu.Lock()
		m := n.mons.nodeWatchers[peer]
		if m == nil {
			m = make(map[*proc]struct{})
			n.mons.nodeWatchers[peer] = m
		}
		m[w] = struct{}{}
		n.mons.mu.Unlock()
	}
	// Registered first, then the state read: a change in between may be
	// reported twice, which the watcher filters (proc.lastNodeState).
	switch n.linkFor(peer).connect() {
	case linkUp:
		w.post(nodeSignal{node: peer, up: true})
	case linkDown:
		w.post(nodeSignal{node: peer, up: false})
	}
}

// demonitorNode undoes one monitorNode and reports whether it was the
// last one for peer.
func (n *Node) demonitorNode(w *proc, peer string) bool {
	w.mu.Lock()
	c, ok := w.nodeMons[peer]
	if !ok {
		w.mu.Unlock()
		return false
	}
	if c > 1 {
		w.nodeMons[peer] = c - 1
		w.mu.Unlock()
		return false
	}
	delete(w.nodeMons, peer)
	w.mu.Unlock()
	n.dropNodeMonitor(w, peer)
	return true
}

func (n *Node) dropNodeMonitor(w *proc, peer string) {
	n.mons.mu.Lock()
	delete(n.mons.nodeWatchers[peer], w)
	if len(n.mons.nodeWatchers[peer]) == 0 {
		delete(n.mons.nodeWatchers, peer)
	}
	n.mons.mu.Unlock()
}

// notifyNode tells the node monitors of peer about a state change.
func (n *Node) notifyNode(peer string, up bool) {
	n.mons.mu.Lock()
	ws := make([]*proc, 0, len(n.mons.nodeWatchers[peer]))
	for w := range n.mons.nodeWatchers[peer] {
		ws = append(ws, w)
	}
	n.mons.mu.Unlock()
	for _, w := range ws {
		w.post(nodeSignal{node: peer, up: up})
	}
}

// watchedPeers lists the peers that have node monitors.
func (n *Node) watchedPeers() []string {
	n.mons.mu.Lock()
	defer n.mons.mu.Unlock()
	peers := make([]string, 0, len(n.mons.nodeWatchers))
	for p := range n.mons.nodeWatchers {
		peers = append(peers, p)
	}
	return peers
}

// onPeerLost runs when the connection to peer is lost (or the peer is
// found to have restarted): monitors on its processes fire with
// noconnection, its monitors on ours are forgotten.
func (n *Node) onPeerLost(peer string) {
	n.mons.mu.Lock()
	outs := n.mons.out[peer]
	delete(n.mons.out, peer)
	ins := n.mons.in[peer]
	delete(n.mons.in, peer)
	n.mons.mu.Unlock()
	for id, om := range outs {
		om.watcher.post(downSignal{id: id, ref: om.target, reason: NoConnection})
	}
	for id, t := range ins {
		t.mu.Lock()
		t.watchers.Delete(watcherKey{node: peer, id: id})
		t.mu.Unlock()
	}
}

// handleControl acts on a control item from peer src.
func (n *Node) handleControl(ic *inConn, src string, epoch uint64, it item) {
	switch it.ctl {
	case ctlHello:
		n.linkFor(src).onHello(ic, it.inc, epoch)
	case ctlHelloAck:
		n.linkFor(src).onHelloAck(it.inc, it.epoch)
	case ctlMonitor:
		n.onRemoteMonitor(src, it.id, it.target)
	case ctlDemonitor:
		n.mons.mu.Lock()
		delete(n.mons.in[src], it.id)
		n.mons.mu.Unlock()
		if t := n.lookup(it.target); t != nil {
			t.mu.Lock()
			t.watchers.Delete(watcherKey{node: src, id: it.id})
			t.mu.Unlock()
		}
	case ctlDown:
		n.mons.mu.Lock()
		om, ok := n.mons.out[src][it.id]
		delete(n.mons.out[src], it.id)
		n.mons.mu.Unlock()
		if ok {
			om.watcher.post(downSignal{id: it.id, ref: om.target, reason: it.reason})
		}
	case ctlExit:
		t := n.lookup(it.target)
		if t == nil {
			return
		}
		if !t.remoteExits {
			// Only the process's own node stops it (AcceptRemoteExits).
			n.stats.refusedExits.Add(1)
			n.authLog.log(n, "refused an exit signal from another node",
				fmt.Errorf("%s asked %s to exit (%s); it takes exit signals only from its own node", src, t.ref, it.reason))
			return
		}
		t.kill(it.reason)
	}
}

func (n *Node) onRemoteMonitor(src string, id uint64, target string) {
	reply := func(r Reason) {
		b := append([]byte{opControl, ctlDown}, wire.AppendUvarint(nil, id)...)
		n.linkFor(src).enqueue(appendReason(b, r))
	}
	t := n.lookup(target)
	if t == nil {
		reply(NoProc)
		return
	}
	t.mu.Lock()
	if t.dead {
		r := t.reason
		t.mu.Unlock()
		reply(r)
		return
	}
	t.watchers.Set(watcherKey{node: src, id: id}, nil)
	t.mu.Unlock()
	n.mons.mu.Lock()
	m := n.mons.in[src]
	if m == nil {
		m = make(map[uint64]*proc)
		n.mons.in[src] = m
	}
	m[id] = t
	n.mons.mu.Unlock()
	// Keep a connection to the watcher's node so that its loss is seen
	// and these entries do not outlive it.
	n.linkFor(src).connect()
}
