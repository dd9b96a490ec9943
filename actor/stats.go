package actor

import (
	"errors"
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
