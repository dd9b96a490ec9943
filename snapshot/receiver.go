package snapshot

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// ReceiverConfig configures a Receiver. The zero value of every field
// means its default.
type ReceiverConfig struct {
	// IdleTimeout: a transfer that got no chunk for this long is set aside
	// by Tick (its file is closed; the partial copy stays on disk for a
	// later transfer of the same snapshot to resume). Default 1 minute.
	IdleTimeout time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Received is what Receiver.Receive decided about one chunk.
type Received struct {
	// Ack is the answer for the chunk's sender; send it if Reply is set.
	Ack   ChunkAck
	Reply bool
	// Installed is set when this chunk completed the snapshot and it is
	// now durable and visible in the store as Info: verified as a whole,
	// fsynced, renamed into place, the directory fsynced. Open it with
	// Store.Open to restore the machine, then continue from the log at
	// Info.Index+1.
	Installed bool
	Info      Info
	// Err is set when the transfer failed on this side and ended: the
	// snapshot is corrupt (ErrCorrupt; Ack rejects it), the disk failed
	// (ErrIO), the UID was deleted (ErrDeleted). The partial copy was
	// removed.
	Err error
}

// snapKey identifies the bytes of one snapshot file.
type snapKey struct {
	index, term, id, size uint64
}

// incoming is the transfer a Receiver is taking in.
type incoming struct {
	transfer uint64
	key      snapKey
	gen      uint64
	path     string
	f        File
	// Invariant: next is the length of the partial file and v has
	// consumed exactly its bytes.
	next int64
	v    verifier
	last time.Time // last chunk
}

// Receiver is the follower side of snapshot transfers for one server (one
// UID): a state machine that writes the chunks it is given, in order, to a
// partial file in the store, acknowledges them, and installs the snapshot
// atomically when the last byte arrives and the whole file verifies.
//
// Rules (the sender's half is in Sender):
//   - Chunks are taken strictly in order. A chunk past the next wanted
//     offset is answered with AckResend{Next}; a duplicate (all bytes
//     already held) with AckProgress{Next}; a chunk whose CRC fails with
//     AckResend{Next} and is not written.
//   - A chunk of an unknown transfer starts it: if a partial copy of the
//     same snapshot (index, term, ID) exists, from memory or from a .part
//     file left by an earlier attempt or process, its verified prefix is
//     kept and the transfer resumes there; otherwise it starts at 0. A
//     transfer of another snapshot replaces the current one (its partial
//     copy is removed). Chunks of an older attempt (smaller transfer id)
//     of the same snapshot are dropped unanswered.
//   - Every byte is verified as it arrives (structure, block checksums,
//     header against the announced snapshot, trailer and file checksum),
//     so a file that does not verify is never installed: the transfer
//     ends with AckRejected{RejectCorrupt}.
//   - Once a transfer ended here (installed or rejected), its late chunks
//     get the same final ack again and touch nothing.
//   - A snapshot at an index at or below the store's newest is answered
//     with AckRejected{RejectStale}, or AckInstalled if it is that very
//     snapshot (the sender missed the first AckInstalled).
//
// A Receiver has no goroutines and reads no clock; it is used by one
// goroutine (the follower's server), which passes the time in. It does
// file I/O on that goroutine: a write per chunk, one fsync at the end.
// The server must check the chunk's sender (leader and term) before
// handing it over.
type Receiver struct {
	store  *Store
	uid    string
	cfg    ReceiverConfig
	logger *slog.Logger
	cur    *incoming
	// ended is the final ack (installed or rejected) of the last transfer
	// that ended here; its late chunks get it again and touch nothing.
	ended *ChunkAck
}

// NewReceiver returns the receiver of uid's snapshots into store.
func NewReceiver(store *Store, uid string, cfg ReceiverConfig) (*Receiver, error) {
	if err := validUID(uid); err != nil {
		return nil, err
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = time.Minute
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("%w: IdleTimeout %v is negative", ErrInvalid, cfg.IdleTimeout)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Receiver{store: store, uid: uid, cfg: cfg, logger: logger}, nil
}

// Receive takes one chunk at time now and says what to answer.
func (r *Receiver) Receive(c Chunk, now time.Time) Received {
	r.store.stats.chunksReceived.Add(1)
	r.store.stats.chunkBytesReceived.Add(int64(len(c.Data)))
	if err := c.check(); err != nil {
		r.logger.Debug("snapshot: dropping a malformed chunk", "uid", r.uid, "err", err)
		return Received{}
	}
	if e := r.ended; e != nil && e.Transfer == c.Transfer {
		return Received{Reply: true, Ack: *e}
	}
	cur := r.cur
	if c.CRC != c.Checksum() {
		next := uint64(0)
		if cur != nil && cur.transfer == c.Transfer {
			next = uint64(cur.next)
		}
		r.logger.Warn("snapshot: chunk failed its checksum; asking for a resend", "uid", r.uid, "transfer", c.Transfer, "offset", c.Offset)
		return r.reply(c, AckResend, next, 0)
	}
	key := snapKey{index: c.Index, term: c.Term, id: c.ID, size: c.Size}
	if cur != nil && cur.transfer == c.Transfer && cur.key != key {
		r.logger.Warn("snapshot: dropping a chunk that names another snapshot than its transfer", "uid", r.uid, "transfer", c.Transfer)
		return Received{}
	}
	if cur != nil && cur.transfer != c.Transfer {
		switch {
		case cur.key == key && c.Transfer < cur.transfer:
			return Received{} // an older attempt's chunk, late
		case cur.key == key:
			cur.transfer = c.Transfer // a new attempt of the same snapshot continues
		default:
			r.logger.Info("snapshot: a transfer of another snapshot replaces the current one", "uid", r.uid,
				"old_index", cur.key.index, "new_index", c.Index)
			r.drop(true)
			cur = nil
		}
	}
	if cur == nil {
		var res *Received
		cur, res = r.begin(c, key)
		if res != nil {
			return *res
		}
		r.cur = cur
	}
	cur.last = now
	off, end := c.Offset, c.Offset+uint64(len(c.Data))
	switch {
	case off > uint64(cur.next):
		return r.reply(c, AckResend, uint64(cur.next), 0)
	case end <= uint64(cur.next):
		if cur.next == int64(cur.key.size) {
			return r.complete(c) // a resumed copy was already whole
		}
		return r.reply(c, AckProgress, uint64(cur.next), 0)
	}
	data := c.Data[uint64(cur.next)-off:]
	if err := cur.v.write(data); err != nil {
		return r.failed(c, RejectCorrupt, err)
	}
	if _, err := cur.f.Write(data); err != nil {
		return r.failed(c, RejectStorage, ioErr("write "+cur.path, err))
	}
	cur.next += int64(len(data))
	if cur.next == int64(cur.key.size) {
		return r.complete(c)
	}
	return r.reply(c, AckProgress, uint64(cur.next), 0)
}

func (r *Receiver) reply(c Chunk, st AckStatus, next uint64, reason RejectReason) Received {
	a := ChunkAck{Transfer: c.Transfer, Index: c.Index, Term: c.Term, Next: next, Status: st, Reason: reason}
	if st == AckInstalled || st == AckRejected {
		r.ended = &a
	}
	return Received{Reply: true, Ack: a}
}

// failed ends the current transfer on a local failure or a corrupt
// stream, removing the partial copy.
func (r *Receiver) failed(c Chunk, reason RejectReason, err error) Received {
	r.logger.Error("snapshot: receiving failed", "uid", r.uid, "index", c.Index, "term", c.Term, "reason", reason.String(), "err", err)
	r.drop(true)
	res := r.reply(c, AckRejected, 0, reason)
	res.Err = err
	return res
}

// complete checks that the whole file verified, makes it durable and
// installs it.
func (r *Receiver) complete(c Chunk) Received {
	cur := r.cur
	if err := cur.v.finish(); err != nil {
		return r.failed(c, RejectCorrupt, err)
	}
	if err := cur.f.Sync(); err != nil {
		return r.failed(c, RejectStorage, ioErr("sync "+cur.path, err))
	}
	if err := cur.f.Close(); err != nil {
		return r.failed(c, RejectStorage, ioErr("close "+cur.path, err))
	}
	r.cur = nil
	info := Info{UID: r.uid, Index: cur.key.index, Term: cur.key.term, ID: cur.key.id, Size: cur.next, DataSize: cur.v.data}
	if err := r.store.install(cur.path, cur.gen, info); err != nil {
		reason := RejectStorage
		if errors.Is(err, ErrStale) {
			reason = RejectStale
		}
		r.logger.Warn("snapshot: install of a received snapshot failed", "uid", r.uid, "index", info.Index, "err", err)
		res := r.reply(c, AckRejected, 0, reason)
		res.Err = err
		return res
	}
	r.logger.Info("snapshot: installed a received snapshot", "uid", r.uid, "index", info.Index, "term", info.Term, "bytes", info.Size)
	res := r.reply(c, AckInstalled, uint64(info.Size), 0)
	res.Installed, res.Info = true, info
	return res
}

// begin starts taking in the snapshot of c: it answers at once if the
// store already has it or something newer, else it opens (resuming) or
// creates the partial file.
func (r *Receiver) begin(c Chunk, key snapKey) (*incoming, *Received) {
	s := r.store
	st := s.state(r.uid)
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := s.ensureDirLocked(r.uid, st); err != nil {
		res := r.failed(c, RejectStorage, err)
		return nil, &res
	}
	if err := s.newestLocked(r.uid, st); err != nil {
		res := r.failed(c, RejectStorage, err)
		return nil, &res
	}
	if st.has && st.newestIndex >= key.index {
		if st.newestIndex == key.index && st.newestTerm == key.term && s.headerID(r.uid, key.index, key.term) == key.id {
			res := r.reply(c, AckInstalled, key.size, 0)
			return nil, &res
		}
		res := r.reply(c, AckRejected, 0, RejectStale)
		return nil, &res
	}
	in := &incoming{transfer: c.Transfer, key: key, gen: st.gen}
	want := partName(key.index, key.term, key.id)
	in.path = filepath.Join(s.uidDir(r.uid), want)
	names, _, err := s.listLocked(r.uid, namePart)
	if err != nil {
		res := r.failed(c, RejectStorage, err)
		return nil, &res
	}
	found := false
	for _, name := range names {
		if name == want {
			found = true
			continue
		}
		s.removeQuietly(filepath.Join(s.uidDir(r.uid), name)) // another snapshot's: obsolete now
	}
	if found {
		if err := r.resume(in); err == nil {
			r.logger.Info("snapshot: resuming a partly received snapshot", "uid", r.uid, "index", key.index, "offset", in.next)
			return in, nil
		} else {
			r.logger.Warn("snapshot: cannot resume a partly received snapshot; starting over", "file", in.path, "err", err)
		}
	}
	f, err := s.fs.OpenFile(in.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		res := r.failed(c, RejectStorage, ioErr("create "+in.path, err))
		return nil, &res
	}
	in.f = f
	in.v = newVerifier(in.path, &header{index: key.index, term: key.term, id: key.id})
	return in, nil
}

// resume opens an existing partial file, keeps its longest verified
// prefix that ends after the header or a block (or the whole file if it
// is complete), and cuts the rest.
func (r *Receiver) resume(in *incoming) error {
	f, err := r.store.fs.OpenFile(in.path, os.O_RDWR)
	if err != nil {
		return err
	}
	v := newVerifier(in.path, &header{index: in.key.index, term: in.key.term, id: in.key.id})
	good := v // the verifier as of the last boundary
	buf := make([]byte, 1<<20)
	var off int64
scan:
	for off < int64(in.key.size) {
		n, rerr := f.Read(buf[:min(int64(len(buf)), int64(in.key.size)-off)])
		p := buf[:n]
		for len(p) > 0 {
			k, err := v.consume(p, true)
			if err != nil {
				break scan
			}
			p = p[k:]
			off += int64(k)
			if v.atBoundary() || v.done() {
				good = v
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			_ = f.Close()
			return rerr
		}
	}
	if err := f.Truncate(good.off); err != nil {
		_ = f.Close()
		return err
	}
	if _, err := f.Seek(good.off, io.SeekStart); err != nil {
		_ = f.Close()
		return err
	}
	in.f, in.v, in.next = f, good, good.off
	return nil
}

// headerID returns the file id of a durable snapshot, or 0 if its header
// cannot be read.
func (s *Store) headerID(uid string, index, term uint64) uint64 {
	f, err := s.fs.OpenFile(filepath.Join(s.uidDir(uid), snapName(index, term)), os.O_RDONLY)
	if err != nil {
		return 0
	}
	defer f.Close()
	var h [fixedHeaderBytes]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0
	}
	hdr, bad := parseFixedHeader(h[:])
	if bad != "" {
		return 0
	}
	return hdr.id
}

// drop ends the current transfer: the file is closed, and removed if
// remove is set (else kept for a later transfer to resume).
func (r *Receiver) drop(remove bool) {
	cur := r.cur
	if cur == nil {
		return
	}
	r.cur = nil
	_ = cur.f.Close()
	if remove {
		r.store.removeQuietly(cur.path)
	}
}

// Tick sets the current transfer aside if it got no chunk for
// IdleTimeout; its partial copy stays for a later transfer to resume.
func (r *Receiver) Tick(now time.Time) {
	if r.cur != nil && now.Sub(r.cur.last) >= r.cfg.IdleTimeout {
		r.logger.Info("snapshot: setting an idle transfer aside", "uid", r.uid, "index", r.cur.key.index, "offset", r.cur.next)
		r.drop(false)
	}
}

// Active reports the transfer being taken in: its snapshot (ID and Size
// set) and the bytes held so far.
func (r *Receiver) Active() (info Info, received int64, ok bool) {
	if r.cur == nil {
		return Info{}, 0, false
	}
	k := r.cur.key
	return Info{UID: r.uid, Index: k.index, Term: k.term, ID: k.id, Size: int64(k.size)}, r.cur.next, true
}

// Close sets the current transfer aside, keeping its partial copy on disk
// for a later transfer to resume (the server stops, or stops following
// this leader). The Receiver stays usable.
func (r *Receiver) Close() { r.drop(false) }

// Discard ends the current transfer and removes its partial copy.
func (r *Receiver) Discard() { r.drop(true) }
