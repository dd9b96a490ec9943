package raftserver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/segment"
	"github.com/rago-raft/rago/snapshot"
	"github.com/rago-raft/rago/wal"
)

// logChildren are the log supervisor's children, in start order.
var logChildren = []string{segment.DefaultWriterName, wal.DefaultName, snapshot.DefaultWriterName, logServersName}

// logStressConfig makes the log processes busy: WAL files roll over every
// few hundred commands (so closed files wait for the segment writer) and
// servers snapshot every few dozen (so the snapshot writer has work).
func logStressConfig(cfg *SystemConfig) {
	cfg.WALMaxFileBytes = 16 << 10
	cfg.Snapshots = SnapshotPolicy{Entries: 64, MinInterval: time.Millisecond, LogRatio: -1}
}

// crashChild makes a log process exit abnormally, as a crash would: the
// actor layer runs the same exit for a panic in Receive.
func crashChild(t *testing.T, s *System, name string) {
	t.Helper()
	require.NoError(t, s.Node().Exit(actor.Ref{Name: name, Node: s.Name()}, actor.ErrorReason(errors.New("test: crash"))))
}

// logRestarts returns the restarts the log supervisor of s reports per
// child, or nil while one of them is not running.
func logRestarts(s *System) map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	kids, err := s.Node().WhichChildren(ctx, s.logSup)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, k := range kids {
		if !k.Running {
			return nil
		}
		out[k.Name] = k.Restarts
	}
	return out
}

// waitLogRestarted waits until every log process of s runs again and the
// supervisor counted restarts of child, then until every server of the
// node that ran before runs again.
func waitLogRestarted(t *testing.T, s *System, child string, restarts int, servers []string) {
	t.Helper()
	require.Eventually(t, func() bool {
		r := logRestarts(s)
		return r != nil && r[child] == restarts
	}, waitFor, time.Millisecond, "log processes of %s back after %d restarts of %s", s.Name(), restarts, child)
	for _, name := range servers {
		require.Eventually(t, func() bool {
			st, err := s.LocalServer(context.Background(), name)
			return err == nil && st.Running
		}, waitFor, time.Millisecond, "server %s running again", name)
	}
}

// ackLog collects the commands the cluster acknowledged.
type ackLog struct {
	mu    sync.Mutex
	acked map[string]string
	n     atomic.Int64
}

func (a *ackLog) add(k, v string) {
	a.mu.Lock()
	a.acked[k] = v
	a.mu.Unlock()
	a.n.Add(1)
}

func (a *ackLog) all() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.acked))
	for k, v := range a.acked {
		out[k] = v
	}
	return out
}

// writeUntil has workers set unique keys through the members of c until
// stop is closed, trying each key until it is acknowledged (or stop).
func writeUntil(c *cluster, s *System, workers int, stop <-chan struct{}) (*ackLog, *sync.WaitGroup) {
	acks := &ackLog{acked: map[string]string{}}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := c.members[w%len(c.members)]
			for i := 0; ; i++ {
				key, val := fmt.Sprintf("w%d-%d", w, i), fmt.Sprint(i)
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					_, leader, err := s.ProcessCommand(ctx, via, []byte("set "+key+" "+val))
					cancel()
					if err == nil {
						acks.add(key, val)
						via = leader
						break
					}
					// via's node may be restarting its servers: try the next
					// member after a pause, as a client would.
					via = c.members[(c.index(via)+1)%len(c.members)]
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
		}()
	}
	return acks, &wg
}

// waitAcked waits until at least n commands were acknowledged.
func waitAcked(t *testing.T, acks *ackLog, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return acks.n.Load() >= n }, waitFor, time.Millisecond, "%d commands acknowledged", n)
}

// oneNodeCluster starts one system with a cluster "kv" of three members on
// it, so that a restart of its log processes restarts the whole cluster.
func oneNodeCluster(t *testing.T, mod func(*SystemConfig)) *cluster {
	t.Helper()
	c := &cluster{t: t, mod: mod}
	dir := t.TempDir()
	s, err := StartSystem(c.config(dir, "127.0.0.1:0"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	c.systems, c.dirs = []*System{s}, []string{dir}
	for i := range 3 {
		c.members = append(c.members, ServerID{Name: fmt.Sprint("kv", i+1), Node: s.Name()})
	}
	_, _, err = s.StartCluster(c.ctx(), "kv", MachineSpec{Kind: "kv"}, c.members)
	require.NoError(t, err)
	return c
}

// testLogChildCrash crashes child on the leader's node while the cluster
// takes writes, and checks that every acknowledged write survives, that
// the cluster takes writes afterwards, and that the supervisor restarted
// the log processes once, counting the restart against child.
func testLogChildCrash(t *testing.T, child string, nodes int) {
	var c *cluster
	if nodes == 1 {
		c = oneNodeCluster(t, logStressConfig)
	} else {
		c = startClusterOf(t, nodes, "kv", logStressConfig)
	}
	client := c.systems[0]
	leader, err := client.WaitForLeader(c.ctx(), c.members[0])
	require.NoError(t, err)
	victim := c.systems[0]
	for _, s := range c.systems {
		if s.Name() == leader.Node {
			victim = s
		}
	}
	var local []string
	for _, m := range c.members {
		if m.Node == victim.Name() {
			local = append(local, m.Name)
		}
	}

	stop := make(chan struct{})
	acks, wg := writeUntil(c, client, 8, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	waitAcked(t, acks, 300)
	walBefore := victim.Metrics().WAL
	crashChild(t, victim, child)
	waitLogRestarted(t, victim, child, 1, local)
	waitAcked(t, acks, acks.n.Load()+300)
	close(stop)
	wg.Wait()
	// The node's WAL counters count on over the restart.
	walAfter := victim.Metrics().WAL
	require.Greater(t, walAfter.Batches, walBefore.Batches)
	require.GreaterOrEqual(t, walAfter.Write.Count, walBefore.Write.Count)

	c.check(client, acks.all())
	want := map[string]int{}
	for _, name := range logChildren {
		want[name] = 0
	}
	want[child] = 1
	require.Equal(t, want, logRestarts(victim), "one restart, of %s", child)
	require.NoError(t, victim.Err())
}

func TestLogSupervisorRestartsWAL(t *testing.T) {
	t.Run("one node", func(t *testing.T) { testLogChildCrash(t, wal.DefaultName, 1) })
	t.Run("three nodes", func(t *testing.T) { testLogChildCrash(t, wal.DefaultName, 3) })
}

func TestLogSupervisorRestartsSegmentWriter(t *testing.T) {
	t.Run("one node", func(t *testing.T) { testLogChildCrash(t, segment.DefaultWriterName, 1) })
	t.Run("three nodes", func(t *testing.T) { testLogChildCrash(t, segment.DefaultWriterName, 3) })
}

func TestLogSupervisorRestartsSnapshotWriter(t *testing.T) {
	t.Run("one node", func(t *testing.T) { testLogChildCrash(t, snapshot.DefaultWriterName, 1) })
	t.Run("three nodes", func(t *testing.T) { testLogChildCrash(t, snapshot.DefaultWriterName, 3) })
}

// downWatcher reports the Down of the process it monitors.
type downWatcher struct {
	target actor.Ref
	downs  chan actor.Down
}

type watchSync struct{}

func (w *downWatcher) Receive(ctx *actor.Context, msg actor.Message) {
	switch m := msg.(type) {
	case actor.Started:
		ctx.Monitor(w.target)
	case watchSync: // answered after Started: the monitor is in place
		_ = ctx.Reply(true)
	case actor.Down:
		w.downs <- m
	}
}

// watch monitors target from a new process and returns its Downs.
func watch(t *testing.T, s *System, target actor.Ref) <-chan actor.Down {
	t.Helper()
	w := &downWatcher{target: target, downs: make(chan actor.Down, 1)}
	ref, err := s.Node().Spawn(w)
	require.NoError(t, err)
	_, err = s.Node().Call(ref, watchSync{}, waitFor)
	require.NoError(t, err)
	return w.downs
}

func TestLogSupervisorGivesUp(t *testing.T) {
	dir := t.TempDir()
	cfg := testSystemConfig(t, dir)
	cfg.LogRestartIntensity = 2
	cfg.LogRestartPeriod = time.Hour // every crash of the test falls in it
	s, err := StartSystem(cfg)
	require.NoError(t, err)
	cfg.Address = s.Name() // the same node after the restart below
	t.Cleanup(func() { _ = s.Stop() })
	id := ServerID{Name: "kv1", Node: s.Name()}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, _, err = s.StartCluster(ctx, "kv", MachineSpec{Kind: "kv"}, []ServerID{id})
	require.NoError(t, err)
	_, _, err = s.ProcessCommand(ctx, id, []byte("set a 1"))
	require.NoError(t, err)

	for i := 1; i <= cfg.LogRestartIntensity; i++ {
		crashChild(t, s, wal.DefaultName)
		waitLogRestarted(t, s, wal.DefaultName, i, []string{id.Name})
		_, err := s.WaitForLeader(ctx, id)
		require.NoError(t, err)
	}
	require.NoError(t, s.Err())

	serverDowns := watch(t, s, Ref(id))
	supDowns := watch(t, s, s.logSup)

	crashChild(t, s, wal.DefaultName) // one more than the budget
	select {
	case d := <-supDowns:
		require.Equal(t, actor.ReasonError, d.Reason.Kind, "the supervisor exits with an error: %s", d.Reason)
	case <-ctx.Done():
		t.Fatal("the log supervisor did not give up")
	}
	select {
	case d := <-serverDowns:
		require.Equal(t, actor.ReasonError, d.Reason.Kind)
		require.True(t, strings.Contains(d.Reason.Detail, ErrStorage.Error()), "server exit reason %q names the storage failure", d.Reason.Detail)
	case <-ctx.Done():
		t.Fatal("the server did not stop")
	}
	require.Eventually(t, func() bool { return s.Err() != nil }, waitFor, time.Millisecond)
	require.ErrorIs(t, s.Err(), ErrStorage)
	require.ErrorIs(t, s.Err(), ErrRestartLimit)

	// Operations fail at once with the typed error; none waits out ctx.
	_, _, err = s.ProcessCommand(ctx, id, []byte("set b 2"))
	require.ErrorIs(t, err, ErrStorage)
	_, _, err = s.ConsistentQuery(ctx, id, []byte("get a"))
	require.ErrorIs(t, err, ErrStorage)
	require.ErrorIs(t, s.PipelineCommand(id, []byte("set c 3"), 1, actor.Ref{Name: "nobody", Node: s.Name()}), ErrStorage)
	require.ErrorIs(t, s.RestartServer(ctx, id), ErrStorage)
	require.ErrorIs(t, s.StartServer(ctx, ServerConfig{ID: ServerID{Name: "kv9", Node: s.Name()}, Cluster: "kv9", Machine: MachineSpec{Kind: "kv"}}), ErrStorage)
	st, err := s.LocalServer(ctx, id.Name)
	require.NoError(t, err)
	require.False(t, st.Running)
	require.ErrorIs(t, st.Err, ErrRestartLimit)
	require.NoError(t, ctx.Err(), "every call answered before the deadline")
	require.NoError(t, s.Stop())

	// The data is intact: a new system on the directory serves it.
	s2, err := StartSystem(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Stop() })
	id2 := ServerID{Name: "kv1", Node: s2.Name()}
	_, err = s2.WaitForLeader(ctx, id2)
	require.NoError(t, err)
	got, _, err := s2.ConsistentQuery(ctx, id2, []byte("get a"))
	require.NoError(t, err)
	require.Equal(t, "1", string(got))
}

func TestServerRestartBudget(t *testing.T) {
	var failing atomic.Bool
	var starts atomic.Int64
	cfg := testSystemConfig(t, t.TempDir())
	cfg.Machines["flaky"] = func(b []byte) (Machine, error) {
		starts.Add(1)
		if failing.Load() {
			return nil, errors.New("test: machine cannot start")
		}
		return newKV(b)
	}
	cfg.ServerRestartIntensity = 3
	cfg.ServerRestartPeriod = time.Hour // every failure of the test falls in it
	s, err := StartSystem(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	id := ServerID{Name: "f1", Node: s.Name()}
	failing.Store(true)
	require.NoError(t, s.StartServer(ctx, ServerConfig{ID: id, Cluster: "f", Machine: MachineSpec{Kind: "flaky"}, InitialMembers: []ServerID{id}}))
	var st LocalServer
	require.Eventually(t, func() bool {
		st, err = s.LocalServer(ctx, id.Name)
		return err == nil && st.Err != nil
	}, waitFor, time.Millisecond, "the manager gives up")
	require.ErrorIs(t, st.Err, ErrRestartLimit)
	require.Contains(t, st.Err.Error(), "test: machine cannot start")
	require.False(t, st.Running)
	require.Equal(t, cfg.ServerRestartIntensity, st.Restarts)
	// The first start and ServerRestartIntensity restarts; the manager
	// decided to give up in the same step as it reported it, so no start
	// is still to come.
	require.EqualValues(t, 1+cfg.ServerRestartIntensity, starts.Load())
	_, err = s.Overview(ctx, id)
	require.ErrorIs(t, err, ErrNoSuchServer)
	st, err = s.LocalServer(ctx, id.Name)
	require.NoError(t, err)
	require.False(t, st.Running)
	require.EqualValues(t, 1+cfg.ServerRestartIntensity, starts.Load(), "stays down")

	failing.Store(false)
	require.NoError(t, s.RestartServer(ctx, id))
	_, err = s.WaitForLeader(ctx, id)
	require.NoError(t, err)
	_, _, err = s.ProcessCommand(ctx, id, []byte("set a 1"))
	require.NoError(t, err)
	st, err = s.LocalServer(ctx, id.Name)
	require.NoError(t, err)
	require.True(t, st.Running)
	require.NoError(t, st.Err)
	require.Zero(t, st.Restarts, "RestartServer gives a fresh budget")
}

func TestLogRestartBudgetConfig(t *testing.T) {
	err := SystemConfig{DataDir: "d", Address: "127.0.0.1:0", LogRestartIntensity: -1, LogRestartPeriod: -time.Second}.Validate()
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.Contains(t, err.Error(), "LogRestartIntensity is negative (-1)")
	require.Contains(t, err.Error(), "LogRestartPeriod is negative")

	s := startSystem(t, t.TempDir())
	defer func() { require.NoError(t, s.Stop()) }()
	c := s.Config()
	require.Equal(t, 5, c.LogRestartIntensity)
	require.Equal(t, 5*time.Second, c.LogRestartPeriod)
}
