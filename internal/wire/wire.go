// Package wire holds the small binary encoding helpers that rago's message
// and record codecs share: varints, length-prefixed bytes and strings, fixed
// width integers, and a Reader with a sticky error.
//
// The helpers exist so that every decoder in rago rejects malformed input
// with an error instead of panicking or allocating without bound: a length
// read from the input is checked against the bytes that remain before
// anything is allocated, and the first failure sticks, so a decoder can read
// a whole structure and check Err once at the end.
//
// Encoding (all integers little endian where fixed width):
//
//	uvarint   encoding/binary's unsigned varint, at most 10 bytes
//	varint    encoding/binary's zig-zag signed varint
//	bytes     uvarint length, then that many bytes
//	string    same as bytes
//	u8/u16/u32/u64  fixed width
//	bool      one byte, 0 or 1 (anything else is malformed)
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrMalformed is returned (wrapped, with the offset) for input that does not
// decode: truncated, overlong, out of range, or with trailing bytes.
var ErrMalformed = errors.New("wire: malformed input")

// AppendUvarint appends v as an unsigned varint.
func AppendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// AppendVarint appends v as a zig-zag signed varint.
func AppendVarint(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

// AppendBytes appends p with a uvarint length prefix.
func AppendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// AppendString appends s with a uvarint length prefix.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendUint8 appends one byte.
func AppendUint8(b []byte, v uint8) []byte { return append(b, v) }

// AppendBool appends 1 for true and 0 for false.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// AppendUint16 appends v as two little-endian bytes.
func AppendUint16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }

// AppendUint32 appends v as four little-endian bytes.
func AppendUint32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

// AppendUint64 appends v as eight little-endian bytes.
func AppendUint64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// UvarintLen returns the number of bytes AppendUvarint uses for v.
func UvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// Reader decodes from a byte slice. After the first error every method
// returns a zero value and Err reports that first error, so callers decode a
// whole structure and check once. A Reader never panics on bad input.
type Reader struct {
	buf []byte
	off int
	err error
}

// NewReader returns a Reader over b. The Reader does not copy b: Bytes
// returns slices that alias it.
func NewReader(b []byte) *Reader { return &Reader{buf: b} }

// Reset makes r read b from the start and clears its error.
func (r *Reader) Reset(b []byte) { *r = Reader{buf: b} }

// Err returns the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Offset returns how many bytes were consumed.
func (r *Reader) Offset() int { return r.off }

// Remaining returns how many bytes are left.
func (r *Reader) Remaining() int { return len(r.buf) - r.off }

// Done returns the first error, or an error if bytes remain unread: a
// decoder that calls Done rejects trailing garbage.
func (r *Reader) Done() error {
	if r.err != nil {
		return r.err
	}
	if r.off != len(r.buf) {
		return fmt.Errorf("%w: %d trailing bytes at offset %d", ErrMalformed, len(r.buf)-r.off, r.off)
	}
	return nil
}

// Fail records err (wrapped with ErrMalformed and the offset) unless an
// error is already recorded. Decoders use it for semantic checks, e.g. an
// unknown enum value.
func (r *Reader) Fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at offset %d", ErrMalformed, fmt.Sprintf(format, args...), r.off)
	}
}

// FailWith is Fail for an error of its own, which stays visible to
// errors.Is (a nested decoder's typed error, say).
func (r *Reader) FailWith(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %w at offset %d", ErrMalformed, err, r.off)
	}
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		r.Fail("bad uvarint")
		return 0
	}
	r.off += n
	return v
}

// Varint reads a zig-zag signed varint.
func (r *Reader) Varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.buf[r.off:])
	if n <= 0 {
		r.Fail("bad varint")
		return 0
	}
	r.off += n
	return v
}

// Len reads a uvarint used as a count of items that each take at least
// minItemBytes bytes of the remaining input, and fails if the input cannot
// hold that many. It protects decoders from allocating huge slices for a
// corrupt count. minItemBytes below 1 counts as 1.
func (r *Reader) Len(minItemBytes int) int {
	v := r.Uvarint()
	if r.err != nil {
		return 0
	}
	if minItemBytes < 1 {
		minItemBytes = 1
	}
	if v > uint64(r.Remaining()/minItemBytes) {
		r.Fail("count %d exceeds remaining input", v)
		return 0
	}
	return int(v)
}

// Bytes reads a length-prefixed byte string. The result aliases the input.
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(r.Remaining()) {
		r.Fail("length %d exceeds remaining %d", n, r.Remaining())
		return nil
	}
	p := r.buf[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return p
}

// BytesCopy reads a length-prefixed byte string into a new slice (nil for an
// empty string), so the result does not alias the input.
func (r *Reader) BytesCopy() []byte {
	p := r.Bytes()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// String reads a length-prefixed string.
func (r *Reader) String() string { return string(r.Bytes()) }

// Raw reads exactly n bytes. The result aliases the input.
func (r *Reader) Raw(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.Remaining() {
		r.Fail("need %d bytes, have %d", n, r.Remaining())
		return nil
	}
	p := r.buf[r.off : r.off+n : r.off+n]
	r.off += n
	return p
}

// Uint8 reads one byte.
func (r *Reader) Uint8() uint8 {
	p := r.Raw(1)
	if p == nil {
		return 0
	}
	return p[0]
}

// Bool reads a byte that must be 0 or 1.
func (r *Reader) Bool() bool {
	v := r.Uint8()
	if v > 1 {
		r.Fail("bad bool %d", v)
		return false
	}
	return v == 1
}

// Uint16 reads two little-endian bytes.
func (r *Reader) Uint16() uint16 {
	p := r.Raw(2)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(p)
}

// Uint32 reads four little-endian bytes.
func (r *Reader) Uint32() uint32 {
	p := r.Raw(4)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(p)
}

// Uint64 reads eight little-endian bytes.
func (r *Reader) Uint64() uint64 {
	p := r.Raw(8)
	if p == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(p)
}

// Int reads a varint that must fit in an int.
func (r *Reader) Int() int {
	v := r.Varint()
	if v > math.MaxInt || v < math.MinInt {
		r.Fail("varint %d overflows int", v)
		return 0
	}
	return int(v)
}
