package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/fleet"
	"github.com/rago-raft/rago/raftserver"
)

// The fleet scenario: a fleet of nodes in this process running many
// groups, then nodes added (or deactivated) under a write load, timed
// until every group sits where placement wants it again.
//
//	go run ./cmd/ragobench -scenario fleet -groups 300 -nodes 4 -add 1
//	go run ./cmd/ragobench -scenario fleet -groups 300 -nodes 5 -remove 1

// fleetOptions are the fleet scenario's flags.
type fleetOptions struct {
	groups, nodes, add, remove int
	writers, zones             int
	interval                   time.Duration
	maxChanges                 int
	timeout, linger            time.Duration
}

// fleetReplicas is every group's member count.
const fleetReplicas = 3

// fleetConfig is the agents' configuration in the benchmark: surveys four
// times a second, so that a step's successor starts soon; the default
// budget of changes per node; a node reports itself every second and is
// purged only after a minute unseen (no node dies here).
func fleetConfig(o fleetOptions) fleet.Config {
	return fleet.Config{
		Interval:     o.interval,
		MaxChanges:   o.maxChanges,
		SeenInterval: time.Second,
		PurgeAfter:   time.Minute,
		CatchUpSlack: 64,
		CallTimeout:  5 * time.Second,
	}
}

// recordMachine is storeMachine (a key-value map that snapshots and
// releases its log at every command, so that a new member catches up by
// snapshot) whose query returns every pair it holds: the writes it
// recorded, to be read back.
type recordMachine struct{ *storeMachine }

// Query returns the map as "uvarint n, n x (uvarint len, key, uvarint len,
// value)", keys sorted.
func (m recordMachine) Query([]byte) ([]byte, error) {
	return encodePairs(m.data), nil
}

func encodePairs(data map[string][]byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(data)))
	for _, k := range slices.Sorted(maps.Keys(data)) {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(data[k])))
		b = append(b, data[k]...)
	}
	return b
}

func decodePairs(b []byte) (map[string][]byte, error) {
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, errors.New("truncated pairs")
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, nil
	}
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, errors.New("truncated pairs")
	}
	b = b[k:]
	out := make(map[string][]byte, min(n, 1<<20))
	for range n {
		key, err := next()
		if err != nil {
			return nil, err
		}
		val, err := next()
		if err != nil {
			return nil, err
		}
		out[string(key)] = val
	}
	return out, nil
}

func init() {
	machines["record"] = func([]byte) (raftserver.Machine, error) {
		return recordMachine{&storeMachine{data: map[string][]byte{}}}, nil
	}
}

// fleetNode is one node of the fleet: its system and its agent.
type fleetNode struct {
	sys   *raftserver.System
	agent *fleet.Agent
	zone  string
}

func (n *fleetNode) stop() {
	n.agent.Stop()
	_ = n.sys.Stop()
}

// memberSets returns each group's voters as a report shows them.
func memberSets(r fleet.Report) map[string][]string {
	out := make(map[string][]string, len(r.Groups))
	for _, g := range r.Groups {
		out[g.Name] = g.Voters
	}
	return out
}

// movedMembers counts the members that changed node: for each group, the
// members after that were not members before.
func movedMembers(before, after map[string][]string) int {
	moved := 0
	for g, now := range after {
		for _, n := range now {
			if !slices.Contains(before[g], n) {
				moved++
			}
		}
	}
	return moved
}

// idealMoves is the least movement that balances the members: adding
// nodes, each new node's fair share (groups*replicas/newNodes of them);
// removing nodes, the members those nodes held (removedMembers).
func idealMoves(groups, replicas, oldNodes, newNodes, removedMembers int) int {
	if newNodes > oldNodes {
		return (groups*replicas*(newNodes-oldNodes) + newNodes/2) / newNodes
	}
	return removedMembers
}

// fleetBench is one run of the fleet scenario.
type fleetBench struct {
	o     fleetOptions
	dir   string
	seeds []string
	nodes []*fleetNode
}

func (f *fleetBench) zoneOf(i int) string { return fmt.Sprint("z", i%f.o.zones) }

func (f *fleetBench) startSystem(i int) (*raftserver.System, error) {
	cfg := systemConfig(filepath.Join(f.dir, fmt.Sprint("n", i)), "127.0.0.1:0")
	cfg.Machines = fleet.Machines(machines)
	return raftserver.StartSystem(cfg)
}

// startAgent starts sys's agent (node i of the fleet).
func (f *fleetBench) startAgent(i int, sys *raftserver.System) (*fleetNode, error) {
	cfg := fleetConfig(f.o)
	cfg.System, cfg.Zone, cfg.Seeds = sys, f.zoneOf(i), f.seeds
	agent, err := fleet.Start(cfg)
	if err != nil {
		return nil, err
	}
	n := &fleetNode{sys: sys, agent: agent, zone: cfg.Zone}
	f.nodes = append(f.nodes, n)
	return n, nil
}

func activate(ctx context.Context, n *fleetNode) error {
	if err := n.agent.Activate(ctx); err != nil {
		return fmt.Errorf("activate %s: %w", n.sys.Name(), err)
	}
	return nil
}

// addNode starts node i's system and agent and activates it.
func (f *fleetBench) addNode(ctx context.Context, i int) error {
	sys, err := f.startSystem(i)
	if err != nil {
		return err
	}
	n, err := f.startAgent(i, sys)
	if err != nil {
		_ = sys.Stop()
		return err
	}
	return activate(ctx, n)
}

// fleetState is one look at the fleet: the books, every group as Inspect
// found it, and the changes in flight on every agent (the books' member
// hints, fleet.ChangeRecord, counted too: a fleet settles when its agents
// have nothing left to do).
type fleetState struct {
	books    *fleet.Books
	report   fleet.Report
	inflight int
}

func (s fleetState) settled(groups int) bool {
	return s.books != nil && len(s.books.Groups) == groups && s.report.Converged == groups && s.inflight == 0
}

func (f *fleetBench) look(ctx context.Context) (fleetState, error) {
	var s fleetState
	b, err := f.nodes[0].agent.Books(ctx)
	if err != nil {
		return s, err
	}
	s.books = b
	s.report = fleet.Inspect(ctx, f.nodes[0].sys, b)
	for _, n := range f.nodes {
		s.inflight += len(n.agent.Status().InFlight)
	}
	return s, nil
}

// waitSettled polls until every group converged and no agent has a change
// in flight, and returns the state and the time it took from start. It
// logs progress every few seconds, and on timeout what is stuck.
func (f *fleetBench) waitSettled(what string, start time.Time, timeout time.Duration) (fleetState, time.Duration, error) {
	deadline := start.Add(timeout)
	lastLog := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := f.look(ctx)
		cancel()
		took := time.Since(start)
		if err == nil && s.settled(f.o.groups) {
			return s, took, nil
		}
		if time.Now().After(deadline) {
			f.diagnose(s)
			if err == nil {
				err = fmt.Errorf("%d of %d groups converged, %d changes in flight", s.report.Converged, f.o.groups, s.inflight)
			}
			return s, took, fmt.Errorf("%s: not settled after %v: %w", what, timeout, err)
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			if err != nil {
				log.Printf("fleet: %s: %v: %v", what, took.Round(time.Second), err)
			} else {
				log.Printf("fleet: %s: %v: %d/%d converged, %d leaderless, %d changes in flight, members per node %s",
					what, took.Round(time.Second), s.report.Converged, f.o.groups, s.report.Leaderless, s.inflight, f.perNode(s.report))
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// perNode renders the members per node in the nodes' order.
func (f *fleetBench) perNode(r fleet.Report) string {
	var parts []string
	for i, n := range f.nodes {
		parts = append(parts, fmt.Sprintf("n%d(%s)=%d", i, n.zone, r.MembersPerNode[n.sys.Name()]))
	}
	return strings.Join(parts, " ")
}

// replicaCounts returns the group replicas each node holds, running and
// stopped (a member removed from its group is deleted by its node's agent
// some time after).
func (f *fleetBench) replicaCounts() (running, stopped []int) {
	running, stopped = make([]int, len(f.nodes)), make([]int, len(f.nodes))
	for i, n := range f.nodes {
		for _, sm := range n.sys.Metrics().Servers {
			if sm.Cluster == fleet.BooksCluster || sm.ID.Name != sm.Cluster {
				continue
			}
			if sm.Running {
				running[i]++
			} else {
				stopped[i]++
			}
		}
	}
	return running, stopped
}

// replicas renders replicaCounts.
func (f *fleetBench) replicas() string {
	running, stopped := f.replicaCounts()
	var parts []string
	for i := range f.nodes {
		parts = append(parts, fmt.Sprintf("n%d=%d+%d", i, running[i], stopped[i]))
	}
	return strings.Join(parts, " ")
}

// waitCleaned polls until every node holds exactly the replicas that are
// members per r (those removed from their groups deleted), up to timeout,
// and returns the time from start, or false if some remained.
func (f *fleetBench) waitCleaned(r fleet.Report, start time.Time, timeout time.Duration) (time.Duration, bool) {
	for {
		running, stopped := f.replicaCounts()
		clean := true
		for i, n := range f.nodes {
			if running[i]+stopped[i] != r.MembersPerNode[n.sys.Name()] {
				clean = false
			}
		}
		if clean {
			return time.Since(start), true
		}
		if time.Since(start) > timeout {
			return time.Since(start), false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// linger watches the settled fleet for o.linger, logging every second
// what should be still: the replicas on each node, the books' index (the
// commands they applied) and version, the member hints in the books that
// differ from the groups' voters, and the changes in flight by kind.
func (f *fleetBench) linger(r fleet.Report) {
	for end := time.Now().Add(f.o.linger); time.Now().Before(end); time.Sleep(time.Second) {
		stale := 0
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		b, err := f.nodes[0].agent.Books(ctx)
		cancel()
		if err != nil {
			log.Printf("fleet: linger: books: %v", err)
			continue
		}
		for _, g := range r.Groups {
			hint := slices.Clone(b.Groups[g.Name].Members)
			slices.Sort(hint)
			if !slices.Equal(hint, g.Voters) {
				stale++
			}
		}
		kinds := map[fleet.ChangeKind]int{}
		for _, n := range f.nodes {
			for _, c := range n.agent.Status().InFlight {
				kinds[c.Kind]++
			}
		}
		log.Printf("fleet: linger: replicas %s; books index=%d version=%d, stale member hints %d; in flight %v",
			f.replicas(), b.Index, b.Version, stale, kinds)
	}
}

// diagnose logs what every agent is doing and the groups that are not
// where they belong.
func (f *fleetBench) diagnose(s fleetState) {
	for i, n := range f.nodes {
		st := n.agent.Status()
		log.Printf("fleet: agent n%d %s: books v%d owned=%d converged=%d inflight=%d done=%d failed=%d surveyed=%v ago last_error=%q",
			i, st.Node, st.BooksVersion, st.Owned, st.Converged, len(st.InFlight), st.Done, st.Failed,
			time.Since(st.Surveyed).Round(time.Millisecond), st.LastError)
		for _, c := range st.InFlight {
			log.Printf("fleet:   in flight: %s %s node=%s via=%s", c.Kind, c.Group, c.Node, c.Leader.Node)
		}
	}
	shown := 0
	for _, g := range s.report.Groups {
		if g.Converged {
			continue
		}
		if shown++; shown > 20 {
			log.Printf("fleet:   ... and more groups not converged")
			break
		}
		log.Printf("fleet:   group %s: born=%v placement=%v leader=%s voters=%v non_voters=%v",
			g.Name, g.Born, g.Placement, g.Leader, g.Voters, g.NonVoters)
	}
}

// fleetWriters write unique keys to the groups through the fleet's
// clients until stopped, and remember which writes were acknowledged.
type fleetWriters struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	acked   map[string]map[string]string // group -> key -> value
	errs    atomic.Int64
	slowest atomic.Int64 // nanoseconds, an acknowledged write's
}

func startWriters(n int, clients []*fleet.Client, groups []string) *fleetWriters {
	w := &fleetWriters{stop: make(chan struct{}), acked: map[string]map[string]string{}}
	for i := range n {
		client := clients[i%len(clients)]
		w.wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-w.stop:
					return
				default:
				}
				group := groups[(i+seq*n)%len(groups)]
				key := fmt.Sprintf("w%d.%d", i, seq)
				value := fmt.Sprintf("%s=%s", group, key)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				_, err := client.Process(ctx, group, storeCommand(key, []byte(value)))
				cancel()
				if err != nil {
					w.errs.Add(1)
					continue
				}
				if d := int64(time.Since(t0)); d > w.slowest.Load() {
					w.slowest.Store(d)
				}
				w.mu.Lock()
				if w.acked[group] == nil {
					w.acked[group] = map[string]string{}
				}
				w.acked[group][key] = value
				w.mu.Unlock()
			}
		})
	}
	return w
}

// halt stops the writers and returns how many writes were acknowledged.
func (w *fleetWriters) halt() int {
	close(w.stop)
	w.wg.Wait()
	n := 0
	for _, keys := range w.acked {
		n += len(keys)
	}
	return n
}

// lost reads every group's pairs back with a consistent query and counts
// the acknowledged writes missing or different.
func (w *fleetWriters) lost(client *fleet.Client) (int, error) {
	lost := 0
	for _, group := range slices.Sorted(maps.Keys(w.acked)) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		reply, err := client.Query(ctx, group, raftserver.QueryConsistent, nil)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("read back %s: %w", group, err)
		}
		have, err := decodePairs(reply)
		if err != nil {
			return 0, fmt.Errorf("read back %s: %w", group, err)
		}
		for k, v := range w.acked[group] {
			if string(have[k]) != v {
				lost++
				if lost <= 10 {
					log.Printf("fleet: lost %s %s (read %q)", group, k, have[k])
				}
			}
		}
	}
	return lost, nil
}

func runFleet(dir string, o fleetOptions) error {
	switch {
	case o.groups < 1 || o.nodes < fleetReplicas || o.writers < 0 || o.zones < 1:
		return fmt.Errorf("bad flags: groups %d, nodes %d (at least %d), writers %d, zones %d", o.groups, o.nodes, fleetReplicas, o.writers, o.zones)
	case o.add < 0 || o.remove < 0 || (o.add == 0) == (o.remove == 0):
		return errors.New("give one of -add N and -remove N")
	case o.remove > o.nodes-3:
		return fmt.Errorf("-remove %d: the first 3 of %d nodes are the seeds and stay", o.remove, o.nodes)
	}
	f := &fleetBench{o: o, dir: dir}
	defer func() {
		for _, n := range slices.Backward(f.nodes) {
			n.stop()
		}
	}()

	// The seeds' names are their addresses, known once they listen: start
	// the systems first, then the agents.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var systems []*raftserver.System
	for i := range o.nodes {
		s, err := f.startSystem(i)
		if err != nil {
			stopAll(systems)
			return err
		}
		systems = append(systems, s)
		if i < 3 {
			f.seeds = append(f.seeds, s.Name())
		}
	}
	for i, s := range systems {
		if _, err := f.startAgent(i, s); err != nil {
			stopAll(systems[len(f.nodes):])
			return err
		}
	}
	// The books need a quorum of the seeds' agents: activate once all run.
	for _, n := range f.nodes {
		if err := activate(ctx, n); err != nil {
			return err
		}
	}

	// The starting state: every group added and converged. Not timed.
	t0 := time.Now()
	groups := make([]string, o.groups)
	for i := range groups {
		groups[i] = fmt.Sprintf("g%04d", i)
	}
	var addErr atomic.Pointer[error]
	var wg sync.WaitGroup
	work := make(chan string)
	for i := range 8 {
		agent := f.nodes[i%len(f.nodes)].agent
		wg.Go(func() {
			for g := range work {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := agent.AddGroup(ctx, fleet.GroupSpec{Name: g, Machine: raftserver.MachineSpec{Kind: "record"}, Replicas: fleetReplicas})
				cancel()
				if err != nil && !errors.Is(err, fleet.ErrGroupExists) {
					addErr.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	for _, g := range groups {
		work <- g
	}
	close(work)
	wg.Wait()
	if p := addErr.Load(); p != nil {
		return fmt.Errorf("add groups: %w", *p)
	}
	before, took, err := f.waitSettled("start", t0, o.timeout)
	if err != nil {
		return err
	}
	log.Printf("fleet: %d groups on %d nodes converged in %v; members per node %s", o.groups, o.nodes, took.Round(time.Millisecond), f.perNode(before.report))

	// The change, under writes.
	var clients []*fleet.Client
	for _, n := range f.nodes {
		clients = append(clients, n.agent.Client())
	}
	writers := startWriters(o.writers, clients, groups)
	time.Sleep(time.Second) // writes under way before the change
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	removedMembers := 0
	newNodes := o.nodes + o.add - o.remove
	if o.add > 0 {
		for i := o.nodes; i < newNodes; i++ {
			if err := f.addNode(ctx, i); err != nil {
				writers.halt()
				return err
			}
		}
	} else {
		for i := newNodes; i < o.nodes; i++ {
			removedMembers += before.report.MembersPerNode[f.nodes[i].sys.Name()]
			if err := f.nodes[0].agent.Deactivate(ctx, f.nodes[i].sys.Name()); err != nil {
				writers.halt()
				return err
			}
		}
	}
	after, converged, err := f.waitSettled("change", start, o.timeout)
	if err != nil {
		writers.halt()
		return err
	}
	// The members removed from their groups are deleted after the groups
	// converged; the writes go on meanwhile.
	log.Printf("fleet: settled; replicas (running+stopped) %s", f.replicas())
	if took, ok := f.waitCleaned(after.report, start, o.timeout); ok {
		log.Printf("fleet: every removed member deleted %v after the change", took.Round(time.Millisecond))
	} else {
		log.Printf("fleet: removed members still there %v after the change: replicas %s", took.Round(time.Millisecond), f.replicas())
	}
	acked := writers.halt()
	lost, err := writers.lost(clients[0])
	if err != nil {
		return err
	}
	moved := movedMembers(memberSets(before.report), memberSets(after.report))
	log.Printf("fleet: members per node after %s; writes acknowledged %d, failed %d, slowest acknowledged %v",
		f.perNode(after.report), acked, writers.errs.Load(), time.Duration(writers.slowest.Load()).Round(time.Millisecond))
	f.linger(after.report)
	fmt.Printf("FLEET nodes=%d->%d groups=%d replicas=%d moved=%d ideal=%d converged=%.1fs lost=%d\n",
		o.nodes, newNodes, o.groups, fleetReplicas, moved, idealMoves(o.groups, fleetReplicas, o.nodes, newNodes, removedMembers),
		converged.Seconds(), lost)
	return nil
}
