package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/stretchr/testify/require"
)

// freeRange returns the first of n consecutive free ports on 127.0.0.1
// that avoid the ports in taken.
func freeRange(t *testing.T, n int, taken ...int) int {
	t.Helper()
	for range 200 {
		base := 20000 + rand.IntN(40000)
		ok := true
		for _, x := range taken {
			if base+n > x && base < x+n {
				ok = false
			}
		}
		for i := 0; ok && i < n; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// output collects a process's output for the test to wait on.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(b)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func (o *output) waitFor(t *testing.T, s string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(o.String(), s) }, waitFor, 20*time.Millisecond,
		"output to contain %q; it is:\n%s", s, lastLines(o.String(), 40))
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

type demoRun struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *output
	done  chan error
}

func startDemo(t *testing.T, args ...string) *demoRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"demo"}, args...)...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	d := &demoRun{cmd: cmd, out: &output{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	var err error
	d.stdin, err = cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		// A failed test may leave it running; its nodes follow it when it
		// is gone.
		_ = cmd.Process.Kill()
	})
	return d
}

// stop sends Ctrl-C's signal and waits for a clean exit.
func (d *demoRun) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-d.done:
		require.NoError(t, err, "demo exit; output:\n%s", lastLines(d.out.String(), 40))
	case <-time.After(waitFor):
		t.Fatalf("the demo did not stop; output:\n%s", lastLines(d.out.String(), 40))
	}
	d.out.waitFor(t, "all nodes stopped")
	require.NotContains(t, d.out.String(), "WARNING: DATA RACE")
}

// TestDemo runs "kvstore demo", writes a key, kills and restarts a node
// through the demo's prompt, stops the demo with SIGINT, and runs it again:
// the same cluster comes back with the key.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	data := t.TempDir()
	raftPort := freeRange(t, 3)
	httpPort := freeRange(t, 3, raftPort)
	args := []string{"--data", data, "--raft-port", strconv.Itoa(raftPort), "--http-port", strconv.Itoa(httpPort)}
	urls := make([]string, 3)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d", httpPort+i)
	}
	addr := "--addr=" + strings.Join(urls, ",")
	kv := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		status := run(append([]string{args[0], addr}, args[1:]...), &out, &errOut)
		require.Equal(t, 0, status, "kvstore %v: %s", args, errOut.String())
		return out.String()
	}
	healthy := func() {
		t.Helper()
		require.Eventually(t, func() bool {
			for _, u := range urls {
				var v api.Cluster
				r, err := httpGetJSON(u+"/cluster", &v)
				if err != nil || r != 200 || v.Leader == "" || v.Reachable != 3 {
					return false
				}
			}
			return true
		}, waitFor, 50*time.Millisecond, "a healthy demo cluster")
	}

	d := startDemo(t, args...)
	d.out.waitFor(t, "Started a kvstore cluster of 3 nodes")
	for _, u := range urls {
		d.out.waitFor(t, u+"/")
	}
	// The banner's own suggestion works as soon as it shows.
	d.out.waitFor(t, "curl -X PUT "+urls[0]+"/kv/greeting")
	r := do(t, http.MethodPut, urls[0]+"/kv/greeting", strings.NewReader("hello, raft"))
	require.Equal(t, http.StatusOK, r.status, "the write the banner suggests: %s", r.body)
	healthy()
	require.Contains(t, kv("put", "demo-key", "survives restarts"), "created demo-key")

	// Secure by default: the demo made a secret only its user can read,
	// and every node authenticates its Raft connections with it.
	d.out.waitFor(t, "Raft connections: authenticated with the secret in "+filepath.Join(data, "cluster.secret"))
	st, err := os.Stat(filepath.Join(data, "cluster.secret"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	for _, u := range urls {
		var s api.Status
		_, err := httpGetJSON(u+"/status", &s)
		require.NoError(t, err)
		require.Equal(t, "secret", s.RaftAuth, "%s", u)
	}
	secret, err := os.ReadFile(filepath.Join(data, "cluster.secret"))
	require.NoError(t, err)
	d.out.waitFor(t, "n1  | ") // the nodes' logs come through, prefixed

	// Break a node from the demo's prompt, and bring it back.
	_, err = io.WriteString(d.stdin, "kill n2\n")
	require.NoError(t, err)
	d.out.waitFor(t, "n2 exited")
	require.Contains(t, kv("put", "while-n2-is-down", "yes"), "created")
	_, err = io.WriteString(d.stdin, "start n2\n")
	require.NoError(t, err)
	d.out.waitFor(t, "started n2")
	healthy()
	d.stop(t)
	for _, u := range urls {
		_, err := httpGetJSON(u+"/status", nil)
		require.Error(t, err, "%s still answers after the demo stopped", u)
	}

	// Again: the same cluster, with its data and its secret.
	d = startDemo(t, args...)
	d.out.waitFor(t, "Restarted a kvstore cluster of 3 nodes")
	healthy()
	again, err := os.ReadFile(filepath.Join(data, "cluster.secret"))
	require.NoError(t, err)
	require.Equal(t, secret, again)
	require.Equal(t, "survives restarts\n", kv("get", "demo-key"))
	require.Equal(t, "yes\n", kv("get", "while-n2-is-down"))
	d.stop(t)
}

// TestDemoRefusesBusyPorts: a port the demo needs is taken. It says which,
// exits non-zero before starting any node, and records no layout, so that
// a run with other ports is not pinned to these.
func TestDemoRefusesBusyPorts(t *testing.T) {
	raft := freeRange(t, 3)
	httpBase := freeRange(t, 3, raft)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(httpBase+1))
	require.NoError(t, err)
	defer ln.Close()
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	code := run([]string{"demo", "--data", dir, "--raft-port", strconv.Itoa(raft), "--http-port", strconv.Itoa(httpBase)}, &out, &errOut)
	require.Equal(t, 1, code, "stderr: %s", errOut.String())
	msg := errOut.String()
	require.Contains(t, msg, "ports in use")
	require.Contains(t, msg, "127.0.0.1:"+strconv.Itoa(httpBase+1)+" (HTTP of n2")
	require.Contains(t, msg, "--http-port")
	require.NoFileExists(t, dir+"/demo.json")
}

// TestDemoInsecure: "demo --insecure" runs without authentication, says so
// in its banner, and makes no secret.
func TestDemoInsecure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	data := t.TempDir()
	raftPort := freeRange(t, 1)
	httpPort := freeRange(t, 1, raftPort)
	d := startDemo(t, "--insecure", "--nodes", "1", "--data", data, "--raft-port", strconv.Itoa(raftPort), "--http-port", strconv.Itoa(httpPort))
	d.out.waitFor(t, "Started a kvstore cluster of 1 nodes")
	d.out.waitFor(t, "Raft connections: NOT authenticated (--insecure)")
	var s api.Status
	_, err := httpGetJSON(fmt.Sprintf("http://127.0.0.1:%d/status", httpPort), &s)
	require.NoError(t, err)
	require.Equal(t, "none", s.RaftAuth)
	require.NoFileExists(t, filepath.Join(data, "cluster.secret"))
	d.stop(t)
}
