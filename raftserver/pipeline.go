package raftserver

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/actor"
)

// PipelineOptions tunes a Pipeline; zero fields take the defaults.
type PipelineOptions struct {
	// Window is how many commands may be in flight at once (default
	// 1000): Submit waits while that many are unanswered.
	Window int
	// Timeout is how long a command may go unanswered before it is
	// reported with ErrTimeout, its outcome unknown (default 10s). Nothing
	// answers a command sent to a server whose node is down.
	Timeout time.Duration
}

// PipelineResult is the outcome of one command of a Pipeline. Err is nil
// when the command was applied, with Reply the machine's reply. Otherwise
// it wraps ErrTimeout or ErrLeadershipLost (the command may or may not
// have been applied), ErrMachine (the machine rejected it), ErrNoSuchServer
// or ErrShuttingDown.
type PipelineResult struct {
	// Seq is what Submit returned for the command.
	Seq    uint64
	Reply  []byte
	Err    error
	Leader ServerID // the server that applied it, or the leader last known
}

// Pipeline sends commands to one cluster without waiting for each, as
// PipelineCommand does, and does the bookkeeping a caller of
// PipelineCommand must otherwise do: it receives the notifications (no
// inbox to manage), keeps at most Window commands in flight, follows the
// leader a rejection names, sends again the commands that a member
// without a leader refused (they were not applied), and reports every
// command exactly once on Results, in the order the outcomes are known.
//
// Commands reach the log in the order they were submitted while the
// leader stays the same; one sent again after a refusal may land after
// commands submitted later. Use it from any goroutines; read Results, or
// it stalls once Window results wait there.
type Pipeline struct {
	sys     *System
	via     ServerID
	opts    PipelineOptions
	inbox   *actor.Inbox
	window  chan struct{} // one token per command in flight
	submits chan pipelineSubmit
	results chan PipelineResult
	seq     atomic.Uint64

	// mu orders Submit's hand-over of a command with Close: what Submit
	// handed over before Close is reported, and Submit fails after it.
	mu      sync.RWMutex
	closed  bool
	closing chan struct{}
}

type pipelineSubmit struct {
	seq uint64
	cmd []byte
}

// pipelineCmd is a command in flight, owned by the pipeline's goroutine.
type pipelineCmd struct {
	cmd     []byte
	firstAt time.Time // when first sent: Timeout bounds its retries too
	sentAt  time.Time
	retryAt time.Time // non-zero: not applied, to be sent again then
	lastErr error     // the refusal that set retryAt
	hops    int       // redirects since the last send to via
}

// NewPipeline starts a pipeline of commands to the cluster of via.
func (s *System) NewPipeline(via ServerID, opts PipelineOptions) (*Pipeline, error) {
	if opts.Window <= 0 {
		opts.Window = 1000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	inbox, err := s.node.NewInbox()
	if err != nil {
		return nil, err
	}
	p := &Pipeline{
		sys: s, via: via, opts: opts, inbox: inbox,
		window:  make(chan struct{}, opts.Window),
		submits: make(chan pipelineSubmit, opts.Window),
		results: make(chan PipelineResult, opts.Window),
		closing: make(chan struct{}),
	}
	go p.run()
	return p, nil
}

// Submit sends cmd (whose buffer may be reused once it returns) and
// returns its sequence number, which its PipelineResult carries. It waits
// while Window commands are in flight, until ctx ends. After Close it
// fails with ErrShuttingDown.
func (p *Pipeline) Submit(ctx context.Context, cmd []byte) (uint64, error) {
	select {
	case p.window <- struct{}{}:
	case <-p.closing:
		return 0, fmt.Errorf("%w: pipeline closed", ErrShuttingDown)
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: pipeline window full: %w", ErrTimeout, ctx.Err())
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		<-p.window
		return 0, fmt.Errorf("%w: pipeline closed", ErrShuttingDown)
	}
	seq := p.seq.Add(1)
	// Never blocks: it holds at most one command per window token.
	p.submits <- pipelineSubmit{seq: seq, cmd: bytes.Clone(cmd)}
	return seq, nil
}

// Results returns the channel of outcomes. After Close, it is closed
// once every command submitted has been reported.
func (p *Pipeline) Results() <-chan PipelineResult { return p.results }

// Close stops the pipeline without waiting: Submit fails from now on,
// the commands still in flight are reported with ErrTimeout (they may yet
// be applied), and then Results is closed. Keep reading Results until it
// is closed: with Window results waiting unread, the pipeline's goroutine
// cannot finish.
func (p *Pipeline) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.closing)
	}
}

// run owns the commands in flight.
func (p *Pipeline) run() {
	defer p.inbox.Close()
	defer close(p.results)
	inflight := map[uint64]*pipelineCmd{}
	target := p.via
	report := func(seq uint64, r PipelineResult) {
		delete(inflight, seq)
		r.Seq = seq
		p.results <- r
		<-p.window
	}
	send := func(seq uint64, c *pipelineCmd, to ServerID) {
		c.sentAt, c.retryAt, c.lastErr = time.Now(), time.Time{}, nil
		if err := p.sys.PipelineCommand(to, c.cmd, seq, p.inbox.Ref()); err != nil {
			report(seq, PipelineResult{Err: err, Leader: to})
		}
	}
	// Often enough for the retries (retryBackoffMax apart) and the
	// deadlines (Timeout/8 late at most).
	tick := time.NewTicker(max(min(p.opts.Timeout/8, retryBackoffMax/2), 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case s := <-p.submits:
			c := &pipelineCmd{cmd: s.cmd, firstAt: time.Now()}
			inflight[s.seq] = c
			send(s.seq, c, target)
		case msg := <-p.inbox.C():
			switch m := msg.(type) {
			case *Applied:
				target = m.Server
				for _, r := range m.Results {
					if _, ok := inflight[r.Correlation]; ok {
						report(r.Correlation, PipelineResult{Reply: r.Reply, Leader: m.Server})
					}
				}
			case *Rejected:
				c, ok := inflight[m.Correlation]
				if !ok || !c.retryAt.IsZero() {
					continue // reported, or already waiting to be sent again
				}
				switch refusal(m.Err, m.Leader, m.Server, p.via, c.hops) {
				case refusalFollow:
					// Not applied, and the leader is named: send it
					// there, and the commands that follow too.
					c.hops++
					target = m.Leader
					send(m.Correlation, c, target)
				case refusalRetry:
					// Not applied, and no leader known there: ask via
					// again after a pause.
					target = p.via
					c.hops = 0
					c.retryAt, c.lastErr = time.Now().Add(retryBackoffMax), m.Err
				default:
					report(m.Correlation, PipelineResult{Err: m.Err, Leader: m.Leader})
				}
			}
		case now := <-tick.C:
			for seq, c := range inflight {
				waiting := !c.retryAt.IsZero()
				switch {
				case waiting && now.Sub(c.firstAt) > p.opts.Timeout:
					// Refused again and again: not applied.
					report(seq, PipelineResult{Err: c.lastErr, Leader: target})
				case waiting && !now.Before(c.retryAt):
					send(seq, c, target)
				case !waiting && now.Sub(c.sentAt) > p.opts.Timeout:
					report(seq, PipelineResult{Err: fmt.Errorf("%w: no answer within %v: outcome unknown", ErrTimeout, p.opts.Timeout), Leader: target})
				}
			}
		case <-p.closing:
			// Every command Submit handed over is in submits by now.
			for len(p.submits) > 0 {
				s := <-p.submits
				inflight[s.seq] = &pipelineCmd{}
				report(s.seq, PipelineResult{Err: fmt.Errorf("%w: pipeline closed before the command was sent", ErrShuttingDown), Leader: target})
			}
			for seq := range inflight {
				report(seq, PipelineResult{Err: fmt.Errorf("%w: pipeline closed with the command in flight: outcome unknown", ErrTimeout), Leader: target})
			}
			return
		}
	}
}

// TypedResult is a PipelineResult with the reply decoded.
type TypedResult[R any] struct {
	Seq    uint64
	Reply  R
	Err    error // as PipelineResult's, or ErrMachine if the reply does not decode
	Leader ServerID
}

// TypedPipeline is a Pipeline of typed commands and replies, for a
// machine built with NewTypedMachine and the same codecs.
type TypedPipeline[C, R any] struct {
	p       *Pipeline
	cmds    Codec[C]
	results chan TypedResult[R]
}

// Pipeline starts a TypedPipeline to the cluster of via.
func (c TypedClient[C, R]) Pipeline(via ServerID, opts PipelineOptions) (*TypedPipeline[C, R], error) {
	p, err := c.System.NewPipeline(via, opts)
	if err != nil {
		return nil, err
	}
	t := &TypedPipeline[C, R]{p: p, cmds: c.Cmds, results: make(chan TypedResult[R], cap(p.results))}
	go func() {
		defer close(t.results)
		for r := range p.Results() {
			tr := TypedResult[R]{Seq: r.Seq, Err: r.Err, Leader: r.Leader}
			if r.Err == nil {
				tr.Reply, tr.Err = decodeTypedReply(r.Reply, c.Replies)
			}
			t.results <- tr
		}
	}()
	return t, nil
}

// Submit encodes cmd and submits it (see Pipeline.Submit). A command that
// does not encode fails with ErrInvalidConfig and is not sent.
func (t *TypedPipeline[C, R]) Submit(ctx context.Context, cmd C) (uint64, error) {
	b, err := t.cmds.Encode(cmd)
	if err != nil {
		return 0, fmt.Errorf("%w: command does not encode: %w", ErrInvalidConfig, err)
	}
	return t.p.Submit(ctx, b)
}

// Results returns the channel of decoded outcomes (see Pipeline.Results).
func (t *TypedPipeline[C, R]) Results() <-chan TypedResult[R] { return t.results }

// Close stops the pipeline (see Pipeline.Close).
func (t *TypedPipeline[C, R]) Close() { t.p.Close() }
