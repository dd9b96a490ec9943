package sim

import (
	"fmt"
	"hash/fnv"

	"github.com/rago-raft/rago/raftserver/core"
)

// disk is one member's simulated storage: its hard state, its durable
// snapshot (with the machine state it holds) and its log.
//
// The log has two views. volatile is the log as the member's mem tables
// show it (every write applied as soon as issued), holding entries
// base+1 .. base+len(volatile); durable is what survives a crash, holding
// dbase+1 .. dbase+len(durable). pending holds the writes not yet synced,
// in issue order: entry writes, and log resets (a snapshot install), which
// a crash may lose like any write.
type disk struct {
	hard core.HardState

	snap  core.Snapshot // durable snapshot, zero if none
	state machineState  // the machine state snap holds

	base, baseTerm uint64
	baseHash       uint64 // rolling hash of the prefix up to base
	volatile       []core.Entry
	// hashes[i] is the rolling hash of the prefix up to volatile[i]: two
	// logs with equal hashes at an index hold identical prefixes.
	hashes []uint64

	dbase, dbaseTerm uint64
	dbaseHash        uint64
	durable          []core.Entry

	pending []write

	// recoverTo and recoverTerm are durable like hard: the last entry of
	// the log this member lost when a corrupt snapshot cut it off (see
	// core.Config.RecoverTo).
	recoverTo, recoverTerm uint64
	// members is the last configuration the member applied, kept apart
	// from the log as the server's directory keeps it: a member that lost
	// its log and snapshot still knows its peers.
	members core.Membership
}

// write is one pending write: entries, or a reset of the log to hold
// nothing after base.
type write struct {
	ents                 []core.Entry
	reset                bool
	base, term, baseHash uint64
}

func (d *disk) last() uint64 { return d.base + uint64(len(d.volatile)) }

// hashAt returns the rolling hash of the prefix up to i, if the log still
// knows it (i at or above base).
func (d *disk) hashAt(i uint64) (uint64, bool) {
	switch {
	case i == d.base:
		return d.baseHash, true
	case i > d.base && i <= d.last():
		return d.hashes[i-d.base-1], true
	}
	return 0, false
}

// entryAt returns the entry at i, if the log holds it.
func (d *disk) entryAt(i uint64) (*core.Entry, bool) {
	if i <= d.base || i > d.last() {
		return nil, false
	}
	return &d.volatile[i-d.base-1], true
}

// writeEntries applies one Append to the volatile log (overwriting a
// suffix when it starts at or below the end) and queues it for syncing.
func (d *disk) writeEntries(ents []core.Entry) error {
	first := ents[0].Index
	if first <= d.base || first > d.last()+1 {
		return fmt.Errorf("append at %d outside the log's (%d, %d+1]", first, d.base, d.last())
	}
	own := append([]core.Entry(nil), ents...)
	keep := first - d.base - 1
	d.volatile = append(d.volatile[:keep], own...)
	d.hashes = d.hashes[:keep]
	for i := range own {
		d.hashes = append(d.hashes, chain(d.prevHash(), &own[i]))
	}
	d.pending = append(d.pending, write{ents: own})
	return nil
}

func (d *disk) prevHash() uint64 {
	if len(d.hashes) == 0 {
		return d.baseHash
	}
	return d.hashes[len(d.hashes)-1]
}

// resetLog empties the log after base (term, hash): the volatile view at
// once, the durable one once the reset is synced.
func (d *disk) resetLog(base, term, hash uint64) {
	d.base, d.baseTerm, d.baseHash = base, term, hash
	d.volatile, d.hashes = d.volatile[:0], d.hashes[:0]
	d.pending = append(d.pending, write{reset: true, base: base, term: term, baseHash: hash})
}

// entryWritesPending counts the pending entry writes (not resets).
func (d *disk) entryWritesPending() int {
	n := 0
	for _, w := range d.pending {
		if !w.reset {
			n++
		}
	}
	return n
}

// sync makes the first n pending writes durable and returns the last entry
// of each entry write.
func (d *disk) sync(n int) ([]core.Entry, error) {
	lasts := make([]core.Entry, 0, n)
	for _, w := range d.pending[:n] {
		if w.reset {
			d.dbase, d.dbaseTerm, d.dbaseHash = w.base, w.term, w.baseHash
			d.durable = d.durable[:0]
			continue
		}
		first := w.ents[0].Index
		if first <= d.dbase || first > d.dbase+uint64(len(d.durable))+1 {
			return nil, fmt.Errorf("synced write at %d outside the durable log's (%d, %d+1]", first, d.dbase, d.dbase+uint64(len(d.durable)))
		}
		d.durable = append(d.durable[:first-d.dbase-1], w.ents...)
		lasts = append(lasts, w.ents[len(w.ents)-1])
	}
	d.pending = d.pending[n:]
	return lasts, nil
}

// compact drops the entries up to through from both views; they must be
// durable.
func (d *disk) compact(through uint64) error {
	if through > d.base {
		if through > d.last() {
			return fmt.Errorf("compacting through %d beyond the log's end %d", through, d.last())
		}
		k := through - d.base
		d.baseTerm, d.baseHash = d.volatile[k-1].Term, d.hashes[k-1]
		d.volatile = append(d.volatile[:0], d.volatile[k:]...)
		d.hashes = append(d.hashes[:0], d.hashes[k:]...)
		d.base = through
	}
	if through > d.dbase {
		if through > d.dbase+uint64(len(d.durable)) {
			return fmt.Errorf("compacting through %d beyond the durable log's end %d", through, d.dbase+uint64(len(d.durable)))
		}
		k := through - d.dbase
		if d.durable[k-1].Term != d.baseTerm || d.base != through {
			return fmt.Errorf("compacting through %d where the durable and volatile logs differ", through)
		}
		d.dbaseTerm, d.dbaseHash = d.durable[k-1].Term, d.baseHash
		d.durable = append(d.durable[:0], d.durable[k:]...)
		d.dbase = through
	}
	return nil
}

// crash loses the unsynced writes except the first survive, which reached
// the disk without being reported, as a real crash may leave them.
func (d *disk) crash(survive int) error {
	if _, err := d.sync(survive); err != nil {
		return err
	}
	d.pending = nil
	d.base, d.baseTerm, d.baseHash = d.dbase, d.dbaseTerm, d.dbaseHash
	d.volatile = append(d.volatile[:0], d.durable...)
	d.hashes = d.hashes[:0]
	for i := range d.volatile {
		d.hashes = append(d.hashes, chain(d.prevHash(), &d.volatile[i]))
	}
	return nil
}

// loseSnapshot models a snapshot that fails verification at start: the
// member is left with no snapshot (the server would take an older one if
// it had one; none is kept here).
func (d *disk) loseSnapshot() {
	d.snap = core.Snapshot{}
	d.state = newMachineState()
}

// reconcile runs before a restart, as the server does: a log that does not
// continue the durable snapshot (it ends below it, or holds another term at
// its index, when a crash cut an install short or lost writes the snapshot
// covers) is reset to the snapshot. A log that starts after the snapshot
// (the newer snapshot it continued was lost) is reset too, and the member
// records that it lost entries up to the log's end.
func (d *disk) reconcile() {
	s := d.snap
	if d.base > s.Index {
		if t, ok := d.termAt(d.last()); ok && d.last() > d.recoverTo {
			d.recoverTo, d.recoverTerm = d.last(), t
		}
	} else {
		if s.Index == 0 {
			return
		}
		t, ok := d.termAt(s.Index)
		if ok && t == s.Term {
			return
		}
	}
	d.resetLog(s.Index, s.Term, d.state.hash)
	d.pending = d.pending[:0]
	d.dbase, d.dbaseTerm, d.dbaseHash = s.Index, s.Term, d.state.hash
	d.durable = d.durable[:0]
}

// termAt is the term the volatile log holds at i (base included).
func (d *disk) termAt(i uint64) (uint64, bool) {
	if i == d.base {
		return d.baseTerm, true
	}
	if e, ok := d.entryAt(i); ok {
		return e.Term, true
	}
	return 0, false
}

func entryHash(e *core.Entry) uint64 {
	h := fnv.New64a()
	var b [17]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(e.Index >> (8 * i))
		b[8+i] = byte(e.Term >> (8 * i))
	}
	b[16] = byte(e.Type)
	h.Write(b[:])
	h.Write(e.Data)
	return h.Sum64()
}

func chain(prev uint64, e *core.Entry) uint64 {
	return (prev^entryHash(e))*0x100000001b3 + 0x9e3779b97f4a7c15
}

// reader is the LogReader a member's core gets: it shows the volatile log,
// which is a superset of what the core may ask for.
type reader struct{ d *disk }

// FirstIndex, LastIndex, Term and Entries implement core.LogReader.
func (r reader) FirstIndex() uint64 { return r.d.base + 1 }
func (r reader) LastIndex() uint64  { return r.d.last() }

func (r reader) Term(i uint64) (uint64, error) {
	switch {
	case i < r.d.base:
		return 0, fmt.Errorf("%w: %d below %d", core.ErrCompacted, i, r.d.base+1)
	case i > r.d.last():
		return 0, fmt.Errorf("%w: %d", core.ErrUnavailable, i)
	}
	t, _ := r.d.termAt(i)
	return t, nil
}

func (r reader) Entries(lo, hi uint64, maxBytes int) ([]core.Entry, error) {
	if lo <= r.d.base {
		return nil, fmt.Errorf("%w: [%d, %d) below %d", core.ErrCompacted, lo, hi, r.d.base+1)
	}
	if hi > r.d.last()+1 || lo > hi {
		return nil, fmt.Errorf("%w: [%d, %d) of %d", core.ErrUnavailable, lo, hi, r.d.last())
	}
	size := 0
	end := lo
	for end < hi {
		size += len(r.d.volatile[end-r.d.base-1].Data) + 24
		end++
		if size >= maxBytes {
			break
		}
	}
	return r.d.volatile[lo-r.d.base-1 : end-r.d.base-1 : end-r.d.base-1], nil
}
