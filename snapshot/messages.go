package snapshot

import (
	"encoding/binary"
	"fmt"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/wire"
)

// Message tags of this package's codecs (the range 170-189 belongs to
// snapshot). Wire format: never reuse or renumber.
const (
	chunkTag    = 170
	chunkAckTag = 171
)

// MaxChunkBytes bounds the data of one Chunk, well inside the actor
// transport's default message limit (16 MiB).
const MaxChunkBytes = 8 << 20

// Chunk carries bytes [Offset, Offset+len(Data)) of a snapshot file from
// the leader's server to a follower's. Every chunk names its transfer and
// its snapshot in full, so the receiver can start, resume or replace a
// transfer from any chunk. The header is 52 bytes; Data is typically 1
// MiB.
type Chunk struct {
	// Transfer identifies one sending attempt (a Sender); never 0. A
	// sender's later attempts get larger ids (NewTransferID).
	Transfer uint64
	// Index, Term and ID identify the snapshot file (Info); Size is the
	// whole file's length in bytes.
	Index, Term, ID uint64
	Size            uint64
	// Offset of Data in the file.
	Offset uint64
	// CRC is CRC32C over the six fields above (little endian u64 each) and
	// Data; see (*Chunk).Checksum. A chunk whose CRC does not match is
	// rejected with a resend request.
	CRC  uint32
	Data []byte
}

// AckStatus says what a ChunkAck means. Wire format: one byte.
type AckStatus uint8

const (
	// AckProgress: the receiver holds bytes [0, Next) of the transfer's
	// snapshot (not yet durable: durability comes with the install).
	AckProgress AckStatus = 1
	// AckResend: the receiver cannot use the chunk (a gap before it, a bad
	// checksum, or a transfer it does not know) and wants bytes from Next
	// on. Next is 0 for a fresh start, or where a partly received copy of
	// the same snapshot ends (resume).
	AckResend AckStatus = 2
	// AckInstalled: the snapshot is durable and visible on the receiver.
	// The transfer is over.
	AckInstalled AckStatus = 3
	// AckRejected: the receiver will not take this snapshot; Reason says
	// why. The transfer is over.
	AckRejected AckStatus = 4
)

// String names the status.
func (s AckStatus) String() string {
	switch s {
	case AckProgress:
		return "progress"
	case AckResend:
		return "resend"
	case AckInstalled:
		return "installed"
	case AckRejected:
		return "rejected"
	default:
		return fmt.Sprintf("status(%d)", uint8(s))
	}
}

// ChunkAck is a receiver's answer to a Chunk, from the follower's server to
// the leader's. It names the transfer and snapshot it answers.
type ChunkAck struct {
	Transfer    uint64       // the transfer of the chunk answered
	Index, Term uint64       // its snapshot, for the server's routing and logs
	Next        uint64       // next byte offset the receiver wants
	Status      AckStatus    // what the ack means
	Reason      RejectReason // with AckRejected only, else 0
}

// chunkHeaderBytes is the fixed part of an encoded Chunk before Data's
// length prefix.
const chunkHeaderBytes = 6*8 + 4

// Checksum returns the CRC the chunk should carry.
func (c *Chunk) Checksum() uint32 {
	var h [48]byte
	binary.LittleEndian.PutUint64(h[0:], c.Transfer)
	binary.LittleEndian.PutUint64(h[8:], c.Index)
	binary.LittleEndian.PutUint64(h[16:], c.Term)
	binary.LittleEndian.PutUint64(h[24:], c.ID)
	binary.LittleEndian.PutUint64(h[32:], c.Size)
	binary.LittleEndian.PutUint64(h[40:], c.Offset)
	return crcUpdate(crc(h[:]), c.Data)
}

// check validates the chunk's fields against each other (not its CRC).
func (c *Chunk) check() error {
	switch {
	case c.Transfer == 0:
		return fmt.Errorf("%w: chunk of transfer 0", ErrInvalid)
	case c.Index == 0 || c.ID == 0:
		return fmt.Errorf("%w: chunk of snapshot index %d id %x", ErrInvalid, c.Index, c.ID)
	case c.Size < minFileBytes:
		return fmt.Errorf("%w: chunk of a %d-byte snapshot (smallest is %d)", ErrInvalid, c.Size, minFileBytes)
	case len(c.Data) == 0 || len(c.Data) > MaxChunkBytes:
		return fmt.Errorf("%w: chunk of %d bytes outside [1, %d]", ErrInvalid, len(c.Data), MaxChunkBytes)
	case c.Offset > c.Size || uint64(len(c.Data)) > c.Size-c.Offset:
		return fmt.Errorf("%w: chunk [%d, +%d) beyond size %d", ErrInvalid, c.Offset, len(c.Data), c.Size)
	}
	return nil
}

// AppendBinary appends the chunk's encoding (the codec's payload): six u64
// and a u32, little endian, then Data with a uvarint length. It lets a
// server embed a chunk in a message of its own.
func (c *Chunk) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUint64(b, c.Transfer)
	b = wire.AppendUint64(b, c.Index)
	b = wire.AppendUint64(b, c.Term)
	b = wire.AppendUint64(b, c.ID)
	b = wire.AppendUint64(b, c.Size)
	b = wire.AppendUint64(b, c.Offset)
	b = wire.AppendUint32(b, c.CRC)
	return wire.AppendBytes(b, c.Data), nil
}

// DecodeChunk decodes what AppendBinary wrote. It copies Data (the only
// copy a chunk's data gets on its way in) and rejects malformed input and
// inconsistent fields with an error wrapping wire.ErrMalformed; it does
// not check the CRC (the receiver does, to ask for a resend).
func DecodeChunk(data []byte) (Chunk, error) {
	r := wire.NewReader(data)
	c := Chunk{
		Transfer: r.Uint64(),
		Index:    r.Uint64(),
		Term:     r.Uint64(),
		ID:       r.Uint64(),
		Size:     r.Uint64(),
		Offset:   r.Uint64(),
		CRC:      r.Uint32(),
	}
	d := r.Bytes()
	if err := r.Done(); err != nil {
		return Chunk{}, err
	}
	if len(data) != chunkHeaderBytes+wire.UvarintLen(uint64(len(d)))+len(d) {
		return Chunk{}, fmt.Errorf("%w: overlong data length prefix", wire.ErrMalformed)
	}
	c.Data = d
	if err := c.check(); err != nil {
		return Chunk{}, fmt.Errorf("%w: %v", wire.ErrMalformed, err)
	}
	c.Data = append(make([]byte, 0, len(d)), d...)
	return c, nil
}

// AppendBinary appends the ack's encoding: four u64, then status and
// reason bytes.
func (a *ChunkAck) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendUint64(b, a.Transfer)
	b = wire.AppendUint64(b, a.Index)
	b = wire.AppendUint64(b, a.Term)
	b = wire.AppendUint64(b, a.Next)
	b = wire.AppendUint8(b, uint8(a.Status))
	return wire.AppendUint8(b, uint8(a.Reason)), nil
}

// DecodeChunkAck decodes what AppendBinary wrote, rejecting malformed
// input, unknown statuses and reasons with an error wrapping
// wire.ErrMalformed.
func DecodeChunkAck(data []byte) (ChunkAck, error) {
	r := wire.NewReader(data)
	a := ChunkAck{
		Transfer: r.Uint64(),
		Index:    r.Uint64(),
		Term:     r.Uint64(),
		Next:     r.Uint64(),
		Status:   AckStatus(r.Uint8()),
		Reason:   RejectReason(r.Uint8()),
	}
	if err := r.Done(); err != nil {
		return ChunkAck{}, err
	}
	switch {
	case a.Transfer == 0:
		return ChunkAck{}, fmt.Errorf("%w: ack of transfer 0", wire.ErrMalformed)
	case a.Status < AckProgress || a.Status > AckRejected:
		return ChunkAck{}, fmt.Errorf("%w: unknown ack status %d", wire.ErrMalformed, a.Status)
	case a.Status == AckRejected && (a.Reason < RejectStale || a.Reason > RejectStorage):
		return ChunkAck{}, fmt.Errorf("%w: unknown reject reason %d", wire.ErrMalformed, a.Reason)
	case a.Status != AckRejected && a.Reason != 0:
		return ChunkAck{}, fmt.Errorf("%w: reason %d on a %v ack", wire.ErrMalformed, a.Reason, a.Status)
	}
	return a, nil
}

func init() {
	actor.MustRegister(actor.Codec[Chunk]{
		Tag: chunkTag, Version: 1,
		Encode: func(b []byte, c Chunk) []byte {
			b, _ = c.AppendBinary(b)
			return b
		},
		Decode: func(v uint8, data []byte) (Chunk, error) {
			if v != 1 {
				return Chunk{}, fmt.Errorf("%w: %w", wire.ErrMalformed,
					&actor.VersionError{What: "snapshot.Chunk", Tag: chunkTag, Got: v, Min: 1, Max: 1})
			}
			return DecodeChunk(data)
		},
	})
	actor.MustRegister(actor.Codec[ChunkAck]{
		Tag: chunkAckTag, Version: 1,
		Encode: func(b []byte, a ChunkAck) []byte {
			b, _ = a.AppendBinary(b)
			return b
		},
		Decode: func(v uint8, data []byte) (ChunkAck, error) {
			if v != 1 {
				return ChunkAck{}, fmt.Errorf("%w: %w", wire.ErrMalformed,
					&actor.VersionError{What: "snapshot.ChunkAck", Tag: chunkAckTag, Got: v, Min: 1, Max: 1})
			}
			return DecodeChunkAck(data)
		},
	})
}
