package snapshot

import (
	"encoding/binary"
	"fmt"
	"io"
)

// encoder writes a snapshot file to w as it is streamed: the header, the
// data in checksummed blocks, the trailer. Pending writes the store's
// files with one, Encoder anything else.
type encoder struct {
	w          io.Writer
	name       string // names w in errors
	blockBytes int
	hdr        header

	buf     []byte // the block being filled: its header bytes, then data
	off     int64  // offset where buf's block goes
	fileCRC uint32 // over every byte written so far
	data    int64  // data bytes in flushed blocks
	err     error  // first error; sticks
}

// start writes the header.
func (e *encoder) start(w io.Writer, name string, blockBytes int, h header, meta []byte) error {
	*e = encoder{w: w, name: name, blockBytes: blockBytes, hdr: h,
		buf: make([]byte, blockHeaderBytes, blockHeaderBytes+blockBytes+crcBytes)}
	b := appendHeader(make([]byte, 0, fixedHeaderBytes+len(meta)+crcBytes), h, meta)
	if _, err := w.Write(b); err != nil {
		e.err = ioErr("write header of "+name, err)
		return e.err
	}
	e.off = int64(len(b))
	e.fileCRC = crc(b)
	return nil
}

// write appends machine data; it never keeps b.
func (e *encoder) write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	written := 0
	for len(b) > 0 {
		room := e.blockBytes - (len(e.buf) - blockHeaderBytes)
		n := min(room, len(b))
		e.buf = append(e.buf, b[:n]...)
		b = b[n:]
		written += n
		if n == room {
			if err := e.flushBlock(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flushBlock writes the block in buf, if it holds data.
func (e *encoder) flushBlock() error {
	l := len(e.buf) - blockHeaderBytes
	if l == 0 || e.err != nil {
		return e.err
	}
	e.buf[0] = kindData
	binary.LittleEndian.PutUint32(e.buf[1:], uint32(l))
	e.buf = binary.LittleEndian.AppendUint32(e.buf, blockCRC(e.off, e.buf))
	e.fileCRC = crcUpdate(e.fileCRC, e.buf)
	if _, err := e.w.Write(e.buf); err != nil {
		e.err = ioErr("write "+e.name, err)
		return e.err
	}
	e.off += int64(len(e.buf))
	e.data += int64(l)
	e.buf = e.buf[:blockHeaderBytes]
	return nil
}

// finish writes the last block and the trailer.
func (e *encoder) finish() error {
	if err := e.flushBlock(); err != nil {
		return err
	}
	t := make([]byte, 0, trailerBytes)
	t = append(t, kindEnd)
	t = binary.LittleEndian.AppendUint64(t, uint64(e.data))
	t = binary.LittleEndian.AppendUint32(t, crcUpdate(e.fileCRC, t))
	if _, err := e.w.Write(t); err != nil {
		e.err = ioErr("write trailer of "+e.name, err)
		return e.err
	}
	e.off += int64(len(t))
	return nil
}

// info describes what was written (UID left empty).
func (e *encoder) info() Info {
	return Info{Index: e.hdr.index, Term: e.hdr.term, ID: e.hdr.id, Size: e.off, DataSize: e.data}
}

// Encoder writes one snapshot, in this package's file format, to any
// io.Writer: an export or a backup that is not a file of a Store. What it
// writes reads back with NewStreamReader, with every check a Store's files
// get. It is used by one goroutine at a time.
type Encoder struct {
	enc  encoder
	done bool
}

// NewEncoder writes the header of snapshot index/term, with meta (opaque
// here; at most MaxMetaBytes), to w. Errors: ErrInvalid for bad
// arguments, ErrIO if w fails.
func NewEncoder(w io.Writer, index, term uint64, meta []byte) (*Encoder, error) {
	if index == 0 {
		return nil, fmt.Errorf("%w: snapshot index 0", ErrInvalid)
	}
	if len(meta) > MaxMetaBytes {
		return nil, fmt.Errorf("%w: meta of %d bytes exceeds %d", ErrInvalid, len(meta), MaxMetaBytes)
	}
	e := &Encoder{}
	if err := e.enc.start(w, "stream", DefaultBlockBytes, header{index: index, term: term, id: newFileID()}, meta); err != nil {
		return nil, err
	}
	return e, nil
}

// Write appends machine data. After the first error every call returns it.
func (e *Encoder) Write(b []byte) (int, error) {
	if e.done {
		return 0, ErrFinished
	}
	return e.enc.write(b)
}

// Close writes the trailer and describes what was written (Size is the
// whole stream's). It does not close the underlying writer.
func (e *Encoder) Close() (Info, error) {
	if e.done {
		return Info{}, ErrFinished
	}
	e.done = true
	if err := e.enc.finish(); err != nil {
		return Info{}, err
	}
	return e.enc.info(), nil
}
