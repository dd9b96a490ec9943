package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/actor"
)

// DefaultWriterName is the name the snapshot writer registers under unless
// WriterOptions.Name says otherwise.
const DefaultWriterName = "rago_snapshot_writer"

// DefaultConcurrency is how many snapshots the writer writes at once
// unless WriterOptions.Concurrency says otherwise.
const DefaultConcurrency = 2

// Write asks the snapshot writer to persist a snapshot of UID at Index and
// Term. It is a message for the writer process (Writer.Ref), sent by the
// server on its own node; it does not cross nodes. After sending it the
// server must not touch Meta or Data (see Source for Data's rules).
//
// The writer answers Notify with exactly one Written or WriteFailed (none
// if Notify is the zero Ref, or for a write still running when the node
// itself stops). Data's Release is called exactly once whatever happens.
type Write struct {
	UID    string
	Index  uint64
	Term   uint64
	Meta   []byte // the server's blob: membership, machine version, sessions
	Data   Source
	Notify actor.Ref
}

// Written tells the server that its snapshot is durable and visible: fully
// written, checksummed, fsynced and renamed, the directory fsynced. Older
// snapshots beyond Options.Keep are already removed. The server may now
// drop its log up to Index (segments, WAL references).
type Written struct {
	Info // UID, Index, Term, ID, Size (file bytes), DataSize
}

// WriteFailed tells the server that a Write did not become a snapshot and
// left nothing on disk. Err wraps ErrStale (a snapshot at Index or above
// is already durable), ErrSuperseded (a newer Write of the UID replaced
// this one before it started), ErrIO (the disk failed: a full disk
// matches syscall.ENOSPC too), ErrSource (Data failed), ErrDeleted,
// ErrStopped or ErrInvalid. The server keeps its log and may try again
// later.
type WriteFailed struct {
	UID   string
	Index uint64
	Term  uint64
	Err   error
}

// WriterOptions configures the snapshot writer process.
type WriterOptions struct {
	// Name to register under; "" means DefaultWriterName.
	Name string
	// Concurrency bounds the snapshots written at once (each on its own
	// goroutine); 0 means DefaultConcurrency. Writes of one UID never run
	// concurrently.
	Concurrency int
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Writer is the node's snapshot writer: one process that accepts Write
// requests from every server of the node and persists them in the
// background, at most Concurrency at a time, each on its own goroutine so
// a large state never holds up the process's bookkeeping. Its methods are
// safe for concurrent use.
//
// Queueing: requests wait in FIFO order; of the waiting requests of one
// UID only the newest (highest index) is kept, so a server snapshotting
// faster than the disk never builds a backlog; a request at or below the
// index being written for its UID fails at once with ErrStale.
type Writer struct {
	node    *actor.Node
	ref     actor.Ref
	proc    *writerProcess
	stopMu  sync.Mutex
	stopped bool
}

// StartWriter starts the snapshot writer on node, writing into store.
func StartWriter(node *actor.Node, store *Store, opts WriterOptions) (*Writer, error) {
	w, p, err := NewWriter(node, store, opts)
	if err != nil {
		return nil, err
	}
	if _, err := node.SpawnNamed(w.ref.Name, p, actor.HighPriority()); err != nil {
		return nil, fmt.Errorf("snapshot: spawn %q: %w", w.ref.Name, err)
	}
	return w, nil
}

// NewWriter is StartWriter without the spawn: it returns the writer and
// its process, which the caller (a supervisor) spawns under opts.Name (or
// DefaultWriterName). Each restart needs a new Writer: Stop waits for the
// process it was made with.
func NewWriter(node *actor.Node, store *Store, opts WriterOptions) (*Writer, actor.Process, error) {
	if store == nil {
		return nil, nil, fmt.Errorf("%w: nil store", ErrInvalid)
	}
	if opts.Name == "" {
		opts.Name = DefaultWriterName
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Concurrency < 1 {
		return nil, nil, fmt.Errorf("%w: Concurrency %d must be at least 1", ErrInvalid, opts.Concurrency)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &writerProcess{
		store:   store,
		conc:    opts.Concurrency,
		logger:  opts.Logger,
		running: make(map[string]*Write),
		done:    make(chan struct{}),
	}
	return &Writer{node: node, ref: actor.Ref{Name: opts.Name, Node: node.Name()}, proc: p}, p, nil
}

// Ref returns the writer process; servers send Write to it.
func (w *Writer) Ref() actor.Ref { return w.ref }

// Submit checks req and sends it to the writer process. It returns
// ErrInvalid for a request that breaks a precondition (nothing is sent and
// Data is not released: the caller still owns it) and ErrStopped after
// Stop. Sending Write with ctx.Send works too; the writer then answers an
// invalid request with WriteFailed.
func (w *Writer) Submit(req Write) error {
	if err := checkWrite(req); err != nil {
		return err
	}
	w.stopMu.Lock()
	stopped := w.stopped
	w.stopMu.Unlock()
	if stopped {
		return ErrStopped
	}
	return w.node.Send(w.ref, req)
}

func checkWrite(req Write) error {
	if err := validUID(req.UID); err != nil {
		return err
	}
	switch {
	case req.Index == 0:
		return fmt.Errorf("%w: snapshot index 0", ErrInvalid)
	case req.Data == nil:
		return fmt.Errorf("%w: nil Data", ErrInvalid)
	case len(req.Meta) > MaxMetaBytes:
		return fmt.Errorf("%w: meta of %d bytes exceeds %d", ErrInvalid, len(req.Meta), MaxMetaBytes)
	}
	return nil
}

// Stop fails the waiting requests with ErrStopped, makes the writes in
// progress fail with ErrStopped at their next data write (their temporary
// files are removed), tells every requester, and stops the process. It
// waits at most timeout for that. Stop is idempotent.
func (w *Writer) Stop(timeout time.Duration) error {
	w.stopMu.Lock()
	if !w.stopped {
		w.stopped = true
		_ = w.node.Send(w.ref, stopWriter{})
	}
	w.stopMu.Unlock()
	select {
	case <-w.proc.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("snapshot: writer did not stop within %v", timeout)
	}
}

type (
	stopWriter struct{}
	jobDone    struct {
		req  *Write
		info Info
		err  error
	}
)

// writerProcess owns the queue and the set of running jobs; job
// goroutines touch only their own request, the store and stopping.
type writerProcess struct {
	store  *Store
	conc   int
	logger *slog.Logger

	queue   []*Write          // waiting, FIFO; at most one per UID
	running map[string]*Write // by UID; len(running) <= conc
	// stopping is set when Stop or termination begins; job goroutines
	// poll it through Pending.Write.
	stopping atomic.Bool
	stopReq  bool
	jobs     sync.WaitGroup
	doneOnce sync.Once
	done     chan struct{} // closed once the process ended and every job returned
}

// Receive implements actor.Process.
func (p *writerProcess) Receive(ctx *actor.Context, msg actor.Message) {
	switch m := msg.(type) {
	case Write:
		p.accept(ctx, &m)
	case *Write:
		if m != nil {
			c := *m
			p.accept(ctx, &c)
		}
	case jobDone:
		// A job of an earlier process under this name (one that crashed
		// and was restarted) reports here too, since jobs report to the
		// name: answer its requester, but leave this process's own job of
		// the UID alone.
		if p.running[m.req.UID] == m.req {
			delete(p.running, m.req.UID)
		}
		if m.err != nil {
			p.fail(ctx, m.req, m.err)
		} else {
			p.logger.Debug("snapshot: written", "uid", m.info.UID, "index", m.info.Index, "term", m.info.Term, "bytes", m.info.Size)
			if !m.req.Notify.IsZero() {
				_ = ctx.Send(m.req.Notify, Written{Info: m.info})
			}
		}
		p.schedule(ctx)
	case stopWriter:
		p.beginStop(ctx)
	case actor.Terminating:
		// Stopped by Stop, or by the node stopping: either way nothing
		// more is accepted; running jobs see stopping and end soon.
		p.stopping.Store(true)
		for _, q := range p.queue {
			p.release(q)
			p.fail(ctx, q, ErrStopped)
		}
		p.queue = nil
		go func() {
			p.jobs.Wait()
			p.doneOnce.Do(func() { close(p.done) })
		}()
	}
}

func (p *writerProcess) accept(ctx *actor.Context, req *Write) {
	if err := checkWrite(*req); err != nil {
		if req.Data != nil {
			p.release(req)
		}
		p.fail(ctx, req, err)
		return
	}
	if p.stopping.Load() {
		p.release(req)
		p.fail(ctx, req, ErrStopped)
		return
	}
	if r, ok := p.running[req.UID]; ok && r.Index >= req.Index {
		p.release(req)
		p.fail(ctx, req, fmt.Errorf("%w: %s is writing index %d, not taking %d", ErrStale, req.UID, r.Index, req.Index))
		return
	}
	for i, q := range p.queue {
		if q.UID != req.UID {
			continue
		}
		older, newer := q, req
		if q.Index >= req.Index {
			older, newer = req, q
		}
		p.queue[i] = newer
		p.release(older)
		p.fail(ctx, older, fmt.Errorf("%w: %s index %d replaced by %d", ErrSuperseded, older.UID, older.Index, newer.Index))
		p.schedule(ctx)
		return
	}
	p.queue = append(p.queue, req)
	p.schedule(ctx)
}

// schedule starts waiting requests, oldest first, while there is room and
// their UID is not being written.
func (p *writerProcess) schedule(ctx *actor.Context) {
	if p.stopping.Load() {
		if p.stopReq && len(p.running) == 0 {
			ctx.Stop()
		}
		return
	}
	for i := 0; i < len(p.queue) && len(p.running) < p.conc; {
		req := p.queue[i]
		if _, busy := p.running[req.UID]; busy {
			i++
			continue
		}
		p.queue = append(p.queue[:i], p.queue[i+1:]...)
		p.running[req.UID] = req
		p.jobs.Add(1)
		go p.run(ctx.Node(), ctx.Self(), req)
	}
}

func (p *writerProcess) beginStop(ctx *actor.Context) {
	p.stopReq = true
	p.stopping.Store(true)
	for _, q := range p.queue {
		p.release(q)
		p.fail(ctx, q, ErrStopped)
	}
	p.queue = nil
	p.schedule(ctx)
}

func (p *writerProcess) fail(ctx *actor.Context, req *Write, err error) {
	level := slog.LevelWarn
	if errors.Is(err, ErrStale) || errors.Is(err, ErrSuperseded) || errors.Is(err, ErrStopped) {
		level = slog.LevelDebug
	}
	p.logger.Log(context.Background(), level, "snapshot: write failed", "uid", req.UID, "index", req.Index, "term", req.Term, "err", err)
	if !req.Notify.IsZero() {
		_ = ctx.Send(req.Notify, WriteFailed{UID: req.UID, Index: req.Index, Term: req.Term, Err: err})
	}
}

// release calls the Source's Release, containing a panic.
func (p *writerProcess) release(req *Write) {
	defer func() {
		if r := recover(); r != nil {
			p.logger.Error("snapshot: Source.Release panicked", "uid", req.UID, "index", req.Index, "panic", fmt.Sprint(r))
		}
	}()
	req.Data.Release()
}

// run is a job goroutine: it writes one snapshot and reports back.
func (p *writerProcess) run(node *actor.Node, self actor.Ref, req *Write) {
	defer p.jobs.Done()
	info, err := p.write(req)
	_ = node.Send(self, jobDone{req: req, info: info, err: err})
}

func (p *writerProcess) write(req *Write) (info Info, err error) {
	released := false
	var pend *Pending
	defer func() {
		if r := recover(); r != nil {
			p.logger.Error("snapshot: Source.WriteTo panicked", "uid", req.UID, "index", req.Index, "panic", fmt.Sprint(r))
			err = fmt.Errorf("%w: WriteTo panicked: %v", ErrSource, r)
			if pend != nil {
				pend.Abort()
			}
		}
		if !released {
			p.release(req)
		}
	}()
	pend, err = p.store.Begin(req.UID, req.Index, req.Term, req.Meta)
	if err != nil {
		return Info{}, err
	}
	pend.stopped = p.stopping.Load
	_, werr := req.Data.WriteTo(pend)
	released = true
	p.release(req)
	if werr != nil {
		cause := pend.enc.err
		pend.Abort()
		if cause != nil {
			return Info{}, cause
		}
		return Info{}, fmt.Errorf("%w: %w", ErrSource, werr)
	}
	return pend.Commit()
}
