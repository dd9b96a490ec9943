package snapshot

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/wire"
)

func sampleChunk() Chunk {
	c := Chunk{Transfer: 9, Index: 100, Term: 7, ID: 0xfeed, Size: 5000, Offset: 1000, Data: []byte("some snapshot bytes")}
	c.CRC = c.Checksum()
	return c
}

func TestChunkRoundTrip(t *testing.T) {
	c := sampleChunk()
	b, err := c.AppendBinary([]byte("prefix"))
	require.NoError(t, err)
	require.Equal(t, "prefix", string(b[:6]))
	require.Len(t, b, 6+chunkHeaderBytes+1+len(c.Data))
	got, err := DecodeChunk(b[6:])
	require.NoError(t, err)
	require.Equal(t, c, got)
	// The decoded data is a copy: the network buffer may be reused.
	b[len(b)-1] ^= 1
	require.Equal(t, c.Data, got.Data)
	require.Equal(t, got.CRC, got.Checksum())
}

func TestChunkAckRoundTrip(t *testing.T) {
	for _, a := range []ChunkAck{
		{Transfer: 1, Index: 2, Term: 3, Next: 4, Status: AckProgress},
		{Transfer: 1, Next: 0, Status: AckResend},
		{Transfer: 1, Next: 99, Status: AckInstalled},
		{Transfer: 1, Status: AckRejected, Reason: RejectCorrupt},
	} {
		b, err := a.AppendBinary(nil)
		require.NoError(t, err)
		got, err := DecodeChunkAck(b)
		require.NoError(t, err)
		require.Equal(t, a, got)
	}
}

func TestDecodersRejectMalformedInput(t *testing.T) {
	good := sampleChunk()
	enc := func(c Chunk) []byte { b, _ := c.AppendBinary(nil); return b }
	b := enc(good)
	for n := 0; n < len(b); n++ {
		_, err := DecodeChunk(b[:n])
		require.ErrorIs(t, err, wire.ErrMalformed, "truncated to %d", n)
	}
	_, err := DecodeChunk(append(bytes.Clone(b), 0))
	require.ErrorIs(t, err, wire.ErrMalformed)
	// A length prefix with a redundant continuation byte.
	overlong := append(bytes.Clone(b[:chunkHeaderBytes]), byte(len(good.Data))|0x80, 0)
	overlong = append(overlong, good.Data...)
	_, err = DecodeChunk(overlong)
	require.ErrorIs(t, err, wire.ErrMalformed)
	for _, bad := range []func(c *Chunk){
		func(c *Chunk) { c.Transfer = 0 },
		func(c *Chunk) { c.Index = 0 },
		func(c *Chunk) { c.ID = 0 },
		func(c *Chunk) { c.Size = 10 },
		func(c *Chunk) { c.Data = nil },
		func(c *Chunk) { c.Offset = c.Size },
		func(c *Chunk) { c.Offset = c.Size - 1 },
		func(c *Chunk) { c.Offset = ^uint64(0) - 3 },
	} {
		c := sampleChunk()
		bad(&c)
		_, err := DecodeChunk(enc(c))
		require.ErrorIs(t, err, wire.ErrMalformed, "%+v", c)
	}

	ack := ChunkAck{Transfer: 1, Status: AckProgress}
	ab, _ := ack.AppendBinary(nil)
	for n := 0; n < len(ab); n++ {
		_, err := DecodeChunkAck(ab[:n])
		require.ErrorIs(t, err, wire.ErrMalformed)
	}
	for _, bad := range []ChunkAck{
		{Transfer: 0, Status: AckProgress},
		{Transfer: 1, Status: 0},
		{Transfer: 1, Status: 5},
		{Transfer: 1, Status: AckRejected, Reason: 0},
		{Transfer: 1, Status: AckRejected, Reason: 4},
		{Transfer: 1, Status: AckProgress, Reason: RejectStale},
	} {
		b, _ := bad.AppendBinary(nil)
		_, err := DecodeChunkAck(b)
		require.ErrorIs(t, err, wire.ErrMalformed, "%+v", bad)
	}
}

func FuzzDecodeChunk(f *testing.F) {
	c := sampleChunk()
	b, _ := c.AppendBinary(nil)
	f.Add(b)
	f.Add([]byte{})
	f.Add(b[:chunkHeaderBytes])
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeChunk(data)
		if err != nil {
			require.ErrorIs(t, err, wire.ErrMalformed)
			return
		}
		require.NoError(t, c.check())
		again, err := c.AppendBinary(nil)
		require.NoError(t, err)
		require.Equal(t, data, again, "a decoded chunk encodes to the same bytes")
	})
}

func FuzzDecodeChunkAck(f *testing.F) {
	a := ChunkAck{Transfer: 1, Index: 2, Term: 3, Next: 4, Status: AckRejected, Reason: RejectStale}
	b, _ := a.AppendBinary(nil)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeChunkAck(data)
		if err != nil {
			require.ErrorIs(t, err, wire.ErrMalformed)
			return
		}
		again, err := a.AppendBinary(nil)
		require.NoError(t, err)
		require.Equal(t, data, again)
	})
}

// TestMessagesOfOtherVersionsAreRefused: a chunk or ack of a version this
// build does not read is refused with an error naming the version.
func TestMessagesOfOtherVersionsAreRefused(t *testing.T) {
	c := sampleChunk()
	a := ChunkAck{Transfer: 1, Index: 2, Term: 3, Next: 4, Status: AckProgress}
	for _, m := range []any{c, a} {
		tag, version, b, err := actor.Encode(m)
		require.NoError(t, err)
		_, err = actor.Decode(tag, version, b)
		require.NoError(t, err)
		for _, v := range []uint8{0, version + 1} {
			_, err = actor.Decode(tag, v, b)
			var ve *actor.VersionError
			require.ErrorAs(t, err, &ve, "%T version %d", m, v)
			require.Equal(t, v, ve.Got)
		}
	}
}
