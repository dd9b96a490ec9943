package raftserver

import (
	"bufio"
	"fmt"
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
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
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
	cmd *exec.Cmd
}

func startNodeProcess(t *testing.T, addr, dir string) *nodeProcess {
	t.Helper()
	var np *nodeProcess
	require.Eventually(t, func() bool {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "RAGO_NODE_ADDR="+addr, "RAGO_NODE_DIR="+dir)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		_, err = cmd.StdinPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		line, _ := bufio.NewReader(out).ReadString('\n')
		if !strings.HasPrefix(line, "READY") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return false
		}
		np = &nodeProcess{cmd: cmd}
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
