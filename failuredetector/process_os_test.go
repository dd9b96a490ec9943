package failuredetector

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
)

// The test binary doubles as a peer node in another OS process: with
// RAGO_FD_HELPER set to a configuration name ("test" or "default") it
// starts a node and a detector, watches the node named by RAGO_FD_WATCH
// (if any), prints "READY <address>", then one "NOTICE <type> <node>" line
// per notice its watcher gets, until its standard input closes.
func TestMain(m *testing.M) {
	if kind := os.Getenv("RAGO_FD_HELPER"); kind != "" {
		os.Exit(runHelper(kind, os.Getenv("RAGO_FD_WATCH")))
	}
	os.Exit(m.Run())
}

// helperConfigs are the detector and node configurations a helper can
// run with; both sides of a test use the same one.
func helperConfigs(kind string) (Config, actor.Config, bool) {
	switch kind {
	case "test":
		return testConfig(), actor.Config{Address: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second, ReconnectInterval: 100 * time.Millisecond}, true
	case "default":
		return DefaultConfig(), actor.Config{Address: "127.0.0.1:0"}, true
	}
	return Config{}, actor.Config{}, false
}

func runHelper(kind, watch string) int {
	cfg, ncfg, ok := helperConfigs(kind)
	if !ok {
		fmt.Println("ERROR unknown helper configuration", kind)
		return 1
	}
	n, err := actor.StartNode(ncfg)
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	defer n.Stop()
	d, err := Start(n, cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	if watch != "" {
		w, err := n.Spawn(actor.ProcessFunc(func(_ *actor.Context, msg actor.Message) {
			switch m := msg.(type) {
			case Suspected:
				say("NOTICE Suspected %s", m.Node)
			case Up:
				say("NOTICE Up %s", m.Node)
			}
		}))
		if err == nil {
			err = d.Watch(w, watch)
		}
		if err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
	}
	say("READY %s", n.Name())
	// Run until the parent closes our stdin (or kills us).
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	d.Stop()
	return 0
}

// helper is a peer node in a child process.
type helper struct {
	cmd   *exec.Cmd
	addr  string
	lines chan string // the helper's NOTICE lines
}

func startHelper(t testing.TB, kind, watch string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RAGO_FD_HELPER="+kind, "RAGO_FD_WATCH="+watch)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	_, err = cmd.StdinPipe() // held open until the helper dies
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	h := &helper{cmd: cmd, lines: make(chan string, 64)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // works on a stopped process too
		_ = cmd.Wait()
	})
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	require.NoError(t, err, "helper output")
	require.True(t, strings.HasPrefix(line, "READY "), "helper said %q", line)
	h.addr = strings.TrimSpace(strings.TrimPrefix(line, "READY "))
	go func() {
		defer close(h.lines)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case h.lines <- strings.TrimSpace(line):
			default: // nobody reads; a test only looks for what it expects
			}
		}
	}()
	return h
}

func (h *helper) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, h.cmd.Process.Signal(sig))
}

func TestAcrossProcessesFrozenPeer(t *testing.T) {
	cfg := testConfig()
	a := startNode(t)
	da := startDetector(t, a, cfg)
	h := startHelper(t, "test", a.Name())
	w := newInbox(t, a)
	require.NoError(t, da.Watch(w.Ref(), h.addr))
	mon := newInbox(t, a)
	mon.Monitor(actor.Ref{Name: ProcessName, Node: h.addr})
	heard(t, da, h.addr, uint64(cfg.MinSamples)+1)

	// Frozen: TCP says nothing, the detector notices.
	stopped := time.Now()
	h.signal(t, syscall.SIGSTOP)
	recv(t, w, Suspected{Node: h.addr})
	t.Logf("suspected %v after SIGSTOP (timeout %v)", time.Since(stopped), da.Status()[h.addr].Timeout)
	// Disconnect turned the silence into noconnection for monitors.
	down := recvType[actor.Down](t, mon)
	require.Equal(t, actor.ReasonNoConnection, down.Reason.Kind)

	// Thawed: its heartbeats come back.
	time.Sleep(3 * cfg.Interval) // let some of our heartbeats queue up for it
	continued := time.Now()
	h.signal(t, syscall.SIGCONT)
	recv(t, w, Up{Node: h.addr})
	t.Logf("up %v after SIGCONT", time.Since(continued))

	// The thawed detector knew it had been frozen itself: it did not take
	// its own pause for our silence.
	timeout := da.Status()[h.addr].Timeout
	select {
	case line := <-h.lines:
		t.Fatalf("the thawed helper reported %q", line)
	case <-time.After(3 * timeout):
	}
	heard(t, da, h.addr, da.Status()[h.addr].HeartbeatsReceived+uint64(cfg.MinSamples))
	quiet(t, w, 0)
}

// BenchmarkDetection measures, with the default configuration on both
// sides and a peer in another OS process, the time from SIGSTOP of the
// peer to Suspected at a watcher (detect-ms) and from SIGCONT to Up
// (up-ms). "isolated" lets the window refill completely (WindowSize
// heartbeats, 20 s) before each freeze, like a rare failure; "repeated"
// freezes the peer again after 5 s of health, which would show a window
// that widens with every freeze. It logs the window's timeout before each
// freeze too. Run it with (about 5 minutes)
//
//	go test ./failuredetector -run '^$' -bench BenchmarkDetection -benchtime 10x
func BenchmarkDetection(b *testing.B) {
	cfg, _, _ := helperConfigs("default")
	b.Run("isolated", func(b *testing.B) { benchDetection(b, uint64(cfg.WindowSize)) })
	b.Run("repeated", func(b *testing.B) { benchDetection(b, uint64(cfg.WindowSize)/4) })
}

func benchDetection(b *testing.B, healthy uint64) {
	cfg, ncfg, _ := helperConfigs("default")
	a, err := actor.StartNode(ncfg)
	require.NoError(b, err)
	b.Cleanup(a.Stop)
	da := startDetector(b, a, cfg)
	h := startHelper(b, "default", a.Name())
	w := newInbox(b, a)
	require.NoError(b, da.Watch(w.Ref(), h.addr))

	var detect, up []time.Duration
	var timeouts []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		heardWithin(b, da, h.addr, da.Status()[h.addr].HeartbeatsReceived+healthy, 2*time.Duration(healthy)*cfg.Interval+waitFor)
		timeouts = append(timeouts, da.Status()[h.addr].Timeout)
		// Freeze at a random point between two heartbeats, as a real
		// failure would, not just after one.
		time.Sleep(rand.N(cfg.Interval))
		b.StartTimer()
		stopped := time.Now()
		h.signal(b, syscall.SIGSTOP)
		recv(b, w, Suspected{Node: h.addr})
		detect = append(detect, time.Since(stopped))
		b.StopTimer()
		time.Sleep(cfg.Interval)
		b.StartTimer()
		continued := time.Now()
		h.signal(b, syscall.SIGCONT)
		recv(b, w, Up{Node: h.addr})
		up = append(up, time.Since(continued))
	}
	b.StopTimer()
	report := func(name string, ds []time.Duration, metric bool) {
		var sum, lo, hi time.Duration
		for i, d := range ds {
			sum += d
			if i == 0 || d < lo {
				lo = d
			}
			hi = max(hi, d)
		}
		mean := sum / time.Duration(len(ds))
		if metric {
			b.ReportMetric(float64(mean)/float64(time.Millisecond), name+"-ms")
		}
		b.Logf("%s: n=%d mean %v min %v max %v", name, len(ds), mean.Round(time.Millisecond), lo.Round(time.Millisecond), hi.Round(time.Millisecond))
	}
	report("detect", detect, true)
	report("up", up, true)
	report("timeout before the freeze", timeouts, false)
}
