package raftserver

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// memRoot is where the in-memory systems keep their data. It must not
// exist on the real disk: the test shows that it never comes to.
const memRoot = "/rago-memfs"

// memCluster is a cluster of three systems, each on an in-memory file
// system of its own, that can be crashed by restarting every system on a
// crash clone of its file system.
type memCluster struct {
	*cluster
	mu  sync.Mutex
	fss map[string]*vfs.MemFS // by data dir
}

func startMemCluster(t *testing.T) *memCluster {
	t.Helper()
	_, err := os.Stat(memRoot)
	require.ErrorIs(t, err, fs.ErrNotExist, "%s must not exist on the disk for this test", memRoot)
	m := &memCluster{fss: map[string]*vfs.MemFS{}}
	m.cluster = &cluster{t: t, mod: func(cfg *SystemConfig) {
		m.mu.Lock()
		defer m.mu.Unlock()
		cfg.FS = m.fss[cfg.DataDir]
		// Frequent snapshots, so that they and the log compaction they
		// allow go through the file system too.
		cfg.Snapshots = snapPolicy
	}}
	c := m.cluster
	t.Cleanup(func() {
		for _, s := range c.systems {
			if s != nil {
				_ = s.Stop()
			}
		}
	})
	for i := range 3 {
		dir := fmt.Sprintf("%s/n%d", memRoot, i+1)
		m.fss[dir] = vfs.NewCrashableMem()
		s, err := StartSystem(c.config(dir, "127.0.0.1:0"))
		require.NoError(t, err)
		c.systems = append(c.systems, s)
		c.dirs = append(c.dirs, dir)
		c.members = append(c.members, ServerID{Name: fmt.Sprint("kv", i+1), Node: s.Name()})
	}
	_, _, err = c.systems[0].StartCluster(c.ctx(), "kv", MachineSpec{Kind: "kv"}, c.members)
	require.NoError(t, err)
	return m
}

// acks records the acknowledged commands of a running load.
type acks struct {
	mu    sync.Mutex
	acked map[string]string
}

func (a *acks) add(k, v string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acked[k] = v
}

func (a *acks) snapshot() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.acked)
}

// loadUntil sends "set" commands from three workers until stop is closed,
// recording each acknowledged one in a. It returns when the workers have
// returned.
func (c *cluster) loadUntil(stop <-chan struct{}, prefix string, a *acks) {
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			via := c.members[w]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("%s-%d-%d", prefix, w, i), fmt.Sprint(i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, leader, err := c.systems[0].ProcessCommand(ctx, via, []byte("set "+key+" "+val))
				cancel()
				if err != nil {
					via = c.members[(c.index(via)+1)%len(c.members)]
					continue
				}
				a.add(key, val)
				via = leader
			}
		})
	}
	wg.Wait()
}

// crash runs a load, takes a crash clone of every system's file system
// while the load runs, stops the systems and starts them again on the
// clones. It returns the commands acknowledged before the first clone was
// taken, which must all survive, and those acknowledged later, which may.
func (m *memCluster) crash(prefix string, cfg vfs.CrashCloneCfg) (durable, maybe map[string]string) {
	c := m.cluster
	a := &acks{acked: map[string]string{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.loadUntil(stop, prefix, a)
	}()
	require.Eventually(c.t, func() bool { return len(a.snapshot()) >= 300 }, waitFor, 5*time.Millisecond, "acknowledged commands")
	durable = a.snapshot()
	clones := make([]*vfs.MemFS, len(c.dirs))
	for i, dir := range c.dirs {
		// Each clone is the state of its file system at one instant, with
		// the load still running: what was synced, and with cfg some of
		// what was not.
		clones[i] = m.fss[dir].CrashClone(cfg)
	}
	close(stop)
	<-done
	maybe = a.snapshot()
	for k := range durable {
		delete(maybe, k)
	}
	for i := range c.systems {
		require.NoError(c.t, c.systems[i].Stop())
		c.systems[i] = nil
	}
	m.mu.Lock()
	for i, dir := range c.dirs {
		m.fss[dir] = clones[i]
	}
	m.mu.Unlock()
	for i := range c.systems {
		c.restart(i)
	}
	return durable, maybe
}

// checkMaybe verifies that each command acknowledged after the crash
// point is either applied with its own value or absent.
func (c *cluster) checkMaybe(maybe map[string]string) {
	for k, v := range maybe {
		var got []byte
		require.Eventually(c.t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			r, _, err := c.systems[0].ConsistentQuery(ctx, c.members[0], []byte("get "+k))
			got = r
			return err == nil
		}, waitFor, 10*time.Millisecond, "read %s", k)
		if len(got) > 0 {
			require.Equal(c.t, v, string(got), "key %s", k)
		}
	}
}

// TestCrashOverInMemoryFS runs a three-node cluster with every byte of
// storage in memory, crashes all three nodes twice while they write (once
// keeping exactly the synced data, once some unsynced data as well), and
// checks that every acknowledged command survives each crash and that the
// restarted cluster serves new commands. The real disk is never touched.
func TestCrashOverInMemoryFS(t *testing.T) {
	m := startMemCluster(t)
	c := m.cluster

	durable1, maybe1 := m.crash("a", vfs.CrashCloneCfg{})
	c.check(c.systems[0], durable1)
	c.checkMaybe(maybe1)

	seed := uint64(time.Now().UnixNano())
	t.Logf("crash clone seed %d", seed)
	durable2, maybe2 := m.crash("b", vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(seed, 0))})
	c.check(c.systems[0], durable1)
	c.check(c.systems[0], durable2)
	c.checkMaybe(maybe2)

	acked := c.load(c.systems[0], "after", 100, 3)
	require.Len(t, acked, 100, "the restarted cluster serves new commands")
	c.check(c.systems[0], acked)

	// The data directories exist only in memory.
	for _, dir := range c.dirs {
		names, err := m.fss[dir].List(dir)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"meta", "segments", "wal", "snapshots"}, names)
	}
	_, err := os.Stat(memRoot)
	require.ErrorIs(t, err, fs.ErrNotExist, "nothing was written to the disk")
}

// TestMakeDataDirsSurvivesACrash: the directories a system creates are in
// a crash clone taken right after, even those an earlier start created
// without making them durable.
func TestMakeDataDirsSurvivesACrash(t *testing.T) {
	m := vfs.NewCrashableMem()
	require.NoError(t, makeDataDirs(m, "/a/b/n1", "wal", "meta"))
	c := m.CrashClone(vfs.CrashCloneCfg{})
	for _, d := range []string{"/a/b/n1/wal", "/a/b/n1/meta"} {
		st, err := c.Stat(d)
		require.NoError(t, err)
		require.True(t, st.IsDir())
	}

	// Without the syncs new directories are lost.
	require.NoError(t, m.MkdirAll("/a/b/n2/wal", 0o755))
	_, err := m.CrashClone(vfs.CrashCloneCfg{}).Stat("/a/b/n2")
	require.ErrorIs(t, err, fs.ErrNotExist)
	// A start over such a data directory makes it durable.
	require.NoError(t, makeDataDirs(m, "/a/b/n2", "wal", "meta"))
	c = m.CrashClone(vfs.CrashCloneCfg{})
	for _, d := range []string{"/a/b/n2/wal", "/a/b/n2/meta"} {
		_, err = c.Stat(d)
		require.NoError(t, err)
	}
}
