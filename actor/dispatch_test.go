package actor

import (
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
