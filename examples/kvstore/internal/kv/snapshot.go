// Snapshots of the machine: it implements raftserver.Snapshotter, so that
// the log does not grow forever and a member far behind catches up with
// one transfer.
//
// Snapshot copies a point-in-time view of the state on the server's
// goroutine (the entries as values in key order, the recent changes and
// the nodes) and returns at once; the view is serialised later, on the
// snapshot writer's goroutine, while Apply goes on changing the live state.
// The value bytes are shared between the view and the machine, not copied:
// the machine never changes a stored value slice in place. set replaces
// Entry.Value with the command's slice, which the typed machine's JSON
// decoding allocated fresh for that command (base64 decodes into a new
// slice), and nothing else writes to a value (queries only read or
// re-slice it, to marshal it). The Entry structs themselves are copied,
// because set changes an existing *Entry in place.
//
// Wire format, version 2. Every integer is an unsigned varint
// (encoding/binary's Uvarint) in its shortest encoding; a string is its
// length as a uvarint followed by that many bytes.
//
//	magic    "KVSNAP" (6 bytes), then the version, the byte 2
//	entries  count, then for each key in ascending byte order:
//	         key string, value string, revision, created
//	recent   count (at most RecentChanges), then each change, oldest first:
//	         key string, op string ("put" or "delete"), revision
//	nodes    count, then each node in ascending order of id:
//	         id string, raft string, http string
//	applied  the index of the last command applied
//	since    the lowest revision from which on the history is complete
//	history  count (at most HistoryChanges), then each change, oldest
//	         first (revisions ascending, from since on): revision, key
//	         string, op string, value string (empty for a delete)
//
// The stream ends after the history: trailing bytes make it invalid.
// Version 1 ends after the nodes; it restores with an empty history that
// is complete from the change after the last recent one.
// Because the order of everything is fixed and varints are shortest, a
// state has exactly one encoding.

package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/rago-raft/rago/snapshot"
)

// ErrBadSnapshot is wrapped by the errors of Restore for input that is not
// a valid snapshot of the machine: another format or version, truncated,
// trailing bytes, a length over a limit, an invalid key or node id, keys
// out of order. Errors of the reader itself are returned as they are.
var ErrBadSnapshot = errors.New("kv: bad snapshot")

const (
	snapshotMagic   = "KVSNAP"
	snapshotVersion = 2
	// maxSnapshotString bounds a value and a node's addresses in a
	// snapshot: far above any value a node accepts (node.MaxValueLimit),
	// low enough that a corrupt length cannot ask for absurd memory.
	maxSnapshotString = 64 << 20
	// maxOpBytes bounds the op of a recent change ("put", "delete").
	maxOpBytes = 16
	// preallocMax caps what Restore allocates ahead on the word of a count,
	// and readChunk how much it reads at once for a long string, so that a
	// corrupt count or length fails at the end of the input instead of
	// allocating what the input cannot justify.
	preallocMax = 1 << 16
	readChunk   = 64 << 10
)

// view is the point-in-time state a Source writes.
type view struct {
	entries        []Entry // in key order
	recent         []Change
	nodes          []NodeInfo // by id
	applied, since uint64
	history        []Event
}

// Snapshot implements raftserver.Snapshotter: it returns a point-in-time
// view of the state that the returned Source serialises later, on the
// snapshot writer's goroutine. It copies the entries (without their
// values, which are never changed in place), the recent changes and the
// nodes. That costs about 60 ns a key (6 ms for 100,000 keys, see
// BenchmarkSnapshot), in map lookups and copies; the serialisation, the
// checksum and the disk are the writer's.
func (m *Machine) Snapshot() (snapshot.Source, error) {
	v := &view{
		entries: make([]Entry, len(m.keys)),
		recent:  slices.Clone(m.recent),
		nodes:   make([]NodeInfo, 0, len(m.nodes)),
		applied: m.applied,
		since:   m.since,
		history: slices.Clone(m.history),
	}
	for i, k := range m.keys {
		v.entries[i] = *m.data[k]
	}
	for _, n := range m.nodes {
		v.nodes = append(v.nodes, n)
	}
	slices.SortFunc(v.nodes, func(a, b NodeInfo) int { return strings.Compare(a.ID, b.ID) })
	// Nothing to release: the view is garbage once the writer drops it.
	return snapshot.SourceFunc{Write: v.writeTo}, nil
}

// writeTo writes the view in the wire format and returns the bytes that
// reached w and the first error.
func (v *view) writeTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	e := &encoder{w: bufio.NewWriterSize(cw, 64<<10)}
	e.putRaw(snapshotMagic)
	e.putByte(snapshotVersion)
	e.putUvarint(uint64(len(v.entries)))
	for i := range v.entries {
		x := &v.entries[i]
		e.putString(x.Key)
		e.putBytes(x.Value)
		e.putUvarint(x.Revision)
		e.putUvarint(x.Created)
		if e.err != nil {
			return cw.n, e.err
		}
	}
	e.putUvarint(uint64(len(v.recent)))
	for _, c := range v.recent {
		e.putString(c.Key)
		e.putString(c.Op)
		e.putUvarint(c.Revision)
	}
	e.putUvarint(uint64(len(v.nodes)))
	for _, n := range v.nodes {
		e.putString(n.ID)
		e.putString(n.Raft)
		e.putString(n.HTTP)
	}
	e.putUvarint(v.applied)
	e.putUvarint(v.since)
	e.putUvarint(uint64(len(v.history)))
	for _, h := range v.history {
		e.putUvarint(h.Revision)
		e.putString(h.Key)
		e.putString(h.Op)
		e.putBytes(h.Value)
	}
	if e.err == nil {
		e.err = e.w.Flush()
	}
	return cw.n, e.err
}

// encoder writes the pieces of the format, keeping the first error.
type encoder struct {
	w       *bufio.Writer
	scratch [binary.MaxVarintLen64]byte
	err     error
}

func (e *encoder) putUvarint(x uint64) {
	if e.err == nil {
		_, e.err = e.w.Write(binary.AppendUvarint(e.scratch[:0], x))
	}
}

func (e *encoder) putByte(b byte) {
	if e.err == nil {
		e.err = e.w.WriteByte(b)
	}
}

// putRaw writes s without a length.
func (e *encoder) putRaw(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

// putString writes s with its length: a string of the format.
func (e *encoder) putString(s string) {
	e.putUvarint(uint64(len(s)))
	e.putRaw(s)
}

func (e *encoder) putBytes(b []byte) {
	e.putUvarint(uint64(len(b)))
	if e.err == nil {
		_, e.err = e.w.Write(b)
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore implements raftserver.Snapshotter: it replaces the state with
// the one a Source of Snapshot wrote, reading r to io.EOF. Input that is
// not such a snapshot gets an error wrapping ErrBadSnapshot, and leaves
// the machine as it was.
func (m *Machine) Restore(r io.Reader) error {
	d := &decoder{r: bufio.NewReader(r)}
	st, err := d.state()
	if err != nil {
		return err
	}
	*m = *st
	return nil
}

// decoder reads the format. Its methods return errors ready for Restore.
type decoder struct {
	r *bufio.Reader
	// n counts the bytes read, for error messages and the shortest-varint
	// check.
	n int64
	// ioErr is the reader's own error (not io.EOF), which is not the
	// snapshot's fault.
	ioErr error
	// buf holds a short string while it is read.
	buf []byte
}

func (d *decoder) ReadByte() (byte, error) {
	b, err := d.r.ReadByte()
	if err == nil {
		d.n++
	} else if err != io.EOF {
		d.ioErr = err
	}
	return b, err
}

func (d *decoder) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	d.n += int64(n)
	if err != nil && err != io.EOF {
		d.ioErr = err
	}
	return n, err
}

// bad returns an error wrapping ErrBadSnapshot for what at the current
// offset.
func (d *decoder) bad(what, format string, args ...any) error {
	return fmt.Errorf("%w: %s at byte %d: %s", ErrBadSnapshot, what, d.n, fmt.Sprintf(format, args...))
}

// readErr classifies an error met while reading what.
func (d *decoder) readErr(what string, err error) error {
	if d.ioErr != nil {
		return fmt.Errorf("kv: reading snapshot: %s: %w", what, d.ioErr)
	}
	if err == io.EOF {
		// Every read is of a field that must be there.
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %s at byte %d: %w", ErrBadSnapshot, what, d.n, err)
}

func (d *decoder) readUvarint(what string) (uint64, error) {
	start := d.n
	x, err := binary.ReadUvarint(d)
	if err != nil {
		return 0, d.readErr(what, err)
	}
	var buf [binary.MaxVarintLen64]byte
	if d.n-start != int64(binary.PutUvarint(buf[:], x)) {
		return 0, d.bad(what, "varint %d is not in its shortest encoding", x)
	}
	return x, nil
}

// readCount reads a count of at most limit items.
func (d *decoder) readCount(what string, limit int) (int, error) {
	x, err := d.readUvarint(what)
	if err != nil {
		return 0, err
	}
	if x > uint64(limit) {
		return 0, d.bad(what, "%d is more than %d", x, limit)
	}
	return int(x), nil
}

// readLength reads the length of a string of at most limit bytes.
func (d *decoder) readLength(what string, limit int) (int, error) {
	x, err := d.readUvarint(what)
	if err != nil {
		return 0, err
	}
	if x > uint64(limit) {
		return 0, d.bad(what, "length %d is more than %d", x, limit)
	}
	return int(x), nil
}

// readN reads n bytes into a new slice. It reads a long string chunk by
// chunk, so that a length the input does not hold fails without
// allocating it all.
func (d *decoder) readN(what string, n int) ([]byte, error) {
	if n <= readChunk {
		b := make([]byte, n)
		if _, err := io.ReadFull(d, b); err != nil {
			return nil, d.readErr(what, err)
		}
		return b, nil
	}
	var chunks [][]byte
	for left := n; left > 0; {
		c := make([]byte, min(left, readChunk))
		if _, err := io.ReadFull(d, c); err != nil {
			return nil, d.readErr(what, err)
		}
		chunks = append(chunks, c)
		left -= len(c)
	}
	return bytes.Join(chunks, nil), nil
}

// readBytes reads a string of the format of at most limit bytes, as a
// new slice (never nil).
func (d *decoder) readBytes(what string, limit int) ([]byte, error) {
	n, err := d.readLength(what, limit)
	if err != nil {
		return nil, err
	}
	return d.readN(what, n)
}

// readString reads a string of the format of at most limit bytes. A short
// one goes through the decoder's buffer, to allocate only the string.
func (d *decoder) readString(what string, limit int) (string, error) {
	n, err := d.readLength(what, limit)
	if err != nil {
		return "", err
	}
	if n > readChunk {
		b, err := d.readN(what, n)
		return string(b), err
	}
	d.buf = slices.Grow(d.buf[:0], n)[:n]
	if _, err := io.ReadFull(d, d.buf); err != nil {
		return "", d.readErr(what, err)
	}
	return string(d.buf), nil
}

// state reads a whole snapshot into a new machine.
func (d *decoder) state() (*Machine, error) {
	var head [len(snapshotMagic) + 1]byte
	if _, err := io.ReadFull(d, head[:]); err != nil {
		return nil, d.readErr("header", err)
	}
	if string(head[:len(snapshotMagic)]) != snapshotMagic {
		return nil, d.bad("header", "not a kv snapshot (magic %q)", head[:len(snapshotMagic)])
	}
	version := head[len(snapshotMagic)]
	if version != 1 && version != snapshotVersion {
		return nil, d.bad("header", "version %d is not supported (only 1 and %d)", version, snapshotVersion)
	}

	n, err := d.readCount("entry count", math.MaxInt)
	if err != nil {
		return nil, err
	}
	m := &Machine{
		data:  make(map[string]*Entry, min(n, preallocMax)),
		keys:  make([]string, 0, min(n, preallocMax)),
		nodes: map[string]NodeInfo{},
	}
	for range n {
		key, err := d.readString("entry key", MaxKeyBytes)
		if err != nil {
			return nil, err
		}
		if err := ValidateKey(key); err != nil {
			return nil, d.bad("entry key", "%v", err)
		}
		if len(m.keys) > 0 && key <= m.keys[len(m.keys)-1] {
			return nil, d.bad("entry key", "key %q is not after %q: keys out of order or repeated", key, m.keys[len(m.keys)-1])
		}
		e := &Entry{Key: key}
		if e.Value, err = d.readBytes("entry value", maxSnapshotString); err != nil {
			return nil, err
		}
		if e.Revision, err = d.readUvarint("entry revision"); err != nil {
			return nil, err
		}
		if e.Created, err = d.readUvarint("entry created"); err != nil {
			return nil, err
		}
		m.data[key] = e
		m.keys = append(m.keys, key)
	}

	n, err = d.readCount("recent count", RecentChanges)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		m.recent = make([]Change, 0, n)
	}
	for range n {
		var c Change
		if c.Key, err = d.readString("recent key", MaxKeyBytes); err != nil {
			return nil, err
		}
		if err := ValidateKey(c.Key); err != nil {
			return nil, d.bad("recent key", "%v", err)
		}
		if c.Op, err = d.readString("recent op", maxOpBytes); err != nil {
			return nil, err
		}
		if c.Op != OpPut && c.Op != OpDelete {
			return nil, d.bad("recent op", "unknown change %q", c.Op)
		}
		if c.Revision, err = d.readUvarint("recent revision"); err != nil {
			return nil, err
		}
		m.recent = append(m.recent, c)
	}

	n, err = d.readCount("node count", math.MaxInt)
	if err != nil {
		return nil, err
	}
	prev := ""
	for i := range n {
		var node NodeInfo
		if node.ID, err = d.readString("node id", MaxKeyBytes); err != nil {
			return nil, err
		}
		if err := ValidateNodeID(node.ID); err != nil {
			return nil, d.bad("node id", "%v", err)
		}
		if i > 0 && node.ID <= prev {
			return nil, d.bad("node id", "node %q is not after %q: nodes out of order or repeated", node.ID, prev)
		}
		if node.Raft, err = d.readString("node raft address", maxSnapshotString); err != nil {
			return nil, err
		}
		if node.HTTP, err = d.readString("node http address", maxSnapshotString); err != nil {
			return nil, err
		}
		m.nodes[node.ID], prev = node, node.ID
	}

	if version == 1 {
		// No history: complete from the change after the last one known.
		m.since = 1
		if len(m.recent) > 0 {
			m.applied = m.recent[len(m.recent)-1].Revision
			m.since = m.applied + 1
		}
	} else if err := d.history(m); err != nil {
		return nil, err
	}

	switch _, err := d.r.ReadByte(); {
	case err == nil:
		return nil, d.bad("end", "trailing bytes after the last structure")
	case err != io.EOF:
		return nil, fmt.Errorf("kv: reading snapshot: end: %w", err)
	}
	return m, nil
}

// history reads the applied index and the history of a version 2 snapshot
// into m.
func (d *decoder) history(m *Machine) error {
	var err error
	if m.applied, err = d.readUvarint("applied index"); err != nil {
		return err
	}
	if m.since, err = d.readUvarint("history start"); err != nil {
		return err
	}
	if m.since == 0 || m.since > m.applied+1 {
		return d.bad("history start", "%d is not in [1, applied index %d + 1]", m.since, m.applied)
	}
	n, err := d.readCount("history count", HistoryChanges)
	if err != nil {
		return err
	}
	if n > 0 {
		m.history = make([]Event, 0, n)
	}
	prev := m.since - 1
	for range n {
		var e Event
		if e.Revision, err = d.readUvarint("history revision"); err != nil {
			return err
		}
		if e.Revision <= prev || e.Revision > m.applied {
			return d.bad("history revision", "%d is not after %d and at most the applied index %d", e.Revision, prev, m.applied)
		}
		if e.Key, err = d.readString("history key", MaxKeyBytes); err != nil {
			return err
		}
		if err := ValidateKey(e.Key); err != nil {
			return d.bad("history key", "%v", err)
		}
		if e.Op, err = d.readString("history op", maxOpBytes); err != nil {
			return err
		}
		if e.Value, err = d.readBytes("history value", maxSnapshotString); err != nil {
			return err
		}
		switch {
		case e.Op == OpDelete && len(e.Value) == 0:
			e.Value = nil
		case e.Op != OpPut:
			return d.bad("history op", "unknown change %q, or a delete with a value", e.Op)
		}
		m.history = append(m.history, e)
		m.historyBytes += e.size()
		prev = e.Revision
	}
	if m.historyBytes > HistoryBytes && n > 1 {
		return d.bad("history", "%d bytes of changes exceed the bound of %d", m.historyBytes, HistoryBytes)
	}
	return nil
}
