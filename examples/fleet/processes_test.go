package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/fleet/internal/node"
	"github.com/rago-raft/rago/examples/internal/exampletest"
	"github.com/rago-raft/rago/fleet"
)

// groupsEnv sets the shard count of TestFleetProcesses (default 500, the
// demo's count, which runs in about half a minute on two cores): fewer
// for a quick look, more for a longer run.
const groupsEnv = "RAGO_FLEET_GROUPS"

const defaultTestShards = 500

// testFleet is the node processes of TestFleetProcesses.
type testFleet struct {
	procs []*nodeProc
	// byName finds a node by its Raft address, the fleet's name for it.
	byName map[string]*nodeProc
}

func (f *testFleet) node(id string) *nodeProc {
	for _, p := range f.procs {
		if p.id == id {
			return p
		}
	}
	panic("no node " + id)
}

// up returns the nodes whose processes run.
func (f *testFleet) up() []*nodeProc {
	var out []*nodeProc
	for _, p := range f.procs {
		if p.running() {
			out = append(out, p)
		}
	}
	return out
}

// TestFleetProcesses runs the store as real processes, five nodes in
// three zones with a cluster secret, under continuous writes, and takes
// it through the three things that happen to a fleet: a node joins, a node
// is deactivated, a node is killed (SIGKILL) and started again on its
// data. Meanwhile it samples every group's voters, as their leaders report
// them, and every node's running replicas, and checks that the planned
// changes (join, deactivate) never left a voter without a running replica
// behind it, let alone a group without a quorum. Afterwards: every group
// sits where rendezvous placement puts it, led by its first node; members
// are balanced within the bound the placement tests state; and every
// acknowledged write reads back.
func TestFleetProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	shards := defaultTestShards
	if s := os.Getenv(groupsEnv); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "%s=%q", groupsEnv, s)
		require.True(t, n >= 1 && n <= node.MaxShards, "%s=%d: use 1 to %d", groupsEnv, n, node.MaxShards)
		shards = n
	}
	groups := shards + 1 // and the directory
	testStart := time.Now()

	dir := t.TempDir()
	secret := filepath.Join(dir, "cluster.secret")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	require.NoError(t, os.WriteFile(secret, []byte(hex.EncodeToString(key)+"\n"), 0o600))

	raftPort := exampletest.FreeRange(t, 6)
	httpPort := exampletest.FreeRange(t, 6, raftPort)
	// Zones a, b, c of two nodes each once n6 has joined; the seeds are
	// one per zone, so the books survive losing a zone.
	layout := []struct {
		id, zone string
		seed     bool
	}{{"n1", "a", true}, {"n2", "a", false}, {"n3", "b", true}, {"n4", "b", false}, {"n5", "c", true}, {"n6", "c", false}}
	var seeds []string
	for i, l := range layout {
		if l.seed {
			seeds = append(seeds, fmt.Sprintf("127.0.0.1:%d", raftPort+i))
		}
	}
	f := &testFleet{byName: map[string]*nodeProc{}}
	for i, l := range layout {
		p := &nodeProc{id: l.id, zone: l.zone, raft: fmt.Sprintf("127.0.0.1:%d", raftPort+i),
			http: fmt.Sprintf("127.0.0.1:%d", httpPort+i), out: bin.NewOutput()}
		p.args = []string{"serve", "--id", p.id, "--zone", p.zone, "--raft", p.raft, "--http", p.http,
			"--data", filepath.Join(dir, p.id), "--seeds", strings.Join(seeds, ","),
			"--shards", strconv.Itoa(shards), "--secret-file", secret, "--log-level", "warn"}
		f.procs = append(f.procs, p)
		f.byName[p.raft] = p
	}
	t.Cleanup(func() {
		// Registered before any node starts, so it runs after their
		// cleanups killed them: the output is complete.
		for _, p := range f.procs {
			out := p.out.String()
			if t.Failed() {
				t.Logf("%s output (last lines):\n%s", p.id, exampletest.LastLines(out, 40))
			}
			if strings.Contains(out, "WARNING: DATA RACE") || strings.Contains(out, "panic:") {
				t.Errorf("%s raced or panicked:\n%s", p.id, exampletest.LastLines(out, 200))
			}
		}
	})

	for _, id := range []string{"n1", "n2", "n3", "n4", "n5"} {
		f.node(id).start(t)
	}
	n1, n2, n6 := f.node("n1"), f.node("n2"), f.node("n6")
	waitPlacement(t, n1.url(), 5, groups)
	t.Logf("5 nodes, %d shards and the directory converged %v after the start", shards, time.Since(testStart).Round(time.Millisecond))

	w := startWriters(f, 4)
	defer w.stop()
	s := startSampler(f)
	defer s.stop()

	// 1. A sixth node joins zone c.
	step := time.Now()
	var windows [][2]time.Time // of the planned steps
	n6.start(t)
	p := waitPlacement(t, n1.url(), 6, groups)
	require.Positive(t, membersOf(&p, n6.raft), "members moved to the new node")
	t.Logf("converged onto n6 %v after it started", time.Since(step).Round(time.Millisecond))
	windows = append(windows, [2]time.Time{step, time.Now()})

	// 2. n2 is deactivated: its members move to n1, the other node of
	// zone a, and its replicas are deleted.
	step = time.Now()
	r := call(t, http.MethodPost, n1.url()+"/deactivate?node=n2", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Eventually(t, func() bool {
		var q node.Placement
		return getJSON(n1.url()+"/placement", &q) == nil && membersOf(&q, n2.raft) == 0 && q.Converged == groups
	}, waitFor, 200*time.Millisecond, "n2 holds no members")
	p = waitPlacement(t, n1.url(), 6, groups)
	require.Zero(t, membersOf(&p, n2.raft))
	require.Eventually(t, func() bool {
		var reps node.Replicas
		return getJSON(n2.url()+"/replicas", &reps) == nil && len(reps.Replicas) == 0
	}, waitFor, 200*time.Millisecond, "n2 runs no replicas")
	t.Logf("n2 deactivated and empty %v after the request", time.Since(step).Round(time.Millisecond))
	windows = append(windows, [2]time.Time{step, time.Now()})

	samples := s.stop()
	checked, moving := checkPlannedSamples(t, samples)
	t.Logf("planned steps: %d placement samples checked, %d group samples mid-move, %d leaderless", checked, moving, samples.leaderless)
	for i, w := range windows {
		require.Positive(t, samples.during(w[0], w[1]), "the sampler saw planned step %d", i+1)
	}
	require.Positive(t, moving, "the sampler saw groups mid-move, not only converged ones")

	// 3. SIGKILL the seed that holds the most members (not n2), then start
	// it again on its data.
	victim := n1
	for _, v := range p.Nodes {
		if q := f.byName[v.Name]; q != n2 && slices.Contains(seeds, v.Name) && v.Members > membersOf(&p, victim.raft) {
			victim = q
		}
	}
	// The fleet is watched through a seed that stays up: a seed reads the
	// books through its own member.
	other := f.node("n3")
	if victim == other {
		other = f.node("n5")
	}
	step = time.Now()
	acked := w.acked()
	victim.kill()
	// The groups it led elect new leaders and writes go on.
	var q node.Placement
	var qerr error
	if !assert.Eventually(t, func() bool {
		q = node.Placement{}
		qerr = getJSON(other.url()+"/placement", &q)
		if qerr != nil || q.Generated < step.UnixMilli() || q.Leaderless != 0 {
			return false
		}
		return !slices.ContainsFunc(q.Nodes, func(v node.NodeView) bool { return v.Name == victim.raft && v.Reachable })
	}, waitFor, 200*time.Millisecond, "every group has a leader without %s", victim.id) {
		r := call(t, http.MethodGet, other.url()+"/placement", "")
		t.Fatalf("last placement (err %v): %s\nnow: %d %.2000s", qerr, describe(&q), r.status, r.body)
	}
	require.Eventually(t, func() bool { return w.acked() >= acked+20 }, waitFor, 50*time.Millisecond, "writes go on without %s", victim.id)
	victim.start(t)
	waitPlacement(t, other.url(), 6, groups)
	t.Logf("%s killed and back, converged %v after the kill", victim.id, time.Since(step).Round(time.Millisecond))

	written := w.stop()
	require.NotEmpty(t, written.acked)
	t.Logf("writes: %d acknowledged, %d not (failed or timed out)", len(written.acked), written.failed)

	// Placement: every group exactly where rendezvous puts it over the
	// active nodes, as the test laid them out (not as the books say).
	p = waitPlacement(t, other.url(), 6, groups)
	var active []fleet.Node
	for _, q := range f.procs {
		if q != n2 {
			active = append(active, fleet.Node{Name: q.raft, Zone: q.zone})
		}
	}
	checkPlacement(t, &p, active, 3)
	for _, v := range p.Nodes {
		want := string(fleet.NodeActive)
		if v.Name == n2.raft {
			want = string(fleet.NodeDeactivating)
		}
		require.Equal(t, want, v.State, v.ID)
	}

	// Every acknowledged write reads back, linearizably.
	checkWrites(t, f, written.acked)
	t.Logf("TestFleetProcesses: %d shards, %v in all", shards, time.Since(testStart).Round(time.Millisecond))
}

// describe sums up a placement for a failure message: its nodes and the
// first groups without a leader or not converged.
func describe(p *node.Placement) string {
	var b strings.Builder
	fmt.Fprintf(&b, "from %s at %d: %d groups, %d converged, %d leaderless; moves %v\n", p.Node, p.Generated, len(p.Groups), p.Converged, p.Leaderless, p.Moves)
	for _, v := range p.Nodes {
		fmt.Fprintf(&b, "  %s %s zone %s %s members %d leaders %d reachable %v ready %v", v.ID, v.Name, v.Zone, v.State, v.Members, v.Leaders, v.Reachable, v.Ready)
		if r := v.Reconciler; r != nil {
			fmt.Fprintf(&b, " reconciler owned %d converged %d in flight %d done %d failed %d last error %q", r.Owned, r.Converged, len(r.InFlight), r.Done, r.Failed, r.LastError)
		}
		b.WriteString("\n")
	}
	shown := 0
	for _, g := range p.Groups {
		if (g.Leader == "" || !g.Converged) && shown < 10 {
			shown++
			fmt.Fprintf(&b, "  %s placement %v leader %q voters %v non-voters %v\n", g.Name, g.Placement, g.Leader, g.Voters, g.NonVoters)
		}
	}
	return b.String()
}

func membersOf(p *node.Placement, name string) int {
	for _, v := range p.Nodes {
		if v.Name == name {
			return v.Members
		}
	}
	return 0
}

// checkPlacement checks that each group's voters are fleet.Place over
// active, led by its first node, with no non-voter; and that each active
// node holds within mean ± 5√mean members, the bound of
// fleet/placement_test.go. That bound is stated for nodes in one zone or
// in zones of equal size, where every node has the same share; here a
// zone may hold fewer nodes than another (five nodes in three zones), and
// each zone holds one member of every group, so a node's mean is its
// zone's members over its zone's nodes.
func checkPlacement(t *testing.T, p *node.Placement, active []fleet.Node, replicas int) {
	t.Helper()
	members := map[string]int{}
	for _, g := range p.Groups {
		want := fleet.Place(g.Name, active, replicas)
		require.ElementsMatch(t, want, g.Voters, "%s: voters against placement", g.Name)
		require.Equal(t, want[0], g.Leader, "%s: led by placement's first node", g.Name)
		require.Empty(t, g.NonVoters, g.Name)
		for _, v := range g.Voters {
			members[v]++
		}
	}
	zones := map[string][]string{}
	for _, n := range active {
		zones[n.Zone] = append(zones[n.Zone], n.Name)
	}
	for zone, names := range zones {
		total := 0
		for _, n := range names {
			total += members[n]
		}
		mean := float64(total) / float64(len(names))
		slack := 5 * math.Sqrt(mean)
		for _, n := range names {
			require.InDelta(t, mean, float64(members[n]), slack, "zone %s: %s holds %d members, the zone's mean is %.1f", zone, n, members[n], mean)
		}
	}
	for name, c := range members {
		require.True(t, slices.ContainsFunc(active, func(n fleet.Node) bool { return n.Name == name }), "%s is not active and holds %d members", name, c)
	}
}

// checkWrites reads every acknowledged key back, with the default
// (linearizable) consistency, through the running nodes in turn: each
// must hold the value written. A read that finds no leader is retried; a
// missing key or another value is a lost write.
func checkWrites(t *testing.T, f *testFleet, acked map[string]string) {
	t.Helper()
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range acked {
			if !yield(k) {
				return
			}
		}
	})
	up := f.up()
	hc := &http.Client{Timeout: 10 * time.Second}
	var (
		wg     sync.WaitGroup
		next   atomic.Int64
		mu     sync.Mutex
		errs   []string
		reads  atomic.Int64
		failed atomic.Bool
	)
	deadline := time.Now().Add(waitFor)
	for range 8 {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				k := keys[i]
				for try := 0; ; try++ {
					var g node.GetResult
					status, err := getJSONWith(hc, up[(i+try)%len(up)].url()+"/kv/"+k, &g)
					reads.Add(1)
					if err == nil && g.Value == acked[k] {
						break
					}
					if status == http.StatusOK || status == http.StatusNotFound || time.Now().After(deadline) {
						mu.Lock()
						errs = append(errs, fmt.Sprintf("%s: wrote %q, read status %d value %q err %v", k, acked[k], status, g.Value, err))
						mu.Unlock()
						failed.Store(len(errs) >= 10)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	require.Empty(t, errs, "acknowledged writes that do not read back")
	t.Logf("read back %d acknowledged writes (%d reads)", len(keys), reads.Load())
}

func getJSONWith(hc *http.Client, url string, v any) (int, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, &httpError{resp.StatusCode}
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

// writers put unique keys through the running nodes until stopped, and
// keep those acknowledged with a 2xx. A write that failed or timed out is
// not acknowledged: it may or may not have been applied, and either is
// right, so it is not checked.
type writers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	n      atomic.Int64

	mu     sync.Mutex
	done   bool
	result writeResult
}

type writeResult struct {
	acked  map[string]string
	failed int
}

func startWriters(f *testFleet, n int) *writers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writers{cancel: cancel, result: writeResult{acked: map[string]string{}}}
	hc := &http.Client{Timeout: 10 * time.Second}
	for i := range n {
		w.wg.Go(func() {
			for seq := 0; ctx.Err() == nil; seq++ {
				up := f.up()
				if len(up) == 0 {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				key := fmt.Sprintf("w%d-%06d", i, seq)
				value := fmt.Sprintf("%s %x", key, mrand.Uint64())
				req, _ := http.NewRequestWithContext(ctx, http.MethodPut, up[mrand.IntN(len(up))].url()+"/kv/"+key, strings.NewReader(value))
				resp, err := hc.Do(req)
				ok := false
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode/100 == 2
				}
				w.mu.Lock()
				if ok {
					w.result.acked[key] = value
					w.n.Add(1)
				} else if ctx.Err() == nil {
					w.result.failed++
				}
				w.mu.Unlock()
				// A steady trickle, not a flood: the point is writes
				// during every step, and each is read back at the end.
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return w
}

func (w *writers) acked() int64 { return w.n.Load() }

// stop stops the writers and returns what they wrote; it may be called
// again.
func (w *writers) stop() writeResult {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.result
}

// replicaSample is one node's /replicas and when it was asked for.
type replicaSample struct {
	start, end time.Time
	groups     map[string]bool
}

// placementSample is one /placement, with the nodes (by name) whose
// processes ran both before and after it was asked for.
type placementSample struct {
	p  node.Placement
	up map[string]bool
}

type samples struct {
	replicas   map[string][]replicaSample // by node name
	placements []placementSample
	leaderless int
}

// sampler asks every running node for /replicas, and one of them in turn
// for /placement (each node gathers its own at most once a second), over
// and over, until stopped.
type sampler struct {
	stopCh chan struct{}
	done   chan struct{}
	s      samples
}

func startSampler(f *testFleet) *sampler {
	s := &sampler{stopCh: make(chan struct{}), done: make(chan struct{}), s: samples{replicas: map[string][]replicaSample{}}}
	hc := &http.Client{Timeout: 5 * time.Second}
	replicas := func() {
		for _, p := range f.up() {
			start := time.Now()
			var r node.Replicas
			if _, err := getJSONWith(hc, p.url()+"/replicas", &r); err != nil {
				continue // no sample: the check looks at the nearest ones
			}
			rs := replicaSample{start: start, end: time.Now(), groups: map[string]bool{}}
			for _, x := range r.Replicas {
				rs.groups[x.Group] = true
			}
			s.s.replicas[p.raft] = append(s.s.replicas[p.raft], rs)
		}
	}
	go func() {
		defer close(s.done)
		last := map[string]int64{} // per node: the report it gave last
		for i := 0; ; i++ {
			replicas()
			select {
			case <-s.stopCh:
				return
			default:
			}
			before := f.up()
			from := before[i%len(before)]
			var p node.Placement
			_, err := getJSONWith(hc, from.url()+"/placement", &p)
			after := f.up()
			if err == nil && p.Generated != last[from.id] {
				last[from.id] = p.Generated
				up := map[string]bool{}
				for _, q := range before {
					if slices.Contains(after, q) {
						up[q.raft] = true
					}
				}
				s.s.placements = append(s.s.placements, placementSample{p: p, up: up})
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return s
}

// stop ends the sampling after one more round of /replicas, so that the
// last placement has samples after it too; it may be called again.
func (s *sampler) stop() *samples {
	select {
	case <-s.stopCh:
	default:
		close(s.stopCh)
	}
	<-s.done
	return &s.s
}

// during counts the placements gathered between from and to.
func (s *samples) during(from, to time.Time) int {
	n := 0
	for _, ps := range s.placements {
		if at := time.UnixMilli(ps.p.Generated); !at.Before(from) && !at.After(to) {
			n++
		}
	}
	return n
}

// hosts reports whether node ran a replica of group at some moment
// between from and to, as the samples around that span tell: the last one
// that ended before it and the first that started after it. A replica
// that runs at that moment appears in one of them, unless its whole life
// fits between the two samples.
func (s *samples) hosts(node, group string, from, to time.Time) bool {
	var before, after *replicaSample
	for i := range s.replicas[node] {
		r := &s.replicas[node][i]
		if !r.end.After(from) {
			before = r
		}
		if after == nil && !r.start.Before(to) {
			after = r
		}
	}
	return before != nil && before.groups[group] || after != nil && after.groups[group]
}

// checkPlannedSamples checks every sampled group, as its leader reported
// it during planned changes: each voter is on a running node that runs
// the group's replica (so a quorum of the voters is there, and more: the
// change never counted on a member that was not there), and a majority
// of voters is, which the first implies but is named apart. It returns
// how many placements it checked and how many group samples were mid-move
// (not converged), to show the check saw changes happen.
func checkPlannedSamples(t *testing.T, s *samples) (checked, moving int) {
	t.Helper()
	var errs []string
	for _, ps := range s.placements {
		p := ps.p
		// The gathering took TookMs up to Generated, in milliseconds:
		// widen by one for the rounding.
		from := time.UnixMilli(p.Generated - p.TookMs - 1)
		to := time.UnixMilli(p.Generated + 1)
		checked++
		for _, g := range p.Groups {
			if g.Leader == "" {
				s.leaderless++
				continue
			}
			if !g.Converged {
				moving++
			}
			live := 0
			for _, v := range g.Voters {
				switch up, hosts := ps.up[v], s.hosts(v, g.Name, from, to); {
				case up && hosts:
					live++
				default:
					errs = append(errs, fmt.Sprintf("%s at %s: voter %s (node up %v, replica running %v) in voters %v, leader %s",
						g.Name, time.UnixMilli(p.Generated).Format("15:04:05.000"), v, up, hosts, g.Voters, g.Leader))
				}
			}
			if 2*live <= len(g.Voters) {
				errs = append(errs, fmt.Sprintf("%s at %s: no quorum: %d of voters %v live, leader %s",
					g.Name, time.UnixMilli(p.Generated).Format("15:04:05.000"), live, g.Voters, g.Leader))
			}
		}
	}
	if len(errs) > 0 {
		t.Fatalf("planned changes left voters without their replica (%d problems; the first ones):\n%s",
			len(errs), strings.Join(errs[:min(len(errs), 20)], "\n"))
	}
	return checked, moving
}
