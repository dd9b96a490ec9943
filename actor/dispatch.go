package actor

import (
	"sync/atomic"
	"time"

	pa "github.com/asynkron/protoactor-go/actor"
)

// mailboxThroughput is how many messages a mailbox handles before it lets
// other goroutines run (protoactor's default).
const mailboxThroughput = 300

// workerIdle is how long a mailbox worker waits for another activation
// before it exits.
const workerIdle = time.Second

// dispatcher runs a node's mailboxes on goroutines that it reuses.
// protoactor's default dispatcher starts a goroutine for every mailbox
// activation, and a busy process (a Raft server) calls deep enough that
// each new goroutine then grows its stack by copying it: 6% of a node's
// CPU at 1 KiB x 512 callers in bench/compare. A worker that finished an
// activation waits up to workerIdle for the next one, keeping its stack;
// idle workers exit then, and all of them once the node stops, so an idle
// node keeps no goroutine busy.
type dispatcher struct {
	work chan func() // unbuffered: a send succeeds only into a waiting worker
	stop <-chan struct{}

	started atomic.Int64 // workers started, for tests
	running atomic.Int64 // workers not yet exited, for tests
}

var _ pa.Dispatcher = (*dispatcher)(nil)

func newDispatcher(stop <-chan struct{}) *dispatcher {
	return &dispatcher{work: make(chan func()), stop: stop}
}

// Schedule runs fn on a waiting worker, or on a new one if none waits.
func (d *dispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		d.started.Add(1)
		d.running.Add(1)
		go d.worker(fn)
	}
}

// Throughput implements pa.Dispatcher.
func (d *dispatcher) Throughput() int { return mailboxThroughput }

func (d *dispatcher) worker(fn func()) {
	defer d.running.Add(-1)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(workerIdle)
		select {
		case fn = <-d.work:
		case <-idle.C:
			return
		case <-d.stop:
			return
		}
	}
}
