package actor

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/rago-raft/rago/internal/wire"
)

// linkState is what a node knows of its connection to one peer.
type linkState uint8

const (
	// linkIdle: never tried.
	linkIdle linkState = iota
	// linkConnecting: a connection (attempt) exists and the peer has not
	// answered its hello yet.
	linkConnecting
	// linkUp: the peer answered the hello of the current connection.
	linkUp
	// linkDown: the last connection failed or broke.
	linkDown
)

// link carries everything this node sends to one peer over one outgoing
// TCP connection (the peer sends to us over its own).
//
// Senders encode items outside any lock, append them to the open frame
// under mu and wake the pump. The pump goroutine alone writes to the
// connection: it takes whatever frames accumulated, writes them through a
// buffer and flushes when it runs out, so frames batch up by themselves
// while a write is in progress. Bytes waiting for the pump count against
// Config.LinkQueueBytes; beyond it new items are dropped. A peer that stops
// reading fills its socket buffer, the pump blocks in Write, and the queue
// fills and drops: memory stays bounded.
//
// Each connection starts a new epoch whose first item is our hello. The
// link is up once the peer's helloAck for that epoch arrives (over the
// peer's own connection to us).
type link struct {
	node *Node
	peer string
	wake chan struct{}

	mu      sync.Mutex
	state   linkState
	epoch   uint64
	peerInc uint64         // the peer's incarnation, 0 until known
	frames  []pendingFrame // sealed frames, oldest first
	open    pendingFrame   // frame being filled
	queued  int            // item bytes in frames and open
	retryAt time.Time      // after a failure, no new attempt before this
	conn    net.Conn       // the current epoch's connection, once dialled
	busy    bool           // the pump holds a frame or unflushed bytes
	closed  bool

	wmu sync.Mutex // serializes writers: the pump, or a direct send
	wr  linkWriter // guarded by wmu
}

type pendingFrame struct {
	items []byte
	count int
}

func (n *Node) linkFor(peer string) *link {
	if v, ok := n.links.Load(peer); ok {
		return v.(*link)
	}
	l := &link{node: n, peer: peer, wake: make(chan struct{}, 1)}
	v, loaded := n.links.LoadOrStore(peer, l)
	if !loaded {
		go l.pump()
	}
	return v.(*link)
}

func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// enqueue queues one encoded item. It never blocks. It drops the item if
// the queue is full, the node is stopping, or the peer failed recently
// (within Config.ReconnectInterval).
func (l *link) enqueue(item []byte) {
	if l.tryDirect(item) {
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.node.stats.droppedLinkDown.Add(1)
		return
	}
	if l.state == linkIdle || l.state == linkDown {
		if time.Now().Before(l.retryAt) {
			l.mu.Unlock()
			l.node.stats.droppedLinkDown.Add(1)
			return
		}
		l.startConnectLocked()
	}
	if l.queued > 0 && l.queued+len(item) > l.node.cfg.LinkQueueBytes {
		l.mu.Unlock()
		l.node.stats.droppedQueueFull.Add(1)
		return
	}
	l.appendLocked(item)
	l.mu.Unlock()
	l.signal()
}

func (l *link) appendLocked(item []byte) {
	if l.open.count > 0 && len(l.open.items)+len(item) > l.node.cfg.MaxFrameBytes {
		l.frames = append(l.frames, l.open)
		l.open = pendingFrame{}
	}
	l.open.items = append(l.open.items, item...)
	l.open.count++
	l.queued += len(item)
}

// startConnectLocked begins a new epoch whose first item is our hello.
// The queue is empty here: it is cleared whenever the link goes down.
func (l *link) startConnectLocked() {
	l.state = linkConnecting
	l.epoch++
	hello := []byte{opControl, ctlHello}
	hello = wire.AppendUint64(hello, l.node.incarnation)
	l.appendLocked(hello)
}

// connect starts a connection attempt if there is none and returns the
// state from before: linkDown means the peer is known to be unreachable.
func (l *link) connect() linkState {
	l.mu.Lock()
	st := l.state
	if !l.closed && (st == linkIdle || st == linkDown) {
		l.startConnectLocked()
	}
	l.mu.Unlock()
	l.signal()
	return st
}

func (l *link) currentState() linkState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// lost marks the link down if epoch is still current (0 means whatever is
// current): queued items are dropped, the connection closed, and monitors
// told. Reconnection waits for Config.ReconnectInterval.
func (l *link) lost(epoch uint64, cause error) {
	l.mu.Lock()
	if (epoch != 0 && epoch != l.epoch) || (l.state != linkConnecting && l.state != linkUp) {
		l.mu.Unlock()
		return
	}
	l.markDownLocked()
	l.mu.Unlock()
	l.node.logger.Info("peer lost", "peer", l.peer, "cause", cause)
	l.node.onPeerLost(l.peer)
	l.node.notifyNode(l.peer, false)
}

func (l *link) markDownLocked() {
	dropped := l.open.count
	for _, f := range l.frames {
		dropped += f.count
	}
	l.node.stats.droppedLinkDown.Add(uint64(dropped))
	l.state = linkDown
	l.frames = nil
	l.open = pendingFrame{}
	l.queued = 0
	l.retryAt = time.Now().Add(l.node.cfg.ReconnectInterval)
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
}

// onHello handles a peer's hello: remember its incarnation (a new one means
// it restarted, so everything about the old one is lost) and answer.
func (l *link) onHello(inc, epoch uint64) {
	l.mu.Lock()
	restarted := l.peerInc != 0 && l.peerInc != inc
	l.peerInc = inc
	wasOpen := l.state == linkUp || l.state == linkConnecting
	if restarted && wasOpen {
		l.markDownLocked()
		l.retryAt = time.Time{} // it is back: answer at once
	}
	l.mu.Unlock()
	if restarted {
		l.node.logger.Info("peer restarted", "peer", l.peer)
		l.node.onPeerLost(l.peer)
		if wasOpen {
			l.node.notifyNode(l.peer, false)
		}
	}
	l.mu.Lock()
	if l.state == linkDown {
		// Hearing from the peer is proof it is reachable again.
		l.retryAt = time.Time{}
	}
	l.mu.Unlock()
	ack := []byte{opControl, ctlHelloAck}
	ack = wire.AppendUint64(ack, l.node.incarnation)
	ack = wire.AppendUvarint(ack, epoch)
	l.enqueue(ack)
}

// onHelloAck marks the link up when the peer answered this epoch's hello.
func (l *link) onHelloAck(inc, epoch uint64) {
	l.mu.Lock()
	if epoch != l.epoch || l.state != linkConnecting {
		l.mu.Unlock()
		return
	}
	restarted := l.peerInc != 0 && l.peerInc != inc
	l.peerInc = inc
	l.state = linkUp
	l.mu.Unlock()
	if restarted {
		l.node.onPeerLost(l.peer)
	}
	l.node.logger.Debug("peer up", "peer", l.peer)
	l.node.notifyNode(l.peer, true)
}

// take pops the next frame to write and the epoch it belongs to.
func (l *link) takeLocked() (pendingFrame, uint64, bool) {
	var f pendingFrame
	switch {
	case len(l.frames) > 0:
		f = l.frames[0]
		l.frames[0] = pendingFrame{}
		l.frames = l.frames[1:]
	case l.open.count > 0:
		f = l.open
		l.open = pendingFrame{}
	default:
		return f, 0, false
	}
	l.queued -= len(f.items)
	return f, l.epoch, true
}

// linkWriter is the writing end of a link's connection. Only the holder
// of link.wmu touches it: the pump, or a sender writing directly.
type linkWriter struct {
	conn  net.Conn
	epoch uint64
	out   []byte // bytes not yet written to conn, oldest first
}

// flushChunk is how many bytes the pump gathers before it writes.
const flushChunk = 64 << 10

// directWriteWait bounds how long a direct send may wait for the socket:
// a sender never waits longer than this for a slow peer, whatever is left
// goes to the pump.
const directWriteWait = 50 * time.Microsecond

// pump writes queued frames whenever it is woken.
func (l *link) pump() {
	for {
		<-l.wake
		l.wmu.Lock()
		closed := l.writeQueued()
		l.wmu.Unlock()
		if closed {
			return
		}
	}
}

// writeQueued writes every queued frame (and bytes a direct send left) and
// flushes; it reports whether the link is closed. The caller holds wmu.
func (l *link) writeQueued() bool {
	for {
		l.mu.Lock()
		if l.closed {
			l.busy = false
			l.mu.Unlock()
			if l.wr.conn != nil {
				_ = l.flush(time.Time{})
				l.wr.conn.Close()
				l.wr = linkWriter{}
			}
			return true
		}
		f, epoch, ok := l.takeLocked()
		if !ok {
			l.mu.Unlock()
			if len(l.wr.out) > 0 {
				if err := l.flush(time.Time{}); err != nil {
					l.failWrite(l.wr.epoch, err)
				}
			}
			l.mu.Lock()
			l.busy = len(l.frames) > 0 || l.open.count > 0
			l.mu.Unlock()
			return false
		}
		l.busy = true
		l.mu.Unlock()
		err := l.writeFrame(epoch, f)
		if err == nil && len(l.wr.out) >= flushChunk {
			err = l.flush(time.Time{})
		}
		if err != nil {
			l.node.stats.droppedLinkDown.Add(uint64(f.count))
			l.failWrite(epoch, err)
		}
	}
}

// tryDirect writes item at once from the sender's goroutine when nothing
// is queued and nobody is writing: a message on a quiet link then costs no
// hand-over to the pump, which is most of a round trip's latency. The
// write waits at most directWriteWait for the socket; what does not fit is
// left for the pump. It reports whether it took the item.
func (l *link) tryDirect(item []byte) bool {
	if !l.wmu.TryLock() {
		return false
	}
	defer l.wmu.Unlock()
	l.mu.Lock()
	if l.closed || l.state != linkUp || l.queued != 0 || l.busy || l.wr.conn == nil || l.wr.epoch != l.epoch || len(l.wr.out) > 0 {
		l.mu.Unlock()
		return false
	}
	epoch := l.epoch
	l.mu.Unlock()
	err := l.writeFrame(epoch, pendingFrame{items: item, count: 1})
	if err == nil {
		err = l.flush(time.Now().Add(directWriteWait))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The peer is slow: the pump finishes the write.
			l.mu.Lock()
			l.busy = true
			l.mu.Unlock()
			l.signal()
			return true
		}
	}
	if err != nil {
		l.node.stats.droppedLinkDown.Add(1)
		l.failWrite(epoch, err)
	}
	return true
}

// writeFrame appends one frame of epoch to the output, dialling first if
// the connection is missing or belongs to an older epoch. The caller holds
// wmu.
func (l *link) writeFrame(epoch uint64, f pendingFrame) error {
	if l.wr.conn == nil || l.wr.epoch != epoch {
		if l.wr.conn != nil {
			l.wr.conn.Close()
		}
		l.wr = linkWriter{out: l.wr.out[:0]}
		c, err := l.dial(epoch)
		if err != nil {
			return err
		}
		l.wr.conn, l.wr.epoch = c, epoch
		l.wr.out = append(l.wr.out, preamble[:]...)
	}
	at := len(l.wr.out)
	l.wr.out = appendFrame(append(l.wr.out, 0, 0, 0, 0), l.node.name, epoch, f.count, f.items)
	binary.LittleEndian.PutUint32(l.wr.out[at:], uint32(len(l.wr.out)-at-4))
	l.node.stats.framesSent.Add(1)
	l.node.stats.bytesSent.Add(uint64(len(f.items)))
	return nil
}

// flush writes the output, waiting for the socket until deadline (zero:
// as long as it takes). Bytes not written stay in the output. The caller
// holds wmu.
func (l *link) flush(deadline time.Time) error {
	if len(l.wr.out) == 0 {
		return nil
	}
	if err := l.wr.conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	n, err := l.wr.conn.Write(l.wr.out)
	l.wr.out = l.wr.out[:copy(l.wr.out, l.wr.out[n:])]
	if cap(l.wr.out) > 4<<20 && len(l.wr.out) == 0 {
		l.wr.out = nil // do not keep a huge frame's buffer for ever
	}
	return err
}

// failWrite drops the connection after a failed write or dial and marks
// the link lost. The caller holds wmu.
func (l *link) failWrite(epoch uint64, err error) {
	if l.wr.conn != nil {
		l.wr.conn.Close()
	}
	l.wr = linkWriter{}
	l.lost(epoch, err)
}

// dial opens the connection for epoch and watches it for loss.
func (l *link) dial(epoch uint64) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", l.peer, l.node.cfg.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed || l.epoch != epoch || l.state == linkDown {
		l.mu.Unlock()
		c.Close()
		return nil, errors.New("connection superseded")
	}
	l.conn = c
	l.mu.Unlock()
	go l.watch(c, epoch)
	return c, nil
}

// watch reads the outgoing connection, on which the peer never writes, to
// learn promptly that it closed: a killed peer's kernel resets it at once.
func (l *link) watch(c net.Conn, epoch uint64) {
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		err = io.EOF
	}
	l.lost(epoch, err)
}

// drain waits until the pump wrote and flushed everything queued, or the
// link went down, or timeout passed.
func (l *link) drain(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	l.signal()
	for time.Now().Before(deadline) {
		l.mu.Lock()
		done := l.closed || l.state == linkDown || l.state == linkIdle || l.queued == 0 && !l.busy
		l.mu.Unlock()
		if done {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.signal()
}
