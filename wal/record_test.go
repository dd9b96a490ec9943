package wal

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

func encodeTestBatch(seq uint64, recs []record) []byte {
	buf := make([]byte, batchHeaderLen)
	for _, r := range recs {
		buf = appendRecord(buf, r.uid, &Entry{Index: r.index, Term: r.term, Payload: r.payload}, r.reset)
	}
	putBatchHeader(buf, batchHeader{seq: seq, bodyLen: uint32(len(buf) - batchHeaderLen), count: uint32(len(recs))})
	return buf
}

func TestBatchRoundTrip(t *testing.T) {
	recs := []record{
		{uid: "a", index: 1, term: 1, payload: []byte("x")},
		{uid: "bb_-9", index: 1 << 40, term: 7, reset: true, payload: nil},
		{uid: "a", index: 2, term: 1, payload: bytes.Repeat([]byte{0xff}, 1000)},
	}
	buf := encodeTestBatch(42, recs)
	h, got, n, _, err := decodeBatch(buf)
	require.NoError(t, err)
	require.Equal(t, len(buf), n)
	require.Equal(t, uint64(42), h.seq)
	require.Len(t, got, 3)
	for i := range recs {
		require.Equal(t, recs[i].uid, got[i].uid)
		require.Equal(t, recs[i].index, got[i].index)
		require.Equal(t, recs[i].term, got[i].term)
		require.Equal(t, recs[i].reset, got[i].reset)
		require.Equal(t, len(recs[i].payload), len(got[i].payload))
	}
}

func TestBatchDecodeRejectsEveryBitFlip(t *testing.T) {
	buf := encodeTestBatch(3, []record{{uid: "u", index: 5, term: 2, payload: []byte("hello")}, {uid: "v", index: 1, term: 1}})
	for i := range buf {
		for bit := 0; bit < 8; bit++ {
			c := append([]byte(nil), buf...)
			c[i] ^= 1 << bit
			_, _, _, _, err := decodeBatch(c)
			require.Error(t, err, "flip of bit %d of byte %d went unnoticed", bit, i)
		}
	}
}

func TestBatchDecodeTruncated(t *testing.T) {
	buf := encodeTestBatch(1, []record{{uid: "u", index: 1, term: 1, payload: []byte("payload")}})
	for n := 0; n < len(buf); n++ {
		_, _, _, _, err := decodeBatch(buf[:n])
		require.ErrorIs(t, err, errShort, "length %d", n)
	}
}

// FuzzDecodeBatch checks that decoding arbitrary bytes never panics, and
// that whatever decodes re-encodes to the same bytes.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeTestBatch(1, []record{{uid: "u", index: 1, term: 1, payload: []byte("p")}}))
	f.Add(encodeTestBatch(9, []record{{uid: "abc", index: 3, term: 2, reset: true}, {uid: "abc", index: 4, term: 2}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		h, recs, n, _, err := decodeBatch(data)
		if err != nil {
			return
		}
		require.Equal(t, encodeTestBatch(h.seq, recs), data[:n])
	})
}
