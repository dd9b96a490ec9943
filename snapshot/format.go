package snapshot

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// The file format (see doc.go for the picture). Every constant in this
// block is wire format: changing one makes old files unreadable.
const (
	// fileMagic opens every snapshot file.
	fileMagic = "RAGOSNAP"
	// formatVersion is the only version this package writes and reads.
	formatVersion = 1
	// fixedHeaderBytes: magic, version, flags, index, term, id, meta length.
	fixedHeaderBytes = 8 + 2 + 2 + 8 + 8 + 8 + 4
	// kindData starts a data block; kindEnd starts the trailer. A zeroed
	// region therefore never parses as a structure.
	kindData = 0x01
	kindEnd  = 0x02
	// blockHeaderBytes: kind and data length.
	blockHeaderBytes = 1 + 4
	// crcBytes is the size of every checksum field.
	crcBytes = 4
	// trailerBytes: kind, data length, file CRC.
	trailerBytes = 1 + 8 + crcBytes
	// minFileBytes is the smallest valid file: empty meta, no blocks.
	minFileBytes = fixedHeaderBytes + crcBytes + trailerBytes
)

// Limits a reader enforces so that a corrupt length cannot make it
// allocate without bound.
const (
	// MaxMetaBytes bounds the meta blob of one snapshot.
	MaxMetaBytes = 64 << 20
	// MaxBlockBytes bounds the data of one block.
	MaxBlockBytes = 16 << 20
	// DefaultBlockBytes is the data per block the Store writes unless
	// Options.BlockBytes says otherwise.
	DefaultBlockBytes = 256 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32                 { return crc32.Checksum(b, castagnoli) }
func crcUpdate(c uint32, b []byte) uint32 { return crc32.Update(c, castagnoli, b) }

// header is the parsed fixed part of a file header.
type header struct {
	index, term, id uint64
	metaLen         uint32
}

// appendHeader appends the whole header (fixed part, meta, header CRC).
func appendHeader(b []byte, h header, meta []byte) []byte {
	start := len(b)
	b = append(b, fileMagic...)
	b = binary.LittleEndian.AppendUint16(b, formatVersion)
	b = binary.LittleEndian.AppendUint16(b, 0)
	b = binary.LittleEndian.AppendUint64(b, h.index)
	b = binary.LittleEndian.AppendUint64(b, h.term)
	b = binary.LittleEndian.AppendUint64(b, h.id)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(meta)))
	b = append(b, meta...)
	return binary.LittleEndian.AppendUint32(b, crc(b[start:]))
}

// parseFixedHeader checks and decodes the fixed part of a header.
func parseFixedHeader(b []byte) (header, string) {
	if string(b[:8]) != fileMagic {
		return header{}, "bad magic"
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != formatVersion {
		return header{}, fmt.Sprintf("unknown format version %d", v)
	}
	if f := binary.LittleEndian.Uint16(b[10:]); f != 0 {
		return header{}, fmt.Sprintf("unknown flags %#x", f)
	}
	h := header{
		index:   binary.LittleEndian.Uint64(b[12:]),
		term:    binary.LittleEndian.Uint64(b[20:]),
		id:      binary.LittleEndian.Uint64(b[28:]),
		metaLen: binary.LittleEndian.Uint32(b[36:]),
	}
	switch {
	case h.index == 0:
		return header{}, "index 0"
	case h.id == 0:
		return header{}, "file id 0"
	case h.metaLen > MaxMetaBytes:
		return header{}, fmt.Sprintf("meta length %d exceeds %d", h.metaLen, MaxMetaBytes)
	}
	return h, ""
}

// blockCRC is the checksum of a data block starting at file offset off:
// CRC32C over the offset (8 bytes LE), the kind, the length and the data.
// Seeding it with the offset means a block copied, moved or swapped to
// another place in a file does not verify there.
func blockCRC(off int64, headerAndData []byte) uint32 {
	var o [8]byte
	binary.LittleEndian.PutUint64(o[:], uint64(off))
	return crcUpdate(crc(o[:]), headerAndData)
}

// phase is where a verifier is in the file's structure.
type phase uint8

const (
	phFixed      phase = iota // fixed header bytes
	phMeta                    // meta bytes
	phHeaderCRC               // header CRC
	phKind                    // kind byte of a block or the trailer
	phBlockLen                // block length
	phBlockData               // block data
	phBlockCRC                // block CRC
	phTrailerLen              // trailer data length
	phTrailerCRC              // trailer file CRC
	phDone                    // after the trailer: nothing may follow
)

// fieldBytes is the size of each fixed-size field phase.
var fieldBytes = [...]int{
	phFixed:      fixedHeaderBytes,
	phHeaderCRC:  crcBytes,
	phKind:       1,
	phBlockLen:   4,
	phBlockCRC:   crcBytes,
	phTrailerLen: 8,
	phTrailerCRC: crcBytes,
}

// verifier checks a snapshot file streamed through it, in pieces of any
// size, without keeping any of it: it holds only the current small field,
// running checksums and counts. Every check of the format lives here; the
// reader, the store and the receiver all verify through it.
//
// Invariant: off is the number of bytes consumed; err, once set, sticks.
type verifier struct {
	name   string  // file name for errors
	expect *header // if set, the header's index, term and id must match

	off   int64
	phase phase
	field [fixedHeaderBytes]byte
	fill  int   // bytes of the current field in field
	need  int64 // bytes left in a meta or block-data phase

	fileCRC  uint32 // over every byte before the trailer's CRC
	partCRC  uint32 // header CRC or the current block's CRC in progress
	start    int64  // offset where the current structure began (0: header)
	blockLen uint32
	data     int64 // data bytes of the complete blocks

	hdr       header
	hdrParsed bool
	err       error
}

func newVerifier(name string, expect *header) verifier {
	return verifier{name: name, expect: expect}
}

func (v *verifier) fail(off int64, format string, args ...any) error {
	v.err = &CorruptError{File: v.name, Offset: off, Reason: fmt.Sprintf(format, args...)}
	return v.err
}

// atBoundary reports whether the bytes so far end exactly after the header
// or after a verified block: a place from which a file can be resumed.
func (v *verifier) atBoundary() bool {
	return v.err == nil && v.phase == phKind && v.fill == 0
}

// done reports whether a complete, verified trailer was consumed.
func (v *verifier) done() bool { return v.err == nil && v.phase == phDone }

// write consumes p; see consume.
func (v *verifier) write(p []byte) error {
	_, err := v.consume(p, false)
	return err
}

// consume feeds p to the verifier and returns how many bytes it took: all
// of p, or with stopAtBoundary fewer when a boundary (atBoundary) is
// reached inside p. It returns the first error, which sticks.
func (v *verifier) consume(p []byte, stopAtBoundary bool) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	taken := 0
	for len(p) > 0 {
		switch v.phase {
		case phDone:
			return taken, v.fail(v.off, "%d bytes after the trailer", len(p))
		case phMeta, phBlockData:
			n := int(min(int64(len(p)), v.need))
			seg := p[:n]
			v.partCRC = crcUpdate(v.partCRC, seg)
			v.fileCRC = crcUpdate(v.fileCRC, seg)
			v.off += int64(n)
			v.need -= int64(n)
			p = p[n:]
			taken += n
			if v.need == 0 {
				if v.phase == phMeta {
					v.phase = phHeaderCRC
				} else {
					v.phase = phBlockCRC
				}
			}
		default:
			want := fieldBytes[v.phase]
			n := min(len(p), want-v.fill)
			copy(v.field[v.fill:], p[:n])
			if v.phase != phTrailerCRC {
				v.fileCRC = crcUpdate(v.fileCRC, p[:n])
			}
			v.fill += n
			v.off += int64(n)
			p = p[n:]
			taken += n
			if v.fill < want {
				continue
			}
			v.fill = 0
			if err := v.endField(); err != nil {
				return taken, err
			}
			if stopAtBoundary && v.atBoundary() {
				return taken, nil
			}
		}
	}
	return taken, nil
}

// endField checks a complete fixed-size field and moves to the next phase.
func (v *verifier) endField() error {
	f := v.field[:fieldBytes[v.phase]]
	start := v.off - int64(len(f))
	switch v.phase {
	case phFixed:
		h, bad := parseFixedHeader(f)
		if bad != "" {
			return v.fail(0, "header: %s", bad)
		}
		if e := v.expect; e != nil && (h.index != e.index || h.term != e.term || (e.id != 0 && h.id != e.id)) {
			return v.fail(0, "header names index %d term %d id %x, expected index %d term %d id %x",
				h.index, h.term, h.id, e.index, e.term, e.id)
		}
		v.hdr, v.hdrParsed = h, true
		v.partCRC = crc(f)
		v.need = int64(h.metaLen)
		v.phase = phMeta
		if v.need == 0 {
			v.phase = phHeaderCRC
		}
	case phHeaderCRC:
		if got := binary.LittleEndian.Uint32(f); got != v.partCRC {
			return v.fail(0, "header checksum %08x, computed %08x", got, v.partCRC)
		}
		v.phase = phKind
	case phKind:
		switch f[0] {
		case kindData:
			v.start = start
			v.phase = phBlockLen
		case kindEnd:
			v.start = start
			v.phase = phTrailerLen
		default:
			return v.fail(start, "unknown structure kind %#x", f[0])
		}
	case phBlockLen:
		l := binary.LittleEndian.Uint32(f)
		if l == 0 || l > MaxBlockBytes {
			return v.fail(v.start, "block length %d outside [1, %d]", l, MaxBlockBytes)
		}
		v.blockLen = l
		var hdr [blockHeaderBytes]byte
		hdr[0] = kindData
		copy(hdr[1:], f)
		v.partCRC = blockCRC(v.start, hdr[:])
		v.need = int64(l)
		v.phase = phBlockData
	case phBlockCRC:
		if got := binary.LittleEndian.Uint32(f); got != v.partCRC {
			return v.fail(v.start, "block checksum %08x, computed %08x", got, v.partCRC)
		}
		v.data += int64(v.blockLen)
		v.phase = phKind
	case phTrailerLen:
		if d := binary.LittleEndian.Uint64(f); d != uint64(v.data) {
			return v.fail(v.start, "trailer counts %d data bytes, blocks hold %d", d, v.data)
		}
		v.phase = phTrailerCRC
	case phTrailerCRC:
		if got := binary.LittleEndian.Uint32(f); got != v.fileCRC {
			return v.fail(v.start, "file checksum %08x, computed %08x", got, v.fileCRC)
		}
		v.phase = phDone
	}
	return nil
}

// finish is called at the end of the input: anything but a complete
// trailer means the file is truncated.
func (v *verifier) finish() error {
	if v.err != nil {
		return v.err
	}
	if v.phase == phKind {
		return v.fail(v.off, "truncated: the file ends without a trailer")
	}
	if v.phase != phDone {
		return v.fail(v.start, "truncated: the file ends inside the %s starting here", v.phase)
	}
	return nil
}

func (p phase) String() string {
	switch p {
	case phFixed, phMeta, phHeaderCRC:
		return "header"
	case phBlockLen, phBlockData, phBlockCRC:
		return "data block"
	default:
		return "trailer"
	}
}
