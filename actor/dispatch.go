package actor

import (
	"runtime"
	"sync"
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

// stallCheck is how often a dispatcher whose workers are all busy checks
// that they still take work; one that took none in that time gets another
// worker.
const stallCheck = 50 * time.Millisecond

// workersPerCPU sets how many workers a dispatcher starts on demand:
// workersPerCPU x GOMAXPROCS (at least minWorkers). More start only when
// those stall (see watch).
const (
	workersPerCPU = 4
	minWorkers    = 4
)

// dispatcher runs a node's mailboxes on a small set of goroutines, as an
// Erlang node runs its processes on one scheduler per core.
//
// protoactor's default dispatcher starts a goroutine for every mailbox
// activation. With thousands of busy mailboxes (a node with a thousand
// Raft servers catching up after a restart) that is thousands of runnable
// goroutines, and Go's scheduler serves them in turn with the goroutines
// that read and write the node's connections: on a loaded machine a frame
// waited seconds between its goroutine's turns, and a call's round trip
// took tens of seconds while the traffic itself was small. Here runnable
// mailboxes wait in the dispatcher's own queue, in order, and only a few
// workers compete with the connections for the CPU. Each worker keeps its
// stack between activations, which also saves the stack growth a new
// goroutine pays (6% of a node's CPU at 1 KiB x 512 callers in
// bench/compare).
//
// A process may block (a synced write, a synchronous call to another
// process, a machine that waits on I/O). So that blocked workers cannot
// stall the node, a watchdog runs while work waits and every worker is
// busy: if no worker took an activation for stallCheck, it starts one
// more. Workers exit after workerIdle without work and once the node
// stops, so an idle node keeps no goroutine.
type dispatcher struct {
	stop  <-chan struct{}
	limit int // workers started on demand
	// wake carries one token per idle worker that Schedule claimed; its
	// capacity bounds the idle workers (and Schedule never blocks on it).
	wake chan struct{}

	mu       sync.Mutex
	queue    []func() // runnable mailboxes, oldest first from head
	head     int
	workers  int    // alive
	idle     int    // waiting on wake and not claimed
	taken    uint64 // activations taken from the queue: the watchdog's measure of progress
	watching bool   // a watchdog runs

	started atomic.Int64 // workers started, for tests
	running atomic.Int64 // workers not yet exited, for tests
}

var _ pa.Dispatcher = (*dispatcher)(nil)

func newDispatcher(stop <-chan struct{}) *dispatcher {
	limit := max(minWorkers, workersPerCPU*runtime.GOMAXPROCS(0))
	return &dispatcher{stop: stop, limit: limit, wake: make(chan struct{}, 4*limit)}
}

// Schedule queues fn, a mailbox activation, and gets a worker to it: an
// idle one, or a new one below the limit; otherwise the next worker to
// finish takes it.
func (d *dispatcher) Schedule(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queue = append(d.queue, fn)
	if d.idle > 0 {
		select {
		case d.wake <- struct{}{}:
			d.idle--
			return
		default:
			// Claimed workers have not taken their tokens yet: wake is
			// full. Never wait for them under mu; a worker is started
			// or the watchdog sees to the queue.
		}
	}
	switch {
	case d.workers < d.limit:
		d.startLocked()
	case !d.watching:
		d.watching = true
		go d.watch()
	}
}

// Throughput implements pa.Dispatcher.
func (d *dispatcher) Throughput() int { return mailboxThroughput }

func (d *dispatcher) startLocked() {
	d.workers++
	d.started.Add(1)
	d.running.Add(1)
	go d.worker()
}

// popLocked takes the oldest queued activation.
func (d *dispatcher) popLocked() (func(), bool) {
	if d.head == len(d.queue) {
		return nil, false
	}
	fn := d.queue[d.head]
	d.queue[d.head] = nil
	d.head++
	switch {
	case d.head == len(d.queue):
		d.queue, d.head = d.queue[:0], 0
	case d.head >= 1024 && 2*d.head >= len(d.queue):
		// Mostly consumed: move the rest down instead of growing.
		n := copy(d.queue, d.queue[d.head:])
		clear(d.queue[n:])
		d.queue, d.head = d.queue[:n], 0
	}
	d.taken++
	return fn, true
}

func (d *dispatcher) worker() {
	defer d.running.Add(-1)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		d.mu.Lock()
		if fn, ok := d.popLocked(); ok {
			d.mu.Unlock()
			fn()
			continue
		}
		if d.idle >= cap(d.wake) {
			d.workers--
			d.mu.Unlock()
			return
		}
		d.idle++
		d.mu.Unlock()
		idle.Reset(workerIdle)
		select {
		case <-d.wake:
			continue
		case <-idle.C:
		case <-d.stop:
		}
		d.mu.Lock()
		select {
		case <-d.wake:
			// Claimed by a Schedule meanwhile (which counted us out of
			// idle): take the work.
			d.mu.Unlock()
			continue
		default:
		}
		d.idle--
		d.workers--
		d.mu.Unlock()
		return
	}
}

// watch runs while activations wait and every worker is busy. A worker
// blocked in a process (a synced write, a synchronous call) takes no
// work; when none took any for stallCheck, it starts one more worker, so
// that blocked workers never stall the node. Busy workers that keep
// taking work are left alone: more of them would only compete with the
// node's connections for the CPU.
func (d *dispatcher) watch() {
	t := time.NewTicker(stallCheck)
	defer t.Stop()
	d.mu.Lock()
	last := d.taken
	d.mu.Unlock()
	for range t.C {
		d.mu.Lock()
		if d.head == len(d.queue) {
			d.watching = false
			d.mu.Unlock()
			return
		}
		if d.taken == last && d.idle == 0 {
			d.startLocked()
		}
		last = d.taken
		d.mu.Unlock()
	}
}

// goroutineDispatcher runs the mailboxes of HighPriority processes: each
// activation on a goroutine of its own, never queued behind others. A
// worker that finished an activation waits up to workerIdle for the next
// one, keeping its stack; it exits then, or when the node stops.
type goroutineDispatcher struct {
	work chan func() // unbuffered: a send succeeds only into a waiting worker
	stop <-chan struct{}

	started atomic.Int64 // workers started, for tests
	running atomic.Int64 // workers not yet exited, for tests
}

var _ pa.Dispatcher = (*goroutineDispatcher)(nil)

func newGoroutineDispatcher(stop <-chan struct{}) *goroutineDispatcher {
	return &goroutineDispatcher{work: make(chan func()), stop: stop}
}

// Schedule runs fn on a waiting worker, or on a new one if none waits.
func (d *goroutineDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
	default:
		d.started.Add(1)
		d.running.Add(1)
		go d.worker(fn)
	}
}

// Throughput implements pa.Dispatcher.
func (d *goroutineDispatcher) Throughput() int { return mailboxThroughput }

func (d *goroutineDispatcher) worker(fn func()) {
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
