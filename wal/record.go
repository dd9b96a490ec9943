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
	// fileMagic opens every WAL file the WAL writes; its last byte is the
	// format version. Version 2 binds each batch to its file (see
	// putBatchHeader), so that a file may be written over an older one.
	fileMagic = "ragowal\x02"
	// fileMagicV1 opens files of version 1, which recovery still reads:
	// their batch headers are 24 bytes and bound to nothing.
	fileMagicV1 = "ragowal\x01"
	// fileHeaderLen is the size of the file header: magic, then the file's
	// sequence number (u64 LE), which must match the file name.
	fileHeaderLen = 16
	// batchMagic opens every batch header.
	batchMagic uint32 = 0x42574752 // "RGWB" little endian
	// batchHeaderLen is the size of a batch header of version 2.
	batchHeaderLen = 28
	// batchHeaderLenV1 is the size of a batch header of version 1.
	batchHeaderLenV1 = 24
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

// fileFormat is what decoding a file's batches needs from its header.
type fileFormat struct {
	v1  bool   // version 1: short batch headers, bound to no file
	seq uint64 // the file's sequence number, which version 2 binds batches to
}

// headerLen is the size of a batch header in files of this format.
func (f fileFormat) headerLen() int {
	if f.v1 {
		return batchHeaderLenV1
	}
	return batchHeaderLen
}

// parseFileHeader checks the header of a file and returns its format.
func parseFileHeader(b []byte) (fileFormat, error) {
	if len(b) < fileHeaderLen {
		return fileFormat{}, fmt.Errorf("%w: file header needs %d bytes, have %d", errShort, fileHeaderLen, len(b))
	}
	var f fileFormat
	switch string(b[:8]) {
	case fileMagic:
	case fileMagicV1:
		f.v1 = true
	default:
		if string(b[:7]) == fileMagic[:7] && b[7] > fileMagic[7] {
			return fileFormat{}, fmt.Errorf("%w: %d", ErrUnknownVersion, b[7])
		}
		return fileFormat{}, fmt.Errorf("%w: bad file magic %q", errBad, b[:8])
	}
	f.seq = binary.LittleEndian.Uint64(b[8:16])
	return f, nil
}

// batchHeader describes the records that follow it.
type batchHeader struct {
	seq     uint64 // one more than the previous batch of this WAL
	bodyLen uint32 // bytes of records after the header
	count   uint32 // number of records in the body
	digest  uint32 // version 2: recordsDigest of the body in its file
}

// fileSeed starts a checksum that binds what it covers to file seq: the
// same bytes checked against another file's number fail.
func fileSeed(seq uint64) uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seq)
	return crc32.Update(0, castagnoli, b[:])
}

// putBatchHeader writes h into b[:batchHeaderLen], bound to file seq: the
// header's checksum starts from the file's number, and h.digest (see
// recordsDigest) binds the records to it too. A file written over an
// older one (see Recycle) still holds that file's batches after its own
// end; bound to another number, they never pass for this file's, and a
// torn write that left some of them inside a new batch's body does not
// either.
func putBatchHeader(b []byte, h batchHeader, seq uint64) {
	binary.LittleEndian.PutUint32(b[0:4], batchMagic)
	binary.LittleEndian.PutUint64(b[4:12], h.seq)
	binary.LittleEndian.PutUint32(b[12:16], h.bodyLen)
	binary.LittleEndian.PutUint32(b[16:20], h.count)
	binary.LittleEndian.PutUint32(b[20:24], h.digest)
	binary.LittleEndian.PutUint32(b[24:28], crc32.Update(fileSeed(seq), castagnoli, b[0:24]))
}

// recordsDigest is the checksum of the records' own checksums, in order,
// started from file seq. body holds count well-formed records (the WAL's
// own, before they are written).
func recordsDigest(body []byte, count int, seq uint64) uint32 {
	d := fileSeed(seq)
	for range count {
		d = crc32.Update(d, castagnoli, body[0:4])
		n := recordHeaderLen + int(body[25]) + int(binary.LittleEndian.Uint32(body[4:8]))
		body = body[n:]
	}
	return d
}

// parseBatchHeader decodes and checks a batch header of a file of format f.
func parseBatchHeader(b []byte, f fileFormat) (batchHeader, error) {
	n := f.headerLen()
	if len(b) < n {
		return batchHeader{}, fmt.Errorf("%w: batch header needs %d bytes, have %d", errShort, n, len(b))
	}
	if m := binary.LittleEndian.Uint32(b[0:4]); m != batchMagic {
		return batchHeader{}, fmt.Errorf("%w: bad batch magic %#x", errBad, m)
	}
	h := batchHeader{
		seq:     binary.LittleEndian.Uint64(b[4:12]),
		bodyLen: binary.LittleEndian.Uint32(b[12:16]),
		count:   binary.LittleEndian.Uint32(b[16:20]),
	}
	var want, got uint32
	if f.v1 {
		want, got = crc32.Checksum(b[0:20], castagnoli), binary.LittleEndian.Uint32(b[20:24])
	} else {
		h.digest = binary.LittleEndian.Uint32(b[20:24])
		want, got = crc32.Update(fileSeed(f.seq), castagnoli, b[0:24]), binary.LittleEndian.Uint32(b[24:28])
	}
	if want != got {
		return batchHeader{}, fmt.Errorf("%w: batch header checksum %#x, want %#x (damaged, or another file's batch)", errBad, got, want)
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

// decodeBatch decodes the batch at the start of b, in a file of format f.
// It returns the header, the records and the batch's encoded length. On
// error, badAt is the offset within b of the structure that failed (the
// header or a record; for a digest that does not match, the header).
func decodeBatch(b []byte, f fileFormat) (h batchHeader, recs []record, n int, badAt int, err error) {
	h, err = parseBatchHeader(b, f)
	if err != nil {
		return h, nil, 0, 0, err
	}
	hl := f.headerLen()
	end := uint64(hl) + uint64(h.bodyLen)
	if end > uint64(len(b)) {
		return h, nil, 0, 0, fmt.Errorf("%w: batch body needs %d bytes, have %d", errShort, h.bodyLen, len(b)-hl)
	}
	body := b[hl:end]
	recs = make([]record, 0, h.count)
	off := 0
	digest := fileSeed(f.seq)
	for i := uint32(0); i < h.count; i++ {
		r, rn, rerr := decodeRecord(body[off:])
		if rerr != nil {
			if errors.Is(rerr, errShort) {
				// The header promised the bytes: a record that overruns
				// the body is corrupt, not torn.
				rerr = fmt.Errorf("%w: record %d overruns the batch body: %v", errBad, i, rerr)
			}
			return h, nil, 0, hl + off, rerr
		}
		digest = crc32.Update(digest, castagnoli, body[off:off+4])
		recs = append(recs, r)
		off += rn
	}
	if off != len(body) {
		return h, nil, 0, hl + off, fmt.Errorf("%w: %d bytes after the last record of the batch", errBad, len(body)-off)
	}
	if !f.v1 && digest != h.digest {
		return h, nil, 0, 0, fmt.Errorf("%w: the records' digest %#x, want %#x (records of another file)", errBad, digest, h.digest)
	}
	return h, recs, int(end), 0, nil
}
