package failuredetector

import (
	"fmt"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/wire"
)

// heartbeat is the only message detectors exchange. A detector sends one
// to each node it tracks every Config.Interval.
type heartbeat struct {
	// From is the sending node's name, where the answer goes.
	From string
	// Incarnation is random per start of the sending detector, never 0:
	// a new value means the peer restarted, and its old window says
	// nothing about the new process.
	Incarnation uint64
	// Seq grows with every heartbeat the sending detector sends (to any
	// node), from 1. A receiver drops one not above the last it took from
	// the same incarnation: it is a leftover of an older connection.
	Seq uint64
	// Watching tells the receiver that processes on the sender watch it,
	// so the receiver must keep heartbeating the sender even if nobody on
	// the receiver watches the sender. Watching false from a node nobody
	// watches tells the receiver it may stop.
	Watching bool
}

// Wire format of a heartbeat (codec tag 150, version 1). Changing it needs
// a new codec version that still decodes version 1.
//
//	from         string (uvarint length, 1..maxNodeNameLen bytes)
//	incarnation  u64, little endian, not 0
//	seq          uvarint, not 0
//	flags        u8: bit 0 = watching; other bits must be 0
const (
	heartbeatTag     = 150
	heartbeatVersion = 1

	flagWatching = 1 << 0
	knownFlags   = flagWatching

	// maxNodeNameLen bounds a node name (host:port) in a heartbeat; a
	// longer one is corrupt input, not a name.
	maxNodeNameLen = 1024
)

func init() {
	actor.MustRegister(actor.Codec[heartbeat]{
		Tag:     heartbeatTag,
		Version: heartbeatVersion,
		Encode:  appendHeartbeat,
		Decode:  decodeHeartbeat,
	})
}

func appendHeartbeat(b []byte, m heartbeat) []byte {
	b = wire.AppendString(b, m.From)
	b = wire.AppendUint64(b, m.Incarnation)
	b = wire.AppendUvarint(b, m.Seq)
	var flags uint8
	if m.Watching {
		flags |= flagWatching
	}
	return wire.AppendUint8(b, flags)
}

// decodeHeartbeat decodes a heartbeat, rejecting anything the encoder
// would not produce from a valid heartbeat: an unknown version, an empty
// or overlong name, a zero incarnation or sequence number, unknown flags
// or trailing bytes.
func decodeHeartbeat(version uint8, data []byte) (heartbeat, error) {
	if version != heartbeatVersion {
		return heartbeat{}, fmt.Errorf("%w: %w", wire.ErrMalformed, &actor.VersionError{What: "heartbeat", Tag: heartbeatTag,
			Got: version, Min: heartbeatVersion, Max: heartbeatVersion})
	}
	r := wire.NewReader(data)
	from := r.Bytes()
	inc := r.Uint64()
	seq := r.Uvarint()
	flags := r.Uint8()
	if err := r.Done(); err != nil {
		return heartbeat{}, fmt.Errorf("heartbeat: %w", err)
	}
	switch {
	case len(from) == 0 || len(from) > maxNodeNameLen:
		return heartbeat{}, fmt.Errorf("%w: heartbeat sender name of %d bytes, want 1..%d", wire.ErrMalformed, len(from), maxNodeNameLen)
	case inc == 0:
		return heartbeat{}, fmt.Errorf("%w: heartbeat incarnation 0", wire.ErrMalformed)
	case seq == 0:
		return heartbeat{}, fmt.Errorf("%w: heartbeat sequence number 0", wire.ErrMalformed)
	case flags&^knownFlags != 0:
		return heartbeat{}, fmt.Errorf("%w: heartbeat flags %#x has unknown bits", wire.ErrMalformed, flags)
	}
	// string() copies: data aliases a network buffer.
	return heartbeat{From: string(from), Incarnation: inc, Seq: seq, Watching: flags&flagWatching != 0}, nil
}
