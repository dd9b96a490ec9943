package wal

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/require"
)

// testFile is the file the batches of these tests belong to.
var testFile = fileFormat{seq: 1}

func encodeTestBatch(seq uint64, recs []record) []byte {
	buf := make([]byte, batchHeaderLen)
	for _, r := range recs {
		buf = appendRecord(buf, r.uid, &Entry{Index: r.index, Term: r.term, Payload: r.payload}, r.reset)
	}
	h := batchHeader{seq: seq, bodyLen: uint32(len(buf) - batchHeaderLen), count: uint32(len(recs))}
	h.digest = recordsDigest(buf[batchHeaderLen:], len(recs), testFile.seq)
	putBatchHeader(buf, h, testFile.seq)
	return buf
}

// encodeTestBatchV1 encodes a batch as version 1 of the format did.
func encodeTestBatchV1(seq uint64, recs []record) []byte {
	buf := make([]byte, batchHeaderLenV1)
	for _, r := range recs {
		buf = appendRecord(buf, r.uid, &Entry{Index: r.index, Term: r.term, Payload: r.payload}, r.reset)
	}
	binary.LittleEndian.PutUint32(buf[0:4], batchMagic)
	binary.LittleEndian.PutUint64(buf[4:12], seq)
	binary.LittleEndian.PutUint32(buf[12:16], uint32(len(buf)-batchHeaderLenV1))
	binary.LittleEndian.PutUint32(buf[16:20], uint32(len(recs)))
	binary.LittleEndian.PutUint32(buf[20:24], crc32.Checksum(buf[0:20], castagnoli))
	return buf
}

func TestBatchRoundTrip(t *testing.T) {
	recs := []record{
		{uid: "a", index: 1, term: 1, payload: []byte("x")},
		{uid: "bb_-9", index: 1 << 40, term: 7, reset: true, payload: nil},
		{uid: "a", index: 2, term: 1, payload: bytes.Repeat([]byte{0xff}, 1000)},
	}
	buf := encodeTestBatch(42, recs)
	h, got, n, _, err := decodeBatch(buf, testFile)
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
			_, _, _, _, err := decodeBatch(c, testFile)
			require.Error(t, err, "flip of bit %d of byte %d went unnoticed", bit, i)
		}
	}
}

func TestBatchDecodeTruncated(t *testing.T) {
	buf := encodeTestBatch(1, []record{{uid: "u", index: 1, term: 1, payload: []byte("payload")}})
	for n := 0; n < len(buf); n++ {
		_, _, _, _, err := decodeBatch(buf[:n], testFile)
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
		h, recs, n, _, err := decodeBatch(data, testFile)
		if err != nil {
			return
		}
		require.Equal(t, encodeTestBatch(h.seq, recs), data[:n])
	})
}

// TestBatchOfVersion1Decodes: files written before batches were bound to
// their file still recover.
func TestBatchOfVersion1Decodes(t *testing.T) {
	recs := []record{{uid: "a", index: 3, term: 2, payload: []byte("old")}, {uid: "b", index: 1, term: 1}}
	buf := encodeTestBatchV1(7, recs)
	h, got, n, _, err := decodeBatch(buf, fileFormat{v1: true, seq: 4})
	require.NoError(t, err)
	require.Equal(t, len(buf), n)
	require.Equal(t, uint64(7), h.seq)
	require.Len(t, got, 2)
	require.Equal(t, "old", string(got[0].payload))
	_, _, _, _, err = decodeBatch(buf, fileFormat{seq: 4})
	require.ErrorIs(t, err, errBad, "a version 1 batch read as version 2")
}

// TestBatchOfAnotherFileIsRejected: a batch is bound to its file, so the
// batches an older file left behind in a file written over it never pass
// for the new file's, and neither does a new header over old records.
func TestBatchOfAnotherFileIsRejected(t *testing.T) {
	recs := []record{{uid: "u", index: 9, term: 3, payload: []byte("p")}}
	buf := encodeTestBatch(5, recs)
	_, _, _, _, err := decodeBatch(buf, fileFormat{seq: 2})
	require.ErrorIs(t, err, errBad)
	require.ErrorContains(t, err, "another file")

	// A torn write: the new file's header made it to disk, its records
	// did not, and the older file's records, of the very same lengths,
	// are where they would be.
	other := []record{{uid: "u", index: 4, term: 1, payload: []byte("q")}}
	mixed := encodeTestBatch(5, recs)
	old := encodeTestBatch(5, other)
	copy(mixed[batchHeaderLen:], old[batchHeaderLen:])
	_, _, _, _, err = decodeBatch(mixed, testFile)
	require.ErrorIs(t, err, errBad)
	require.ErrorContains(t, err, "records of another file")
}
