package segment

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal"
)

// DefaultWriterName is the name the segment writer registers under unless
// WriterOptions.Name says otherwise.
const DefaultWriterName = "rago_segment_writer"

// Flushed tells a server that its entries up to Last are durable in the
// segments and no longer in the WAL's mem tables, so it can drop cache
// references to them. First..Last is its whole segment range now.
type Flushed struct {
	UID         string
	First, Last uint64
}

// WriterOptions configures the segment writer process.
type WriterOptions struct {
	// Name to register under; "" means DefaultWriterName.
	Name string
	// RetryDelay is how long to wait before retrying a failed flush;
	// 0 means one second.
	RetryDelay time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Writer is the segment writer process: it receives *wal.ClosedFile from
// the WAL, flushes each into the store in order, then drops the mem
// tables, notifies the servers and removes the WAL file.
type Writer struct {
	node *actor.Node
	ref  actor.Ref
}

// StartWriter starts the segment writer on node, flushing into store.
// Start it before the WAL, which hands it the recovered files.
func StartWriter(node *actor.Node, store *Store, opts WriterOptions) (*Writer, error) {
	w, p := NewWriter(node, store, opts)
	if _, err := node.SpawnNamed(w.ref.Name, p, actor.HighPriority()); err != nil {
		return nil, fmt.Errorf("segment: spawn %q: %w", w.ref.Name, err)
	}
	return w, nil
}

// NewWriter is StartWriter without the spawn: it returns the writer and a
// fresh process, which the caller (a supervisor) spawns under opts.Name
// (or DefaultWriterName). The Writer names its process, so it stays valid
// for every restart of the process under that name. A new process starts
// with an empty queue: the files an earlier one had not flushed are still
// in the WAL directory, and only a WAL recovering them hands them over
// again, so restart the WAL with it.
func NewWriter(node *actor.Node, store *Store, opts WriterOptions) (*Writer, actor.Process) {
	if opts.Name == "" {
		opts.Name = DefaultWriterName
	}
	if opts.RetryDelay == 0 {
		opts.RetryDelay = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &writerProcess{store: store, retryDelay: opts.RetryDelay, logger: opts.Logger}
	return &Writer{node: node, ref: actor.Ref{Name: opts.Name, Node: node.Name()}}, p
}

// Ref returns the writer process, to pass as wal.StartOptions.SegmentWriter.
func (w *Writer) Ref() actor.Ref { return w.ref }

// Stop waits until every file received before the call is flushed (or
// failed), then stops the process. Files not flushed stay in the WAL
// directory and are recovered at the next start.
func (w *Writer) Stop(timeout time.Duration) error {
	if _, err := w.node.Call(w.ref, stopWriter{}, timeout); err != nil {
		return fmt.Errorf("segment: stop writer: %w", err)
	}
	return nil
}

type (
	stopWriter struct{}
	retryFlush struct{}
)

// writerProcess flushes closed files strictly in the order received (the
// WAL's file order), blocking its own mailbox while pebble flushes: the
// only messages that wait are further closed files.
type writerProcess struct {
	store      *Store
	queue      []*wal.ClosedFile
	retrying   bool
	retryDelay time.Duration
	logger     *slog.Logger
}

func (p *writerProcess) Receive(ctx *actor.Context, msg actor.Message) {
	switch m := msg.(type) {
	case *wal.ClosedFile:
		p.queue = append(p.queue, m)
		p.drain(ctx)
	case retryFlush:
		p.retrying = false
		p.drain(ctx)
	case stopWriter:
		_ = ctx.Reply(struct{}{})
		ctx.Stop()
	}
}

// drain flushes queued files until the queue is empty or a flush fails;
// a failed file stays at the head and is retried after retryDelay.
func (p *writerProcess) drain(ctx *actor.Context) {
	for len(p.queue) > 0 && !p.retrying {
		cf := p.queue[0]
		if err := p.flush(ctx, cf); err != nil {
			p.logger.Error("segment: flush failed; will retry", "file", cf.Path, "err", err, "retry_in", p.retryDelay)
			p.retrying = true
			ctx.SendAfter(p.retryDelay, retryFlush{})
			return
		}
		p.queue[0] = nil
		p.queue = p.queue[1:]
	}
}

// flush carries out the durability rule: segments durable, then tables
// dropped and servers told, then the WAL file removed (or kept by the WAL
// to be written over, when the store copied its entries).
func (p *writerProcess) flush(ctx *actor.Context, cf *wal.ClosedFile) error {
	start := time.Now()
	results, err := p.store.FlushFile(cf)
	if err != nil {
		return err
	}
	entries := 0
	release := cf.Recycle // the entries were copied: the WAL may write over the file
	for _, r := range results {
		if r.Linked {
			release = cf.Remove // the store keeps the file's bytes
		}
		r.Table.Log.DropFile(cf.Seq)
		if r.Skipped {
			continue
		}
		entries += r.Table.Entries.Len()
		ref, ok := r.Table.Log.Subscriber()
		if !ok {
			continue
		}
		first, last, has, err := p.store.Bounds(r.Table.UID)
		if err != nil {
			p.logger.Error("segment: bounds after flush", "uid", r.Table.UID, "err", err)
			continue
		}
		if has {
			_ = ctx.Send(ref, Flushed{UID: r.Table.UID, First: first, Last: last})
		}
	}
	if err := release(); err != nil {
		// The entries are safe in the segments; the file will be
		// replayed (idempotently) and removed at the next start.
		p.logger.Error("segment: remove flushed wal file", "file", cf.Path, "err", err)
	}
	p.logger.Debug("segment: flushed wal file", "file", cf.Path, "tables", len(cf.Tables), "entries", entries, "took", time.Since(start))
	return nil
}
