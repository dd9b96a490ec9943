package wal

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Record is one entry as a WAL file holds it.
type Record struct {
	UID   string
	Index uint64
	Term  uint64
	// Reset marks the first entry of a restarted log (see ClosedTable).
	Reset bool
	// Payload aliases the bytes the record was decoded from.
	Payload []byte
}

// ScanFile reads a complete WAL file (a closed one: every batch whole and
// synced) from its start and calls fn for each record, in file order, with
// the byte offset of the record in the file and its encoded length. Those
// two locate the record for DecodeRecord later. Payloads alias a buffer
// that fn must not keep. Any damage, including a torn end, is an error
// matching ErrCorrupt; an error from fn stops the scan and is returned.
func ScanFile(r io.Reader, fn func(rec Record, off int64, n int) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr [batchHeaderLen]byte
	if _, err := io.ReadFull(br, hdr[:fileHeaderLen]); err != nil {
		return scanError(0, err)
	}
	if _, err := parseFileHeader(hdr[:fileHeaderLen]); err != nil {
		return scanError(0, err)
	}
	off := int64(fileHeaderLen)
	var body []byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return scanError(off, err)
		}
		h, err := parseBatchHeader(hdr[:])
		if err != nil {
			return scanError(off, err)
		}
		if cap(body) < int(h.bodyLen) {
			body = make([]byte, h.bodyLen)
		}
		body = body[:h.bodyLen]
		if _, err := io.ReadFull(br, body); err != nil {
			return scanError(off, err)
		}
		at := 0
		for i := uint32(0); i < h.count; i++ {
			r, n, err := decodeRecord(body[at:])
			if err != nil {
				return scanError(off+batchHeaderLen+int64(at), err)
			}
			if err := fn(r.export(), off+batchHeaderLen+int64(at), n); err != nil {
				return err
			}
			at += n
		}
		if at != len(body) {
			return scanError(off+batchHeaderLen+int64(at), fmt.Errorf("%w: %d bytes after the last record of the batch", errBad, len(body)-at))
		}
		off += batchHeaderLen + int64(h.bodyLen)
	}
}

func scanError(off int64, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: file ends inside a structure", errShort)
	}
	return &CorruptionError{Offset: off, Reason: err}
}

// DecodeRecord decodes and checks (checksum, flags, UID) the record at the
// start of b, as ScanFile located it. The payload aliases b. A damaged
// record is an error matching ErrCorrupt.
func DecodeRecord(b []byte) (Record, error) {
	r, n, err := decodeRecord(b)
	if err != nil {
		return Record{}, &CorruptionError{Reason: err}
	}
	if n != len(b) {
		return Record{}, &CorruptionError{Reason: fmt.Errorf("%w: record of %d bytes in %d", errBad, n, len(b))}
	}
	return r.export(), nil
}

func (r record) export() Record {
	return Record{UID: r.uid, Index: r.index, Term: r.term, Reset: r.reset, Payload: r.payload}
}
