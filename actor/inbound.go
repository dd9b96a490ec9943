package actor

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rago-raft/rago/internal/wire"
)

// receiveFrame decodes one frame and delivers its items in order. Bad input
// is dropped and logged; it never panics into protoactor's reader.
func (n *Node) receiveFrame(b []byte) { n.receiveFrameOn(nil, b) }

// receiveFrameOn is receiveFrame for a frame read from ic (nil in tests).
func (n *Node) receiveFrameOn(ic *inConn, b []byte) {
	defer func() {
		if r := recover(); r != nil {
			n.stats.droppedBadMessage.Add(1)
			n.logger.Error("frame handling panicked", "panic", fmt.Sprint(r))
		}
	}()
	n.stats.framesReceived.Add(1)
	n.stats.bytesReceived.Add(uint64(len(b)))
	f, err := decodeFrame(b)
	if err != nil {
		n.stats.droppedBadMessage.Add(1)
		n.stats.countRefused(err)
		n.badInput.log(n, "dropped a malformed frame", err)
		return
	}
	if ic != nil && ic.peer != "" && f.src != ic.peer {
		// An authenticated node speaks only for itself.
		ic.refused = true
		n.stats.refusedConnections.Add(1)
		n.authLog.log(n, "closed a connection whose frame claims another node", fmt.Errorf("%w: connection authenticated as %s sent a frame from %s", ErrAuthentication, ic.peer, f.src))
		ic.c.Close()
		return
	}
	// Counted for the peer once the items were handled: the first
	// frame's hello is what makes the peer's link.
	defer n.countReceived(ic, f.src, f.count, len(b))
	first := ic != nil && !ic.framed
	if ic != nil {
		ic.framed = true
	}
	if _, in := n.blockedTo(f.src); in {
		n.stats.droppedLinkDown.Add(uint64(f.count))
		return
	}
	if ic != nil && ic.link == nil && !first {
		// Its hello never arrived (a partition test dropped it): list the
		// connection before handling its traffic, so that a loss from
		// now on closes it.
		if v, ok := n.links.Load(f.src); ok {
			v.(*link).adopt(ic)
		}
	}
	for i := 0; i < f.count; i++ {
		it := readItem(f.items)
		if err := f.items.Err(); err != nil {
			// Items are not self-delimiting past a bad one: the rest go.
			n.stats.droppedBadMessage.Add(uint64(f.count - i))
			n.badInput.log(n, "dropped the rest of a malformed frame", fmt.Errorf("%w: item %d of %d from %s: %w", ErrBadMessage, i, f.count, f.src, err))
			return
		}
		n.deliverItem(ic, f.src, f.epoch, it)
	}
	if err := f.items.Done(); err != nil {
		n.stats.droppedBadMessage.Add(1)
		n.badInput.log(n, "frame has trailing bytes", err)
	}
}

func (n *Node) deliverItem(ic *inConn, src string, epoch uint64, it item) {
	switch it.op {
	case opSend:
		p := n.lookup(it.target)
		if p == nil {
			n.stats.droppedNoProcess.Add(1)
			return
		}
		msg, err := it.msg.decode()
		if err != nil {
			n.stats.droppedBadMessage.Add(1)
			n.stats.countRefused(err)
			n.badInput.log(n, "dropped a message that does not decode", fmt.Errorf("for %s from %s: %w", it.target, src, err))
			return
		}
		rs := remoteSends.Get().(*remoteSend)
		rs.src, rs.authed, rs.msg = src, authenticated(ic), msg
		p.post(rs)
	case opCall:
		p := n.lookup(it.target)
		if p == nil {
			n.sendReplyErr(src, it.callID, replyErrNoProcess)
			return
		}
		msg, err := it.msg.decode()
		if err != nil {
			n.stats.droppedBadMessage.Add(1)
			n.stats.countRefused(err)
			n.badInput.log(n, "rejected a call that does not decode", fmt.Errorf("for %s from %s: %w", it.target, src, err))
			n.sendReplyErr(src, it.callID, replyErrBadCall)
			return
		}
		if !p.postCall(&callRequest{msg: msg, from: ReplyTo{Node: src, ID: it.callID}, authed: authenticated(ic)}) {
			// It exited since the lookup.
			n.sendReplyErr(src, it.callID, replyErrNoProcess)
		}
	case opReply:
		msg, err := it.msg.decode()
		if err != nil {
			// The caller gets the error; the reply itself is dropped.
			n.stats.droppedBadMessage.Add(1)
			n.stats.countRefused(err)
			n.calls.deliver(it.callID, callResult{err: err})
			return
		}
		n.calls.deliver(it.callID, callResult{msg: msg})
	case opReplyErr:
		var err error
		switch it.code {
		case replyErrNoProcess:
			err = ErrNoProcess
		case replyErrProcessExited:
			err = ErrProcessExited
		default:
			// replyErrBadCall, or a code from a newer peer: the call
			// failed there, how is unknown.
			err = ErrBadMessage
		}
		n.calls.deliver(it.callID, callResult{err: fmt.Errorf("%w (reported by %s)", err, src)})
	case opControl:
		n.handleControl(ic, src, epoch, it)
	}
}

// authenticated reports whether frames read from ic come from the node
// they name: ic authenticated as it, and receiveFrameOn refuses frames of
// other nodes on it.
func authenticated(ic *inConn) bool { return ic != nil && ic.peer != "" }

// sendRemote encodes one send or call item and queues it for the peer;
// call is the waiting call of a call item (nil for a send).
func (n *Node) sendRemote(to Ref, op uint8, call *pendingCall, msg Message) error {
	e, err := codecFor(msg)
	if err != nil {
		return err
	}
	buf := getItemBuf()
	defer putItemBuf(buf)
	b := append((*buf)[:0], op)
	b = wire.AppendString(b, to.Name)
	if op == opCall {
		b = wire.AppendUvarint(b, call.id)
	}
	head := len(b)
	b, err = appendMessage(b, e, msg)
	*buf = b
	if err != nil {
		return err
	}
	if size := len(b) - head; size > n.cfg.MaxMessageBytes {
		return fmt.Errorf("%w: %T encodes to %d bytes, limit %d", ErrMessageTooLarge, msg, size, n.cfg.MaxMessageBytes)
	}
	if call == nil {
		n.linkFor(to.Node).enqueue(b)
		return nil
	}
	if !n.linkFor(to.Node).enqueueCall(b, call) {
		return fmt.Errorf("%w: %s (request not sent)", ErrNodeDown, to.Node)
	}
	return nil
}

// encodeReply encodes a reply item into a pooled buffer; the caller puts
// back the buffer if it is not nil.
func (n *Node) encodeReply(rt ReplyTo, msg Message) (*[]byte, error) {
	e, err := codecFor(msg)
	if err != nil {
		return nil, err
	}
	buf := getItemBuf()
	b := append((*buf)[:0], opReply)
	b = wire.AppendUvarint(b, rt.ID)
	head := len(b)
	b, err = appendMessage(b, e, msg)
	if err != nil {
		return buf, err
	}
	*buf = b
	if size := len(b) - head; size > n.cfg.MaxMessageBytes {
		return buf, fmt.Errorf("%w: reply %T encodes to %d bytes, limit %d", ErrMessageTooLarge, msg, size, n.cfg.MaxMessageBytes)
	}
	return buf, nil
}

func (n *Node) sendReplyErr(peer string, callID uint64, code uint8) {
	b := []byte{opReplyErr}
	b = wire.AppendUvarint(b, callID)
	b = append(b, code)
	n.linkFor(peer).enqueue(b)
}

// sendControl queues a control item built by build.
func (n *Node) sendControl(peer string, build func(b []byte) []byte) error {
	if peer == n.name {
		return nil
	}
	buf := getItemBuf()
	defer putItemBuf(buf)
	*buf = build((*buf)[:0])
	n.linkFor(peer).enqueue(*buf)
	return nil
}

var itemBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func getItemBuf() *[]byte { return itemBufs.Get().(*[]byte) }

func putItemBuf(b *[]byte) {
	// Keep buffers up to the size of a full message of entries (1 MiB
	// by default), which busy links encode all the time, but not huge
	// ones: the pool keeps what it holds until the next GCs.
	if cap(*b) <= maxPooledItemBytes {
		itemBufs.Put(b)
	}
}

// maxPooledItemBytes is the largest item buffer the pool keeps.
const maxPooledItemBytes = 2 << 20

// Disconnect treats peer as lost, as if its connection had broken:
// monitors on its processes get Down with ReasonNoConnection, node
// monitors get NodeDown, calls waiting for its replies fail with
// ErrNodeLost, queued messages are dropped and the connection is closed.
// The connections peer opened to this node are closed too, so peer loses
// this node in the same way at once (unless Block cuts traffic with it:
// a partition closes nothing). The failure detector calls it for peers
// that are frozen or partitioned, which TCP does not notice. Messages
// sent to peer within Config.ReconnectInterval are dropped; the next one
// after reconnects, and so does a hello from peer.
func (n *Node) Disconnect(peer string) {
	if peer == n.name {
		return
	}
	n.linkFor(peer).lost(0, errors.New("disconnected"))
}

// reconnectLoop retries lost peers that have node monitors, so NodeUp
// follows when they return.
func (n *Node) reconnectLoop() {
	t := time.NewTicker(n.cfg.ReconnectInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stopped:
			return
		case <-t.C:
		}
		for _, peer := range n.watchedPeers() {
			l := n.linkFor(peer)
			if l.currentState() == linkDown {
				l.connect()
			}
		}
	}
}

// badInputLog rate-limits logs about bad input from peers, so a broken
// peer cannot flood the log.
type badInputLog struct {
	mu   sync.Mutex
	last time.Time
	n    int
}

func (b *badInputLog) log(n *Node, msg string, err error) {
	b.mu.Lock()
	now := time.Now()
	if now.Sub(b.last) < time.Second {
		b.n++
		b.mu.Unlock()
		return
	}
	suppressed := b.n
	b.last, b.n = now, 0
	b.mu.Unlock()
	n.logger.Warn(msg, "err", err, "suppressed", suppressed)
}
