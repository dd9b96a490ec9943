package failuredetector

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStatsCountSuspicions(t *testing.T) {
	cfg := testConfig()
	cfg.Disconnect = false // the scenario is about the detector only
	a, b := startNode(t), startNode(t)
	da := startDetector(t, a, cfg)
	startDetector(t, b, cfg)
	w := newInbox(t, a)
	require.NoError(t, da.Watch(w.Ref(), b.Name()))
	heard(t, da, b.Name(), 3)
	require.Equal(t, Stats{}, da.Stats())

	// b goes silent for a, then is heard again.
	require.NoError(t, da.DropHeartbeatsFrom(b.Name(), true))
	recv(t, w, Suspected{Node: b.Name()})
	require.Equal(t, Stats{Suspicions: 1, Suspected: 1}, da.Stats())
	require.NoError(t, da.DropHeartbeatsFrom(b.Name(), false))
	recv(t, w, Up{Node: b.Name()})
	require.Equal(t, Stats{Suspicions: 1, Cleared: 1}, da.Stats())

	// Suspected again, then nobody watches it any more: it is no longer
	// suspected, but not cleared either.
	require.NoError(t, da.DropHeartbeatsFrom(b.Name(), true))
	recv(t, w, Suspected{Node: b.Name()})
	require.Equal(t, Stats{Suspicions: 2, Cleared: 1, Suspected: 1}, da.Stats())
	require.NoError(t, da.Unwatch(w.Ref(), b.Name()))
	eventually(t, func() bool { _, tracked := da.Status()[b.Name()]; return !tracked }, "a stops tracking b")
	require.Equal(t, Stats{Suspicions: 2, Cleared: 1}, da.Stats())

	// Stop with a node suspected: the gauge goes back to zero.
	require.NoError(t, da.Watch(w.Ref(), b.Name()))
	recv(t, w, Suspected{Node: b.Name()}) // b's heartbeats are still dropped
	require.Equal(t, int64(1), da.Stats().Suspected)
	da.Stop()
	require.Equal(t, Stats{Suspicions: 3, Cleared: 1}, da.Stats())
}
