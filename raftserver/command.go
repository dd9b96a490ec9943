package raftserver

import (
	"fmt"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/wire"
	"github.com/rago-raft/rago/raftserver/core"
)

// The data of a normal log entry starts with a kind byte (wire format):
//
//	user command     0  data...
//	session command  1  client:u64 seq:uvarint responded:uvarint data...
//	observation      2  obs:u8 ...
//	  process down   1  name:string node:string reason:string
//	  node down      2  node:string
//	  node up        3  node:string
//	  timer fired    4  name:string
const (
	cmdUser        = 0
	cmdSession     = 1
	cmdObservation = 2

	obsProcessDown = 1
	obsNodeDown    = 2
	obsNodeUp      = 3
	obsTimer       = 4
)

// frameUserCommand returns data encoded as a user command and framed as
// a normal log entry (see core.Entry.Framed): EntryNormal's byte, then
// the command's kind byte, then data. The entry's data is b[1:].
func frameUserCommand(data []byte) []byte {
	b := make([]byte, 2+len(data))
	b[0] = byte(core.EntryNormal)
	b[1] = cmdUser
	copy(b[2:], data)
	return b
}

func encodeSessionCommand(client, seq, responded uint64, data []byte) []byte {
	b := make([]byte, 0, 1+8+20+len(data))
	b = append(b, cmdSession)
	b = wire.AppendUint64(b, client)
	b = wire.AppendUvarint(b, seq)
	b = wire.AppendUvarint(b, responded)
	return append(b, data...)
}

func encodeObservation(o Observation) []byte {
	b := []byte{cmdObservation}
	switch o := o.(type) {
	case ProcessDown:
		b = append(b, obsProcessDown)
		b = wire.AppendString(b, o.Ref.Name)
		b = wire.AppendString(b, o.Ref.Node)
		b = wire.AppendString(b, o.Reason)
	case NodeDown:
		b = append(b, obsNodeDown)
		b = wire.AppendString(b, o.Node)
	case NodeUp:
		b = append(b, obsNodeUp)
		b = wire.AppendString(b, o.Node)
	case TimerFired:
		b = append(b, obsTimer)
		b = wire.AppendString(b, o.Name)
	}
	return b
}

// decodedCommand is a normal entry's data, taken apart.
type decodedCommand struct {
	kind      uint8
	data      []byte // user data (user and session commands)
	client    uint64
	seq       uint64
	responded uint64
	obs       Observation
}

func decodeCommand(b []byte) (decodedCommand, error) {
	if len(b) == 0 {
		return decodedCommand{}, fmt.Errorf("%w: empty command entry", ErrStorage)
	}
	d := decodedCommand{kind: b[0]}
	r := wire.NewReader(b[1:])
	switch d.kind {
	case cmdUser:
		d.data = b[1:]
		return d, nil
	case cmdSession:
		d.client, d.seq, d.responded = r.Uint64(), r.Uvarint(), r.Uvarint()
		d.data = r.Raw(r.Remaining())
	case cmdObservation:
		switch r.Uint8() {
		case obsProcessDown:
			d.obs = ProcessDown{Ref: actor.Ref{Name: r.String(), Node: r.String()}, Reason: r.String()}
		case obsNodeDown:
			d.obs = NodeDown{Node: r.String()}
		case obsNodeUp:
			d.obs = NodeUp{Node: r.String()}
		case obsTimer:
			d.obs = TimerFired{Name: r.String()}
		default:
			r.Fail("unknown observation")
		}
	default:
		return d, fmt.Errorf("%w: unknown command kind %d", ErrStorage, d.kind)
	}
	if err := r.Done(); err != nil {
		return d, fmt.Errorf("%w: command entry: %w", ErrStorage, err)
	}
	return d, nil
}
