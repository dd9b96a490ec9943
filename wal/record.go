package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Wire format constants. Changing any of them changes the on-disk format:
// old files would no longer recover.
const (
	// fileMagic opens every WAL file; its last byte is the format version.
	fileMagic = "ragowal\x01"
	// fileHeaderLen is the size of the file header: magic, then the file's
	// sequence number (u64 LE), which must match the file name.
	fileHeaderLen = 16
	// batchMagic opens every batch header.
	batchMagic uint32 = 0x42574752 // "RGWB" little endian
	// batchHeaderLen is the size of a batch header.
	batchHeaderLen = 24
	// recordHeaderLen is the fixed part of a record, before uid and payload.
	recordHeaderLen = 26
	// maxUIDLen is the longest UID a record can carry (one length byte).
	maxUIDLen = 255
	// flagReset marks a record whose UID's log restarts at its index: every
	// older entry of that UID, at any index, is discarded.
	flagReset = 1 << 0
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errShort means the input ends before the structure does (a torn write);
// errBad means the bytes are there but wrong (checksum, magic, lengths).
// Both only travel inside the package; recovery turns them into a
// *CorruptionError or a tail cut.
var (
	errShort = errors.New("truncated")
	errBad   = errors.New("corrupt")
)

// appendFileHeader appends the header of WAL file number seq.
func appendFileHeader(b []byte, seq uint64) []byte {
	b = append(b, fileMagic...)
	return binary.LittleEndian.AppendUint64(b, seq)
}

// parseFileHeader checks the header of a file and returns its sequence.
func parseFileHeader(b []byte) (uint64, error) {
	if len(b) < fileHeaderLen {
		return 0, fmt.Errorf("%w: file header needs %d bytes, have %d", errShort, fileHeaderLen, len(b))
	}
	if string(b[:8]) != fileMagic {
		return 0, fmt.Errorf("%w: bad file magic %q", errBad, b[:8])
	}
	return binary.LittleEndian.Uint64(b[8:16]), nil
}

// batchHeader describes the records that follow it.
type batchHeader struct {
	seq     uint64 // one more than the previous batch of this WAL
	bodyLen uint32 // bytes of records after the header
	count   uint32 // number of records in the body
}

// putBatchHeader writes h into b[:batchHeaderLen].
func putBatchHeader(b []byte, h batchHeader) {
	binary.LittleEndian.PutUint32(b[0:4], batchMagic)
	binary.LittleEndian.PutUint64(b[4:12], h.seq)
	binary.LittleEndian.PutUint32(b[12:16], h.bodyLen)
	binary.LittleEndian.PutUint32(b[16:20], h.count)
	binary.LittleEndian.PutUint32(b[20:24], crc32.Checksum(b[0:20], castagnoli))
}

// parseBatchHeader decodes and checks a batch header.
func parseBatchHeader(b []byte) (batchHeader, error) {
	if len(b) < batchHeaderLen {
		return batchHeader{}, fmt.Errorf("%w: batch header needs %d bytes, have %d", errShort, batchHeaderLen, len(b))
	}
	if m := binary.LittleEndian.Uint32(b[0:4]); m != batchMagic {
		return batchHeader{}, fmt.Errorf("%w: bad batch magic %#x", errBad, m)
	}
	if want, got := crc32.Checksum(b[0:20], castagnoli), binary.LittleEndian.Uint32(b[20:24]); want != got {
		return batchHeader{}, fmt.Errorf("%w: batch header checksum %#x, want %#x", errBad, got, want)
	}
	h := batchHeader{
		seq:     binary.LittleEndian.Uint64(b[4:12]),
		bodyLen: binary.LittleEndian.Uint32(b[12:16]),
		count:   binary.LittleEndian.Uint32(b[16:20]),
	}
	if h.count == 0 || uint64(h.bodyLen) < uint64(h.count)*(recordHeaderLen+1) {
		return batchHeader{}, fmt.Errorf("%w: batch of %d records cannot fit %d bytes", errBad, h.count, h.bodyLen)
	}
	return h, nil
}

// record is one decoded WAL record. Payload aliases the decoded buffer.
type record struct {
	uid     string
	index   uint64
	term    uint64
	reset   bool
	payload []byte
}

// recordLen returns the encoded size of e's record.
func recordLen(uid string, e *Entry) int { return recordHeaderLen + len(uid) + e.size() }

// appendRecord appends the encoding of e's record: its payload is e's
// prefix, if any, then e.Payload. The caller has checked that
// 1 <= len(uid) <= maxUIDLen and that the payload fits in a u32.
func appendRecord(b []byte, uid string, e *Entry, reset bool) []byte {
	start := len(b)
	b = append(b, make([]byte, recordHeaderLen)...)
	h := b[start:]
	binary.LittleEndian.PutUint32(h[4:8], uint32(e.size()))
	binary.LittleEndian.PutUint64(h[8:16], e.Index)
	binary.LittleEndian.PutUint64(h[16:24], e.Term)
	var flags byte
	if reset {
		flags |= flagReset
	}
	h[24] = flags
	h[25] = byte(len(uid))
	b = append(b, uid...)
	if e.Prefixed {
		b = append(b, e.Prefix)
	}
	b = append(b, e.Payload...)
	binary.LittleEndian.PutUint32(b[start:start+4], crc32.Checksum(b[start+4:], castagnoli))
	return b
}

// decodeRecord decodes the record at the start of b and returns it with its
// encoded length.
func decodeRecord(b []byte) (record, int, error) {
	if len(b) < recordHeaderLen {
		return record{}, 0, fmt.Errorf("%w: record header needs %d bytes, have %d", errShort, recordHeaderLen, len(b))
	}
	plen := uint64(binary.LittleEndian.Uint32(b[4:8]))
	ulen := uint64(b[25])
	total := uint64(recordHeaderLen) + ulen + plen
	if total > uint64(len(b)) {
		return record{}, 0, fmt.Errorf("%w: record needs %d bytes, have %d", errShort, total, len(b))
	}
	n := int(total)
	if want, got := crc32.Checksum(b[4:n], castagnoli), binary.LittleEndian.Uint32(b[0:4]); want != got {
		return record{}, 0, fmt.Errorf("%w: record checksum %#x, want %#x", errBad, got, want)
	}
	flags := b[24]
	if flags&^flagReset != 0 {
		return record{}, 0, fmt.Errorf("%w: unknown record flags %#x", errBad, flags)
	}
	if ulen == 0 {
		return record{}, 0, fmt.Errorf("%w: empty uid", errBad)
	}
	uidEnd := recordHeaderLen + int(ulen)
	r := record{
		uid:     string(b[recordHeaderLen:uidEnd]),
		index:   binary.LittleEndian.Uint64(b[8:16]),
		term:    binary.LittleEndian.Uint64(b[16:24]),
		reset:   flags&flagReset != 0,
		payload: b[uidEnd:n:n],
	}
	if r.index == 0 {
		return record{}, 0, fmt.Errorf("%w: record index 0", errBad)
	}
	return r, n, nil
}

// decodeBatch decodes the batch at the start of b. It returns the header,
// the records and the batch's encoded length. On error, badAt is the offset
// within b of the structure that failed (the header or a record).
func decodeBatch(b []byte) (h batchHeader, recs []record, n int, badAt int, err error) {
	h, err = parseBatchHeader(b)
	if err != nil {
		return h, nil, 0, 0, err
	}
	end := uint64(batchHeaderLen) + uint64(h.bodyLen)
	if end > uint64(len(b)) {
		return h, nil, 0, 0, fmt.Errorf("%w: batch body needs %d bytes, have %d", errShort, h.bodyLen, len(b)-batchHeaderLen)
	}
	body := b[batchHeaderLen:end]
	recs = make([]record, 0, h.count)
	off := 0
	for i := uint32(0); i < h.count; i++ {
		r, rn, rerr := decodeRecord(body[off:])
		if rerr != nil {
			if errors.Is(rerr, errShort) {
				// The header promised the bytes: a record that overruns
				// the body is corrupt, not torn.
				rerr = fmt.Errorf("%w: record %d overruns the batch body: %v", errBad, i, rerr)
			}
			return h, nil, 0, batchHeaderLen + off, rerr
		}
		recs = append(recs, r)
		off += rn
	}
	if off != len(body) {
		return h, nil, 0, batchHeaderLen + off, fmt.Errorf("%w: %d bytes after the last record of the batch", errBad, len(body)-off)
	}
	return h, recs, int(end), 0, nil
}
