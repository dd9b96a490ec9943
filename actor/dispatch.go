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

// stallCheck is how often a dispatcher whose workers are all inside
// activations checks that they still take work; one that took none in
// that time gets another worker.
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
// Schedule never waits for a lock: connection readers and timers call it
// for every mailbox they wake, and a mutex shared by all of them queues
// its waiters on a loaded machine and hands it from one to the next a
// scheduling round at a time (see link). It pushes onto a lock-free stack;
// workers move that stack into their FIFO under a lock only they take.
//
// A process may block (a synced write, a synchronous call to another
// process, a machine that waits on I/O). So that blocked workers cannot
// stall the node, a watchdog runs while work waits and every worker is
// busy: if no worker took an activation for stallCheck while every one was
// inside an activation, it starts one more. A worker that waits for the
// queue's lock is slow, not blocked, and another would only lengthen the
// line: counting those as stalled once grew a loaded node to hundreds of
// workers, all queued on the lock. Workers exit after workerIdle without
// work and once the node stops, so an idle node keeps no goroutine.
type dispatcher struct {
	stop  <-chan struct{}
	limit int64 // workers started on demand
	// wake carries one token per idle worker that Schedule claimed.
	wake chan struct{}

	inbox    pushStack[func()] // scheduled, not yet in queue
	pending  atomic.Int64      // scheduled and not yet taken
	idle     atomic.Int64      // workers waiting on wake and not claimed
	workers  atomic.Int64      // alive
	inside   atomic.Int64      // workers running an activation
	taken    atomic.Uint64     // activations taken: the watchdog's measure of progress
	watching atomic.Bool       // a watchdog runs

	mu    sync.Mutex // workers only
	queue []func()   // taken from inbox, oldest first from head
	head  int

	started atomic.Int64 // workers started, for tests
	running atomic.Int64 // workers not yet exited, for tests
}

var _ pa.Dispatcher = (*dispatcher)(nil)

func newDispatcher(stop <-chan struct{}) *dispatcher {
	limit := max(minWorkers, workersPerCPU*runtime.GOMAXPROCS(0))
	return &dispatcher{stop: stop, limit: int64(limit), wake: make(chan struct{}, 4*limit)}
}

// Schedule queues fn, a mailbox activation, and gets a worker to it: an
// idle one, or a new one below the limit; otherwise the next worker to
// finish takes it. It never blocks.
func (d *dispatcher) Schedule(fn func()) {
	d.inbox.push(fn)
	d.pending.Add(1)
	if d.claimIdle() {
		select {
		case d.wake <- struct{}{}:
			return
		default:
			// Claimed workers have not taken their tokens yet and wake
			// is full: give the claim back and start a worker instead.
			d.idle.Add(1)
		}
	}
	for {
		w := d.workers.Load()
		if w >= d.limit {
			break
		}
		if d.workers.CompareAndSwap(w, w+1) {
			d.start()
			return
		}
	}
	if d.watching.CompareAndSwap(false, true) {
		go d.watch()
	}
}

// claimIdle takes one idle worker, if any, for a token on wake.
func (d *dispatcher) claimIdle() bool {
	for {
		i := d.idle.Load()
		if i <= 0 {
			return false
		}
		if d.idle.CompareAndSwap(i, i-1) {
			return true
		}
	}
}

// Throughput implements pa.Dispatcher.
func (d *dispatcher) Throughput() int { return mailboxThroughput }

// start runs a worker already counted in workers.
func (d *dispatcher) start() {
	d.started.Add(1)
	d.running.Add(1)
	go d.worker()
}

// take returns the oldest scheduled activation, or nil.
func (d *dispatcher) take() func() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.head == len(d.queue) {
		d.queue, d.head = d.queue[:0], 0
		if !d.inbox.takeAll(func(fn func()) { d.queue = append(d.queue, fn) }) {
			return nil
		}
	}
	fn := d.queue[d.head]
	d.queue[d.head] = nil
	d.head++
	d.pending.Add(-1)
	d.taken.Add(1)
	return fn
}

func (d *dispatcher) worker() {
	defer d.running.Add(-1)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		if fn := d.take(); fn != nil {
			d.inside.Add(1)
			fn()
			d.inside.Add(-1)
			continue
		}
		d.idle.Add(1)
		// Work scheduled after take looked, by a Schedule that saw no idle
		// worker, would wait for the watchdog: look again, now that
		// Schedule can see this one.
		if d.pending.Load() > 0 && d.claimIdle() {
			continue
		}
		idle.Reset(workerIdle)
		select {
		case <-d.wake:
			continue
		case <-idle.C:
		case <-d.stop:
		}
		if !d.claimIdle() {
			// Every idle worker was claimed, this one among them: a
			// token is on its way. Take it and the work with it.
			<-d.wake
			continue
		}
		if d.pending.Load() > 0 {
			continue // not idle after all
		}
		d.workers.Add(-1)
		if d.pending.Load() > 0 && d.workers.Load() == 0 {
			// Work arrived as the last worker left: a Schedule that
			// counted it among the workers started none.
			if d.workers.CompareAndSwap(0, 1) {
				d.start()
			}
		}
		return
	}
}

// watch runs while activations wait and every worker is busy. A worker
// blocked in a process (a synced write, a synchronous call) takes no
// work; when none took any for stallCheck and every worker is inside an
// activation, it starts one more worker, so that blocked workers never
// stall the node. Workers that keep taking work, or wait for the queue's
// lock to take some, are left alone: more of them would only compete
// with the node's connections for the CPU, and with each other for the
// lock.
func (d *dispatcher) watch() {
	t := time.NewTicker(stallCheck)
	defer t.Stop()
	last := d.taken.Load()
	for range t.C {
		if d.pending.Load() == 0 {
			d.watching.Store(false)
			// Work scheduled just before the flag was cleared saw a
			// watchdog running: look again.
			if d.pending.Load() == 0 || !d.watching.CompareAndSwap(false, true) {
				return
			}
		}
		now := d.taken.Load()
		if now == last && d.idle.Load() == 0 && d.inside.Load() >= d.workers.Load() {
			d.workers.Add(1)
			d.start()
		}
		last = now
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
