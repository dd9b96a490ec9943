package actor

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
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
// under mu if it is free and otherwise push them on the link's inbox (a
// lock-free stack, see push), and wake the pump. The pump goroutine alone
// writes to the connection: it moves the inbox into frames, writes
// whatever frames accumulated through a buffer and flushes when it runs
// out, so frames batch up by themselves while a write is in progress.
// Bytes waiting for the pump count against Config.LinkQueueBytes; beyond it
// new items are dropped. A peer that stops reading fills its socket buffer,
// the pump blocks in Write, and the queue fills and drops: memory stays
// bounded.
//
// Senders never wait for each other. When every send waited for mu, a
// node whose thousand servers all sent to one peer formed a convoy on it:
// once waiters queued for over a millisecond, Go's mutex handed it from
// waiter to waiter, one scheduling round each, and on a loaded machine a
// message (and the failure detector's heartbeats with it) waited seconds
// for the lock. Only a call's request waits for mu, so that its epoch is
// recorded in order with markDownLocked. Whoever holds mu moves the inbox
// into frames before it appends its own item, which keeps every sender's
// items in the order it sent them.
//
// Each connection starts a new epoch whose first item is our hello. The
// link is up once the peer's helloAck for that epoch arrives (over the
// peer's own connection to us).
//
// The connection state with a peer is one thing in both directions, as in
// Erlang: the link also lists the connections the peer opened to us that
// we heard from (inbound), and losing the link closes them. The peer's
// link sees its connection end at once and is lost too, so its calls to
// us (whose replies we now drop for Config.ReconnectInterval) end with
// ErrNodeLost and its monitors of our processes (which we forget) fire
// with noconnection, instead of waiting for deadlines or for ever.
type link struct {
	node *Node
	peer string
	wake chan struct{}

	// inbox: items pushed by senders (a pushStack), which the pump (or a
	// call's sender, under mu) moves into the frames; inboxBytes and
	// inboxItems count them (see push).
	inbox      pushStack[[]byte]
	inboxBytes atomic.Int64
	inboxItems atomic.Int64

	mu    sync.Mutex
	state linkState
	// stateSeen mirrors state for connection readers, which must not wait
	// for mu (see connect): a reader that queued for it behind a busy
	// node's senders fell minutes behind.
	stateSeen atomic.Uint32
	epoch     uint64
	peerInc   uint64         // the peer's incarnation, 0 until known
	frames    []pendingFrame // sealed frames, oldest first
	open      pendingFrame   // frame being filled
	spare     []byte         // a written frame's items buffer, emptied, for the next open frame
	queued    int            // item bytes in frames and open
	retryAt   time.Time      // after a failure, no new attempt before this
	conn      net.Conn       // the current epoch's connection, once dialled
	busy      bool           // the pump holds a frame or unflushed bytes
	closed    bool
	// The log of losses: the first loss of an outage is logged at Info;
	// the failed attempts that follow (a dial refused every
	// ReconnectInterval while the peer is down) are summed up at
	// intervals that double up to lostLogMax, and logged at Debug.
	upSinceLost  bool          // the link came up since the last loss logged
	lostLoggedAt time.Time     // when the last line about this outage was logged
	lostEvery    time.Duration // how long after it the next one may be
	lostRepeats  int           // losses since that line
	outageSince  time.Time     // when this outage began
	// inbound: the peer's connections to us that delivered its hello (or,
	// when a partition test dropped that, some later frame) since the
	// last loss; a loss closes them. Connections heard from after a loss
	// belong to the peer's next epoch and are kept.
	inbound map[*inConn]struct{}

	// stats: the traffic with the peer (Node.PeerStats), updated per
	// frame by the pump and the readers, and per drop. Last, away from
	// the fields every send touches.
	stats peerCounters
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

// enqueue queues one encoded item. It never blocks and never waits for
// other senders (see link). It drops the item if the queue is full; the
// pump drops it if the node is stopping or the peer failed recently
// (within Config.ReconnectInterval).
func (l *link) enqueue(item []byte) {
	if out, _ := l.node.blockedTo(l.peer); out {
		// A partition loses messages without telling the sender.
		l.droppedLinkDown(1)
		return
	}
	if !l.mu.TryLock() {
		l.push(item) // never wait for whoever holds mu
		return
	}
	// What was pushed before goes first: a sender's items stay in order.
	l.takeInboxLocked()
	ok := l.enqueueLocked(item, nil)
	l.mu.Unlock()
	if ok {
		l.signal()
	}
}

// enqueueCall queues a call's request and records in c the epoch it was
// queued in, under the lock that orders it with markDownLocked, so the
// loss of that connection ends the call and a loss before it does not.
//
// It reports whether the item was queued: false means it was dropped at
// once, so it certainly never reaches the peer.
func (l *link) enqueueCall(item []byte, c *pendingCall) bool {
	if out, _ := l.node.blockedTo(l.peer); out {
		// Its call ends when the connection is given up (Node.Disconnect).
		l.droppedLinkDown(1)
		l.mu.Lock()
		if l.state == linkConnecting || l.state == linkUp {
			c.epoch.Store(l.epoch)
		}
		l.mu.Unlock()
		return true
	}
	l.mu.Lock()
	// What was pushed before goes first: a sender's items stay in order.
	l.takeInboxLocked()
	ok := l.enqueueLocked(item, c)
	l.mu.Unlock()
	if ok {
		l.signal()
	}
	return ok
}

// push puts a copy of item on the inbox and wakes the pump. It is a
// compare-and-swap loop on the inbox's head: a sender that loses a race
// retries at once instead of sleeping until its turn (see link).
func (l *link) push(item []byte) {
	n := int64(len(item))
	if queued := l.inboxBytes.Add(n); queued > n && queued > int64(l.node.cfg.LinkQueueBytes) {
		l.inboxBytes.Add(-n)
		l.droppedQueueFull()
		return
	}
	l.inboxItems.Add(1)
	l.inbox.push(append([]byte(nil), item...))
	l.signal()
}

// takeInboxLocked moves the inbox into the frames, oldest first, as
// enqueueLocked would have queued each item when it was pushed.
func (l *link) takeInboxLocked() {
	var bytes, count int64
	l.inbox.takeAll(func(b []byte) {
		bytes += int64(len(b))
		count++
		l.enqueueLocked(b, nil)
	})
	l.inboxBytes.Add(-bytes)
	l.inboxItems.Add(-count)
}

// enqueueLocked queues item under mu. It drops the item if the link is
// closed, or down and not to be retried yet, or its queue is full. c, if
// not nil, is the call whose request item is.
func (l *link) enqueueLocked(item []byte, c *pendingCall) bool {
	if l.closed {
		l.droppedLinkDown(1)
		return false
	}
	if l.state == linkIdle || l.state == linkDown {
		if time.Now().Before(l.retryAt) {
			l.droppedLinkDown(1)
			return false
		}
		l.startConnectLocked()
	}
	if l.queued > 0 && l.queued+len(item) > l.node.cfg.LinkQueueBytes {
		l.droppedQueueFull()
		return false
	}
	l.appendLocked(item)
	if c != nil {
		c.epoch.Store(l.epoch)
	}
	return true
}

func (l *link) appendLocked(item []byte) {
	if l.open.count > 0 && len(l.open.items)+len(item) > l.node.cfg.MaxFrameBytes {
		l.frames = append(l.frames, l.open)
		l.open = pendingFrame{}
	}
	if l.open.items == nil && l.spare != nil {
		// Reuse the buffer of a frame already written: under load a
		// frame fills up to MaxFrameBytes, and growing a new buffer to
		// that size by appends was a third of a node's allocation.
		l.open.items, l.spare = l.spare, nil
	}
	l.open.items = append(l.open.items, item...)
	l.open.count++
	l.queued += len(item)
}

// startConnectLocked begins a new epoch whose first item is our hello.
// The queue is empty here: it is cleared whenever the link goes down.
func (l *link) startConnectLocked() {
	l.setStateLocked(linkConnecting)
	l.epoch++
	hello := []byte{opControl, ctlHello}
	hello = wire.AppendUint64(hello, l.node.incarnation)
	l.appendLocked(hello)
}

func (l *link) setStateLocked(s linkState) {
	l.state = s
	l.stateSeen.Store(uint32(s))
}

// connect starts a connection attempt if there is none and returns the
// state from before: linkDown means the peer is known to be unreachable.
// A link that is up or connecting is left alone without taking mu: this
// runs on connection readers (for every monitor request), which must not
// queue behind the node's senders.
func (l *link) connect() linkState {
	if st := linkState(l.stateSeen.Load()); st == linkUp || st == linkConnecting {
		return st
	}
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
	lostEpoch, callErr := l.markDownLocked()
	logLoss := l.noteLossLocked(cause)
	l.mu.Unlock()
	logLoss()
	l.node.calls.failNode(l.peer, lostEpoch, callErr)
	l.node.onPeerLost(l.peer)
	l.node.notifyNode(l.peer, false)
}

// lostLogMax bounds the interval between two lines about one outage.
const lostLogMax = time.Minute

// noteLossLocked decides how to log a loss, and returns the logging to do
// once mu is released: the first loss of an outage at Info, and then,
// while the peer stays unreachable, one Info line at doubling intervals
// that counts the attempts (each is logged at Debug). A node whose peer is
// down for an hour logs a dozen lines about it, not thousands.
func (l *link) noteLossLocked(cause error) func() {
	now := time.Now()
	logger, peer := l.node.logger, l.peer
	if l.upSinceLost || l.lostLoggedAt.IsZero() {
		l.upSinceLost = false
		l.outageSince, l.lostLoggedAt, l.lostEvery, l.lostRepeats = now, now, time.Second, 0
		return func() { logger.Info("peer lost", "peer", peer, "cause", cause) }
	}
	l.lostRepeats++
	if now.Sub(l.lostLoggedAt) < l.lostEvery {
		return func() { logger.Debug("peer still unreachable", "peer", peer, "cause", cause) }
	}
	attempts, since := l.lostRepeats, now.Sub(l.outageSince).Round(time.Millisecond)
	l.lostLoggedAt, l.lostRepeats = now, 0
	l.lostEvery = min(2*l.lostEvery, lostLogMax)
	return func() {
		logger.Info("peer still unreachable", "peer", peer, "cause", cause, "attempts", attempts, "since", since)
	}
}

// markDownLocked ends the current epoch. It returns that epoch and the
// error its waiting calls end with (callTable.failNode): ErrNodeDown if
// the epoch never had a connection, so none of its requests was sent, and
// ErrNodeLost if some may have been.
func (l *link) markDownLocked() (uint64, error) {
	callErr := ErrNodeDown
	if l.conn != nil {
		callErr = ErrNodeLost
	}
	dropped := l.open.count
	for _, f := range l.frames {
		dropped += f.count
	}
	l.droppedLinkDown(uint64(dropped))
	l.setStateLocked(linkDown)
	l.frames = nil
	l.open = pendingFrame{}
	l.queued = 0
	l.retryAt = time.Now().Add(l.node.cfg.ReconnectInterval)
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
	l.closeInboundLocked()
	return l.epoch, callErr
}

// closeInboundLocked closes the peer's connections to us, so that the
// peer learns of the loss. A partition test (Node.Block) keeps every
// connection open, as a real partition does; the connections stay listed
// for a loss after it heals.
func (l *link) closeInboundLocked() {
	if len(l.inbound) == 0 {
		return
	}
	if out, in := l.node.blockedTo(l.peer); out || in {
		return
	}
	for ic := range l.inbound {
		ic.c.Close()
	}
	clear(l.inbound)
}

// adoptLocked lists ic as a connection from the peer. It runs on ic's
// reader goroutine, which owns ic.link.
func (l *link) adoptLocked(ic *inConn) {
	if l.inbound == nil {
		l.inbound = make(map[*inConn]struct{})
	}
	l.inbound[ic] = struct{}{}
	ic.link = l
}

// adopt lists ic as a connection from the peer that delivered traffic but
// no hello (a partition test dropped it).
func (l *link) adopt(ic *inConn) {
	l.mu.Lock()
	l.adoptLocked(ic)
	l.mu.Unlock()
}

// release unlists ic once its reader ends.
func (l *link) release(ic *inConn) {
	l.mu.Lock()
	delete(l.inbound, ic)
	l.mu.Unlock()
}

// onHello handles a peer's hello, which came on ic (nil in tests):
// remember its incarnation (a new one means it restarted, so everything
// about the old one is lost), list ic among the peer's connections, and
// answer.
func (l *link) onHello(ic *inConn, inc, epoch uint64) {
	if ic != nil && ic.link != nil && ic.link != l {
		ic.link.release(ic) // a connection that changed its name
		ic.link = nil
	}
	l.mu.Lock()
	if ic != nil {
		// Not closed by a restart's loss below: it is the new
		// incarnation's. Listed under the same lock as the hello is
		// handled, so a loss closes it if and only if the loss came
		// after the hello.
		delete(l.inbound, ic)
	}
	restarted := l.peerInc != 0 && l.peerInc != inc
	l.peerInc = inc
	// Only a link the old incarnation acknowledged is known to lead to it.
	// A connection still waiting for its helloAck reached the new one (the
	// old one no longer holds the address) or will break by itself: its
	// requests stand, and its ack says which (see onHelloAck). Failing
	// them would turn every call made while a peer restarts into
	// ErrNodeLost.
	wasOpen := l.state == linkUp
	var (
		lostEpoch uint64
		callErr   error
	)
	if restarted && wasOpen {
		lostEpoch, callErr = l.markDownLocked()
		l.retryAt = time.Time{} // it is back: answer at once
	} else if restarted {
		l.closeInboundLocked() // the old incarnation's, if any are left
	}
	if ic != nil {
		l.adoptLocked(ic)
	}
	l.mu.Unlock()
	if restarted {
		l.node.logger.Info("peer restarted", "peer", l.peer)
		if wasOpen {
			l.node.calls.failNode(l.peer, lostEpoch, callErr)
		}
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
	l.setStateLocked(linkUp)
	back := !l.upSinceLost && !l.lostLoggedAt.IsZero()
	outage := time.Since(l.outageSince).Round(time.Millisecond)
	l.upSinceLost = true
	l.mu.Unlock()
	if back {
		l.node.logger.Info("peer back", "peer", l.peer, "after", outage)
	}
	if restarted {
		// Calls of earlier epochs ended when their connections did; this
		// epoch's requests went to the new incarnation and stand.
		l.node.onPeerLost(l.peer)
	}
	l.node.logger.Debug("peer up", "peer", l.peer)
	l.node.notifyNode(l.peer, true)
}

// recycle keeps a written frame's items buffer for the next open frame,
// unless it is too large to keep for ever.
func (l *link) recycle(items []byte) {
	if cap(items) > keepFrameBufferBytes {
		return
	}
	l.mu.Lock()
	if l.spare == nil {
		l.spare = items[:0]
	}
	l.mu.Unlock()
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

// pump is the only writer of the link's connections.
func (l *link) pump() {
	var (
		conn      net.Conn
		connEpoch uint64
		w         *bufio.Writer
		hdr       []byte
	)
	fail := func(epoch uint64, err error) {
		if conn != nil {
			conn.Close()
		}
		conn, w = nil, nil
		l.lost(epoch, err)
	}
	for {
		<-l.wake
		for {
			l.mu.Lock()
			l.takeInboxLocked()
			if l.closed {
				l.busy = false
				l.mu.Unlock()
				if conn != nil {
					if w != nil {
						_ = w.Flush()
					}
					conn.Close()
				}
				return
			}
			f, epoch, ok := l.takeLocked()
			if !ok {
				l.mu.Unlock()
				if w != nil {
					if err := w.Flush(); err != nil {
						fail(connEpoch, err)
					}
				}
				l.mu.Lock()
				l.busy = len(l.frames) > 0 || l.open.count > 0
				l.mu.Unlock()
				break
			}
			l.busy = true
			l.mu.Unlock()

			if conn == nil || connEpoch != epoch {
				if conn != nil {
					conn.Close()
					conn, w = nil, nil
				}
				c, err := l.dial(epoch)
				if err != nil {
					l.droppedLinkDown(uint64(f.count))
					fail(epoch, err)
					continue
				}
				conn, connEpoch, w = c, epoch, bufio.NewWriterSize(c, 64<<10)
			}
			// The header goes out first and the items after it from their
			// own buffer, which is not copied into a frame buffer: the
			// bufio.Writer passes large items straight to the connection.
			hdr = appendFrameHeader(append(hdr[:0], 0, 0, 0, 0), l.node.name, epoch, f.count)
			binary.LittleEndian.PutUint32(hdr, uint32(len(hdr)-4+len(f.items)))
			_, err := w.Write(hdr)
			if err == nil {
				_, err = w.Write(f.items)
			}
			if err != nil {
				l.droppedLinkDown(uint64(f.count))
				fail(epoch, err)
				continue
			}
			l.recycle(f.items)
			l.node.stats.framesSent.Add(1)
			l.node.stats.bytesSent.Add(uint64(len(f.items)))
			l.stats.framesSent.Add(1)
			l.stats.messagesSent.Add(uint64(f.count))
			l.stats.bytesSent.Add(uint64(len(f.items)))
		}
	}
}

// dial opens the connection for epoch (its preamble written and, with
// credentials, its handshake done) and watches it for loss.
func (l *link) dial(epoch uint64) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", l.peer, l.node.cfg.ConnectTimeout)
	if err != nil {
		return nil, err
	}
	c, err := l.node.openConn(raw, l.peer)
	if err != nil {
		raw.Close()
		if errors.Is(err, ErrAuthentication) {
			l.node.stats.failedHandshakes.Add(1)
			l.node.authLog.log(l.node, "gave up a connection whose handshake failed", err)
		}
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
		pushed := l.inboxItems.Load()
		l.mu.Lock()
		// Pushed items are the pump's to send or drop, whatever the state.
		done := l.closed || pushed == 0 && (l.state == linkDown || l.state == linkIdle || l.queued == 0 && !l.busy)
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
