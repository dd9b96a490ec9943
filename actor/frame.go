package actor

import (
	"fmt"

	"github.com/rago-raft/rago/internal/wire"
)

// Frames are what one node sends another over its connection, each
// preceded by its length as a 4-byte little-endian integer; a connection
// starts with the preamble "RAGO" and a connection version byte: 1 when
// frames follow at once, 2 when an authentication handshake comes first
// (auth.go). All of this is wire format: change it only by bumping
// frameVersion and keeping a decoder for the old version.
//
//	frame      = version:u8 src:string epoch:uvarint count:uvarint item*count
//
//	item       = op:u8 ...
//	  send     = op=1 target:string message
//	  call     = op=2 target:string callID:uvarint message
//	  reply    = op=3 callID:uvarint message
//	  replyErr = op=4 callID:uvarint code:u8
//	    code 1: no such process, or it exited before it took the request
//	    code 2: the request did not decode
//	    code 3: the process took the request and exited unanswered
//	    (a receiver takes any other code as a failed call of unknown
//	    outcome, so new codes need no new version)
//	  control  = op=5 ctl:u8 ...
//	    hello     ctl=1 incarnation:u64
//	    helloAck  ctl=2 incarnation:u64 helloEpoch:uvarint
//	    monitor   ctl=3 monitorID:uvarint watcher:string target:string
//	    demonitor ctl=4 monitorID:uvarint target:string
//	    down      ctl=5 monitorID:uvarint reason
//	    exit      ctl=6 target:string reason
//
//	message    = tag:uvarint version:u8 payload:bytes
//	reason     = kind:u8 detail:string
//
// string and bytes are a uvarint length followed by the bytes; u64 is
// little endian. src is the sending node's name. epoch counts the sender's
// connections to the receiver, so that a helloAck is matched to the
// connection whose hello it answers.
const (
	frameVersion = 1

	opSend     = 1
	opCall     = 2
	opReply    = 3
	opReplyErr = 4
	opControl  = 5

	ctlHello     = 1
	ctlHelloAck  = 2
	ctlMonitor   = 3
	ctlDemonitor = 4
	ctlDown      = 5
	ctlExit      = 6

	// Reply error codes.
	replyErrNoProcess     = 1
	replyErrBadCall       = 2
	replyErrProcessExited = 3
)

// preamble opens every unauthenticated connection (version 1), so that a
// stray client (an HTTP request to the wrong port) is rejected before
// anything is parsed.
var preamble = [5]byte{'R', 'A', 'G', 'O', connVersionPlain}

// checkPreamble tells a connection from a node of another frame version (a
// *VersionError) from one that is not a rago node at all.
func checkPreamble(pre [len(preamble)]byte) error {
	if [4]byte(pre[:4]) != [4]byte(preamble[:4]) {
		return fmt.Errorf("%w: no rago preamble: % x", ErrBadMessage, pre)
	}
	if v := pre[4]; v < connVersionPlain || v > connVersionAuth {
		return &VersionError{What: "connection", Got: v, Min: connVersionPlain, Max: connVersionAuth}
	}
	return nil
}

// appendFrameHeader appends what precedes a frame's items.
func appendFrameHeader(b []byte, src string, epoch uint64, count int) []byte {
	b = append(b, frameVersion)
	b = wire.AppendString(b, src)
	b = wire.AppendUvarint(b, epoch)
	return wire.AppendUvarint(b, uint64(count))
}

func appendMessage(b []byte, e *codecEntry, msg any) ([]byte, error) {
	b = wire.AppendUvarint(b, uint64(e.tag))
	b = append(b, e.version)
	// Reserve a fixed 4-byte-wide uvarint for the payload length so the
	// payload can be encoded in place, then patch the length: it saves
	// encoding into a scratch buffer and copying.
	lenAt := len(b)
	b = append(b, 0x80, 0x80, 0x80, 0x00)
	b, err := encodeMessage(e, b, msg)
	if err != nil {
		return nil, err
	}
	n := len(b) - lenAt - 4
	if n >= 1<<28 {
		return nil, fmt.Errorf("%w: %T encodes to %d bytes", ErrMessageTooLarge, msg, n)
	}
	b[lenAt] = byte(n) | 0x80
	b[lenAt+1] = byte(n>>7) | 0x80
	b[lenAt+2] = byte(n>>14) | 0x80
	b[lenAt+3] = byte(n >> 21)
	return b, nil
}

func appendReason(b []byte, r Reason) []byte {
	b = append(b, uint8(r.Kind))
	return wire.AppendString(b, r.Detail)
}

func readReason(r *wire.Reader) Reason {
	k := r.Uint8()
	if k > uint8(maxReasonKind) {
		r.Fail("unknown reason kind %d", k)
	}
	return Reason{Kind: ReasonKind(k), Detail: r.String()}
}

// rawMessage is a message as it sits in a frame, not yet decoded.
type rawMessage struct {
	tag     uint16
	version uint8
	payload []byte
}

func readRawMessage(r *wire.Reader) rawMessage {
	tag := r.Uvarint()
	if tag > 0xFFFF {
		r.Fail("message tag %d out of range", tag)
	}
	v := r.Uint8()
	return rawMessage{tag: uint16(tag), version: v, payload: r.Bytes()}
}

func (m rawMessage) decode() (any, error) { return decodeMessage(m.tag, m.version, m.payload) }

// item is one decoded frame item. Which fields are set depends on op and
// ctl; strings and payload alias the frame.
type item struct {
	op      uint8
	ctl     uint8
	target  string
	watcher string
	callID  uint64
	code    uint8
	id      uint64 // monitor id
	inc     uint64 // incarnation
	epoch   uint64 // hello epoch in helloAck
	reason  Reason
	msg     rawMessage
}

func readItem(r *wire.Reader) item {
	it := item{op: r.Uint8()}
	switch it.op {
	case opSend:
		it.target = r.String()
		it.msg = readRawMessage(r)
	case opCall:
		it.target = r.String()
		it.callID = r.Uvarint()
		it.msg = readRawMessage(r)
	case opReply:
		it.callID = r.Uvarint()
		it.msg = readRawMessage(r)
	case opReplyErr:
		it.callID = r.Uvarint()
		it.code = r.Uint8()
	case opControl:
		it.ctl = r.Uint8()
		switch it.ctl {
		case ctlHello:
			it.inc = r.Uint64()
		case ctlHelloAck:
			it.inc = r.Uint64()
			it.epoch = r.Uvarint()
		case ctlMonitor:
			it.id = r.Uvarint()
			it.watcher = r.String()
			it.target = r.String()
		case ctlDemonitor:
			it.id = r.Uvarint()
			it.target = r.String()
		case ctlDown:
			it.id = r.Uvarint()
			it.reason = readReason(r)
		case ctlExit:
			it.target = r.String()
			it.reason = readReason(r)
		default:
			r.Fail("unknown control item %d", it.ctl)
		}
	default:
		r.Fail("unknown item op %d", it.op)
	}
	return it
}

// frame is a decoded frame header; items are read one by one from items.
type frame struct {
	src   string
	epoch uint64
	count int
	items *wire.Reader
}

// decodeFrame checks a frame's header and positions the item reader at the
// first item.
func decodeFrame(b []byte) (frame, error) {
	r := wire.NewReader(b)
	if v := r.Uint8(); v != frameVersion && r.Err() == nil {
		return frame{}, &VersionError{What: "frame", Got: v, Min: frameVersion, Max: frameVersion}
	}
	f := frame{src: r.String(), epoch: r.Uvarint(), count: r.Len(2), items: r}
	if err := r.Err(); err != nil {
		return frame{}, fmt.Errorf("%w: frame header: %w", ErrBadMessage, err)
	}
	if f.src == "" {
		return frame{}, fmt.Errorf("%w: frame without source node", ErrBadMessage)
	}
	return f, nil
}
