package actor

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The test binary doubles as a helper node for tests that need a peer in
// another OS process: with RAGO_ACTOR_HELPER_ADDR set it starts a node
// there with an "echo" process, prints READY and waits to be killed.
func TestMain(m *testing.M) {
	if addr := os.Getenv("RAGO_ACTOR_HELPER_ADDR"); addr != "" {
		runHelperNode(addr)
		return
	}
	if kind := os.Getenv("RAGO_ACTOR_BENCH_PEER"); kind != "" {
		runBenchPeer(kind)
		return
	}
	os.Exit(m.Run())
}

func runHelperNode(addr string) {
	n, err := StartNode(Config{Address: addr})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if _, err := n.SpawnNamed("echo", echoServer(Ref{})); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	// silent takes calls and never answers them.
	if _, err := n.SpawnNamed("silent", ProcessFunc(func(*Context, Message) {})); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", n.Name())
	// Exit when the parent closes our stdin (or kills us).
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	n.Stop()
}

// helperNode is a peer node in a child process.
type helperNode struct {
	cmd  *exec.Cmd
	addr string
}

func startHelperNode(t *testing.T, addr string) *helperNode {
	t.Helper()
	var h *helperNode
	// The port of a killed helper may take a moment to be free.
	eventually(t, func() bool {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "RAGO_ACTOR_HELPER_ADDR="+addr)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		_, err = cmd.StdinPipe() // held open until the process dies
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if !strings.HasPrefix(line, "READY ") {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return false
		}
		h = &helperNode{cmd: cmd, addr: strings.TrimSpace(strings.TrimPrefix(line, "READY "))}
		return true
	}, "helper node starts at %s", addr)
	t.Cleanup(func() { h.kill() })
	return h
}

func (h *helperNode) signal(sig syscall.Signal) {
	_ = h.cmd.Process.Signal(sig)
}

func (h *helperNode) kill() {
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

func TestAcrossProcessesKillAndReturn(t *testing.T) {
	n := startNode(t)
	addr := unusedAddress(t)
	h := startHelperNode(t, addr)
	echoRef := Ref{Name: "echo", Node: h.addr}

	ib := newInbox(t, n)
	ib.MonitorNode(h.addr)
	require.Equal(t, NodeUp{Node: h.addr}, recv[NodeUp](t, ib))
	reply, err := n.Call(echoRef, echo{N: 1, Text: "across"}, waitFor)
	require.NoError(t, err)
	require.Equal(t, echo{N: 1, Text: "across"}, reply)
	mon := ib.Monitor(echoRef)
	// A call that waits for a reply when the node dies.
	inFlight := callAsync(n, Ref{Name: "silent", Node: h.addr}, "anyone?", 1)
	// Make sure the monitor and the call reached the helper before
	// killing it.
	_, err = n.Call(echoRef, "sync", waitFor)
	require.NoError(t, err)

	h.signal(syscall.SIGKILL)
	require.ErrorIs(t, collect(t, inFlight, 1)[0], ErrNodeLost)
	gotDown, gotNodeDown := false, false
	for !gotDown || !gotNodeDown {
		switch m := recvUntil[any](t, ib).(type) {
		case Down:
			require.Equal(t, mon, m.Monitor)
			require.Equal(t, NoConnection, m.Reason)
			gotDown = true
		case NodeDown:
			gotNodeDown = true
		}
	}
	_ = h.cmd.Wait()

	// The node is gone. Right after the loss a call fails at once: its
	// request is not even sent. Later, a request waits for a connection
	// attempt, which fails, and so does the call (or the node monitor's
	// retries keep the node marked down). Sends return at once either way.
	_, err = n.Call(echoRef, "anyone?", callDeadline)
	require.ErrorIs(t, err, ErrNodeDown)
	time.Sleep(n.cfg.ReconnectInterval)
	_, err = n.Call(echoRef, "anyone?", callDeadline)
	require.ErrorIs(t, err, ErrNodeDown)
	start := time.Now()
	for range 10000 {
		require.NoError(t, n.Send(echoRef, echo{N: 2}))
	}
	t.Logf("10000 sends to a dead node took %v", time.Since(start))

	// It comes back on the same address: NodeUp, and calls work again.
	startHelperNode(t, addr)
	require.Equal(t, NodeUp{Node: h.addr}, recvUntil[NodeUp](t, ib))
	eventually(t, func() bool {
		r, err := n.Call(echoRef, "again", time.Second)
		return err == nil && r == "again"
	}, "calls reach the restarted node")
}

func TestAcrossProcessesFrozenPeerStaysBounded(t *testing.T) {
	const queue = 1 << 20
	n, err := StartNode(Config{Address: "127.0.0.1:0", LinkQueueBytes: queue, MaxMessageBytes: 64 << 10})
	require.NoError(t, err)
	defer n.Stop()
	h := startHelperNode(t, unusedAddress(t))
	echoRef := Ref{Name: "echo", Node: h.addr}
	_, err = n.Call(echoRef, "warm up", waitFor)
	require.NoError(t, err)

	h.signal(syscall.SIGSTOP)
	defer h.signal(syscall.SIGCONT)
	payload := make([]byte, 32<<10)
	for range 4096 { // 128 MiB
		require.NoError(t, n.Send(echoRef, payload))
	}
	eventually(t, func() bool { return n.Stats().DroppedQueueFull > 0 }, "a frozen peer's queue fills and drops")
	l := n.linkFor(h.addr)
	l.mu.Lock()
	queued := l.queued
	l.mu.Unlock()
	require.LessOrEqual(t, queued, queue)

	// Thawed, it catches up with what was queued and answers again.
	h.signal(syscall.SIGCONT)
	eventually(t, func() bool {
		r, err := n.Call(echoRef, "thawed", time.Second)
		return err == nil && r == "thawed"
	}, "the thawed peer answers")
}
