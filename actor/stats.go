package actor

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
)

// Stats counts what a node did since it started. Drops are messages that
// were accepted by Send and then not delivered.
type Stats struct {
	Spawned uint64
	// DroppedNoProcess: messages for a name with no process.
	DroppedNoProcess uint64
	// DroppedQueueFull: messages for a peer whose queue was full.
	DroppedQueueFull uint64
	// DroppedLinkDown: messages queued for a peer when it was lost.
	DroppedLinkDown uint64
	// DroppedBadMessage: items from peers that did not decode.
	DroppedBadMessage uint64
	// RefusedVersion: connections, frames and messages from peers refused
	// for a version this node does not speak (the frames and messages
	// are counted in DroppedBadMessage too, the connections in
	// RefusedConnections).
	RefusedVersion uint64
	FramesSent     uint64
	FramesReceived uint64
	BytesSent      uint64
	BytesReceived  uint64
	// RefusedConnections: connections peers opened to this node that it
	// closed before decoding a frame (no rago preamble, another version
	// or security mode, a failed authentication or a handshake that timed
	// out), or later because a frame claimed another source node than the
	// one the connection authenticated as.
	RefusedConnections uint64
	// FailedHandshakes: connections this node opened that it gave up
	// during the handshake: the peer failed to authenticate itself,
	// refused us, or did not finish in Config.ConnectTimeout. Always 0
	// without credentials.
	FailedHandshakes uint64
	// RefusedExits: exit signals from other nodes (Node.Exit there)
	// dropped because their target does not take them (AcceptRemoteExits).
	RefusedExits uint64
}

type nodeStats struct {
	spawned, droppedNoProcess, droppedQueueFull, droppedLinkDown, droppedBadMessage atomic.Uint64
	refusedVersion                                                                  atomic.Uint64
	framesSent, framesReceived, bytesSent, bytesReceived                            atomic.Uint64
	refusedConnections, failedHandshakes, refusedExits                              atomic.Uint64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	s := &n.stats
	return Stats{
		Spawned:           s.spawned.Load(),
		DroppedNoProcess:  s.droppedNoProcess.Load(),
		DroppedQueueFull:  s.droppedQueueFull.Load(),
		DroppedLinkDown:   s.droppedLinkDown.Load(),
		DroppedBadMessage: s.droppedBadMessage.Load(),
		RefusedVersion:    s.refusedVersion.Load(),
		FramesSent:        s.framesSent.Load(),
		FramesReceived:    s.framesReceived.Load(),
		BytesSent:         s.bytesSent.Load(),
		BytesReceived:     s.bytesReceived.Load(),

		RefusedConnections: s.refusedConnections.Load(),
		FailedHandshakes:   s.failedHandshakes.Load(),
		RefusedExits:       s.refusedExits.Load(),
	}
}

// countRefused counts err in RefusedVersion if it is a version refusal.
func (s *nodeStats) countRefused(err error) {
	if errors.Is(err, ErrUnsupportedVersion) {
		s.refusedVersion.Add(1)
	}
}

// PeerStats counts the traffic between this node and one peer node since
// this node first had to do with it (sent to it, or heard its hello).
// "Messages" are the items frames carry: sends, calls, replies and the
// node's own control items (hellos, monitors, Downs, exit signals), as in
// Stats.
type PeerStats struct {
	// Node is the peer's name.
	Node string
	// Up reports whether the connection this node sends over is up: the
	// peer answered its hello and it has not been lost since.
	Up bool
	// MessagesSent counts the items written to the peer's connection.
	MessagesSent uint64
	// FramesSent counts the frames they went in.
	FramesSent uint64
	// BytesSent counts their encoded bytes, frame headers excluded (as
	// Stats.BytesSent).
	BytesSent uint64
	// MessagesDropped counts items for the peer that were accepted (by
	// Send, a reply, a monitor...) and never written: its queue was full,
	// the link was down or was lost with them queued, or a partition test
	// blocked the traffic. They are in Stats.DroppedQueueFull and
	// Stats.DroppedLinkDown too.
	MessagesDropped uint64
	// MessagesReceived counts the items in frames read from the peer,
	// whether or not they could be delivered (Stats counts what was
	// dropped on receipt).
	MessagesReceived uint64
	// FramesReceived counts those frames.
	FramesReceived uint64
	// BytesReceived counts their bytes, length prefixes excluded (as
	// Stats.BytesReceived).
	BytesReceived uint64
}

// peerCounters are a link's PeerStats counters. The pump updates the sent
// ones once per frame, the connection readers the received ones once per
// frame, senders the dropped one per drop: no lock, and nothing per
// message on the way out or in.
type peerCounters struct {
	framesSent, messagesSent, bytesSent             atomic.Uint64
	framesReceived, messagesReceived, bytesReceived atomic.Uint64
	messagesDropped                                 atomic.Uint64
}

// droppedLinkDown counts n items for the peer dropped because the link
// was down, lost, closed or blocked.
func (l *link) droppedLinkDown(n uint64) {
	l.node.stats.droppedLinkDown.Add(n)
	l.stats.messagesDropped.Add(n)
}

// droppedQueueFull counts an item for the peer dropped for a full queue.
func (l *link) droppedQueueFull() {
	l.node.stats.droppedQueueFull.Add(1)
	l.stats.messagesDropped.Add(1)
}

// countReceived counts a frame of count items and size bytes read from
// src on ic (nil in tests) for src's link. A node that never sent a hello
// has no link, and its frames are counted only in Stats: a link is made
// per peer, never per frame.
func (n *Node) countReceived(ic *inConn, src string, count, size int) {
	l := ic.linkOf(src)
	if l == nil {
		v, ok := n.links.Load(src)
		if !ok {
			return
		}
		l = v.(*link)
	}
	l.stats.framesReceived.Add(1)
	l.stats.messagesReceived.Add(uint64(count))
	l.stats.bytesReceived.Add(uint64(size))
}

func (l *link) peerStats() PeerStats {
	s := &l.stats
	return PeerStats{
		Node:             l.peer,
		Up:               linkState(l.stateSeen.Load()) == linkUp,
		MessagesSent:     s.messagesSent.Load(),
		FramesSent:       s.framesSent.Load(),
		BytesSent:        s.bytesSent.Load(),
		MessagesDropped:  s.messagesDropped.Load(),
		MessagesReceived: s.messagesReceived.Load(),
		FramesReceived:   s.framesReceived.Load(),
		BytesReceived:    s.bytesReceived.Load(),
	}
}

// PeerStats returns the counters of every peer node this node has a link
// with, sorted by node name. A link is made the first time the node sends
// to a peer or hears a peer's hello, and kept for the node's life, so the
// list is bounded by the peers it ever had to do with. Safe from any
// goroutine; it takes no lock that senders take.
func (n *Node) PeerStats() []PeerStats {
	var out []PeerStats
	n.links.Range(func(_, v any) bool {
		out = append(out, v.(*link).peerStats())
		return true
	})
	slices.SortFunc(out, func(a, b PeerStats) int { return strings.Compare(a.Node, b.Node) })
	return out
}
