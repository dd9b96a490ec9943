package snapshot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// SenderConfig configures one transfer. The zero value of every field
// means its default.
type SenderConfig struct {
	// ChunkBytes is the data per Chunk, in [1, MaxChunkBytes]. Default
	// 1 MiB.
	ChunkBytes int
	// Window bounds the chunks in flight (sent and not acknowledged).
	// Default 4: with 1 MiB chunks, 4 MiB travel at once.
	Window int
	// RetryAfter: when no ack moved the transfer forward for this long,
	// the sender sends the chunk at the last acknowledged offset again
	// (and the window reopens with the next ack). Default 2s.
	RetryAfter time.Duration
	// GiveUpAfter: when no ack moved the transfer forward for this long,
	// the transfer ends with ErrTimeout. It must not be below RetryAfter.
	// Default 30s.
	GiveUpAfter time.Duration
	// Transfer is the transfer id; 0 means NewTransferID(). Give each
	// attempt a larger id than the last to the same receiver: the
	// receiver ignores chunks of an older attempt of the same snapshot.
	Transfer uint64
}

const (
	defaultChunkBytes  = 1 << 20
	defaultWindow      = 4
	defaultRetryAfter  = 2 * time.Second
	defaultGiveUpAfter = 30 * time.Second
)

func (c SenderConfig) withDefaults() SenderConfig {
	if c.ChunkBytes == 0 {
		c.ChunkBytes = defaultChunkBytes
	}
	if c.Window == 0 {
		c.Window = defaultWindow
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = defaultRetryAfter
	}
	if c.GiveUpAfter == 0 {
		c.GiveUpAfter = max(defaultGiveUpAfter, c.RetryAfter)
	}
	if c.Transfer == 0 {
		c.Transfer = NewTransferID()
	}
	return c
}

func (c SenderConfig) validate() error {
	switch {
	case c.ChunkBytes < 1 || c.ChunkBytes > MaxChunkBytes:
		return fmt.Errorf("%w: ChunkBytes %d outside [1, %d]", ErrInvalid, c.ChunkBytes, MaxChunkBytes)
	case c.Window < 1:
		return fmt.Errorf("%w: Window %d must be at least 1", ErrInvalid, c.Window)
	case c.RetryAfter < 0:
		return fmt.Errorf("%w: RetryAfter %v is negative", ErrInvalid, c.RetryAfter)
	case c.GiveUpAfter < c.RetryAfter:
		return fmt.Errorf("%w: GiveUpAfter %v is below RetryAfter %v", ErrInvalid, c.GiveUpAfter, c.RetryAfter)
	}
	return nil
}

var lastTransferID atomic.Uint64

// NewTransferID returns a transfer id larger than every id it returned
// before in this process; it starts from the wall clock in nanoseconds,
// so ids also grow across restarts of the process.
func NewTransferID() uint64 {
	for {
		last := lastTransferID.Load()
		next := max(uint64(time.Now().UnixNano()), last+1)
		if lastTransferID.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Sender is the leader side of one snapshot transfer: a state machine that
// turns a durable snapshot into Chunks, keeps at most Window of them in
// flight, follows the receiver's ChunkAcks and retries when acks stop. It
// has no goroutines and reads no clock: the server calls it from its own
// goroutine with the current time, sends the chunks it returns to the
// follower, feeds it the acks that come back and calls Tick on a timer
// (every RetryAfter/2 or so, while the transfer runs).
//
// Rules (the receiver's half is in Receiver):
//   - Start sends one chunk at offset 0; the first ack tells the sender
//     where the receiver stands (0, or further for a resumed copy), and
//     the window opens from there.
//   - AckProgress{Next}: everything below Next arrived; the window slides.
//   - AckResend{Next}: go back to Next (once per Next: the chunks already
//     in flight behind a lost one produce the same request).
//   - AckInstalled ends the transfer successfully, AckRejected with a
//     *RejectedError.
//   - No progress for RetryAfter: resend the chunk at the acknowledged
//     offset. No progress for GiveUpAfter: end with ErrTimeout.
//
// Acks of other transfers are ignored. A Sender is used by one goroutine.
// It keeps the snapshot file open until it finishes or Close, so pruning
// the snapshot meanwhile does not disturb it.
type Sender struct {
	cfg   SenderConfig
	stats *statsCounters // the store's
	info  Info
	f     File
	name  string
	size  int64

	// Invariant: 0 <= acked <= size and acked <= sent <= size, except
	// that a receiver that lost data can move acked back (sent follows).
	acked int64 // the receiver holds [0, acked)
	sent  int64 // next offset to send
	// rewound is the offset of the last go-back that no progress has
	// passed yet (-1: none), so repeated resend requests for it are
	// answered once.
	rewound      int64
	lastProgress time.Time // last ack that moved acked forward, or Start
	lastSend     time.Time // last progress or retry

	started  bool
	finished bool
	done     bool  // installed
	err      error // terminal error
}

// NewSender prepares the transfer of the durable snapshot info (from
// Latest or Written; info.ID, if set, must match the file) from store.
// It opens the file; errors are ErrNotFound, ErrCorrupt (the header does
// not match), ErrIO or ErrInvalid.
func NewSender(store *Store, info Info, cfg SenderConfig) (*Sender, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := validUID(info.UID); err != nil {
		return nil, err
	}
	path := store.snapPath(info)
	f, err := store.fs.OpenFile(path, os.O_RDONLY)
	if err != nil {
		return nil, openErr(path, err)
	}
	s := &Sender{cfg: cfg, stats: &store.stats, info: info, f: f, name: path, rewound: -1}
	if err := s.readHeader(); err != nil {
		_ = f.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sender) readHeader() error {
	size, err := s.f.Seek(0, io.SeekEnd)
	if err != nil {
		return ioErr("seek "+s.name, err)
	}
	v := newVerifier(s.name, &header{index: s.info.Index, term: s.info.Term, id: s.info.ID})
	var h [fixedHeaderBytes]byte
	if _, err := s.f.ReadAt(h[:], 0); err != nil {
		if errors.Is(err, io.EOF) {
			return v.finish()
		}
		return ioErr("read "+s.name, err)
	}
	if err := v.write(h[:]); err != nil {
		return err
	}
	if size < minFileBytes {
		return &CorruptError{File: s.name, Offset: size, Reason: "truncated: shorter than the smallest snapshot"}
	}
	s.info.ID, s.size, s.info.Size = v.hdr.id, size, size
	return nil
}

// Transfer returns the transfer id the chunks carry.
func (s *Sender) Transfer() uint64 { return s.cfg.Transfer }

// Info returns the snapshot being sent (ID and Size from the file).
func (s *Sender) Info() Info { return s.info }

// Progress returns the bytes the receiver acknowledged and the file size.
func (s *Sender) Progress() (acked, size int64) { return s.acked, s.size }

// Done reports whether the receiver installed the snapshot.
func (s *Sender) Done() bool { return s.done }

// Err returns the error the transfer ended with, or nil.
func (s *Sender) Err() error { return s.err }

// Finished reports whether the transfer is over (installed, failed or
// closed); no call returns chunks any more.
func (s *Sender) Finished() bool { return s.finished }

// Start begins the transfer at now and returns the first chunk to send.
// Calling it again returns nothing.
func (s *Sender) Start(now time.Time) ([]Chunk, error) {
	if s.finished {
		return nil, s.finishedErr()
	}
	if s.started {
		return nil, nil
	}
	s.started = true
	s.lastProgress, s.lastSend = now, now
	return s.fill(1)
}

func (s *Sender) finishedErr() error {
	if s.err != nil {
		return s.err
	}
	return ErrFinished
}

// HandleAck applies an ack from the receiver and returns the chunks to
// send now. Acks of another transfer, and acks after the end, are
// ignored. It returns an error when the ack ends the transfer with a
// failure (a *RejectedError); AckInstalled ends it with Done() true.
func (s *Sender) HandleAck(a ChunkAck, now time.Time) ([]Chunk, error) {
	if s.finished || !s.started || a.Transfer != s.cfg.Transfer {
		return nil, nil
	}
	switch a.Status {
	case AckInstalled:
		s.done, s.acked = true, s.size
		s.finish(nil)
		return nil, nil
	case AckRejected:
		s.finish(&RejectedError{Reason: a.Reason})
		return nil, s.err
	case AckProgress, AckResend:
	default:
		return nil, nil
	}
	if a.Next > uint64(s.size) {
		return nil, nil // not an offset of this snapshot: ignore
	}
	next := int64(a.Next)
	if next > s.acked {
		s.acked = next
		s.lastProgress, s.lastSend = now, now
		s.rewound = -1
	}
	if a.Status == AckResend {
		if next < s.acked {
			s.acked = next // the receiver lost what it had beyond next
		}
		if next != s.rewound {
			s.sent = next
			s.rewound = next
		}
	}
	s.sent = max(s.sent, s.acked)
	return s.fill(s.cfg.Window)
}

// Tick lets time pass: after RetryAfter without progress it returns the
// chunk at the acknowledged offset again; after GiveUpAfter it ends the
// transfer with ErrTimeout (the receiver keeps its partial copy for a
// later transfer to resume).
func (s *Sender) Tick(now time.Time) ([]Chunk, error) {
	if s.finished || !s.started {
		return nil, nil
	}
	if now.Sub(s.lastProgress) >= s.cfg.GiveUpAfter {
		s.finish(fmt.Errorf("%w: %s: no progress for %v at offset %d of %d", ErrTimeout, s.info, now.Sub(s.lastProgress), s.acked, s.size))
		return nil, s.err
	}
	if now.Sub(s.lastSend) < s.cfg.RetryAfter {
		return nil, nil
	}
	s.lastSend = now
	s.sent, s.rewound = s.acked, s.acked
	return s.fill(1)
}

// fill returns chunks from sent on, while fewer than limit chunks' worth
// of bytes are in flight.
func (s *Sender) fill(limit int) ([]Chunk, error) {
	var out []Chunk
	window := int64(limit) * int64(s.cfg.ChunkBytes)
	for s.sent < s.size && s.sent-s.acked < window {
		n := min(int64(s.cfg.ChunkBytes), s.size-s.sent)
		data := make([]byte, n) // a fresh buffer: local sends pass it by reference
		if _, err := s.f.ReadAt(data, s.sent); err != nil {
			if errors.Is(err, io.EOF) {
				err = &CorruptError{File: s.name, Offset: s.sent, Reason: "file shrank while being sent"}
			} else {
				err = ioErr("read "+s.name, err)
			}
			s.finish(err)
			return nil, err
		}
		c := Chunk{
			Transfer: s.cfg.Transfer,
			Index:    s.info.Index, Term: s.info.Term, ID: s.info.ID,
			Size:   uint64(s.size),
			Offset: uint64(s.sent),
			Data:   data,
		}
		c.CRC = c.Checksum()
		out = append(out, c)
		s.sent += n
		s.stats.chunksSent.Add(1)
		s.stats.chunkBytesSent.Add(n)
	}
	return out, nil
}

func (s *Sender) finish(err error) {
	if s.finished {
		return
	}
	s.finished = true
	s.err = err
	_ = s.f.Close()
}

// Close ends the transfer early (for example the follower caught up by
// other means, or this server stopped leading) and releases the file. The
// receiver keeps its partial copy. Close is idempotent.
func (s *Sender) Close() error {
	if !s.finished {
		s.finish(fmt.Errorf("%w: sender closed", ErrFinished))
	}
	return nil
}
