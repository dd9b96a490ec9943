package wal

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/actor"
)

// DefaultName is the name the WAL process registers under unless
// StartOptions.Name says otherwise.
const DefaultName = "rago_wal"

// StartOptions says where the WAL lives among the node's processes.
type StartOptions struct {
	// Name to register the WAL process under; "" means DefaultName.
	Name string
	// SegmentWriter receives every *ClosedFile: the recovered files at
	// start and each file closed by rollover. Required.
	SegmentWriter actor.Ref
}

// WAL is the node's write-ahead log: one process that batches the writes
// of every Raft server on the node into one file, with one sync per batch,
// plus the mem tables servers read from. Its methods are safe for
// concurrent use.
type WAL struct {
	node    *actor.Node
	ref     actor.Ref
	o       *opened
	closed  atomic.Bool
	failed  atomic.Pointer[error]
	stopped chan struct{}
	stopMu  sync.Mutex
}

// Start recovers the WAL directory (rebuilding mem tables; a torn tail is
// cut, other damage fails with a *CorruptionError) and starts the WAL
// process, which first hands the recovered files to the segment writer.
// The segment writer must already be running: a WAL that cannot hand it
// the files exits with an error.
func Start(node *actor.Node, cfg Config, opts StartOptions) (*WAL, error) {
	w, p, err := Open(node, cfg, opts)
	if err != nil {
		return nil, err
	}
	if _, err := node.SpawnNamed(w.ref.Name, p, actor.HighPriority()); err != nil {
		return nil, fmt.Errorf("wal: spawn %q: %w", w.ref.Name, err)
	}
	return w, nil
}

// Open is Start without the spawn: it recovers the directory and returns
// the WAL with its process, which the caller must spawn under opts.Name
// (or DefaultName) before using the WAL. A supervisor uses it to restart
// the WAL: every Open makes new mem tables from the files, so the Writers
// of an earlier WAL must not be used with this one (they fail with
// ErrClosed once their WAL's process ended).
func Open(node *actor.Node, cfg Config, opts StartOptions) (*WAL, actor.Process, error) {
	if opts.SegmentWriter == (actor.Ref{}) {
		return nil, nil, fmt.Errorf("%w: no segment writer", ErrConfig)
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	o, err := open(cfg)
	if err != nil {
		return nil, nil, err
	}
	w := &WAL{node: node, ref: actor.Ref{Name: opts.Name, Node: node.Name()}, o: o, stopped: make(chan struct{})}
	p := &process{wal: w, core: o.core, fw: o.fw, segments: opts.SegmentWriter, flush: make(chan *batch, 1)}
	return w, p, nil
}

// Ref returns the WAL process.
func (w *WAL) Ref() actor.Ref { return w.ref }

// Register returns the Writer of uid. Notifications (Written,
// OutOfSequence, WriteFailed, and the segment writer's) go to notify.
// Registering a UID again (a restarted server) returns a new Writer that
// continues the same log.
func (w *WAL) Register(uid string, notify actor.Ref) (*Writer, error) {
	if w.closed.Load() {
		return nil, ErrClosed
	}
	wr, err := w.o.newWriter(uid, notify, func(m writeMsg) error {
		if w.closed.Load() {
			return ErrClosed
		}
		if perr := w.failed.Load(); perr != nil {
			return *perr
		}
		return w.node.Send(w.ref, m)
	})
	if err != nil {
		return nil, err
	}
	wr.log.setSubscriber(notify)
	return wr, nil
}

// Mem returns the mem tables of uid, or nil if the WAL holds none.
func (w *WAL) Mem(uid string) *MemLog { return w.o.tables.Get(uid) }

// Last returns the last index the WAL files hold for uid, if any; after a
// restart, combine it with the segments (see segment.Log).
func (w *WAL) Last(uid string) (index, term uint64, ok bool) {
	if l := w.o.tables.Get(uid); l != nil {
		return l.View().Last()
	}
	return 0, 0, false
}

// Forget drops the WAL's state and mem tables of uid, whose data is being
// deleted. The caller must have stopped writing as uid. Entries of uid
// still in WAL files are discarded by the segment writer.
func (w *WAL) Forget(uid string) error {
	if w.closed.Load() {
		return ErrClosed
	}
	return w.node.Send(w.ref, forgetMsg{uid: uid})
}

// Rollover makes the next batch start a new file, so the current one is
// handed to the segment writer once that batch is durable (tests and
// operators; normal rollover is by size).
func (w *WAL) Rollover() error {
	if w.closed.Load() {
		return ErrClosed
	}
	return w.node.Send(w.ref, rollMsg{})
}

// Reclaim offers the WAL a file it wrote once, which another part of the
// node kept since under a name of its own and now gives up: the segment
// store keeps closed files by hard link (segment.Store.SetReclaim) until
// a snapshot or an overwrite leaves no entry in them. The WAL keeps it, as
// it keeps files the store copied (ClosedFile.Recycle), to start a later
// file over it instead of over zeros. Reclaim reports whether the WAL took
// the file: if so, name is gone and the caller must not remove it; if
// not, name is as it was, for the caller to remove. The WAL declines once
// it keeps Config.RecycleFiles files, once it stopped, when the file
// system cannot tell that name is the file's only link (an in-memory
// vfs), and a file whose old batches it could take for a new file's: one
// of version 1, or numbered as a file it may still start. Safe from any
// goroutine.
func (w *WAL) Reclaim(name string) bool {
	if w.closed.Load() {
		return false
	}
	cfg := w.o.cfg
	took, err := reclaimFile(cfg, &w.o.fw.free, w.o.core.nextSeen.Load(), name)
	switch {
	case err != nil && took:
		cfg.Logger.Warn("wal: keeping a reclaimed file failed; removed it", "file", name, "err", err)
	case err != nil:
		cfg.Logger.Debug("wal: declined a file to write over", "file", name, "err", err)
	}
	return took
}

// Closed reports whether the WAL's process ended (Stop, a crash, its
// node's stop): its Writers and Register then fail with ErrClosed.
func (w *WAL) Closed() bool { return w.closed.Load() }

// Err returns the error that failed the WAL, or nil.
func (w *WAL) Err() error {
	if p := w.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Stop writes and syncs every write the WAL process already received,
// closes the current file and stops the process. Later writes return
// ErrClosed. Stop waits at most timeout.
func (w *WAL) Stop(timeout time.Duration) error {
	w.stopMu.Lock()
	defer w.stopMu.Unlock()
	if w.closed.Swap(true) {
		return nil
	}
	if err := w.node.Send(w.ref, stopMsg{}); err != nil {
		return err
	}
	select {
	case <-w.stopped:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("wal: stop did not finish within %v", timeout)
	}
}

// Messages of the WAL process to itself.
type (
	kickMsg   struct{}
	stopMsg   struct{}
	rollMsg   struct{}
	forgetMsg struct{ uid string }
	batchDone struct {
		b   *batch
		err error
	}
)

// process is the actor shell around core: it stages writes, keeps one
// batch at a time on the flusher goroutine, and sends what the core
// decides. All logic lives in core.
type process struct {
	wal      *WAL
	core     *core
	fw       *fileWriter
	segments actor.Ref
	flush    chan *batch // to the flusher; it holds at most the one in-flight batch
	kicked   bool        // a kickMsg is queued
	flushing bool        // the flusher goroutine runs
	stopping bool
	done     bool // finish ran
}

// Receive implements actor.Process.
func (p *process) Receive(ctx *actor.Context, msg actor.Message) {
	switch m := msg.(type) {
	case actor.Started:
		// Recovered files go to the segment writer before anything else
		// this process does, so they reach it before any file it closes.
		for _, cf := range p.wal.o.files {
			if err := ctx.Send(p.segments, cf); err != nil {
				ctx.Exit(actor.ErrorReason(fmt.Errorf("wal: hand recovered file %s to the segment writer: %w", cf.Path, err)))
				return
			}
		}
		p.wal.o.files = nil
		p.flushing = true
		go p.flusher(ctx.Node(), ctx.Self())
	case writeMsg:
		p.notify(ctx, p.core.stage(m))
		p.kick(ctx)
	case kickMsg:
		p.kicked = false
		p.next(ctx)
	case batchDone:
		ns, cf := p.core.complete(m.b, m.err)
		if m.err != nil {
			err := p.core.failed
			p.wal.failed.Store(&err)
		}
		p.notify(ctx, ns)
		if cf != nil {
			_ = ctx.Send(p.segments, cf)
		}
		p.next(ctx)
	case forgetMsg:
		p.core.forget(m.uid)
	case rollMsg:
		p.core.forceRoll = true
	case stopMsg:
		p.stopping = true
		p.next(ctx)
	case actor.Terminating:
		p.finish(ctx)
	}
}

// kick arranges for the next batch to be cut. When no batch is in flight
// it does not cut at once: it queues a kickMsg behind the writes already
// in the mailbox, so that a burst that arrived together goes out together.
// While a batch is in flight, batchDone does the cut.
func (p *process) kick(ctx *actor.Context) {
	if p.core.inFlight == nil && !p.kicked {
		p.kicked = true
		_ = ctx.Send(ctx.Self(), kickMsg{})
	}
}

// next hands the next batch to the flusher, or finishes a requested stop
// once nothing is pending or in flight.
func (p *process) next(ctx *actor.Context) {
	if b := p.core.cut(); b != nil {
		p.flush <- b // never blocks: the channel holds one and only one batch is in flight
		return
	}
	if p.core.inFlight == nil && p.core.hasPending() && !p.kicked {
		// Rollover is waiting for the segment writer: look again soon.
		// Writers meanwhile hold their in-flight budget, which bounds them.
		p.kicked = true
		ctx.SendAfter(segmentPoll, kickMsg{})
		return
	}
	if p.stopping && p.core.inFlight == nil {
		ctx.Stop()
	}
}

// segmentPoll is how often a rollover waiting for the segment writer
// checks again.
const segmentPoll = 5 * time.Millisecond

func (p *process) notify(ctx *actor.Context, ns []notice) {
	for _, n := range ns {
		if ref, ok := n.to.target.(actor.Ref); ok {
			_ = ctx.Send(ref, n.msg)
		}
	}
}

// finish ends the flusher when the process ends, and waits for it: the
// flusher writes the batch in flight and closes the file. Only then does
// the process's exit become known (its monitors fire after Terminating),
// so a WAL restarted by a supervisor never recovers a file that the old
// flusher is still writing. The wait is one batch's I/O at most.
func (p *process) finish(ctx *actor.Context) {
	if p.done {
		return
	}
	p.done = true
	p.wal.closed.Store(true)
	close(p.flush)
	if p.flushing {
		<-p.wal.stopped
	} else {
		close(p.wal.stopped)
	}
}

// flusher performs the I/O of one batch at a time and reports back, so the
// process keeps staging the next batch while the disk syncs this one. It
// owns the file writer: nothing else touches the file.
func (p *process) flusher(node *actor.Node, self actor.Ref) {
	defer close(p.wal.stopped)
	p.fw.prepare() // so that even the first file may start in a spare
	for b := range p.flush {
		err := p.fw.write(b)
		_ = node.Send(self, batchDone{b: b, err: err})
	}
	if err := p.fw.stop(); err != nil {
		p.core.cfg.Logger.Error("wal: close file", "err", err)
	}
}
