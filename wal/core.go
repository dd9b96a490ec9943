package wal

import (
	"fmt"
	"path"
	"sort"
	"sync/atomic"
)

// writeMsg is what Writer.Write sends to the WAL: consecutive entries of
// one writer, optionally starting a reset log.
type writeMsg struct {
	w       *Writer
	entries []Entry
	reset   bool // entries[0] restarts the UID's log
}

// notice is a notification for one writer, produced by the core and sent
// by the actor shell.
type notice struct {
	to  *Writer
	msg any // Written, OutOfSequence or WriteFailed
}

// writerState is what the WAL knows about one UID's log.
type writerState struct {
	uid   string
	log   *MemLog
	known bool   // a write or recovery established last
	last  uint64 // last index accepted (staged, not necessarily durable)
	gap   bool   // an OutOfSequence was sent and gap writes are dropped
	gone  bool   // forgotten: the UID's data is being deleted
	files map[uint64]struct{}
}

// progress is one UID's share of a batch.
type progress struct {
	ws      *writerState
	to      *Writer // the latest handle that wrote; it gets the notification
	from    uint64  // lowest index written in the batch
	last    uint64  // last index after the batch
	term    uint64  // term of last
	credits []credit
	writes  []memWrite
}

// credit is in-flight budget to give back to a Writer when its batch is
// answered. There is one per handle that wrote (a server that registered
// again while its old handle had writes in flight has two).
type credit struct {
	w       *Writer
	entries int
	bytes   int64
}

func (p *progress) addCredit(w *Writer, bytes int64) {
	if n := len(p.credits); n > 0 && p.credits[n-1].w == w {
		p.credits[n-1].entries++
		p.credits[n-1].bytes += bytes
		return
	}
	p.credits = append(p.credits, credit{w: w, entries: 1, bytes: bytes})
}

func (p *progress) release() {
	for _, c := range p.credits {
		c.w.release(c.entries, c.bytes)
	}
}

// batch is a group of writes made durable by one write and one sync.
type batch struct {
	buf      []byte // fileHeaderLen+batchHeaderLen reserved, then records
	entries  int
	kept     int64 // what rollover counts for payloads the mem tables keep (keptCost)
	progress []*progress
	byWriter map[*writerState]*progress

	// Set by cut:
	seq     uint64 // batch sequence number
	file    uint64 // file the batch goes to
	newFile bool   // the batch opens file (buf carries the file header)
	out     []byte // the bytes to write
}

const batchReserve = fileHeaderLen + batchHeaderLen

// memEntryCost is what rollover counts per entry on top of its record.
// The mem tables themselves take less than a record per entry (a 4-byte
// end offset beside the payload's bytes), so the file's bytes alone would
// already bound their memory by MaxFileBytes. Counting more closes a file
// of tiny entries sooner: its mem tables, held until the segment writer
// flushed the file, then take well under MaxFileBytes, and a flush
// does less at a time. With 16-byte commands, counting 16 instead of 64
// gained no throughput measurably and took 6-9 MiB more peak memory with
// three nodes.
const memEntryCost = 64

// keptCost is what rollover counts, on top of memEntryCost, for an entry
// whose payload of n bytes the mem tables keep instead of copying (see
// Entry.Shared): the chunk's slice header and first-entry position, and
// what the payload's own allocation may hold beyond its n bytes. Go rounds
// an allocation up to its size class, by at most an eighth up to 32 KiB,
// and to whole 8 KiB pages above.
func keptCost(n int) int64 {
	if n <= 32<<10 {
		return 28 + int64(n)/8
	}
	return 28 + 8<<10
}

// core is the WAL's logic without actors, goroutines or clocks: it stages
// writes into batches, decides rollover, and turns a finished batch into
// mem-table updates and notifications. The actor shell feeds it messages
// and runs the batches' I/O on the flusher; tests drive it directly.
//
// Invariant: at most one batch is between cut and complete.
type core struct {
	cfg     Config
	tables  *MemTables
	writers map[string]*writerState

	pending  []*batch // staged, oldest first; each within the batch limits
	inFlight *batch   // cut and not yet completed

	file      uint64 // current file; 0 before the first batch
	fileBytes int64  // bytes in the current file
	fileCost  int64  // fileBytes plus memEntryCost per entry and keptCost: what rollover counts
	lastLen   int    // length of the last completed batch (tests locate it)
	nextFile  uint64 // sequence of the next file to open
	batchSeq  uint64 // sequence of the last batch cut
	fileLogs  map[*writerState]struct{}
	// nextSeen is nextFile for other goroutines (WAL.Reclaim): no file
	// started from now on is numbered below it.
	nextSeen atomic.Uint64

	failed    error // sticky: set by the first failed batch
	forceRoll bool  // the next batch starts a new file

	stats statsCounters
	spare [][]byte // batch buffers to reuse: nothing references them after complete
	// Write lists to reuse: the mem tables copy what they keep of them
	// when a batch is published.
	spareWrites [][]memWrite

	// removeFile deletes a flushed file durably (ClosedFile.Remove);
	// recycleFile keeps it to be written over, or deletes it
	// (ClosedFile.Recycle).
	removeFile, recycleFile func(seq uint64) error
	// handedOver counts files given to the segment writer (recovered or
	// closed); removed counts those it removed, from its goroutine.
	handedOver int64
	removed    atomic.Int64
	stalled    bool // logged that rollover waits for the segment writer
}

func newCore(cfg Config, tables *MemTables, nextFile, batchSeq uint64) *core {
	c := &core{
		cfg:      cfg,
		tables:   tables,
		writers:  map[string]*writerState{},
		nextFile: nextFile,
		batchSeq: batchSeq,
		fileLogs: map[*writerState]struct{}{},
	}
	c.nextSeen.Store(nextFile)
	return c
}

func (c *core) writerState(uid string) *writerState {
	ws := c.writers[uid]
	if ws == nil {
		ws = &writerState{uid: uid, log: c.tables.getOrCreate(uid)}
		c.writers[uid] = ws
	}
	return ws
}

// stage accepts or rejects the entries of m and appends accepted ones to
// the pending batches. Rejections produce notices at once.
func (c *core) stage(m writeMsg) []notice {
	w := m.w
	if c.failed != nil {
		w.release(len(m.entries), payloadBytes(m.entries))
		return []notice{{to: w, msg: WriteFailed{UID: w.uid, From: m.entries[0].Index, To: m.entries[len(m.entries)-1].Index, Err: c.failed}}}
	}
	ws := c.writerState(w.uid)
	var out []notice
	for i, e := range m.entries {
		reset := m.reset && i == 0
		if ws.known && !reset && e.Index > ws.last+1 {
			rest := m.entries[i:]
			w.release(len(rest), payloadBytes(rest))
			if !ws.gap {
				ws.gap = true
				out = append(out, notice{to: w, msg: OutOfSequence{UID: w.uid, Expected: ws.last + 1, Got: e.Index}})
			}
			return out
		}
		ws.known, ws.gap, ws.last = true, false, e.Index
		c.append(ws, w, e, reset)
	}
	return out
}

// append adds one accepted write to the last pending batch, starting a new
// batch when the last one is full.
func (c *core) append(ws *writerState, w *Writer, e Entry, reset bool) {
	var b *batch
	if n := len(c.pending); n > 0 {
		b = c.pending[n-1]
	}
	rlen := recordLen(ws.uid, &e)
	if b == nil || b.entries >= c.cfg.MaxBatchEntries || (b.entries > 0 && len(b.buf)-batchReserve+rlen > c.cfg.MaxBatchBytes) {
		b = &batch{buf: c.newBuf(), byWriter: map[*writerState]*progress{}}
		c.pending = append(c.pending, b)
	}
	at := len(b.buf) // the record's place in the batch; complete makes it the file's
	b.buf = appendRecord(b.buf, ws.uid, &e, reset)
	b.entries++
	if e.kept() {
		b.kept += keptCost(len(e.Payload))
	}
	p := b.byWriter[ws]
	if p == nil {
		p = &progress{ws: ws, to: w, from: e.Index, writes: c.newWrites()}
		b.byWriter[ws] = p
		b.progress = append(b.progress, p)
	}
	p.to = w
	p.from = min(p.from, e.Index)
	p.last, p.term = e.Index, e.Term
	p.addCredit(w, int64(e.size()))
	p.writes = append(p.writes, memWrite{Entry: e, reset: reset, off: int64(at)})
}

// hasPending reports whether a batch is ready to be cut.
func (c *core) hasPending() bool { return len(c.pending) > 0 && c.failed == nil }

// cut takes the oldest pending batch, assigns its sequence number and file
// (rolling over when the current file is full) and lays out its header.
// It returns nil if nothing is pending, a batch is in flight, the WAL
// failed, or the batch needs a new file while the segment writer is too far
// behind (see waitingForSegments).
func (c *core) cut() *batch {
	if c.inFlight != nil || !c.hasPending() {
		return nil
	}
	b := c.pending[0]
	body := len(b.buf) - batchReserve
	cost := int64(batchHeaderLen+body) + int64(b.entries)*memEntryCost + b.kept
	roll := c.file == 0 || c.forceRoll || c.fileCost+cost > c.cfg.MaxFileBytes && c.fileBytes > fileHeaderLen
	if roll && c.waitingForSegments() {
		return nil
	}
	c.pending[0] = nil
	c.pending = c.pending[1:]
	c.batchSeq++
	b.seq = c.batchSeq
	if roll {
		c.forceRoll = false
		b.newFile = true
		b.file = c.nextFile
		b.out = b.buf
		appendFileHeader(b.buf[:0], b.file)
	} else {
		b.file = c.file
		b.out = b.buf[fileHeaderLen:]
	}
	h := batchHeader{seq: b.seq, bodyLen: uint32(body), count: uint32(b.entries)}
	h.digest = recordsDigest(b.buf[batchReserve:], b.entries, b.file)
	putBatchHeader(b.buf[fileHeaderLen:batchReserve], h, b.file)
	c.inFlight = b
	return b
}

// complete finishes the in-flight batch after its I/O returned err. On
// success it publishes the batch to the mem tables and returns one Written
// per writer, plus the file that the batch closed by rolling over (nil if
// none). On failure the WAL fails: this batch and every pending one are
// answered with WriteFailed.
func (c *core) complete(b *batch, err error) ([]notice, *ClosedFile) {
	if b != c.inFlight {
		panic(fmt.Sprintf("wal: complete of batch %d while batch %v is in flight", b.seq, c.inFlight))
	}
	c.inFlight = nil
	if err != nil {
		c.failed = fmt.Errorf("%w: batch %d to file %s: %w", ErrFailed, b.seq, fileName(b.file), err)
		c.cfg.Logger.Error("wal failed; no further writes will be acknowledged", "err", err, "batch", b.seq, "file", fileName(b.file))
		out := c.failBatch(b)
		for _, p := range c.pending {
			out = append(out, c.failBatch(p)...)
		}
		c.pending = nil
		return out, nil
	}
	var closed *ClosedFile
	if b.newFile {
		if c.file != 0 {
			closed = c.closeFile()
		}
		c.file, c.fileBytes, c.fileCost, c.nextFile = b.file, 0, 0, b.file+1
		c.nextSeen.Store(c.nextFile)
	}
	// Where b.buf's bytes land in the file: the records' offsets.
	base := c.fileBytes - fileHeaderLen
	if b.newFile {
		base = 0
	}
	c.fileBytes += int64(len(b.out))
	c.fileCost += int64(len(b.out)) + int64(b.entries)*memEntryCost + b.kept
	c.lastLen = len(b.out)
	c.stats.batches.Add(1)
	c.stats.entries.Add(int64(b.entries))
	c.stats.bytes.Add(int64(len(b.out)))
	if b.newFile {
		c.stats.files.Add(1)
	}
	out := make([]notice, 0, len(b.progress))
	for _, p := range b.progress {
		p.release()
		if !p.ws.gone {
			for i := range p.writes {
				p.writes[i].off += base
			}
			p.ws.log.publish(b.file, p.writes)
			c.fileLogs[p.ws] = struct{}{}
			out = append(out, notice{to: p.to, msg: Written{UID: p.ws.uid, Term: p.term, From: p.from, To: p.last}})
		}
		c.recycleWrites(p)
	}
	c.recycle(b)
	return out, closed
}

// spareWritesMax is the longest write list kept for reuse: 256 KiB.
const spareWritesMax = 4096

// newWrites returns an empty write list, reusing a spare one if possible.
func (c *core) newWrites() []memWrite {
	if n := len(c.spareWrites); n > 0 {
		ws := c.spareWrites[n-1]
		c.spareWrites = c.spareWrites[:n-1]
		return ws
	}
	return nil
}

// recycleWrites keeps p's write list for reuse, cleared so that it holds
// no payload alive. A few are kept, and none longer than spareWritesMax, so
// that what an idle WAL holds stays small (at most 1 MiB).
func (c *core) recycleWrites(p *progress) {
	if len(c.spareWrites) < 4 && cap(p.writes) <= spareWritesMax {
		clear(p.writes)
		c.spareWrites = append(c.spareWrites, p.writes[:0])
	}
	p.writes = nil
}

// newBuf returns an empty batch buffer, reusing a spare one if possible.
func (c *core) newBuf() []byte {
	if n := len(c.spare); n > 0 {
		buf := c.spare[n-1]
		c.spare = c.spare[:n-1]
		return buf[:batchReserve]
	}
	return make([]byte, batchReserve, batchReserve+min(c.cfg.MaxBatchBytes, 64<<10))
}

// recycle keeps the buffer of a completed batch for reuse. The mem tables
// hold the writers' payload slices, never the batch buffer.
func (c *core) recycle(b *batch) {
	if len(c.spare) < 4 && cap(b.buf) <= 2*c.cfg.MaxBatchBytes+batchReserve {
		c.spare = append(c.spare, b.buf)
	}
	b.buf, b.out = nil, nil
}

func (c *core) failBatch(b *batch) []notice {
	out := make([]notice, 0, len(b.progress))
	for _, p := range b.progress {
		p.release()
		out = append(out, notice{to: p.to, msg: WriteFailed{UID: p.ws.uid, From: p.from, To: p.last, Err: c.failed}})
	}
	return out
}

// closeFile returns the hand-off of the current file to the segment
// writer: every table written into it, in UID order.
func (c *core) closeFile() *ClosedFile {
	seq := c.file
	cf := &ClosedFile{Seq: seq, Path: path.Join(c.cfg.Dir, fileName(seq)), remove: c.remover(seq), recycle: c.recycler(seq)}
	c.handedOver++
	for ws := range c.fileLogs {
		if ws.gone {
			continue
		}
		if t := ws.log.tableOf(c.file); t != nil {
			cf.Tables = append(cf.Tables, closedTable(ws.log, t))
		}
	}
	sort.Slice(cf.Tables, func(i, j int) bool { return cf.Tables[i].UID < cf.Tables[j].UID })
	clear(c.fileLogs)
	return cf
}

// remover returns the ClosedFile.Remove of file seq: it deletes the file
// and counts the removal, which may unblock a rollover.
func (c *core) remover(seq uint64) func() error { return c.releaser(c.removeFile, seq) }

// recycler returns the ClosedFile.Recycle of file seq, which the WAL
// wrote in the current format: it keeps the file to write over, or
// deletes it, and counts it gone as remover does.
func (c *core) recycler(seq uint64) func() error { return c.releaser(c.recycleFile, seq) }

// releaser returns a function that lets file seq go with release and
// counts it gone.
func (c *core) releaser(release func(uint64) error, seq uint64) func() error {
	return func() error {
		if err := release(seq); err != nil {
			return err
		}
		c.removed.Add(1)
		return nil
	}
}

// waitingForSegments reports whether MaxClosedFiles files are handed to
// the segment writer and not yet removed. Rollover then waits, so that a
// segment writer slower than the WAL bounds the WAL directory instead of
// letting it grow: the current file still takes writes up to its size, and
// then writers feel it as backpressure (their in-flight entries are not
// answered until the rollover happens).
func (c *core) waitingForSegments() bool {
	behind := c.handedOver - c.removed.Load()
	if behind < int64(c.cfg.MaxClosedFiles) {
		if c.stalled {
			c.stalled = false
			c.cfg.Logger.Info("wal: segment writer caught up; rolling over again", "closed_files", behind)
		}
		return false
	}
	if !c.stalled {
		c.stalled = true
		c.cfg.Logger.Warn("wal: rollover waits for the segment writer", "closed_files", behind, "max", c.cfg.MaxClosedFiles)
	}
	return true
}

// forget drops everything the WAL holds for uid (its data is being
// deleted). Entries of uid already in WAL files stay there until the files
// are flushed; the segment writer discards them.
func (c *core) forget(uid string) {
	if ws := c.writers[uid]; ws != nil {
		ws.gone = true
		delete(c.writers, uid)
		delete(c.fileLogs, ws)
	}
	if log := c.tables.remove(uid); log != nil {
		log.dropAll()
	}
}

func payloadBytes(es []Entry) int64 {
	var n int64
	for _, e := range es {
		n += int64(e.size())
	}
	return n
}
