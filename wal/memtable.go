package wal

import (
	"iter"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/rago-raft/rago/actor"
)

// Entry is one log entry as the WAL stores it. Payload is opaque; once an
// Entry is handed to the WAL its Payload must not be modified, because mem
// tables keep the slice and concurrent readers see it.
type Entry struct {
	Index   uint64
	Term    uint64
	Payload []byte
}

// table holds the entries one UID wrote into one WAL file, as a contiguous
// run [lo, lo+len(spans)). A table shadows every entry of older tables
// and of the segments at index >= lo; a reset table also hides everything
// below lo.
//
// The entries are held compactly, so that a file of small entries costs
// little more memory than its bytes: payloads are copied into shared
// chunks, each entry keeps only where its payload lies (a span), indexes
// are implied by position, and terms are kept as runs. None of it holds
// pointers per entry, so the garbage collector scans a table in a few
// steps however many entries it has.
//
// Invariant: a published table is never mutated except past what any
// published view has seen: spans and terms are appended past their
// published length, payload bytes are written into a chunk past every
// published span (at used), and a chunk's slice header, once stored in
// chunks, never changes. So readers need no lock.
type table struct {
	file   uint64 // WAL file sequence number the entries live in
	lo     uint64 // index of the first entry
	reset  bool
	spans  []span    // one per entry; non-empty
	terms  []termRun // ascending; terms[0].first == lo
	chunks [][]byte  // payload storage, each allocated at its full length
	used   int       // bytes written into the last chunk
}

// span locates one entry's payload: chunks[chunk][off:off+n].
type span struct{ chunk, off, n uint32 }

// termRun says that entries from index first on have term, up to the
// next run.
type termRun struct{ first, term uint64 }

// Chunk sizes: a table's first chunk is small, so that a thousand mostly
// idle servers do not each hold a large one; each next one doubles, up to
// maxChunkBytes. A payload above bigPayloadBytes gets a chunk of its own.
const (
	minChunkBytes   = 64
	maxChunkBytes   = 64 << 10
	bigPayloadBytes = maxChunkBytes / 4
)

func newTable(file uint64, reset bool, e Entry) *table {
	t := &table{file: file, lo: e.Index, reset: reset}
	t.add(e)
	return t
}

func (t *table) len() int   { return len(t.spans) }
func (t *table) hi() uint64 { return t.lo + uint64(len(t.spans)) - 1 }

// at returns the entry at position i (index lo+i). Its payload is a view
// into the table's storage, capped so that appending to it copies.
func (t *table) at(i int) Entry {
	s := t.spans[i]
	p := t.chunks[s.chunk][s.off : s.off+s.n : s.off+s.n]
	index := t.lo + uint64(i)
	return Entry{Index: index, Term: t.termOf(index), Payload: p}
}

func (t *table) termOf(index uint64) uint64 {
	// The last run that starts at or below index.
	i := sort.Search(len(t.terms), func(i int) bool { return t.terms[i].first > index })
	return t.terms[i-1].term
}

// add appends e, whose index must be hi()+1 (or lo for a new table).
func (t *table) add(e Entry) {
	n := len(e.Payload)
	if len(t.chunks) == 0 || t.used+n > len(t.chunks[len(t.chunks)-1]) {
		size := n
		if n <= bigPayloadBytes {
			size = minChunkBytes
			if len(t.chunks) > 0 {
				size = min(2*len(t.chunks[len(t.chunks)-1]), maxChunkBytes)
			}
			size = max(size, n)
		}
		t.chunks = append(t.chunks, make([]byte, size))
		t.used = 0
	}
	last := len(t.chunks) - 1
	copy(t.chunks[last][t.used:], e.Payload)
	t.spans = append(t.spans, span{chunk: uint32(last), off: uint32(t.used), n: uint32(n)})
	t.used += n
	if len(t.terms) == 0 || t.terms[len(t.terms)-1].term != e.Term {
		t.terms = append(t.terms, termRun{first: e.Index, term: e.Term})
	}
}

// truncate keeps the first keep entries. Unless owned (the slices were
// made by this publish and never published), the kept spans and terms are
// copied first: published views may still read the slots that the next
// appends would overwrite. Payload bytes are never overwritten: chunks
// only grow, and the dropped entries' bytes stay until the table goes.
func (t *table) truncate(keep int, owned bool) {
	index := t.lo + uint64(keep) // the first index dropped
	terms := len(t.terms)
	for terms > 0 && t.terms[terms-1].first >= index {
		terms--
	}
	if owned {
		t.spans = t.spans[:keep]
		t.terms = t.terms[:terms]
		return
	}
	t.spans = append(make([]span, 0, keep+1), t.spans[:keep]...)
	t.terms = append(make([]termRun, 0, terms+1), t.terms[:terms]...)
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
	t := newTable(0, false, es[0])
	for _, e := range es[1:] {
		t.add(e)
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
		for i := es.from; i < es.to; i++ {
			if !yield(es.t.at(i)) {
				return
			}
		}
	}
}

// Bytes returns the sum of the entries' payload sizes.
func (es Entries) Bytes() int64 {
	var n int64
	for i := es.from; i < es.to; i++ {
		n += int64(es.t.spans[i].n)
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
	owned := false // cur's spans and terms were allocated here and never published
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
			cur = newTable(file, reset, w.Entry)
			owned = true
		case w.Index == cur.hi()+1:
			// Appending past every published length is invisible to
			// readers until the new state is stored.
			cur.add(w.Entry)
		default:
			// Overwrite inside the table: readers may be looking at the
			// slots being replaced, so copy unless nobody has seen them.
			cur.truncate(int(w.Index-cur.lo), owned)
			owned = true
			cur.add(w.Entry)
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
