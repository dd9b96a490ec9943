package raftserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
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
	cfg := SystemConfig{DataDir: dir, Address: addr, Machines: map[string]MachineFactory{"kv": newKV}}
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
	cmd   *exec.Cmd
	stdin io.Writer
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
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		line, _ := bufio.NewReader(out).ReadString('\n')
		if !strings.HasPrefix(line, "READY") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return false
		}
		np = &nodeProcess{cmd: cmd, stdin: stdin}
		return true
	}, waitFor, 100*time.Millisecond, "node process at %s", addr)
	t.Cleanup(np.kill)
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
