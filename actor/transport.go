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
	c net.Conn
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
	r := bufio.NewReaderSize(c, 64<<10)
	var pre [len(preamble)]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return
	}
	if err := checkPreamble(pre); err != nil {
		l.node.stats.countRefused(err)
		l.node.badInput.log(l.node, "rejected a connection", fmt.Errorf("from %s: %w", c.RemoteAddr(), err))
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
		ic.unread.Store(int64(readyBytes(r)))
		if cap(buf) > keepFrameBufferBytes {
			buf = nil
		}
	}
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
