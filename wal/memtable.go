package wal

import (
	"iter"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/rago-raft/rago/actor"
)

// Entry is one log entry as the WAL stores it. Payload is opaque; once an
// Entry is handed to the WAL its Payload must not be modified until the
// write is answered.
//
// A writer whose payloads start with a byte it keeps apart (a type, say)
// can hand that byte over as Prefix, with Prefixed set, instead of
// copying it and the payload into a new buffer: the WAL stores Prefix
// followed by Payload as the entry's payload, with the copies it makes
// anyway. Entries read back are never Prefixed: the byte is the first of
// their Payload.
//
// A writer that never modifies Payload, not even after the write is
// answered, sets Shared: the mem tables may then keep Payload itself
// instead of a copy (they do from sharedMinBytes on). Shared is ignored for
// a Prefixed entry, whose payload is not in one piece.
type Entry struct {
	Index    uint64
	Term     uint64
	Payload  []byte
	Prefix   byte
	Prefixed bool
	Shared   bool
}

// kept reports whether the mem tables keep e's payload instead of a copy.
func (e *Entry) kept() bool { return e.Shared && !e.Prefixed && len(e.Payload) >= sharedMinBytes }

// size returns the length of the stored payload: Payload and any prefix.
func (e *Entry) size() int {
	if e.Prefixed {
		return 1 + len(e.Payload)
	}
	return len(e.Payload)
}

// table holds the entries one UID wrote into one WAL file, as a contiguous
// run [lo, lo+len(ends)). A table shadows every entry of older tables
// and of the segments at index >= lo; a reset table also hides everything
// below lo.
//
// The entries are held compactly, so that a file of small entries costs
// little more memory than its bytes: payloads are copied one after the
// other into shared chunks, each entry keeps only where its payload ends in
// its chunk (4 bytes), each chunk where its first entry is, indexes are
// implied by position, and terms are kept as runs. None of it holds
// pointers per small entry, so the garbage collector scans a table in a
// few steps however many entries it has. A Shared payload of
// sharedMinBytes or more is kept as it is, as a chunk of its own: one
// pointer per such entry, and no copy of its bytes. It keeps its whole
// buffer alive as long as the table lives, so a writer shares payloads
// that have a buffer of their own (a Raft server's do, see
// core.Entry.Framed).
//
// Invariant: a published table is never mutated except past what any
// published view has seen: ends, chunks, firsts and terms are appended
// past their published length, payload bytes are written into a chunk past
// every published entry's (at used), and a chunk's slice header, once
// stored in chunks, never changes. So readers need no lock. A shared chunk
// is full from the start (used is its length): nothing is ever written
// into it.
type table struct {
	file  uint64 // WAL file sequence number the entries live in
	lo    uint64 // index of the first entry
	reset bool
	// Entry i's payload is chunks[c][start:ends[i]], where c is the last
	// chunk with firsts[c] <= i, and start is 0 if firsts[c] == i and
	// ends[i-1] otherwise: the entries of a chunk follow each other.
	ends   []uint32  // one per entry; non-empty
	chunks [][]byte  // payload storage, each allocated at its full length
	firsts []uint32  // per chunk, its first entry's position; ascending
	used   int       // bytes written into the last chunk
	sealed bool      // the last chunk takes no more entries (see truncate)
	terms  []termRun // ascending; terms[0].first == lo

	// Where the entries' records lie in the WAL file, so that the segment
	// writer can point at them without reading the file back. Records of
	// one UID mostly follow each other, so only where that breaks is
	// kept: entry i's record starts at the offset of the last run at or
	// before i, plus the lengths of the records between. Nil when the
	// offsets are unknown (PackEntries); then unknown for good.
	locs    []locRun
	recHead uint32 // a record's length beyond its payload (header and UID)
	nextOff int64  // where a record right after the last one would start
}

// termRun says that entries from index first on have term, up to the
// next run.
type termRun struct{ first, term uint64 }

// locRun says that the record of the entry at position at starts at file
// offset off, and those of the entries after it follow it, up to the
// next run.
type locRun struct {
	at  int
	off int64
}

// Chunk sizes: a table's first chunk is small, so that a thousand mostly
// idle servers do not each hold a large one; each next one doubles, up to
// maxChunkBytes. A payload above bigPayloadBytes gets a chunk of its own.
const (
	minChunkBytes   = 64
	maxChunkBytes   = 64 << 10
	bigPayloadBytes = maxChunkBytes / 4
	// sharedMinBytes: a Shared payload from this size on is kept rather
	// than copied. Below it, a chunk's slice header (24 bytes) would cost
	// more than a tenth of the bytes it saves copying.
	sharedMinBytes = 256
)

// newTable starts a table with e. uidLen is the length of its UID (0 if
// its records' offsets are unknown); off is where e's record lies in the
// file (0: unknown).
func newTable(file uint64, reset bool, uidLen int, e Entry, off int64) *table {
	t := &table{file: file, lo: e.Index, reset: reset, recHead: uint32(recordHeaderLen + uidLen)}
	if uidLen > 0 && off > 0 {
		t.locs = []locRun{}
	}
	t.add(e, off)
	return t
}

func (t *table) len() int   { return len(t.ends) }
func (t *table) hi() uint64 { return t.lo + uint64(len(t.ends)) - 1 }

// at returns the entry at position i (index lo+i). Its payload is a view
// into the table's storage, capped so that appending to it copies.
func (t *table) at(i int) Entry { return t.entry(t.chunkOf(i), i) }

// entry returns the entry at position i, which chunk c holds.
func (t *table) entry(c, i int) Entry {
	start, end := t.bounds(c, i)
	index := t.lo + uint64(i)
	return Entry{Index: index, Term: t.termOf(index), Payload: t.chunks[c][start:end:end]}
}

// chunkOf returns the chunk that holds the entry at position i: the last
// one whose first entry is at or before i.
func (t *table) chunkOf(i int) int {
	lo, hi := 0, len(t.firsts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int(t.firsts[m]) <= i {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// bounds returns where in chunk c, which holds it, the payload of the
// entry at position i lies.
func (t *table) bounds(c, i int) (start, end uint32) {
	if int(t.firsts[c]) != i {
		start = t.ends[i-1]
	}
	return start, t.ends[i]
}

// size returns the payload size of the entry at position i, which chunk
// c holds.
func (t *table) size(c, i int) int {
	start, end := t.bounds(c, i)
	return int(end - start)
}

// nextChunk returns the chunk that holds the entry at position i, given
// that chunk c holds the one before it: how walks in order follow the
// chunks.
func (t *table) nextChunk(c, i int) int {
	if c+1 < len(t.firsts) && int(t.firsts[c+1]) == i {
		return c + 1
	}
	return c
}

func (t *table) termOf(index uint64) uint64 {
	// The last run that starts at or below index.
	i := sort.Search(len(t.terms), func(i int) bool { return t.terms[i].first > index })
	return t.terms[i-1].term
}

// add appends e, whose index must be hi()+1 (or lo for a new table) and
// whose record starts at off in the file (0: unknown).
func (t *table) add(e Entry, off int64) {
	n := e.size()
	if e.kept() {
		t.newChunk(e.Payload[:n:n])
		t.used = n
		t.ends = append(t.ends, uint32(n))
		t.addTerm(e)
		t.locate(off, n)
		return
	}
	if len(t.chunks) == 0 || t.sealed || t.used+n > len(t.chunks[len(t.chunks)-1]) {
		size := n
		if n <= bigPayloadBytes {
			size = minChunkBytes
			if len(t.chunks) > 0 {
				size = min(2*len(t.chunks[len(t.chunks)-1]), maxChunkBytes)
			}
			size = max(size, n)
		}
		t.newChunk(make([]byte, size))
		t.used = 0
	}
	last := len(t.chunks) - 1
	at := t.used
	if e.Prefixed {
		t.chunks[last][at] = e.Prefix
		at++
	}
	copy(t.chunks[last][at:], e.Payload)
	t.used += n
	t.ends = append(t.ends, uint32(t.used))
	t.addTerm(e)
	t.locate(off, n)
}

// newChunk starts chunk b, whose first entry is the next one added.
func (t *table) newChunk(b []byte) {
	t.chunks = append(t.chunks, b)
	t.firsts = append(t.firsts, uint32(len(t.ends)))
	t.sealed = false
}

// addTerm records the term of e, just added.
func (t *table) addTerm(e Entry) {
	if len(t.terms) == 0 || t.terms[len(t.terms)-1].term != e.Term {
		t.terms = append(t.terms, termRun{first: e.Index, term: e.Term})
	}
}

// locate records that the entry just added, of payload size n, has its
// record at off.
func (t *table) locate(off int64, n int) {
	switch {
	case t.locs == nil:
	case off <= 0:
		t.locs = nil
	case off != t.nextOff:
		t.locs = append(t.locs, locRun{at: len(t.ends) - 1, off: off})
		fallthrough
	default:
		t.nextOff = off + int64(t.recHead) + int64(n)
	}
}

// truncate keeps the first keep entries. Unless owned (the slices were
// made by this publish and never published), what is kept of ends, chunks,
// firsts and terms is copied first: published views may still read the
// slots that the next appends would overwrite. Payload bytes are never
// overwritten: the chunks that still hold kept entries stay, the last of
// them sealed (the next entry starts a chunk of its own, since the dropped
// entries' bytes lie between), and a dropped chunk's bytes stay until no
// view holds it.
func (t *table) truncate(keep int, owned bool) {
	index := t.lo + uint64(keep) // the first index dropped
	terms := len(t.terms)
	for terms > 0 && t.terms[terms-1].first >= index {
		terms--
	}
	locs := len(t.locs)
	for locs > 0 && t.locs[locs-1].at >= keep {
		locs--
	}
	chunks := t.chunkOf(keep-1) + 1 // those holding kept entries (none if keep is 0)
	t.nextOff = 0                   // the next record starts a run of its own
	t.sealed = true
	if owned {
		t.ends = t.ends[:keep]
		t.chunks = t.chunks[:chunks]
		t.firsts = t.firsts[:chunks]
		t.terms = t.terms[:terms]
		if t.locs != nil {
			t.locs = t.locs[:locs]
		}
		return
	}
	t.ends = append(make([]uint32, 0, keep+1), t.ends[:keep]...)
	t.chunks = append(make([][]byte, 0, chunks+1), t.chunks[:chunks]...)
	t.firsts = append(make([]uint32, 0, chunks+1), t.firsts[:chunks]...)
	t.terms = append(make([]termRun, 0, terms+1), t.terms[:terms]...)
	if t.locs != nil {
		t.locs = append(make([]locRun, 0, locs+1), t.locs[:locs]...)
	}
}

// Entries is a run of consecutive entries of one table: what a closed
// file holds for one UID (ClosedTable.Entries). It is immutable and safe
// to read from any goroutine.
type Entries struct {
	t        *table
	from, to int // positions in t
}

// PackEntries copies es, whose indexes must be consecutive and ascending,
// into compact storage: how tests and tools build a ClosedTable.
func PackEntries(es ...Entry) Entries {
	if len(es) == 0 {
		return Entries{}
	}
	t := newTable(0, false, 0, es[0], 0)
	for _, e := range es[1:] {
		t.add(e, 0)
	}
	return Entries{t: t, to: t.len()}
}

func tableEntries(t *table) Entries { return Entries{t: t, to: t.len()} }

// Len returns the number of entries.
func (es Entries) Len() int { return es.to - es.from }

// At returns the i-th entry (0 <= i < Len). Its payload must not be
// modified.
func (es Entries) At(i int) Entry { return es.t.at(es.from + i) }

// From returns the entries from the i-th on.
func (es Entries) From(i int) Entries {
	return Entries{t: es.t, from: min(es.from+i, es.to), to: es.to}
}

// All yields the entries in order.
func (es Entries) All() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		if es.Len() == 0 {
			return
		}
		t := es.t
		c := t.chunkOf(es.from)
		for i := es.from; i < es.to; i++ {
			c = t.nextChunk(c, i)
			if !yield(t.entry(c, i)) {
				return
			}
		}
	}
}

// Records calls fn with the position (0 <= i < Len), file offset and
// encoded length of each entry's record in the WAL file, in order. It
// reports false, without calling fn, if the entries do not know where
// their records lie (PackEntries made them).
func (es Entries) Records(fn func(i int, off int64, n int)) bool {
	t := es.t
	if es.Len() == 0 {
		return true
	}
	if t.locs == nil {
		return false
	}
	// The last run that starts at or before es.from, walked up to it.
	r := sort.Search(len(t.locs), func(r int) bool { return t.locs[r].at > es.from }) - 1
	off := t.locs[r].off
	c := t.chunkOf(t.locs[r].at)
	for i := t.locs[r].at; i < es.from; i++ {
		c = t.nextChunk(c, i)
		off += int64(t.recHead) + int64(t.size(c, i))
	}
	r++
	for i := es.from; i < es.to; i++ {
		if r < len(t.locs) && t.locs[r].at == i {
			off = t.locs[r].off
			r++
		}
		c = t.nextChunk(c, i)
		n := int(t.recHead) + t.size(c, i)
		fn(i-es.from, off, n)
		off += int64(n)
	}
	return true
}

// Bytes returns the sum of the entries' payload sizes.
func (es Entries) Bytes() int64 {
	if es.Len() == 0 {
		return 0
	}
	t := es.t
	var n int64
	c := t.chunkOf(es.from)
	for i := es.from; i < es.to; i++ {
		c = t.nextChunk(c, i)
		n += int64(t.size(c, i))
	}
	return n
}

// memState is one immutable published state of a MemLog: its tables,
// oldest file first. A UID has at most one table per file.
type memState struct {
	tables []*table
}

// MemLog is the set of mem tables of one UID: the entries of that UID that
// are in WAL files and not yet known to be in segments.
//
// Concurrency: any number of goroutines may read through View at any time
// without locks and without messaging the WAL: a View is an immutable
// snapshot loaded with one atomic pointer read. The WAL (publishing a
// synced batch) and the segment writer (dropping flushed tables) serialize
// on mu; they never wait for readers, so a slow reader can never stall the
// node's WAL. Writers build a new state and publish it with one atomic
// store; old states stay valid for readers that still hold them and are
// reclaimed by the garbage collector.
type MemLog struct {
	uid        string
	mu         sync.Mutex // serializes publishers; readers never take it
	state      atomic.Pointer[memState]
	subscriber atomic.Pointer[actor.Ref]
}

func (m *MemLog) setSubscriber(ref actor.Ref) { m.subscriber.Store(&ref) }

// Subscriber returns the process that registered as this UID's writer
// (it gets the segment writer's notifications), if any.
func (m *MemLog) Subscriber() (actor.Ref, bool) {
	if r := m.subscriber.Load(); r != nil {
		return *r, true
	}
	return actor.Ref{}, false
}

func newMemLog(uid string) *MemLog {
	m := &MemLog{uid: uid}
	m.state.Store(&memState{})
	return m
}

// UID returns the UID whose entries this MemLog holds.
func (m *MemLog) UID() string { return m.uid }

// View returns a consistent snapshot of the mem tables. It is cheap (one
// atomic load) and safe to call from any goroutine.
func (m *MemLog) View() View { return View{tables: m.state.Load().tables} }

// memWrite is one accepted write as the mem tables apply it.
type memWrite struct {
	Entry
	reset bool
	off   int64 // where the record lies in the file; 0 if unknown
}

// publish applies writes, in order, to the table of file and publishes the
// result. The caller (the WAL) has checked sequencing: each write's index
// is at most one past the previous last index, unless it is a reset or the
// first write the WAL knows of for this UID.
func (m *MemLog) publish(file uint64, writes []memWrite) {
	if len(writes) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.state.Load().tables
	keep := old
	var cur *table
	owned := false // cur's slices were allocated here and never published
	if n := len(old); n > 0 && old[n-1].file == file {
		c := *old[n-1]
		cur = &c
		keep = old[:n-1]
	}
	for _, w := range writes {
		switch {
		case cur == nil || w.reset || w.Index < cur.lo:
			// A fresh table for this file. It replaces any table of the
			// same file: that one lies entirely at or above w.Index (or is
			// discarded by the reset), so nothing of it stays visible.
			reset := w.reset || (cur != nil && cur.reset)
			cur = newTable(file, reset, len(m.uid), w.Entry, w.off)
			owned = true
		case w.Index == cur.hi()+1:
			// Appending past every published length is invisible to
			// readers until the new state is stored.
			cur.add(w.Entry, w.off)
		default:
			// Overwrite inside the table: readers may be looking at the
			// slots being replaced, so copy unless nobody has seen them.
			cur.truncate(int(w.Index-cur.lo), owned)
			owned = true
			cur.add(w.Entry, w.off)
		}
	}
	tables := make([]*table, 0, len(keep)+1)
	tables = append(tables, keep...)
	tables = append(tables, cur)
	m.state.Store(&memState{tables: tables})
}

// DropFile removes the table of WAL file seq, if any. The segment writer
// calls it after that table's entries are durable in segments, so readers
// that no longer find them here find them there.
func (m *MemLog) DropFile(seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.state.Load().tables
	tables := make([]*table, 0, len(old))
	for _, t := range old {
		if t.file != seq {
			tables = append(tables, t)
		}
	}
	if len(tables) != len(old) {
		m.state.Store(&memState{tables: tables})
	}
}

// Release drops the oldest tables while they hold only entries at or
// below through: a snapshot covers those, and the owning server no longer
// reads below it, so their memory can go before the segment writer is done
// with their files (it holds closed files' entries itself until flushed,
// and the flush skips what the segments' truncation floor covers). Only a
// prefix of the tables goes: newer tables shadow older ones, so dropping
// the oldest never uncovers anything above through.
func (m *MemLog) Release(through uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.state.Load().tables
	n := 0
	for n < len(old) && old[n].hi() <= through {
		n++
	}
	if n > 0 {
		m.state.Store(&memState{tables: append([]*table(nil), old[n:]...)})
	}
}

// dropAll empties the MemLog (the UID's data is being deleted).
func (m *MemLog) dropAll() {
	m.mu.Lock()
	m.state.Store(&memState{})
	m.mu.Unlock()
}

// tableOf returns the table of file seq in the current state.
func (m *MemLog) tableOf(seq uint64) *table {
	for _, t := range m.state.Load().tables {
		if t.file == seq {
			return t
		}
	}
	return nil
}

// Presence says what a mem-table lookup learned about an index.
type Presence int

const (
	// Unknown: the mem tables do not cover the index; ask the segments.
	Unknown Presence = iota
	// Present: the entry was found.
	Present
	// Absent: the index is not in the log at all: past the last index, or
	// below the start of a reset log. Do not ask the segments.
	Absent
)

// View is an immutable snapshot of one UID's mem tables. Its zero value is
// an empty view.
type View struct {
	tables []*table
}

// Empty reports whether the view holds no entries.
func (v View) Empty() bool { return len(v.tables) == 0 }

// Get looks up index. The newest table that covers the index decides.
func (v View) Get(index uint64) (Entry, Presence) {
	for i := len(v.tables) - 1; i >= 0; i-- {
		t := v.tables[i]
		if index >= t.lo {
			if index <= t.hi() {
				return t.at(int(index - t.lo)), Present
			}
			return Entry{}, Absent
		}
		if t.reset {
			return Entry{}, Absent
		}
	}
	return Entry{}, Unknown
}

// Last returns the index and term of the last entry in the mem tables.
func (v View) Last() (index, term uint64, ok bool) {
	if len(v.tables) == 0 {
		return 0, 0, false
	}
	t := v.tables[len(v.tables)-1]
	return t.hi(), t.terms[len(t.terms)-1].term, true
}

// First returns the lowest index the mem tables hold. If reset is true,
// the log has nothing below first (a reset write discarded it), so the
// segments must not be consulted for lower indexes.
func (v View) First() (first uint64, reset bool, ok bool) {
	if len(v.tables) == 0 {
		return 0, false, false
	}
	first = v.tables[len(v.tables)-1].lo
	for i := len(v.tables) - 1; i >= 0; i-- {
		t := v.tables[i]
		first = min(first, t.lo)
		if t.reset {
			return first, true, true
		}
	}
	return first, false, true
}
