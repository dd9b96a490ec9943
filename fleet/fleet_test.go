package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/fleet"
	"github.com/rago-raft/rago/raftserver"
	"github.com/rago-raft/rago/wal"
)

// register is a tiny machine: commands set a key, queries read one.
type register struct{ m map[string]string }

type setCmd struct{ Key, Value string }

func (r *register) Apply(_ *raftserver.ApplyContext, cmd []byte) []byte {
	var c setCmd
	if err := json.Unmarshal(cmd, &c); err != nil {
		return nil
	}
	r.m[c.Key] = c.Value
	return []byte("ok")
}

func (r *register) Query(q []byte) ([]byte, error) { return []byte(r.m[string(q)]), nil }

var machines = fleet.Machines(map[string]raftserver.MachineFactory{
	"register": func([]byte) (raftserver.Machine, error) { return &register{m: map[string]string{}}, nil },
})

// testNode is one node of an in-process fleet.
type testNode struct {
	sys   *raftserver.System
	agent *fleet.Agent
	zone  string
	fs    vfs.FS
	down  atomic.Bool
}

type testFleet struct {
	t     *testing.T
	seeds []string

	mu    sync.Mutex // nodes, and each node's sys and agent (restart replaces them)
	nodes []*testNode
}

// up returns the systems of the nodes that are up.
func (f *testFleet) up() []*raftserver.System {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*raftserver.System
	for _, n := range f.nodes {
		if !n.down.Load() {
			out = append(out, n.sys)
		}
	}
	return out
}

// agents returns the agents of the nodes that are up.
func (f *testFleet) agents() []*fleet.Agent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fleet.Agent
	for _, n := range f.nodes {
		if !n.down.Load() {
			out = append(out, n.agent)
		}
	}
	return out
}

func (f *testFleet) fleetConfig(sys *raftserver.System, zone string) fleet.Config {
	return fleet.Config{
		System: sys, Zone: zone, Seeds: f.seeds,
		Interval: 100 * time.Millisecond, SeenInterval: 200 * time.Millisecond,
		PurgeAfter: 3 * time.Second, CallTimeout: 2 * time.Second, MaxChanges: 8,
	}
}

func startSystem(t *testing.T) (*raftserver.System, vfs.FS) {
	fs := vfs.NewMem()
	sys, err := raftserver.StartSystem(systemConfig(fs, "127.0.0.1:0"))
	require.NoError(t, err)
	return sys, fs
}

func systemConfig(fs vfs.FS, addr string) raftserver.SystemConfig {
	return raftserver.SystemConfig{
		DataDir: "/data", FS: fs, Address: addr, Machines: machines,
		WALSync: wal.SyncNoneUnsafeForTests, ShutdownTimeout: 5 * time.Second,
	}
}

// restart stops node n and starts it again on its address and data, with
// a new agent.
func (f *testFleet) restart(n *testNode) { f.restartOn(n, n.fs) }

// restartOn is restart with the node's data on fs (a new, empty one for a
// lost disk).
func (f *testFleet) restartOn(n *testNode, fs vfs.FS) {
	n.down.Store(true)
	n.agent.Stop()
	require.NoError(f.t, n.sys.Stop())
	addr := n.sys.Name()
	var sys *raftserver.System
	require.Eventually(f.t, func() bool {
		var err error
		sys, err = raftserver.StartSystem(systemConfig(fs, addr))
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "restart %s", addr)
	a, err := fleet.Start(f.fleetConfig(sys, n.zone))
	require.NoError(f.t, err)
	f.mu.Lock()
	n.sys, n.agent, n.fs = sys, a, fs
	f.mu.Unlock()
	n.down.Store(false)
	f.activate(n)
}

// quorumWatch samples, until stopped, whether every group keeps a
// majority of its voters running (every voter, while strict: all nodes
// are up then, and a planned change must not take a voter's replica away
// before the configuration dropped it): the replicas running on each node
// before and after an Inspect, against the voters Inspect saw.
type quorumWatch struct {
	strict atomic.Bool
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	broken []string
	checks int
}

func (f *testFleet) watchQuorums() *quorumWatch {
	q := &quorumWatch{stop: make(chan struct{}), done: make(chan struct{})}
	running := func() map[string]bool {
		out := map[string]bool{}
		for _, sys := range f.up() {
			for _, sm := range sys.Metrics().Servers {
				if sm.Running {
					out[sm.ID.String()] = true
				}
			}
		}
		return out
	}
	go func() {
		defer close(q.done)
		for {
			select {
			case <-q.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			f.mu.Lock()
			via := f.nodes[1]
			f.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			b, err := via.agent.Books(ctx)
			if err != nil {
				cancel()
				continue
			}
			before := running()
			r := fleet.Inspect(ctx, via.sys, b)
			after := running()
			cancel()
			q.mu.Lock()
			q.checks++
			for _, g := range r.Groups {
				up := 0
				for _, v := range g.Voters {
					id := raftserver.ServerID{Name: g.Name, Node: v}.String()
					if before[id] || after[id] {
						up++
					}
				}
				if len(g.Voters) > 0 && (up <= len(g.Voters)/2 || q.strict.Load() && up < len(g.Voters)) {
					q.broken = append(q.broken, fmt.Sprintf("%s: voters %v, %d running", g.Name, g.Voters, up))
				}
			}
			q.mu.Unlock()
		}
	}()
	return q
}

func (q *quorumWatch) finish(t *testing.T) {
	close(q.stop)
	<-q.done
	require.Positive(t, q.checks)
	require.Empty(t, q.broken, "a planned change left a group without a quorum of running voters")
}

// newFleet starts n systems, the first three the seeds, and their agents,
// activated in zones a, b, c round robin.
func newFleet(t *testing.T, n int) *testFleet {
	f := &testFleet{t: t}
	var systems []*raftserver.System
	var filesystems []vfs.FS
	for range n {
		sys, fs := startSystem(t)
		systems = append(systems, sys)
		filesystems = append(filesystems, fs)
	}
	for i := range min(3, n) {
		f.seeds = append(f.seeds, systems[i].Name())
	}
	for i, sys := range systems {
		f.startAgent(sys, filesystems[i], string(rune('a'+i%3)))
	}
	for _, n := range f.nodes {
		f.activate(n)
	}
	t.Cleanup(func() {
		for _, n := range f.nodes {
			n.agent.Stop()
			_ = n.sys.Stop()
		}
	})
	return f
}

func (f *testFleet) startAgent(sys *raftserver.System, fs vfs.FS, zone string) *testNode {
	a, err := fleet.Start(f.fleetConfig(sys, zone))
	require.NoError(f.t, err)
	n := &testNode{sys: sys, agent: a, zone: zone, fs: fs}
	f.mu.Lock()
	f.nodes = append(f.nodes, n)
	f.mu.Unlock()
	return n
}

func (f *testFleet) activate(n *testNode) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(f.t, n.agent.Activate(ctx))
}

// addNode starts an agent on sys and activates it.
func (f *testFleet) addNode(sys *raftserver.System, fs vfs.FS, zone string) *testNode {
	n := f.startAgent(sys, fs, zone)
	f.activate(n)
	return n
}

// waitConverged waits until every group of the books is where placement
// wants it and no node has a change in flight, and returns the report.
func (f *testFleet) waitConverged(via *testNode, timeout time.Duration) fleet.Report {
	f.t.Helper()
	start := time.Now()
	defer func() { f.t.Logf("converged in %v", time.Since(start).Round(time.Millisecond)) }()
	deadline := time.Now().Add(timeout)
	var last fleet.Report
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := via.agent.Books(ctx)
		if err == nil {
			last = fleet.Inspect(ctx, via.sys, b)
		}
		cancel()
		idle := true
		for _, a := range f.agents() {
			if len(a.Status().InFlight) > 0 {
				idle = false
			}
		}
		if err == nil && idle && last.Converged == len(last.Groups) && f.votersRunning(last) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	var stuck []fleet.GroupReport
	for _, g := range last.Groups {
		if !g.Converged {
			stuck = append(stuck, g)
		}
	}
	for _, a := range f.agents() {
		f.t.Logf("%+v", a.Status())
	}
	f.t.Fatalf("not converged after %v: %d of %d; stuck: %+v", timeout, last.Converged, len(last.Groups), stuck[:min(5, len(stuck))])
	return last
}

// votersRunning reports whether every voter of every group has a running
// replica on a node that is up.
func (f *testFleet) votersRunning(r fleet.Report) bool {
	running := map[string]bool{}
	for _, sys := range f.up() {
		for _, sm := range sys.Metrics().Servers {
			if sm.Running {
				running[sm.ID.String()] = true
			}
		}
	}
	for _, g := range r.Groups {
		for _, v := range g.Voters {
			if !running[raftserver.ServerID{Name: g.Name, Node: v}.String()] {
				return false
			}
		}
	}
	return true
}

// writer keeps writing to every group through one node's client and
// records what was acknowledged.
type writer struct {
	mu      sync.Mutex
	acked   map[string]string // group/key -> value
	stop    atomic.Bool
	wg      sync.WaitGroup
	fails   atomic.Int64
	lastErr atomic.Pointer[string]
}

func startWriter(client *fleet.Client, groups []string) *writer {
	w := &writer{acked: map[string]string{}}
	for i := range 4 {
		w.wg.Go(func() {
			for n := 0; !w.stop.Load(); n++ {
				g := groups[(n*4+i)%len(groups)]
				key := fmt.Sprintf("k%d-%d", i, n)
				val := fmt.Sprintf("v%d", n)
				cmd, _ := json.Marshal(setCmd{Key: key, Value: val})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := client.Process(ctx, g, cmd)
				cancel()
				if err != nil {
					w.fails.Add(1)
					msg := g + ": " + err.Error()
					w.lastErr.Store(&msg)
					continue
				}
				w.mu.Lock()
				w.acked[g+"/"+key] = val
				w.mu.Unlock()
			}
		})
	}
	return w
}

func (w *writer) finish() map[string]string {
	w.stop.Store(true)
	w.wg.Wait()
	return w.acked
}

func groupNames(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("g%03d", i))
	}
	return out
}

// members returns each group's voters.
func members(r fleet.Report) map[string][]string {
	out := map[string][]string{}
	for _, g := range r.Groups {
		out[g.Name] = g.Voters
	}
	return out
}

// TestFleetHealsAndRebalances runs a fleet of four nodes in one process
// through the life of a fleet under continuous writes: groups are added
// and grow to their placement; a fifth node joins and takes its share;
// a node deactivates and hands its members over; a node dies and is
// purged, and its members are replaced. After each step placement must
// match rendezvous, and at the end every acknowledged write is read back.
func TestFleetHealsAndRebalances(t *testing.T) {
	f := newFleet(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	groups := groupNames(24)
	for _, g := range groups {
		require.NoError(t, f.nodes[0].agent.AddGroup(ctx, fleet.GroupSpec{Name: g, Machine: raftserver.MachineSpec{Kind: "register"}, Replicas: 3}))
	}
	require.ErrorIs(t, f.nodes[1].agent.AddGroup(ctx, fleet.GroupSpec{Name: groups[0], Machine: raftserver.MachineSpec{Kind: "register"}}), fleet.ErrGroupExists)
	before := f.waitConverged(f.nodes[1], 60*time.Second)
	for _, g := range before.Groups {
		require.Len(t, g.Voters, 3, g.Name)
	}

	w := startWriter(f.nodes[2].agent.Client(), groups)
	quorums := f.watchQuorums()

	// A seed restarts before it could be purged: nothing moves, and it
	// leads its groups again.
	f.restart(f.nodes[0])
	again := f.waitConverged(f.nodes[1], 60*time.Second)
	require.Equal(t, members(before), members(again), "members moved for a restart")

	// A seed loses its disk: its books member and its groups' replicas
	// come back as new incarnations, and are re-admitted (Rejoin).
	f.restartOn(f.nodes[0], vfs.NewMem())
	rebuilt := f.waitConverged(f.nodes[1], 60*time.Second)
	require.Equal(t, members(before), members(rebuilt), "members moved for a lost disk")
	require.Eventually(t, func() bool {
		st, err := f.nodes[0].sys.Overview(ctx, raftserver.ServerID{Name: fleet.BooksCluster, Node: f.nodes[0].sys.Name()})
		return err == nil && !st.Stale && st.LastApplied > 0
	}, 30*time.Second, 100*time.Millisecond, "the seed's new books replica was not re-admitted")
	quorums.strict.Store(true)

	// A node joins: it takes members, and only members move onto it.
	sys, fs := startSystem(t)
	joined := f.addNode(sys, fs, "b")
	after := f.waitConverged(f.nodes[0], 60*time.Second)
	moved := 0
	for g, vs := range members(after) {
		for _, v := range vs {
			if !slices.Contains(members(before)[g], v) {
				moved++
				require.Equal(t, joined.sys.Name(), v, "%s moved a member onto a node other than the new one", g)
			}
		}
	}
	require.Positive(t, moved, "the new node took no members")
	require.Positive(t, after.MembersPerNode[joined.sys.Name()])

	// A node deactivates: its members move away, and its replicas are
	// deleted.
	leaving := f.nodes[3]
	require.NoError(t, f.nodes[0].agent.Deactivate(ctx, leaving.sys.Name()))
	after = f.waitConverged(f.nodes[0], 60*time.Second)
	require.Zero(t, after.MembersPerNode[leaving.sys.Name()], "members left on the deactivated node")
	assert.Eventually(t, func() bool {
		for _, sm := range leaving.sys.Metrics().Servers {
			if sm.Cluster != fleet.BooksCluster && slices.Contains(groups, sm.Cluster) {
				return false
			}
		}
		return true
	}, 20*time.Second, 100*time.Millisecond, "the deactivated node kept replicas")
	if t.Failed() {
		for _, sm := range leaving.sys.Metrics().Servers {
			t.Logf("%s %s running=%v role=%s", sm.ID, sm.Cluster, sm.Running, sm.Role)
		}
		t.Logf("%+v", leaving.agent.Status())
	}

	quorums.finish(t)

	// A node dies: once it is purged, its members are replaced.
	dead := joined
	dead.down.Store(true)
	dead.agent.Stop()
	require.NoError(t, dead.sys.Stop())
	require.Eventually(t, func() bool {
		b, err := f.nodes[0].agent.Books(ctx)
		return err == nil && b.Nodes[dead.sys.Name()].State == fleet.NodeGone
	}, 30*time.Second, 100*time.Millisecond, "the dead node was never marked gone")
	after = f.waitConverged(f.nodes[0], 60*time.Second)
	require.Zero(t, after.MembersPerNode[dead.sys.Name()])

	acked := w.finish()
	require.NotEmpty(t, acked)
	client := f.nodes[1].agent.Client()
	for _, k := range slices.Sorted(maps.Keys(acked)) {
		var g, key string
		for i := range k {
			if k[i] == '/' {
				g, key = k[:i], k[i+1:]
				break
			}
		}
		got, err := client.Query(ctx, g, raftserver.QueryConsistent, []byte(key))
		require.NoError(t, err, k)
		require.Equal(t, acked[k], string(got), "acknowledged write %s lost", k)
	}
	last := ""
	if p := w.lastErr.Load(); p != nil {
		last = *p
	}
	t.Logf("%d writes acknowledged, %d failed (last: %s); %d members moved onto the new node", len(acked), w.fails.Load(), last, moved)
}

// TestBooksReadableWithASeedDown: a node that is not a seed reads the
// books through the other seeds while one it went through is cut off
// (a partition: its calls wait, unanswered); the one cut off does not
// take the whole time of the read.
func TestBooksReadableWithASeedDown(t *testing.T) {
	f := newFleet(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, f.nodes[0].agent.AddGroup(ctx, fleet.GroupSpec{Name: "g", Machine: raftserver.MachineSpec{Kind: "register"}}))
	reader := f.nodes[3]
	_, err := reader.agent.Books(ctx)
	require.NoError(t, err)
	// Cut the reader off from the seed its reads went through.
	var cut string
	for _, n := range f.nodes[:3] {
		st, err := reader.sys.Overview(ctx, raftserver.ServerID{Name: fleet.BooksCluster, Node: n.sys.Name()})
		require.NoError(t, err)
		if st.Role == "leader" {
			cut = n.sys.Name()
		}
	}
	require.NotEmpty(t, cut)
	reader.sys.Node().Block(cut, true, true)
	defer reader.sys.Node().Block(cut, false, false)
	for range 3 {
		read, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		b, err := f.nodes[3].agent.Books(read)
		cancel()
		require.NoError(t, err, "the books were not read through the seeds that are up")
		require.NotNil(t, b.Groups["g"])
	}
}
