package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rago-raft/rago/examples/internal/exampletest"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/stretchr/testify/require"
)

// TestDemo runs "kvstore demo", writes a key, kills and restarts a node
// through the demo's prompt, stops the demo with SIGINT, and runs it again:
// the same cluster comes back with the key.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	data := t.TempDir()
	raftPort := exampletest.FreeRange(t, 3)
	httpPort := exampletest.FreeRange(t, 3, raftPort)
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

	d := bin.StartDemo(t, args...)
	d.Out.WaitFor(t, "Started a kvstore cluster of 3 nodes")
	for _, u := range urls {
		d.Out.WaitFor(t, u+"/")
	}
	// The banner's own suggestion works as soon as it shows.
	d.Out.WaitFor(t, "curl -X PUT "+urls[0]+"/kv/greeting")
	r := do(t, http.MethodPut, urls[0]+"/kv/greeting", strings.NewReader("hello, raft"))
	require.Equal(t, http.StatusOK, r.status, "the write the banner suggests: %s", r.body)
	healthy()
	require.Contains(t, kv("put", "demo-key", "survives restarts"), "created demo-key")

	// Secure by default: the demo made a secret only its user can read,
	// and every node authenticates its Raft connections with it.
	d.Out.WaitFor(t, "Raft connections: authenticated with the secret in "+filepath.Join(data, "cluster.secret"))
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
	d.Out.WaitFor(t, "n1  | ") // the nodes' logs come through, prefixed

	// Break a node from the demo's prompt, and bring it back.
	_, err = io.WriteString(d.Stdin, "kill n2\n")
	require.NoError(t, err)
	d.Out.WaitFor(t, "n2 exited")
	require.Contains(t, kv("put", "while-n2-is-down", "yes"), "created")
	_, err = io.WriteString(d.Stdin, "start n2\n")
	require.NoError(t, err)
	d.Out.WaitFor(t, "started n2")
	healthy()
	d.Stop(t)
	for _, u := range urls {
		_, err := httpGetJSON(u+"/status", nil)
		require.Error(t, err, "%s still answers after the demo stopped", u)
	}

	// Again: the same cluster, with its data and its secret.
	d = bin.StartDemo(t, args...)
	d.Out.WaitFor(t, "Restarted a kvstore cluster of 3 nodes")
	healthy()
	again, err := os.ReadFile(filepath.Join(data, "cluster.secret"))
	require.NoError(t, err)
	require.Equal(t, secret, again)
	require.Equal(t, "survives restarts\n", kv("get", "demo-key"))
	require.Equal(t, "yes\n", kv("get", "while-n2-is-down"))
	d.Stop(t)
}

// TestDemoRefusesBusyPorts: a port the demo needs is taken. It says which,
// exits non-zero before starting any node, and records no layout, so that
// a run with other ports is not pinned to these.
func TestDemoRefusesBusyPorts(t *testing.T) {
	raft := exampletest.FreeRange(t, 3)
	httpBase := exampletest.FreeRange(t, 3, raft)
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
	raftPort := exampletest.FreeRange(t, 1)
	httpPort := exampletest.FreeRange(t, 1, raftPort)
	d := bin.StartDemo(t, "--insecure", "--nodes", "1", "--data", data, "--raft-port", strconv.Itoa(raftPort), "--http-port", strconv.Itoa(httpPort))
	d.Out.WaitFor(t, "Started a kvstore cluster of 1 nodes")
	d.Out.WaitFor(t, "Raft connections: NOT authenticated (--insecure)")
	var s api.Status
	_, err := httpGetJSON(fmt.Sprintf("http://127.0.0.1:%d/status", httpPort), &s)
	require.NoError(t, err)
	require.Equal(t, "none", s.RaftAuth)
	require.NoFileExists(t, filepath.Join(data, "cluster.secret"))
	d.Stop(t)
}
