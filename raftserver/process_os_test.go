package raftserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The test binary doubles as a rago node in another OS process: with
// RAGO_NODE_ADDR and RAGO_NODE_DIR set it runs a system there with the kv
// machine, prints READY and serves until killed or its stdin closes.
func TestMain(m *testing.M) {
	if addr := os.Getenv("RAGO_NODE_ADDR"); addr != "" {
		runNode(addr, os.Getenv("RAGO_NODE_DIR"))
		return
	}
	os.Exit(m.Run())
}

func runNode(addr, dir string) {
	cfg := SystemConfig{DataDir: dir, Address: addr, Machines: map[string]MachineFactory{"kv": newKV},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	s, err := StartSystem(cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", s.Name())
	done := make(chan struct{})
	go func() {
		// Commands from the test: "block PEER OUT IN" (0/1 each) cuts
		// traffic with PEER; end of input stops the node.
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			var peer string
			var out, inb int
			if _, err := fmt.Sscanf(in.Text(), "block %s %d %d", &peer, &out, &inb); err == nil {
				s.Node().Block(peer, out == 1, inb == 1)
			}
		}
		close(done)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
	_ = s.Stop()
}

type nodeProcess struct {
	cmd    *exec.Cmd
	stdin  io.Writer
	stderr *syncBuffer // its error logs (and anything else it prints there)
}

// block tells the node process to cut (or restore) traffic with peer.
func (p *nodeProcess) block(peer string, out, in bool) {
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	_, _ = fmt.Fprintf(p.stdin, "block %s %d %d\n", peer, b(out), b(in))
}

func startNodeProcess(t *testing.T, addr, dir string) *nodeProcess {
	t.Helper()
	var np *nodeProcess
	require.Eventually(t, func() bool {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "RAGO_NODE_ADDR="+addr, "RAGO_NODE_DIR="+dir)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		stdin, err := cmd.StdinPipe()
		require.NoError(t, err)
		stderr := &syncBuffer{}
		cmd.Stderr = stderr
		require.NoError(t, cmd.Start())
		line, _ := bufio.NewReader(out).ReadString('\n')
		if !strings.HasPrefix(line, "READY") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return false
		}
		np = &nodeProcess{cmd: cmd, stdin: stdin, stderr: stderr}
		return true
	}, waitFor, 100*time.Millisecond, "node process at %s", addr)
	t.Cleanup(func() {
		np.kill()
		if t.Failed() {
			t.Logf("--- stderr of the node at %s ---\n%s", addr, np.stderr.String())
		}
	})
	return np
}

func (p *nodeProcess) kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

func TestAcrossProcessesKillLeaderAndRestartAll(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	client := startSystem(t, t.TempDir())
	t.Cleanup(func() { _ = client.Stop() })
	c := &cluster{t: t, systems: []*System{client}}
	procs := make([]*nodeProcess, 3)
	for i := range 3 {
		c.dirs = append(c.dirs, t.TempDir())
		addr := freeAddress(t)
		procs[i] = startNodeProcess(t, addr, c.dirs[i])
		c.members = append(c.members, ServerID{Name: fmt.Sprint("kv", i+1), Node: addr})
	}
	_, _, err := client.StartCluster(c.ctx(), "kv", MachineSpec{Kind: "kv"}, c.members)
	require.NoError(t, err)
	acked := c.load(client, "a", 2000, 16)
	require.Len(t, acked, 2000)

	// SIGKILL the leader's process: the followers' monitors see its
	// server go down and elect a new leader.
	st, err := client.Overview(c.ctx(), c.members[0])
	require.NoError(t, err)
	old := c.index(st.Leader)
	procs[old].kill()
	more := c.load(client, "b", 1000, 8)
	require.Len(t, more, 1000)
	for k, v := range more {
		acked[k] = v
	}
	c.check(client, acked)

	// Every node killed and started again: nothing acknowledged is lost.
	for i := range procs {
		procs[i].kill()
	}
	for i := range procs {
		procs[i] = startNodeProcess(t, c.members[i].Node, c.dirs[i])
	}
	c.check(client, acked)
}

// startProcessCluster runs three node processes and a cluster "kv" with a
// member on each, driven from a client system in this process.
func startProcessCluster(t *testing.T) (*cluster, *System, []*nodeProcess) {
	client := startSystem(t, t.TempDir())
	t.Cleanup(func() { _ = client.Stop() })
	c := &cluster{t: t, systems: []*System{client}}
	procs := make([]*nodeProcess, 3)
	for i := range 3 {
		c.dirs = append(c.dirs, t.TempDir())
		addr := freeAddress(t)
		procs[i] = startNodeProcess(t, addr, c.dirs[i])
		c.members = append(c.members, ServerID{Name: fmt.Sprint("kv", i+1), Node: addr})
	}
	_, _, err := client.StartCluster(c.ctx(), "kv", MachineSpec{Kind: "kv"}, c.members)
	require.NoError(t, err)
	return c, client, procs
}

// leaders lists the members that say they lead, with their terms.
func (c *cluster) leaders(client *System) map[ServerID]uint64 {
	out := map[ServerID]uint64{}
	for _, m := range c.members {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		st, err := client.Overview(ctx, m)
		cancel()
		if err == nil && st.Role == "leader" {
			out[m] = st.Term
		}
	}
	return out
}

// converge waits until every member applied the same number of keys.
func (c *cluster) converge(client *System) {
	require.Eventually(c.t, func() bool {
		var lens []string
		for _, m := range c.members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			got, _, err := client.LocalQuery(ctx, m, []byte("len"))
			cancel()
			if err != nil {
				return false
			}
			lens = append(lens, string(got))
		}
		return lens[0] == lens[1] && lens[1] == lens[2]
	}, waitFor, 50*time.Millisecond, "members converge")
}

func TestAcrossProcessesFrozenLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	c, client, procs := startProcessCluster(t)
	acked := c.load(client, "a", 500, 8)
	st, err := client.Overview(c.ctx(), c.members[0])
	require.NoError(t, err)
	old := c.index(st.Leader)

	// Frozen: TCP does not notice, the failure detector does.
	require.NoError(t, procs[old].cmd.Process.Signal(syscall.SIGSTOP))
	more := c.load(client, "b", 300, 8)
	require.Len(t, more, 300, "writes resume on a new leader")
	leaders := c.leaders(client)
	require.Len(t, leaders, 1)
	for l := range leaders {
		require.NotEqual(t, c.members[old], l)
	}

	// Thawed: the old leader finds a newer term and steps down; it never
	// commits a write of its own beside the new leader.
	require.NoError(t, procs[old].cmd.Process.Signal(syscall.SIGCONT))
	later := c.load(client, "c", 300, 8)
	require.Len(t, later, 300)
	require.Eventually(t, func() bool { return len(c.leaders(client)) == 1 }, waitFor, 50*time.Millisecond)
	for _, batch := range []map[string]string{more, later} {
		for k, v := range batch {
			acked[k] = v
		}
	}
	c.check(client, acked)
	c.converge(client)
}

func TestAcrossProcessesOneWayPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	c, client, procs := startProcessCluster(t)
	acked := c.load(client, "a", 300, 8)
	st, err := client.Overview(c.ctx(), c.members[0])
	require.NoError(t, err)
	old := c.index(st.Leader)

	// The leader's node can no longer reach the others (they still reach
	// it): its appends and heartbeats are lost.
	for i, m := range c.members {
		if i != old {
			procs[old].block(m.Node, true, false)
		}
	}
	more := c.load(client, "b", 300, 8)
	require.Len(t, more, 300, "writes resume on a new leader")
	var top ServerID
	var topTerm uint64
	for l, term := range c.leaders(client) {
		if term > topTerm {
			top, topTerm = l, term
		}
	}
	require.Greater(t, topTerm, st.Term, "a new term began")
	require.NotEqual(t, c.members[old], top, "the cut-off leader was replaced")

	for i, m := range c.members {
		if i != old {
			procs[old].block(m.Node, false, false)
		}
	}
	later := c.load(client, "c", 200, 8)
	require.Eventually(t, func() bool { return len(c.leaders(client)) == 1 }, waitFor, 50*time.Millisecond)
	for _, batch := range []map[string]string{more, later} {
		for k, v := range batch {
			acked[k] = v
		}
	}
	c.check(client, acked)
	c.converge(client)
}

// pipeline sends count "set" commands with the given key prefix through
// PipelineCommand, keeping up to window of them in flight, following the
// leader when a command is rejected. It returns once all were applied.
func pipeline(t *testing.T, client *System, via ServerID, prefix string, count, window int) {
	t.Helper()
	ib, err := client.Node().NewInbox()
	require.NoError(t, err)
	sent, applied := 0, 0
	send := func(i int) {
		require.NoError(t, client.PipelineCommand(via, []byte(fmt.Sprintf("set %s%d %d", prefix, i, i)), uint64(i), ib.Ref()))
	}
	for ; sent < count && sent < window; sent++ {
		send(sent)
	}
	for applied < count {
		m, err := ib.ReceiveTimeout(waitFor)
		require.NoError(t, err, "%d of %d applied", applied, count)
		switch m := m.(type) {
		case *Applied:
			applied += len(m.Results)
			for range m.Results {
				if sent < count {
					send(sent)
					sent++
				}
			}
		case *Rejected:
			if !m.Leader.IsZero() {
				via = m.Leader
			}
			time.Sleep(10 * time.Millisecond)
			send(int(m.Correlation))
		}
	}
}

// A node stopped while 100k commands commit comes back and catches up by a
// snapshot install, although its own snapshot rotted on disk meanwhile.
func TestAcrossProcessesStoppedNodeCatchesUpBySnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts OS processes")
	}
	c, client, procs := startProcessCluster(t)
	_, leader, err := client.ProcessCommand(c.ctx(), c.members[0], []byte("set warm up"))
	require.NoError(t, err)
	pipeline(t, client, leader, "a", 5000, 1000)
	// The default policy snapshots every 4096 entries.
	before := c.waitStatus(2, "own snapshot", func(st *ServerStatus) bool {
		return st.SnapshotIndex >= 4096 && st.FirstIndex == st.SnapshotIndex+1
	})
	procs[2].kill()
	files, err := filepath.Glob(filepath.Join(c.dirs[2], "snapshots", before.UID, "*.snap"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	rotByte(t, files[0], 0x01)

	if leader.Node == c.members[2].Node {
		_, leader, err = client.ProcessCommand(c.ctx(), c.members[0], []byte("set after kill"))
		require.NoError(t, err)
	}
	const count = 100_000
	start := time.Now()
	pipeline(t, client, leader, "b", count, 2000)
	t.Logf("%d commands committed without the node in %v", count, time.Since(start))
	// The leader snapshots once its minimum interval has passed and
	// drops what the node lacks.
	ldr := c.waitStatus(c.index(leader), "leader compacted", func(st *ServerStatus) bool {
		return st.FirstIndex > before.LastIndex+1
	})

	procs[2] = startNodeProcess(t, c.members[2].Node, c.dirs[2])
	st := c.waitStatus(2, "caught up by snapshot", func(st *ServerStatus) bool {
		return st.LastApplied >= ldr.Commit && st.RecoverTo == 0
	})
	require.GreaterOrEqual(t, st.SnapshotIndex, ldr.FirstIndex-1, "installed the leader's snapshot")
	// (Its log may still reach back to 1: a SIGKILL can undo a compaction,
	// which only brings back entries a snapshot covers. The in-process test
	// covers a log that starts after the lost snapshot.)
	require.Contains(t, procs[2].stderr.String(), "snapshot failed verification; not used", "the rotten snapshot was detected")
	n, _, err := client.LocalQuery(c.ctx(), c.members[2], []byte("len"))
	require.NoError(t, err)
	want, _, err := client.LocalQuery(c.ctx(), leader, []byte("len"))
	require.NoError(t, err)
	require.Equal(t, string(want), string(n))
	for i := 0; i < count; i += 997 {
		v, _, err := client.LocalQuery(c.ctx(), c.members[2], []byte(fmt.Sprintf("get b%d", i)))
		require.NoError(t, err)
		require.Equal(t, fmt.Sprint(i), string(v))
	}
}
