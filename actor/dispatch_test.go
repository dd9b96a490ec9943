package actor

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDispatcherReusesWorkers checks that activations one after the other
// run on a worker that waits for them, not each on a new goroutine, and
// that the workers are gone once the node stops.
func TestDispatcherReusesWorkers(t *testing.T) {
	stop := make(chan struct{})
	d := newDispatcher(stop)
	const activations = 100
	for range activations {
		done := make(chan struct{})
		d.Schedule(func() { close(done) })
		<-done
		time.Sleep(time.Millisecond) // let the worker get back to waiting
	}
	require.Less(t, d.started.Load(), int64(activations), "every activation started a goroutine")
	require.Positive(t, d.running.Load())

	close(stop)
	require.Eventually(t, func() bool { return d.running.Load() == 0 }, 5*time.Second, time.Millisecond)
	// Scheduling after the stop still runs the work.
	done := make(chan struct{})
	d.Schedule(func() { close(done) })
	<-done
	require.Eventually(t, func() bool { return d.running.Load() == 0 }, 5*time.Second, time.Millisecond)
}

// TestDispatcherIdleWorkersExit checks that a node that goes idle keeps no
// worker waiting for ever.
func TestDispatcherIdleWorkersExit(t *testing.T) {
	d := newDispatcher(make(chan struct{}))
	done := make(chan struct{})
	d.Schedule(func() { close(done) })
	<-done
	require.Eventually(t, func() bool { return d.running.Load() == 0 }, workerIdle+5*time.Second, 10*time.Millisecond)
}

// TestDispatcherBoundsWorkers checks that a burst of activations waits in
// the dispatcher's queue for a few workers instead of each starting a
// goroutine: thousands of runnable goroutines starved the node's
// connection readers of the CPU.
func TestDispatcherBoundsWorkers(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	d := newDispatcher(stop)
	const activations = 2000
	var wg sync.WaitGroup
	wg.Add(activations)
	var ran atomic.Int64
	for range activations {
		d.Schedule(func() {
			defer wg.Done()
			ran.Add(1)
			time.Sleep(10 * time.Microsecond)
		})
	}
	wg.Wait()
	require.EqualValues(t, activations, ran.Load())
	// The watchdog may add a worker when the machine stalls every worker
	// for stallCheck (a loaded test machine), not one per activation.
	require.Less(t, d.started.Load(), d.limit+activations/10, "activations started their own goroutines")
}

// TestDispatcherBlockedWorkersDoNotStall checks that activations blocked
// inside a process (a synchronous call, a synced write) do not keep the
// queued ones from running: here every worker waits for an activation
// queued behind them.
func TestDispatcherBlockedWorkersDoNotStall(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	d := newDispatcher(stop)
	release := make(chan struct{})
	var blocked sync.WaitGroup
	blocked.Add(int(d.limit))
	for range d.limit {
		d.Schedule(func() {
			blocked.Done()
			<-release
		})
	}
	blocked.Wait() // every worker is taken
	done := make(chan struct{})
	d.Schedule(func() {
		close(release)
		close(done)
	})
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("an activation queued behind blocked workers never ran")
	}
	require.Greater(t, d.started.Load(), d.limit, "no worker was added")
}

// TestDispatcherSlowWorkersAreNotStalled checks that the watchdog adds no
// worker while the workers wait for the queue's lock: they are slow (a
// loaded machine hands the lock from one to the next a scheduling round at
// a time), not blocked in a process, and each added worker lengthened the
// line. A loaded node grew hundreds of workers so, all queued on the lock.
func TestDispatcherSlowWorkersAreNotStalled(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	d := newDispatcher(stop)
	var ran sync.WaitGroup
	const activations = 100
	ran.Add(activations)
	d.mu.Lock()
	for range activations {
		d.Schedule(ran.Done)
	}
	time.Sleep(10 * stallCheck) // the watchdog looks ten times
	d.mu.Unlock()
	ran.Wait()
	require.Equal(t, d.limit, d.started.Load(), "workers were added while the others waited for the lock")
}

// TestHighPriorityProcessSkipsTheQueue checks that a HighPriority process
// answers while every worker of the dispatcher is busy, without waiting
// for one: a node's services must not queue behind its thousands of
// servers.
func TestHighPriorityProcessSkipsTheQueue(t *testing.T) {
	n := startNode(t)
	release := make(chan struct{})
	defer close(release)
	var blocked sync.WaitGroup
	blocked.Add(int(n.dispatcher.limit))
	for range n.dispatcher.limit {
		ref, err := n.Spawn(ProcessFunc(func(_ *Context, msg Message) {
			if msg == "block" {
				blocked.Done()
				<-release
			}
		}))
		require.NoError(t, err)
		require.NoError(t, n.Send(ref, "block"))
	}
	blocked.Wait()
	require.Equal(t, n.dispatcher.limit, n.dispatcher.workers.Load(), "every worker is busy")

	ref, err := n.Spawn(ProcessFunc(func(ctx *Context, msg Message) {
		if msg == "ping" {
			_ = ctx.Reply("pong")
		}
	}), HighPriority())
	require.NoError(t, err)
	reply, err := n.Call(ref, "ping", waitFor)
	require.NoError(t, err)
	require.Equal(t, "pong", reply)
	require.EqualValues(t, n.dispatcher.limit, n.dispatcher.started.Load(), "the call took a worker of the queue")
}

// TestDispatcherScheduleNeverWaits checks that Schedule returns while the
// workers' lock is held: connection readers and timers call it for every
// mailbox they wake, and on a loaded machine a lock they all share queued
// them for seconds.
func TestDispatcherScheduleNeverWaits(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	d := newDispatcher(stop)
	ran := make(chan struct{}, 100)
	d.mu.Lock()
	scheduled := make(chan struct{})
	go func() {
		for range 100 {
			d.Schedule(func() { ran <- struct{}{} })
		}
		close(scheduled)
	}()
	select {
	case <-scheduled:
	case <-time.After(waitFor):
		t.Fatal("Schedule waited for the workers' lock")
	}
	d.mu.Unlock()
	for range 100 {
		<-ran
	}
}
