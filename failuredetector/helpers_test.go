package failuredetector

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
)

// waitFor bounds every wait in these tests. It is generous on purpose:
// tests assert that transitions happen, not how fast (see the benchmark).
const waitFor = 20 * time.Second

// testConfig heartbeats fast so that tests are short, with a pause margin
// wide enough that a loaded machine running the race detector does not
// make live nodes look dead: a silent node is suspected ~0.7 s after its
// last heartbeat.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Interval = 50 * time.Millisecond
	cfg.CheckInterval = 25 * time.Millisecond
	cfg.AcceptablePause = 500 * time.Millisecond
	cfg.MinStdDev = 25 * time.Millisecond
	return cfg
}

// startNode starts an actor node. A short ReconnectInterval keeps the
// traffic gap after a Disconnect well below the detectors' timeout.
func startNode(t testing.TB) *actor.Node {
	t.Helper()
	return startNodeAt(t, "127.0.0.1:0")
}

func startNodeAt(t testing.TB, addr string) *actor.Node {
	t.Helper()
	n, err := actor.StartNode(actor.Config{Address: addr, ShutdownTimeout: 2 * time.Second, ReconnectInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	return n
}

func startDetector(t testing.TB, n *actor.Node, cfg Config) *Detector {
	t.Helper()
	d, err := Start(n, cfg)
	require.NoError(t, err)
	t.Cleanup(d.Stop)
	return d
}

func newInbox(t testing.TB, n *actor.Node) *actor.Inbox {
	t.Helper()
	ib, err := n.NewInbox()
	require.NoError(t, err)
	t.Cleanup(ib.Close)
	return ib
}

// recv waits for the next message on ib and requires it to be want.
func recv(t testing.TB, ib *actor.Inbox, want actor.Message) {
	t.Helper()
	m, err := ib.ReceiveTimeout(waitFor)
	require.NoError(t, err, "waiting for %#v", want)
	require.Equal(t, want, m)
}

// recvType waits for the next message of type T on ib, skipping others.
func recvType[T any](t testing.TB, ib *actor.Inbox) T {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		m, err := ib.ReceiveTimeout(time.Until(deadline))
		require.NoError(t, err, "waiting for %T", *new(T))
		if v, ok := m.(T); ok {
			return v
		}
	}
}

// quiet requires that nothing arrives on ib for d.
func quiet(t testing.TB, ib *actor.Inbox, d time.Duration) {
	t.Helper()
	select {
	case m := <-ib.C():
		t.Fatalf("unexpected message %T: %+v", m, m)
	case <-time.After(d):
	}
}

func eventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, waitFor, 5*time.Millisecond, fmt.Sprintf(format, args...))
}

// heard waits until d has received at least n heartbeats from node.
func heard(t testing.TB, d *Detector, node string, n uint64) {
	t.Helper()
	heardWithin(t, d, node, n, waitFor)
}

func heardWithin(t testing.TB, d *Detector, node string, n uint64, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return d.Status()[node].HeartbeatsReceived >= n }, timeout, 5*time.Millisecond,
		"%s hears %d heartbeats from %s", d.node.Name(), n, node)
}

// snapshot returns the published status and heartbeat round count, taken
// together.
func (d *Detector) snapshot() (map[string]NodeStatus, uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status, d.rounds
}

func (d *Detector) checksToSuspicion(node string) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.suspectChecks[node]
	return c, ok
}

// maxChecksToSuspicion bounds the checks between a node's last heartbeat
// and its suspicion. Each check finds the silence at least CheckInterval
// longer than the one before (a late check excuses only its lateness), so
// it is the timeout in checks, with slack for heartbeats that changed the
// window after timeout was read.
func maxChecksToSuspicion(cfg Config, timeout time.Duration) int {
	return int(3*timeout/(2*cfg.CheckInterval)) + 3
}
