package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Reader reads one durable snapshot: its meta blob at once, its machine
// data as a stream. Every block is verified before any of its bytes is
// handed out, and Read returns io.EOF only after the trailer verified too
// (data length and whole-file checksum) and nothing follows it. Any damage
// is an error wrapping ErrCorrupt (*CorruptError), after which the Reader
// returns only that error. Memory: one block (Options.BlockBytes of the
// writer) plus a read buffer.
//
// A machine restoring from a Reader should read to io.EOF and treat any
// other error as "the state is not restored": Latest verified the file
// before, so an error here means the file changed or the disk failed
// since.
//
// A Reader is used by one goroutine at a time. It keeps its file open
// until Close, so a newer snapshot pruning this one does not disturb it.
type Reader struct {
	info  Info
	meta  []byte
	f     File
	br    *bufio.Reader
	size  int64 // file size at Open; bounds every allocation
	v     verifier
	block []byte // verified data not yet returned
	buf   []byte // block buffer, reused
	err   error
	// closed: Close was called (f is nil for a stream reader).
	closed bool
}

// Open opens the snapshot info names (from Latest, List, Written or a
// transfer) and reads and verifies its header, meta included. If info.ID
// is non-zero the header must carry it. Errors: ErrNotFound,
// ErrCorrupt, ErrIO.
func (s *Store) Open(info Info) (*Reader, error) {
	if err := validUID(info.UID); err != nil {
		return nil, err
	}
	path := s.snapPath(info)
	f, err := s.fs.OpenFile(path, os.O_RDONLY)
	if err != nil {
		return nil, openErr(path, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return nil, ioErr("seek "+path, err)
	}
	r := &Reader{
		info: info,
		f:    f,
		br:   bufio.NewReaderSize(f, int(min(256<<10, max(size, 16)))),
		size: size,
		v:    newVerifier(path, &header{index: info.Index, term: info.Term, id: info.ID}),
	}
	if err := r.readHeader(); err != nil {
		_ = f.Close()
		return nil, err
	}
	r.info.ID = r.v.hdr.id
	r.info.Size = size
	return r, nil
}

// pull reads exactly n bytes into the reusable buffer and verifies them.
func (r *Reader) pull(n int) ([]byte, error) {
	if r.v.off+int64(n) > r.size {
		return nil, r.v.finish() // names the structure the file ends in
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.br, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, r.v.finish() // names the structure the file ends in
		}
		return nil, ioErr("read "+r.v.name, err)
	}
	if err := r.v.write(b); err != nil {
		return nil, err
	}
	return b, nil
}

func (r *Reader) readHeader() error {
	if _, err := r.pull(fixedHeaderBytes); err != nil {
		return err
	}
	m := int(r.v.hdr.metaLen)
	b, err := r.pull(m + crcBytes)
	if err != nil {
		return err
	}
	if m > 0 {
		r.meta = append([]byte(nil), b[:m]...)
	}
	r.buf = nil // may be as large as the meta; blocks get their own
	return nil
}

// Info returns the snapshot's identity; ID is read from the header and
// Size is the file's.
func (r *Reader) Info() Info { return r.info }

// Meta returns the server's meta blob. The caller must not modify it.
func (r *Reader) Meta() []byte { return r.meta }

// Read reads machine data. See Reader for the verification guarantees.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.block) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.nextBlock()
	}
	n := copy(p, r.block)
	r.block = r.block[n:]
	return n, nil
}

// nextBlock verifies the next block into r.block, or the trailer (then it
// returns io.EOF).
func (r *Reader) nextBlock() error {
	h, err := r.pull(1) // the kind byte
	if err != nil {
		return err
	}
	if h[0] == kindEnd {
		if _, err := r.pull(trailerBytes - 1); err != nil {
			return err
		}
		// Nothing may follow the trailer.
		if _, err := r.br.ReadByte(); err == nil {
			return r.v.fail(r.v.off, "bytes after the trailer")
		} else if !errors.Is(err, io.EOF) {
			return ioErr("read "+r.v.name, err)
		}
		return io.EOF
	}
	lb, err := r.pull(4)
	if err != nil {
		return err
	}
	l := int(binary.LittleEndian.Uint32(lb)) // the verifier checked the range
	b, err := r.pull(l + crcBytes)
	if err != nil {
		return err
	}
	r.block = b[:l]
	return nil
}

// Close releases the file. A Reader from NewStreamReader leaves its
// source open.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.err == nil {
		r.err = fmt.Errorf("%w: reader closed", ErrFinished)
	}
	r.block = nil
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	if err != nil {
		return ioErr("close "+r.v.name, err)
	}
	return nil
}

// NewStreamReader reads a snapshot in this package's format from src, as
// Encoder writes it (an export, a backup), with the same verification as
// a Store's files: the header and meta now, every block before its bytes
// are handed out, the trailer before io.EOF. name says what src is in
// errors. Without a file size to bound it, a corrupt length can make it
// allocate up to MaxMetaBytes for the meta and MaxBlockBytes per block.
// Errors: ErrCorrupt (also for a src that is no snapshot at all), ErrIO.
func NewStreamReader(src io.Reader, name string) (*Reader, error) {
	r := &Reader{
		br:   bufio.NewReaderSize(src, 256<<10),
		size: math.MaxInt64,
		v:    newVerifier(name, nil),
	}
	if err := r.readHeader(); err != nil {
		return nil, err
	}
	r.info = Info{Index: r.v.hdr.index, Term: r.v.hdr.term, ID: r.v.hdr.id}
	return r, nil
}
