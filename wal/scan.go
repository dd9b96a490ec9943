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
// that fn must not keep. Zeros from the end of a batch to the end of the
// file are a preallocated file's unused part and end the scan. Any damage,
// including a torn end, is an error matching ErrCorrupt; an error from fn
// stops the scan and is returned.
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
		got, err := io.ReadFull(br, hdr[:])
		if err != nil && err != io.ErrUnexpectedEOF {
			if err == io.EOF {
				return nil
			}
			return scanError(off, err)
		}
		if allZero(hdr[:got]) && off > fileHeaderLen {
			if err := zerosToEnd(br); err != nil {
				return scanError(off, err)
			}
			return nil
		}
		if err != nil {
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

// zerosToEnd reads r to its end and fails unless every byte is zero.
func zerosToEnd(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if !allZero(buf[:n]) {
			return fmt.Errorf("%w: data after zeros that should end the file", errBad)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
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
