package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image/color"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver"
	"github.com/rago-raft/rago/snapshot"
)

// The snapshot scenarios: the storage tax over time, restart times, and
// the catch-up of a follower by snapshot install.
//
//	go run ./cmd/ragobench -scenario storage-tax -keys 50000 -value 1024 -writes 600000 -png docs/storage-tax.png
//	go run ./cmd/ragobench -scenario restart
//	go run ./cmd/ragobench -scenario install -state-mb 100

// storeMachine is a key-value map whose commands are "uvarint key length,
// key, value"; the reply is empty. It releases the log at every command
// and snapshots through a copy of the map (values are never changed in
// place, so the copy shares them).
type storeMachine struct {
	data map[string][]byte
}

func newStore([]byte) (raftserver.Machine, error) {
	return &storeMachine{data: map[string][]byte{}}, nil
}

func storeCommand(key string, value []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(key)))
	b = append(b, key...)
	return append(b, value...)
}

func (m *storeMachine) Apply(ctx *raftserver.ApplyContext, cmd []byte) []byte {
	ctx.ReleaseCursor(ctx.Index)
	n, k := binary.Uvarint(cmd)
	if k <= 0 || uint64(len(cmd)-k) < n {
		return []byte("bad command")
	}
	key := string(cmd[k : k+int(n)])
	m.data[key] = bytes.Clone(cmd[k+int(n):]) // cmd is only valid during Apply
	return nil
}

// Query answers "len" with the number of keys.
func (m *storeMachine) Query(q []byte) ([]byte, error) {
	return []byte(fmt.Sprint(len(m.data))), nil
}

func (m *storeMachine) Snapshot() (snapshot.Source, error) {
	view := make(map[string][]byte, len(m.data))
	for k, v := range m.data {
		view[k] = v
	}
	return snapshot.SourceFunc{Write: func(w io.Writer) (int64, error) {
		bw := bufio.NewWriterSize(w, 256<<10)
		var n int64
		put := func(b []byte) {
			var l [binary.MaxVarintLen64]byte
			k, _ := bw.Write(l[:binary.PutUvarint(l[:], uint64(len(b)))])
			m, _ := bw.Write(b)
			n += int64(k + m)
		}
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range view {
				if !yield(k) {
					return
				}
			}
		}) {
			put([]byte(k))
			put(view[k])
		}
		return n, bw.Flush()
	}}, nil
}

func (m *storeMachine) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 256<<10)
	read := func() ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		if n > 64<<20 {
			return nil, fmt.Errorf("length %d", n)
		}
		b := make([]byte, n)
		_, err = io.ReadFull(br, b)
		return b, err
	}
	for {
		k, err := read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := read()
		if err != nil {
			return fmt.Errorf("value of %q: %w", k, err)
		}
		m.data[string(k)] = v
	}
}

// plainStore is storeMachine without snapshots: its log is kept whole.
type plainStore struct{ m *storeMachine }

func (p plainStore) Apply(ctx *raftserver.ApplyContext, cmd []byte) []byte {
	return p.m.Apply(ctx, cmd)
}
func (p plainStore) Query(q []byte) ([]byte, error) { return p.m.Query(q) }

func init() {
	machines["store"] = newStore
	machines["plain"] = func([]byte) (raftserver.Machine, error) {
		return plainStore{m: &storeMachine{data: map[string][]byte{}}}, nil
	}
}

// pipeliner sends commands through PipelineCommand with up to window in
// flight, following the leader on rejections, and counts what was applied.
type pipeliner struct {
	client  *raftserver.System
	ib      *actor.Inbox
	via     raftserver.ServerID
	window  int
	applied atomic.Int64
}

func newPipeliner(client *raftserver.System, via raftserver.ServerID, window int) (*pipeliner, error) {
	ib, err := client.Node().NewInbox()
	if err != nil {
		return nil, err
	}
	return &pipeliner{client: client, ib: ib, via: via, window: window}, nil
}

// run sends count commands made by cmd(i) and returns when all were applied.
func (p *pipeliner) run(count int, cmd func(i int) []byte) error {
	sent, done := 0, 0
	pending := map[uint64]int{}
	next := uint64(1)
	send := func(i int) error {
		c := next
		next++
		pending[c] = i
		return p.client.PipelineCommand(p.via, cmd(i), c, p.ib.Ref())
	}
	for ; sent < count && sent < p.window; sent++ {
		if err := send(sent); err != nil {
			return err
		}
	}
	for done < count {
		msg, err := p.ib.ReceiveTimeout(time.Minute)
		if err != nil {
			return fmt.Errorf("%d of %d applied: %w", done, count, err)
		}
		switch m := msg.(type) {
		case *raftserver.Applied:
			for _, r := range m.Results {
				if _, ok := pending[r.Correlation]; !ok {
					continue
				}
				delete(pending, r.Correlation)
				done++
				p.applied.Add(1)
				if sent < count {
					if err := send(sent); err != nil {
						return err
					}
					sent++
				}
			}
		case *raftserver.Rejected:
			i, ok := pending[m.Correlation]
			if !ok {
				continue
			}
			delete(pending, m.Correlation)
			if !m.Leader.IsZero() {
				p.via = m.Leader
			}
			time.Sleep(5 * time.Millisecond)
			if err := send(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// diskBytes sums the sizes of the files under dir.
func diskBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// startTrio starts three systems in this process on dirs under dir, and a
// cluster of one member on each running machine kind.
func startTrio(dir, cluster, kind string, mod func(*raftserver.SystemConfig)) ([]*raftserver.System, []raftserver.ServerID, error) {
	var systems []*raftserver.System
	var members []raftserver.ServerID
	for i := range 3 {
		cfg := systemConfig(filepath.Join(dir, fmt.Sprint("n", i)), "127.0.0.1:0")
		if mod != nil {
			mod(&cfg)
		}
		s, err := raftserver.StartSystem(cfg)
		if err != nil {
			return nil, nil, err
		}
		systems = append(systems, s)
		members = append(members, raftserver.ServerID{Name: cluster, Node: s.Name()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := systems[0].StartCluster(ctx, cluster, raftserver.MachineSpec{Kind: kind}, members); err != nil {
		return nil, nil, err
	}
	return systems, members, nil
}

func stopAll(systems []*raftserver.System) {
	for _, s := range systems {
		if s != nil {
			_ = s.Stop()
		}
	}
}

// runStorageTax fills keys keys of valueBytes each, then overwrites random
// keys until writes commands were applied, and samples every node's bytes
// on disk against the bytes of live data every 250 ms, through the writes
// and for settle after them. It prints a summary, and writes the samples
// as CSV and a chart as PNG if asked.
func runStorageTax(dir, kind string, keys, valueBytes, writes int, logRatio float64, settle time.Duration, csvPath, pngPath string) error {
	systems, members, err := startTrio(dir, "tax", kind, func(cfg *raftserver.SystemConfig) { cfg.Snapshots.LogRatio = logRatio })
	if err != nil {
		return err
	}
	defer stopAll(systems)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, leader, err := systems[0].ProcessCommand(ctx, members[0], storeCommand("warm", nil))
	if err != nil {
		return err
	}
	p, err := newPipeliner(systems[0], leader, 1000)
	if err != nil {
		return err
	}
	keyOf := func(i int) string { return fmt.Sprintf("key-%08d", i) }
	live := func(applied int64) float64 {
		n := min(applied, int64(keys))
		return float64(n) * float64(len(keyOf(0))+valueBytes)
	}
	type sample struct {
		t       float64
		applied int64
		ratio   [3]float64
		parts   [4]int64 // node 1's wal, segments, snapshots, meta bytes
	}
	parts := []string{"wal", "segments", "snapshots", "meta"}
	var mu sync.Mutex
	var samples []sample
	start := time.Now()
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			a := p.applied.Load()
			s := sample{t: time.Since(start).Seconds(), applied: a}
			for i := range 3 {
				if l := live(a); l > 0 {
					s.ratio[i] = float64(diskBytes(filepath.Join(dir, fmt.Sprint("n", i)))) / l
				}
			}
			for j, part := range parts {
				s.parts[j] = diskBytes(filepath.Join(dir, "n0", part))
			}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	// Values are random bytes (windows of a random pool), so that neither
	// pebble's block compression nor anything else can shrink them: the
	// tax is about copies, not about how well zeros compress.
	pool := make([]byte, 8<<20+valueBytes)
	for i := 0; i+8 <= len(pool); i += 8 {
		binary.LittleEndian.PutUint64(pool[i:], rng.Uint64())
	}
	fillEnd := 0.0
	err = p.run(writes, func(i int) []byte {
		k := i
		if i >= keys {
			k = rng.IntN(keys)
		} else if i == keys-1 {
			fillEnd = time.Since(start).Seconds()
		}
		off := rng.IntN(len(pool) - valueBytes)
		return storeCommand(keyOf(k), pool[off:off+valueBytes])
	})
	if err != nil {
		return err
	}
	writeEnd := time.Since(start).Seconds()
	time.Sleep(settle)
	close(stop)
	<-sampled

	mu.Lock()
	defer mu.Unlock()
	// Steady state: the overwrite phase after the fill (plus the settling
	// time), where the live data no longer grows.
	var sum, peak float64
	var n int
	for _, s := range samples {
		if s.t < fillEnd+1 {
			continue
		}
		for _, r := range s.ratio {
			sum += r
			peak = max(peak, r)
			n++
		}
	}
	last := samples[len(samples)-1]
	fmt.Printf("scenario=storage-tax snapshots=%v keys=%d value=%dB writes=%d live=%.1fMiB fill=%.1fs writes_done=%.1fs "+
		"steady_mean=%.2f steady_peak=%.2f final=[%.2f %.2f %.2f] samples=%d\n",
		kind == "store", keys, valueBytes, writes, live(int64(keys))/(1<<20), fillEnd, writeEnd, sum/float64(max(n, 1)), peak,
		last.ratio[0], last.ratio[1], last.ratio[2], len(samples))

	if csvPath != "" {
		f, err := os.Create(csvPath)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, "seconds,applied,n1,n2,n3,n1_wal_mib,n1_segments_mib,n1_snapshots_mib,n1_meta_mib")
		for _, s := range samples {
			fmt.Fprintf(f, "%.2f,%d,%.3f,%.3f,%.3f", s.t, s.applied, s.ratio[0], s.ratio[1], s.ratio[2])
			for _, b := range s.parts {
				fmt.Fprintf(f, ",%.1f", float64(b)/(1<<20))
			}
			fmt.Fprintln(f)
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	if pngPath != "" {
		colors := []color.RGBA{{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}}
		chart := plotChart{
			Title: fmt.Sprintf("Storage tax%s: %d keys x %d B, %d writes (fill done at %.0fs, writes at %.0fs)",
				map[bool]string{true: "", false: " without snapshots"}[kind == "store"], keys, valueBytes, writes, fillEnd, writeEnd),
			XLabel: "seconds", YLabel: "bytes on disk / live data",
			HLines: []plotHLine{{Y: 2, Label: "goal 2.0"}},
		}
		if kind == "store" {
			chart.YMax = 6
		}
		for i := range 3 {
			s := plotSeries{Name: fmt.Sprintf("node %d", i+1), Color: colors[i]}
			for _, smp := range samples {
				if smp.t >= fillEnd/2 {
					s.Points = append(s.Points, [2]float64{smp.t, smp.ratio[i]})
				}
			}
			chart.Series = append(chart.Series, s)
		}
		if err := writePlotPNG(pngPath, chart); err != nil {
			return err
		}
	}
	return nil
}

// overview asks a server for its status.
func overview(s *raftserver.System, id raftserver.ServerID) (*raftserver.ServerStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.Overview(ctx, id)
}

// waitStatus polls id's status every 2 ms until ok, or a minute passes.
func waitStatus(s *raftserver.System, id raftserver.ServerID, ok func(*raftserver.ServerStatus) bool) (*raftserver.ServerStatus, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := overview(s, id)
		if err == nil && ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("%s: condition not reached (last status %+v, %v)", id, st, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// runRestart measures how long a node takes to serve again after a clean
// stop, with a log of 100k and 1M entries, with and without snapshots, and
// with 1000 clusters on each of three nodes.
func runRestart(dir string, sizes []int, clusters, perCluster int) error {
	for _, entries := range sizes {
		for i, c := range []struct {
			kind   string
			onStop bool
		}{{"plain", false}, {"store", false}, {"store", true}} {
			if err := restartOne(filepath.Join(dir, fmt.Sprint(i, "-", entries)), c.kind, entries, c.onStop); err != nil {
				return err
			}
		}
	}
	if clusters > 0 {
		return restartMany(filepath.Join(dir, "many"), clusters, perCluster)
	}
	return nil
}

// restartOne fills a single-member cluster with entries commands of 40
// bytes over 10000 keys, stops its node and starts it again. onStop lets
// the server snapshot as it stops.
func restartOne(dir, kind string, entries int, onStop bool) error {
	cfg := systemConfig(dir, "127.0.0.1:0")
	cfg.Snapshots.SkipOnStop = !onStop
	s, err := raftserver.StartSystem(cfg)
	if err != nil {
		return err
	}
	cfg.Address = s.Name() // the restart binds the same port: the node's name
	id := raftserver.ServerID{Name: "r", Node: s.Name()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := s.StartCluster(ctx, "r", raftserver.MachineSpec{Kind: kind}, []raftserver.ServerID{id}); err != nil {
		return err
	}
	p, err := newPipeliner(s, id, 2000)
	if err != nil {
		return err
	}
	value := make([]byte, 26)
	if err := p.run(entries, func(i int) []byte { return storeCommand(fmt.Sprintf("k%07d", i%10000), value) }); err != nil {
		return err
	}
	before, err := overview(s, id)
	if err != nil {
		return err
	}
	stopStart := time.Now()
	if err := s.Stop(); err != nil {
		return err
	}
	stopTook := time.Since(stopStart)
	disk := diskBytes(dir)

	start := time.Now()
	s, err = raftserver.StartSystem(cfg)
	if err != nil {
		return err
	}
	defer s.Stop()
	started := time.Since(start)
	st, err := waitStatus(s, id, func(st *raftserver.ServerStatus) bool {
		return st.Role == "leader" && st.LastApplied >= before.LastIndex
	})
	if err != nil {
		return err
	}
	serving := time.Since(start)
	fmt.Printf("scenario=restart clusters=1 entries=%d snapshots=%v snapshot_on_stop=%v stop=%v disk=%.1fMiB snapshot_index=%d "+
		"log_after_snapshot=%d start_system=%v applied_all=%v\n",
		entries, kind == "store", onStop, stopTook.Round(time.Millisecond), float64(disk)/(1<<20), st.SnapshotIndex,
		before.LastIndex-st.SnapshotIndex, started.Round(time.Millisecond), serving.Round(time.Millisecond))
	return nil
}

// restartMany runs clusters 3-member clusters on three nodes, each with
// perCluster commands applied, stops all three nodes and starts them again
// at once: how long until every node is up, every cluster has a leader
// again, and every cluster applied a new command.
func restartMany(dir string, clusters, perCluster int) error {
	var cfgs []raftserver.SystemConfig
	var systems []*raftserver.System
	for i := range 3 {
		cfg := systemConfig(filepath.Join(dir, fmt.Sprint("n", i)), "127.0.0.1:0")
		s, err := raftserver.StartSystem(cfg)
		if err != nil {
			return err
		}
		cfg.Address = s.Name() // restarts bind the same port: the node's name
		cfgs = append(cfgs, cfg)
		systems = append(systems, s)
	}
	name := func(c int) string { return fmt.Sprint("c", c) }
	membersOf := func(c int) []raftserver.ServerID {
		var ms []raftserver.ServerID
		for _, cfg := range cfgs {
			ms = append(ms, raftserver.ServerID{Name: name(c), Node: cfg.Address})
		}
		return ms
	}
	forEach := func(f func(c int) error) error { return forEachCluster(clusters, f) }
	value := make([]byte, 26)
	err := forEach(func(c int) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s := systems[c%3]
		if _, _, err := s.StartCluster(ctx, name(c), raftserver.MachineSpec{Kind: "store"}, membersOf(c)); err != nil {
			return err
		}
		_, leader, err := s.ProcessCommand(ctx, membersOf(c)[c%3], storeCommand("warm", value))
		if err != nil {
			return err
		}
		p, err := newPipeliner(s, leader, perCluster)
		if err != nil {
			return err
		}
		return p.run(perCluster, func(i int) []byte { return storeCommand(fmt.Sprint("k", i%100), value) })
	})
	if err != nil {
		stopAll(systems)
		return fmt.Errorf("before the restart: %w", err)
	}
	stopAll(systems)
	disk := diskBytes(dir)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			systems[i], errs[i] = raftserver.StartSystem(cfgs[i])
		}()
	}
	wg.Wait()
	defer stopAll(systems)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	started := time.Since(start)
	var leadersAt, servedAt, retried atomic.Int64
	err = forEach(func(c int) error {
		s := systems[c%3]
		for {
			if _, _, err := s.Leader(name(c)); err == nil {
				break
			}
			if time.Since(start) > time.Minute {
				return fmt.Errorf("no leader")
			}
			time.Sleep(2 * time.Millisecond)
		}
		t := int64(time.Since(start))
		for {
			old := leadersAt.Load()
			if t <= old || leadersAt.CompareAndSwap(old, t) {
				break
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for {
			_, _, err := s.ProcessCommand(ctx, membersOf(c)[c%3], storeCommand("after", value))
			if err == nil {
				break
			}
			// Two members of a cluster may campaign at once after the
			// restart, and the later term deposes a leader that was just
			// elected. The command is a put: a client retries it.
			if !errors.Is(err, raftserver.ErrLeadershipLost) {
				return fmt.Errorf("the command after the restart: %w", err)
			}
			retried.Add(1)
		}
		t = int64(time.Since(start))
		for {
			old := servedAt.Load()
			if t <= old || servedAt.CompareAndSwap(old, t) {
				break
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("scenario=restart clusters=%d nodes=3 commands_per_cluster=%d disk=%.1fMiB start_systems=%v all_leaders=%v all_served=%v retried_leadership_lost=%d\n",
		clusters, perCluster, float64(disk)/(1<<20), started.Round(time.Millisecond),
		time.Duration(leadersAt.Load()).Round(time.Millisecond), time.Duration(servedAt.Load()).Round(time.Millisecond), retried.Load())
	return nil
}

// runInstall builds a state of stateMB MiB (1 KiB values) on a 3-member
// cluster, stops a follower, writes until the leader's snapshot covers more
// than the follower holds, and times the follower's catch-up after its
// restart: the transfer and install of the leader's snapshot, then the log.
func runInstall(dir string, stateMB int) error {
	var cfgs []raftserver.SystemConfig
	systems, members, err := startTrio(dir, "inst", "store", func(cfg *raftserver.SystemConfig) {
		cfgs = append(cfgs, *cfg)
	})
	if err != nil {
		return err
	}
	for i, s := range systems {
		cfgs[i].Address = s.Name() // a restart binds the same port: the node's name
	}
	defer func() { stopAll(systems) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, leader, err := systems[0].ProcessCommand(ctx, members[0], storeCommand("warm", nil))
	if err != nil {
		return err
	}
	keys := stateMB << 10
	value := make([]byte, 1024)
	p, err := newPipeliner(systems[0], leader, 500)
	if err != nil {
		return err
	}
	fill := time.Now()
	if err := p.run(keys, func(i int) []byte { return storeCommand(fmt.Sprintf("k%08d", i), value) }); err != nil {
		return err
	}
	fillTook := time.Since(fill)
	f := 0
	for f < 3 && members[f] == leader {
		f++
	}
	fs, err := waitStatus(systems[f], members[f], func(st *raftserver.ServerStatus) bool { return st.LastApplied > uint64(keys) })
	if err != nil {
		return err
	}
	if err := systems[f].Stop(); err != nil {
		return err
	}
	systems[f] = nil
	// Overwrite until the leader's snapshot covers what the follower lacks
	// (the policy waits for half the state's size of new commands, and a
	// second since the last snapshot: a small state's rounds go faster).
	li := 0
	for li < 3 && members[li] != leader {
		li++
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var ls *raftserver.ServerStatus
	deadline := time.Now().Add(time.Minute)
	for {
		if err := p.run(keys/8, func(int) []byte { return storeCommand(fmt.Sprintf("k%08d", rng.IntN(keys)), value) }); err != nil {
			return err
		}
		if ls, err = overview(systems[li], leader); err != nil {
			return err
		}
		if ls.FirstIndex > fs.LastIndex+1 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the leader never compacted past %d: %+v", fs.LastIndex, ls)
		}
	}
	snapInfo, err := os.ReadDir(filepath.Join(cfgs[li].DataDir, "snapshots", ls.UID))
	if err != nil {
		return err
	}
	var snapBytes int64
	for _, e := range snapInfo {
		if filepath.Ext(e.Name()) == ".snap" {
			if info, err := e.Info(); err == nil {
				snapBytes = info.Size()
			}
		}
	}
	start := time.Now()
	if systems[f], err = raftserver.StartSystem(cfgs[f]); err != nil {
		return err
	}
	st, err := waitStatus(systems[f], members[f], func(st *raftserver.ServerStatus) bool {
		return st.SnapshotIndex >= ls.FirstIndex-1 && st.LastApplied >= ls.Commit
	})
	if err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Printf("scenario=install state=%dMiB keys=%d fill=%v snapshot=%.1fMiB follower_behind_by=%d catch_up=%v (%.0f MiB/s of snapshot) snapshot_index=%d\n",
		stateMB, keys, fillTook.Round(time.Millisecond), float64(snapBytes)/(1<<20), ls.Commit-fs.LastIndex,
		took.Round(time.Millisecond), float64(snapBytes)/(1<<20)/took.Seconds(), st.SnapshotIndex)
	return nil
}

// forEachCluster runs f for clusters 0..n-1 on 64 goroutines and returns
// the first error, naming its cluster.
func forEachCluster(n int, f func(c int) error) error {
	work := make(chan int)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				if err := f(c); err != nil {
					errs <- fmt.Errorf("cluster %d: %w", c, err)
				}
			}
		}()
	}
	for c := range n {
		work <- c
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}
