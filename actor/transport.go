package actor

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// listener accepts peers' connections and reads their frames. Each
// connection has its own reader goroutine, which decodes and delivers the
// frames itself: frames from different peers are handled in parallel and
// with no queue hop.
type listener struct {
	node *Node
	ln   net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (l *listener) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.node.logger.Warn("accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.read(c)
	}
}

// maxFrameLen bounds a frame read from a peer, so a corrupt length cannot
// make us allocate gigabytes: the largest frame a well-behaved peer sends
// is one maximal message with its framing.
func (n *Node) maxFrameLen() int {
	return max(n.cfg.MaxFrameBytes, n.cfg.MaxMessageBytes) + 64<<10
}

// inConn is a connection a peer opened to us. Its fields belong to its
// reader goroutine.
type inConn struct {
	// c is the connection frames are read from: the TCP connection, or
	// the TLS connection over it (whose Close closes the TCP one at once).
	c net.Conn
	// peer is the node name the connection authenticated as, "" without
	// authentication; every frame on it must come from peer.
	peer string
	// refused: the connection was refused after its handshake (a frame
	// from another node than peer); nothing more is read from it.
	refused bool
	// link is the peer's link once the connection is listed there (see
	// link.inbound).
	link *link
	// framed: a frame arrived on it, delivered or dropped.
	framed bool
	// unread: bytes the reader took from the socket and has not handled
	// yet (a frame being delivered, and what its buffer holds beyond it).
	// Written by the reader, read by Node.Unread.
	unread atomic.Int64
}

// linkOf returns the link ic is listed on if it is src's (the usual
// case, which spares a lookup), or nil. It runs on ic's reader goroutine.
func (ic *inConn) linkOf(src string) *link {
	if ic == nil || ic.link == nil || ic.link.peer != src {
		return nil
	}
	return ic.link
}

func (l *listener) read(c net.Conn) {
	ic := &inConn{c: c}
	defer func() {
		if ic.link != nil {
			ic.link.release(ic)
		}
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
		c.Close()
		l.wg.Done()
	}()
	r := l.open(ic)
	if r == nil {
		return
	}
	limit := l.node.maxFrameLen()
	var hdr [4]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		size := int(binary.LittleEndian.Uint32(hdr[:]))
		if ic.link != nil {
			// Held after its header, so that a frame that arrives after
			// PauseReads returned is never delivered before the pause ends.
			if g := l.node.pauses.gate(ic.link.peer); g != nil {
				held := 0
				if r.Buffered() >= size {
					held = len(hdr) + r.Buffered()
				}
				ic.unread.Store(int64(held))
				<-g
			}
		}
		if size > limit {
			l.node.stats.droppedBadMessage.Add(1)
			l.node.badInput.log(l.node, "closed a connection sending an oversized frame", fmt.Errorf("%w: frame of %d bytes from %s exceeds %d", ErrBadMessage, size, c.RemoteAddr(), limit))
			return
		}
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		ic.unread.Store(int64(len(hdr) + size + r.Buffered()))
		// Decoders copy what they keep, so buf can be reused.
		l.node.receiveFrameOn(ic, buf)
		if ic.refused {
			return
		}
		ic.unread.Store(int64(readyBytes(r)))
		if cap(buf) > keepFrameBufferBytes {
			buf = nil
		}
	}
}

// open reads the preamble of a connection a peer opened and, if this node
// has credentials, authenticates the peer; it returns a reader for the
// connection's frames, or nil if the connection is to be closed unread.
// The preamble is read unbuffered: a TLS handshake may follow it.
func (l *listener) open(ic *inConn) *bufio.Reader {
	n, c := l.node, ic.c
	if n.auth != nil {
		// A peer that does not complete the handshake in time is refused,
		// so unauthenticated connections cannot pile up.
		if err := c.SetDeadline(time.Now().Add(n.cfg.ConnectTimeout)); err != nil {
			return nil
		}
	}
	var pre [len(preamble)]byte
	if _, err := io.ReadFull(c, pre[:]); err != nil {
		if n.auth != nil && !errors.Is(err, io.EOF) {
			// A connection closed at once (a port probe) is not worth a
			// line; one that stalled is.
			n.refuse(c, fmt.Errorf("no preamble: %w", err))
		}
		return nil
	}
	switch {
	case pre == preamble && n.auth == nil:
		return bufio.NewReaderSize(c, 64<<10)
	case pre == preamble:
		n.refuse(c, fmt.Errorf("%w: the peer opened with connection version %d (unauthenticated); this node requires version %d (authenticated)", ErrProtocolMismatch, connVersionPlain, connVersionAuth))
		return nil
	case pre == preambleAuth && n.auth == nil:
		n.refuse(c, fmt.Errorf("%w: the peer opened with connection version %d (authenticated); this node has no credentials and speaks version %d", ErrProtocolMismatch, connVersionAuth, connVersionPlain))
		return nil
	case pre != preambleAuth:
		// Not a rago node, or one of a connection version we do not speak.
		err := checkPreamble(pre)
		n.stats.countRefused(err)
		if n.auth == nil {
			n.stats.refusedConnections.Add(1)
			n.badInput.log(n, "rejected a connection", fmt.Errorf("from %s: %w", c.RemoteAddr(), err))
		} else {
			n.refuse(c, err)
		}
		return nil
	}
	conn, r, peer, err := n.auth.accept(n, c)
	if err != nil {
		n.refuse(c, err)
		return nil
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		return nil
	}
	ic.c, ic.peer = conn, peer
	return r
}

// refuse counts and logs (rate limited) a connection refused before its
// first frame; the caller closes it.
func (n *Node) refuse(c net.Conn, err error) {
	n.stats.refusedConnections.Add(1)
	n.authLog.log(n, "refused a connection", fmt.Errorf("%w: from %s: %w", ErrAuthentication, c.RemoteAddr(), err))
}

// readyBytes returns what r holds if that includes a whole frame, which the
// reader can handle without waiting for the network, and 0 otherwise: the
// start of a frame whose rest never comes (a partition cut it) is not a
// sign of a live peer.
func readyBytes(r *bufio.Reader) int {
	n := r.Buffered()
	if n < 4 {
		return 0
	}
	hdr, err := r.Peek(4)
	if err != nil || n < 4+int(binary.LittleEndian.Uint32(hdr)) {
		return 0
	}
	return n
}

// close stops accepting, closes every peer connection and waits for the
// readers to finish.
func (l *listener) close() {
	l.mu.Lock()
	l.closed = true
	l.ln.Close()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
