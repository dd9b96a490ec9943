package segment

import (
	"encoding/binary"
	"fmt"
)

// On-disk key encoding of the segment store. These constants and layouts
// are the store's file format: changing them makes existing data
// unreadable.
//
// Every key starts with a one-byte kind. UIDs are base64url (A-Z a-z 0-9 -
// _), so they never contain the 0x00 separator, and the key of one UID is
// never a prefix of another UID's keys.
//
//	entry      0x01 | uid | 0x00 | index (8 bytes, big endian)
//	           value: term (uvarint) | payload (rest of the value)
//	floor      0x02 | uid
//	           value: uvarint; every index <= floor was truncated away
//	tombstone  0x03 | uid
//	           value: empty; the UID was deleted, replays of its WAL
//	           records are discarded
//	linked     0x04 | id (8 bytes, big endian)
//	           value: a WAL file kept by hard link (see linked.go)
//	format     0x05
//	           value: uvarint; the newest format feature the store
//	           holds (absent: 1, inline entries only)
//
// An entry's value is either inline, as above, or a reference into a
// linked WAL file: 0x80 0x00 | file id | offset | length (uvarints).
//
// Big-endian indexes make pebble's byte order the index order, so one
// UID's entries are one contiguous key range: a range read is one
// iterator, "drop up to an index" and "drop from an index" are one range
// deletion each.
const (
	kindEntry     byte = 0x01
	kindFloor     byte = 0x02
	kindTombstone byte = 0x03
	kindLinked    byte = 0x04
	kindFormat    byte = 0x05
	uidSep        byte = 0x00
)

// entryKey returns the key of uid's entry at index.
func entryKey(uid string, index uint64) []byte {
	return appendEntryKey(make([]byte, 0, 1+len(uid)+1+8), uid, index)
}

// appendEntryKey appends the key of uid's entry at index to dst.
func appendEntryKey(dst []byte, uid string, index uint64) []byte {
	dst = append(dst, kindEntry)
	dst = append(dst, uid...)
	dst = append(dst, uidSep)
	return binary.BigEndian.AppendUint64(dst, index)
}

// entryBounds returns the key range [lower, upper) holding every entry of
// uid: upper replaces the 0x00 separator with 0x01.
func entryBounds(uid string) (lower, upper []byte) {
	lower = entryKey(uid, 0)
	upper = make([]byte, 0, 1+len(uid)+1)
	upper = append(upper, kindEntry)
	upper = append(upper, uid...)
	upper = append(upper, uidSep+1)
	return lower, upper
}

// indexOf decodes the index of an entry key of uid.
func indexOf(uid string, key []byte) (uint64, error) {
	if len(key) != 1+len(uid)+1+8 || key[0] != kindEntry {
		return 0, fmt.Errorf("%w: entry key %x of uid %q", ErrCorrupt, key, uid)
	}
	return binary.BigEndian.Uint64(key[len(key)-8:]), nil
}

func floorKey(uid string) []byte     { return append([]byte{kindFloor}, uid...) }
func tombstoneKey(uid string) []byte { return append([]byte{kindTombstone}, uid...) }

// appendValue appends an entry's value to dst.
func appendValue(dst []byte, term uint64, payload []byte) []byte {
	dst = binary.AppendUvarint(dst, term)
	return append(dst, payload...)
}

// decodeValue splits an entry's value; the payload is copied, because
// pebble's buffers are only valid until the iterator moves.
func decodeValue(v []byte) (term uint64, payload []byte, err error) {
	term, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: entry value without a term", ErrCorrupt)
	}
	if len(v) > n {
		payload = append([]byte(nil), v[n:]...)
	}
	return term, payload, nil
}

// Store formats. A store records the newest format it holds, and Open
// refuses a store of a newer format than it knows, instead of misreading
// values it cannot decode.
const (
	formatInline uint64 = 1 // entries inline only (no format key)
	formatLinked uint64 = 2 // entries may be references into linked WAL files
)

var formatKey = []byte{kindFormat}
