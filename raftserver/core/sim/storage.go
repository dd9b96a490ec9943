package sim

import (
	"fmt"
	"hash/fnv"

	"github.com/rago-raft/rago/raftserver/core"
)

// disk is one member's simulated storage. volatile is the log as the
// member's mem tables show it (every write applied as soon as issued);
// durable is what survives a crash. pending holds the writes not yet
// synced, in issue order.
type disk struct {
	hard     core.HardState
	durable  []core.Entry
	volatile []core.Entry
	pending  [][]core.Entry
	// hashes[i] is the rolling hash of volatile[0..i]: two logs with equal
	// hashes at an index hold identical prefixes.
	hashes []uint64
}

// write applies one Append to the volatile log (overwriting a suffix when
// it starts at or below the end) and queues it for syncing.
func (d *disk) write(ents []core.Entry) error {
	first := ents[0].Index
	if first == 0 || first > uint64(len(d.volatile))+1 {
		return fmt.Errorf("append at %d leaves a gap after %d", first, len(d.volatile))
	}
	own := append([]core.Entry(nil), ents...)
	d.volatile = append(d.volatile[:first-1], own...)
	d.hashes = d.hashes[:first-1]
	for i := range own {
		d.hashes = append(d.hashes, chain(d.prevHash(), &own[i]))
	}
	d.pending = append(d.pending, own)
	return nil
}

func (d *disk) prevHash() uint64 {
	if len(d.hashes) == 0 {
		return 0
	}
	return d.hashes[len(d.hashes)-1]
}

// sync makes the first n pending writes durable and returns the last entry
// of each.
func (d *disk) sync(n int) []core.Entry {
	lasts := make([]core.Entry, 0, n)
	for _, w := range d.pending[:n] {
		first := w[0].Index
		d.durable = append(d.durable[:first-1], w...)
		lasts = append(lasts, w[len(w)-1])
	}
	d.pending = d.pending[n:]
	return lasts
}

// crash loses the unsynced writes except the first survive, which reached
// the disk without being reported, as a real crash may leave them.
func (d *disk) crash(survive int) {
	d.sync(survive)
	d.pending = nil
	d.volatile = append(d.volatile[:0], d.durable...)
	d.hashes = d.hashes[:0]
	for i := range d.volatile {
		d.hashes = append(d.hashes, chain(d.prevHash(), &d.volatile[i]))
	}
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
func (r reader) FirstIndex() uint64 { return 1 }
func (r reader) LastIndex() uint64  { return uint64(len(r.d.volatile)) }

func (r reader) Term(i uint64) (uint64, error) {
	switch {
	case i == 0:
		return 0, nil
	case i > uint64(len(r.d.volatile)):
		return 0, fmt.Errorf("%w: %d", core.ErrUnavailable, i)
	}
	return r.d.volatile[i-1].Term, nil
}

func (r reader) Entries(lo, hi uint64, maxBytes int) ([]core.Entry, error) {
	if lo < 1 || hi > uint64(len(r.d.volatile))+1 || lo > hi {
		return nil, fmt.Errorf("%w: [%d, %d) of %d", core.ErrUnavailable, lo, hi, len(r.d.volatile))
	}
	size := 0
	end := lo
	for end < hi {
		size += len(r.d.volatile[end-1].Data) + 24
		end++
		if size >= maxBytes {
			break
		}
	}
	return r.d.volatile[lo-1 : end-1 : end-1], nil
}
