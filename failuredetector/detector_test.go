package failuredetector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
)

func TestSuspectedWhenDetectorStopsAndUpWhenItReturns(t *testing.T) {
	cfg := testConfig()
	a, b := startNode(t), startNode(t)
	da := startDetector(t, a, cfg)
	db := startDetector(t, b, cfg)
	w := newInbox(t, a)
	require.NoError(t, da.Watch(w.Ref(), b.Name()))

	// b answers a although nobody on b watches a.
	heard(t, da, b.Name(), uint64(cfg.MinSamples)+1)
	sb := db.Status()[a.Name()]
	require.True(t, sb.RemoteWatching)
	require.Zero(t, sb.Watchers)
	require.Equal(t, 1, da.Status()[b.Name()].Watchers)
	timeout := da.Status()[b.Name()].Timeout

	db.Stop()
	recv(t, w, Suspected{Node: b.Name()})
	checks, ok := da.checksToSuspicion(b.Name())
	require.True(t, ok)
	require.LessOrEqual(t, checks, maxChecksToSuspicion(cfg, timeout), "checks between the last heartbeat and the suspicion")
	eventually(t, func() bool { return da.Status()[b.Name()].Suspected }, "the status shows b suspected")

	// A new detector on b: a recognises the new incarnation and b is up.
	startDetector(t, b, cfg)
	recv(t, w, Up{Node: b.Name()})
	eventually(t, func() bool {
		s := da.Status()[b.Name()]
		return !s.Suspected && s.Restarts == 1
	}, "the status shows b up after one restart")
	quiet(t, w, 5*cfg.Interval)
}

func TestSuspectedWhenNodeStopsAndUpWhenItReturns(t *testing.T) {
	cfg := testConfig()
	a, b := startNode(t), startNode(t)
	da := startDetector(t, a, cfg)
	startDetector(t, b, cfg)
	w := newInbox(t, a)
	require.NoError(t, da.Watch(w.Ref(), b.Name()))
	heard(t, da, b.Name(), 3)

	addr := b.Name()
	b.Stop()
	recv(t, w, Suspected{Node: addr})

	// The node comes back on the same address.
	var b2 *actor.Node
	eventually(t, func() bool {
		n, err := actor.StartNode(actor.Config{Address: addr, ShutdownTimeout: 2 * time.Second, ReconnectInterval: 100 * time.Millisecond})
		if err != nil {
			return false
		}
		b2 = n
		return true
	}, "a node restarts at %s", addr)
	t.Cleanup(b2.Stop)
	startDetector(t, b2, cfg)
	recv(t, w, Up{Node: addr})
}

func TestIdlePairExchangesOnlyHeartbeatsWhateverTheWatchers(t *testing.T) {
	// A pause margin of seconds: this test is about traffic, and a false
	// suspicion on a loaded machine would add notices to count.
	cfg := testConfig()
	cfg.AcceptablePause = 5 * time.Second
	a, b := startNode(t), startNode(t)
	da := startDetector(t, a, cfg)
	startDetector(t, b, cfg)
	notices := newInbox(t, a)

	// Watchers are processes that forward whatever they get.
	spawnWatcher := func() actor.Ref {
		ref, err := a.Spawn(actor.ProcessFunc(func(ctx *actor.Context, msg actor.Message) {
			switch msg.(type) {
			case actor.Started, actor.Terminating:
			default:
				_ = ctx.Send(notices.Ref(), msg)
			}
		}))
		require.NoError(t, err)
		return ref
	}

	type sample struct {
		rounds, sent uint64
		frames       uint64
		bytes        uint64
	}
	take := func() sample {
		st, rounds := da.snapshot()
		s := a.Stats()
		return sample{rounds: rounds, sent: st[b.Name()].HeartbeatsSent, frames: s.FramesSent, bytes: s.BytesSent}
	}
	// measure lets n heartbeat rounds pass and returns the deltas.
	measure := func(n uint64) sample {
		s0 := take()
		eventually(t, func() bool { _, r := da.snapshot(); return r >= s0.rounds+n }, "%d heartbeat rounds", n)
		s1 := take()
		return sample{rounds: s1.rounds - s0.rounds, sent: s1.sent - s0.sent, frames: s1.frames - s0.frames, bytes: s1.bytes - s0.bytes}
	}

	first := spawnWatcher()
	require.NoError(t, da.Watch(first, b.Name()))
	heard(t, da, b.Name(), 3)
	one := measure(20)

	for range 99 {
		require.NoError(t, da.Watch(spawnWatcher(), b.Name()))
	}
	eventually(t, func() bool { return da.Status()[b.Name()].Watchers == 100 }, "100 watchers registered")
	hundred := measure(20)

	for name, m := range map[string]sample{"1 watcher": one, "100 watchers": hundred} {
		// One heartbeat per round to the watched node, whoever watches.
		require.Equal(t, m.rounds, m.sent, "%s: heartbeats to b per round", name)
		// Nothing but heartbeats leaves a: every frame carries at least
		// one, and each is small. The two counters are read one after the
		// other while heartbeats flow, so at each end of the window one
		// heartbeat may be counted on one side of it and its frame on the
		// other: at most two frames more than heartbeats. Anything the
		// watchers sent would be one per watcher and far beyond that.
		require.LessOrEqual(t, m.frames, m.sent+2, "%s: frames sent by a", name)
		require.Less(t, m.bytes/m.frames, uint64(64), "%s: bytes per frame", name)
		t.Logf("%s: %d rounds, %d heartbeats to b, %d frames, %d bytes", name, m.rounds, m.sent, m.frames, m.bytes)
	}
	// Bytes are counted with frames (a heartbeat counted at the window's
	// end may not have its frame yet), so compare per frame: each frame of
	// an idle pair is one heartbeat.
	require.InDelta(t, float64(one.bytes)/float64(one.frames), float64(hundred.bytes)/float64(hundred.frames), 2, "bytes per heartbeat frame do not depend on watchers")
	// And the watchers heard nothing: nothing changed.
	quiet(t, notices, 5*cfg.Interval)
}

func TestWatchIsCountedPerWatcherAndNode(t *testing.T) {
	cfg := testConfig()
	a, b := startNode(t), startNode(t)
	da := startDetector(t, a, cfg)
	db := startDetector(t, b, cfg)
	twice, gone := newInbox(t, a), newInbox(t, a)

	require.NoError(t, da.Watch(twice.Ref(), b.Name()))
	require.NoError(t, da.Watch(twice.Ref(), b.Name()))
	require.NoError(t, da.Unwatch(twice.Ref(), b.Name())) // one registration left
	require.NoError(t, da.Watch(gone.Ref(), b.Name()))
	require.NoError(t, da.Unwatch(gone.Ref(), b.Name())) // none left
	require.NoError(t, da.Unwatch(gone.Ref(), b.Name())) // ignored
	heard(t, da, b.Name(), 3)
	require.Equal(t, 1, da.Status()[b.Name()].Watchers)

	db.Stop()
	recv(t, twice, Suspected{Node: b.Name()}) // once, although watched twice
	// A watcher that registers while the node is suspected learns it at once.
	late := newInbox(t, a)
	require.NoError(t, da.Watch(late.Ref(), b.Name()))
	recv(t, late, Suspected{Node: b.Name()})
	quiet(t, twice, 5*cfg.Interval)
	quiet(t, gone, 0)
}

func TestNobodyWatchingMeansNoTraffic(t *testing.T) {
	cfg := testConfig()
	a, b := startNode(t), startNode(t)
	da := startDetector(t, a, cfg)
	db := startDetector(t, b, cfg)

	w := newInbox(t, a)
	watcher, err := a.Spawn(actor.ProcessFunc(func(ctx *actor.Context, msg actor.Message) {}))
	require.NoError(t, err)
	require.NoError(t, da.Watch(w.Ref(), b.Name()))
	require.NoError(t, da.Watch(watcher, b.Name()))
	heard(t, da, b.Name(), 3)

	// One watcher unwatches, the other exits: both sides let go.
	require.NoError(t, da.Unwatch(w.Ref(), b.Name()))
	require.NoError(t, a.Exit(watcher, actor.Normal))
	eventually(t, func() bool { return len(da.Status()) == 0 && len(db.Status()) == 0 }, "both detectors stop tracking")

	// Each side's goodbye may still be on its way out (it is queued before
	// the status empties, and counted once written): at most one frame.
	frames := func() [2]uint64 { return [2]uint64{a.Stats().FramesSent, b.Stats().FramesSent} }
	empty := frames()
	time.Sleep(4 * cfg.Interval)
	settled := frames()
	require.LessOrEqual(t, settled[0]-empty[0], uint64(1), "frames from a after it let go")
	require.LessOrEqual(t, settled[1]-empty[1], uint64(1), "frames from b after it let go")
	// From now on the pair is silent: no frame in either direction.
	time.Sleep(10 * cfg.Interval)
	require.Equal(t, settled, frames())
	quiet(t, w, 0)
}

func TestOneWayPartition(t *testing.T) {
	for _, disconnect := range []bool{true, false} {
		name := map[bool]string{true: "disconnect", false: "notify only"}[disconnect]
		t.Run(name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Disconnect = disconnect
			a, b := startNode(t), startNode(t)
			da := startDetector(t, a, cfg)
			db := startDetector(t, b, cfg)
			wa, wb := newInbox(t, a), newInbox(t, b)
			require.NoError(t, da.Watch(wa.Ref(), b.Name()))
			require.NoError(t, db.Watch(wb.Ref(), a.Name()))
			heard(t, da, b.Name(), 3)
			heard(t, db, a.Name(), 3)
			// A process monitor across the pair, to see what Disconnect does.
			mon := newInbox(t, a)
			mon.Monitor(db.Ref())

			// Several rounds of cutting and healing b -> a: the notices
			// alternate, starting with Suspected.
			for range 3 {
				require.NoError(t, da.DropHeartbeatsFrom(b.Name(), true))
				recv(t, wa, Suspected{Node: b.Name()})
				require.NoError(t, da.DropHeartbeatsFrom(b.Name(), false))
				recv(t, wa, Up{Node: b.Name()})
			}
			// b still hears a all along.
			quiet(t, wb, 0)
			require.False(t, db.Status()[a.Name()].Suspected)

			if disconnect {
				down := recvType[actor.Down](t, mon)
				require.Equal(t, actor.ReasonNoConnection, down.Reason.Kind)
			} else {
				quiet(t, mon, 0)
			}
		})
	}
}

func TestWatchingTheOwnNodeIsSilent(t *testing.T) {
	cfg := testConfig()
	a := startNode(t)
	da := startDetector(t, a, cfg)
	w := newInbox(t, a)
	require.NoError(t, da.Watch(w.Ref(), a.Name()))
	quiet(t, w, 30*cfg.Interval) // longer than any timeout
	require.Empty(t, da.Status())
	require.NoError(t, da.Unwatch(w.Ref(), a.Name()))
}

func TestAPIErrors(t *testing.T) {
	a, b := startNode(t), startNode(t)
	_, err := Start(nil, testConfig())
	require.ErrorIs(t, err, ErrInvalidConfig)
	bad := testConfig()
	bad.Interval = 0
	_, err = Start(a, bad)
	require.ErrorIs(t, err, ErrInvalidConfig)

	da := startDetector(t, a, testConfig())
	_, err = Start(a, testConfig())
	require.ErrorIs(t, err, actor.ErrNameTaken)

	w := newInbox(t, a)
	remote := newInbox(t, b)
	require.ErrorIs(t, da.Watch(w.Ref(), ""), ErrInvalidWatch)
	require.ErrorIs(t, da.Watch(remote.Ref(), a.Name()), ErrInvalidWatch)
	require.ErrorIs(t, da.Unwatch(actor.Ref{}, b.Name()), ErrInvalidWatch)

	da.Stop()
	da.Stop() // idempotent
	require.ErrorIs(t, da.Watch(w.Ref(), b.Name()), ErrStopped)
	require.ErrorIs(t, da.Unwatch(w.Ref(), b.Name()), ErrStopped)
	require.ErrorIs(t, da.DropHeartbeatsFrom(b.Name(), true), ErrStopped)
	require.Empty(t, da.Status())

	// The name is free again.
	startDetector(t, a, testConfig())
}

// A node whose readers fall behind (starved of CPU) does not suspect a
// peer whose bytes wait to be read, and does once it has read them and
// found no heartbeat among them.
func TestBytesWaitingToBeReadExcuseTheirSender(t *testing.T) {
	cfg := testConfig()
	a, b := startNode(t), startNode(t)
	da := startDetector(t, a, cfg)
	db := startDetector(t, b, cfg)
	w := newInbox(t, a)
	require.NoError(t, da.Watch(w.Ref(), b.Name()))
	heard(t, da, b.Name(), uint64(cfg.MinSamples)+1)
	timeout := da.Status()[b.Name()].Timeout

	// b's heartbeats pile up unread on a for several timeouts.
	a.PauseReads(b.Name(), true)
	quiet(t, w, 3*timeout)
	st := da.Status()[b.Name()]
	require.False(t, st.Suspected)
	require.Positive(t, st.Excused, "checks found b's silence long enough, and its bytes waiting")
	require.Greater(t, st.Silence, timeout)

	// Read, they are b's heartbeats: b was never silent.
	received := st.HeartbeatsReceived
	a.PauseReads(b.Name(), false)
	heard(t, da, b.Name(), received+2)
	quiet(t, w, 2*cfg.Interval)

	// Now b's detector stops while a's reading is paused: what waits is
	// its last heartbeats, and once they are read b is suspected.
	a.PauseReads(b.Name(), true)
	db.Stop()
	quiet(t, w, 2*timeout)
	a.PauseReads(b.Name(), false)
	recv(t, w, Suspected{Node: b.Name()})
}
