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
	var buf [batchHeaderLen]byte
	if _, err := io.ReadFull(br, buf[:fileHeaderLen]); err != nil {
		return scanError(0, err)
	}
	f, err := parseFileHeader(buf[:fileHeaderLen])
	if err != nil {
		return scanError(0, err)
	}
	hl := int64(f.headerLen())
	hdr := buf[:hl]
	off := int64(fileHeaderLen)
	var batch []byte
	for {
		got, err := io.ReadFull(br, hdr)
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
		h, err := parseBatchHeader(hdr, f)
		if err != nil {
			return scanError(off, err)
		}
		if need := int(hl) + int(h.bodyLen); cap(batch) < need {
			batch = make([]byte, need)
		}
		batch = batch[:int(hl)+int(h.bodyLen)]
		copy(batch, hdr)
		if _, err := io.ReadFull(br, batch[hl:]); err != nil {
			return scanError(off, err)
		}
		_, recs, _, badAt, err := decodeBatch(batch, f)
		if err != nil {
			return scanError(off+int64(badAt), err)
		}
		at := off + hl
		for _, r := range recs {
			n := recordHeaderLen + len(r.uid) + len(r.payload)
			if err := fn(r.export(), at, n); err != nil {
				return err
			}
			at += int64(n)
		}
		off += hl + int64(h.bodyLen)
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
