package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rago-raft/rago/examples/internal/exampletest"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/client"
	"github.com/stretchr/testify/require"
)

// bin is the test binary as the kvstore program (see exampletest.Program).
var bin = exampletest.Program{RunMainEnv: runMainEnv, WaitFor: waitFor}

const runMainEnv = "KVSTORE_TEST_RUN_MAIN"

func TestMain(m *testing.M) { bin.Main(m, run) }

// waitFor bounds every wait of the tests for the cluster to reach a state.
// It is a deadline, not a measurement: the states come much sooner, also
// under the race detector on two cores.
const waitFor = 60 * time.Second

// proc is one kvstore node run as an OS process.
type proc struct {
	id, raft, http, data string
	peers                string
	// flags go to every "kvstore serve" of the node, restarts included.
	flags []string
	// auth are the node's credentials, also on every "kvstore serve":
	// the cluster's secret unless a test gives others.
	auth []string
	// scheme is "https" for a node that serves HTTPS, else "" (http).
	scheme string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

func (p *proc) url() string {
	if p.scheme != "" {
		return p.scheme + "://" + p.http
	}
	return "http://" + p.http
}

// testCluster is a cluster of node processes on free ports with temporary
// data directories.
type testCluster struct {
	t     *testing.T
	nodes []*proc
	// secret is the file of the cluster secret its nodes get by default.
	secret string
	// hc talks to the nodes' HTTP API, and opts configure its clients:
	// both trust the cluster's CA when its nodes serve HTTPS.
	hc   *http.Client
	opts client.Options
}

func freePort(t *testing.T) string { return exampletest.FreeAddr(t) }

// startCluster starts n nodes at once (the cluster forms itself), each
// with the given flags of "kvstore serve", and waits until they have a
// leader and every node answers.
func startCluster(t *testing.T, n int, flags ...string) *testCluster {
	t.Helper()
	c := newTestCluster(t, n)
	for _, p := range c.nodes {
		p.flags = flags
		c.start(p)
	}
	c.waitHealthy()
	return c
}

// newTestCluster lays out n nodes on free ports, with the same peers, and
// starts none of them; the nodes it started are killed when the test ends.
func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, hc: &http.Client{}, secret: filepath.Join(t.TempDir(), "cluster.secret")}
	require.NoError(t, os.WriteFile(c.secret, []byte("a test secret of more than 16 bytes\n"), 0o600))
	var peers []string
	for i := range n {
		p := &proc{id: fmt.Sprintf("n%d", i+1), raft: freePort(t), http: freePort(t), data: filepath.Join(t.TempDir(), "data"), auth: c.auth()}
		peers = append(peers, p.id+"="+p.raft)
		c.nodes = append(c.nodes, p)
	}
	for _, p := range c.nodes {
		p.peers = strings.Join(peers, ",")
	}
	t.Cleanup(func() {
		for _, p := range c.nodes {
			c.kill(p)
		}
		for _, p := range c.nodes {
			// Under -race the nodes run with the race detector too; it
			// reports in their output.
			if strings.Contains(p.tail(1<<30), "WARNING: DATA RACE") {
				t.Errorf("node %s reported a data race", p.id)
			}
		}
		if t.Failed() {
			for _, p := range c.nodes {
				t.Logf("--- log of %s (last lines) ---\n%s", p.id, p.tail(60))
			}
		}
	})
	return c
}

// auth returns the flags that give a node the cluster's secret.
func (c *testCluster) auth() []string { return []string{"--secret-file", c.secret} }

// start runs "kvstore serve" for p and waits until its HTTP API answers.
// Free ports are picked before the nodes start, so another process may
// take one meanwhile: a node that cannot listen is started again, on a new
// HTTP port (its Raft address is its identity, so that one is retried as
// it is, in case it was held only for a moment).
func (c *testCluster) start(p *proc, extra ...string) {
	c.t.Helper()
	for attempt := 1; ; attempt++ {
		inUse := c.launch(p, append(p.serveArgs(), extra...))
		switch {
		case inUse == "":
			return
		case attempt == 5:
			c.t.Fatalf("node %s could not listen after %d attempts:\n%s", p.id, attempt, p.tail(40))
		case inUse == "HTTP":
			p.http = freePort(c.t)
		default:
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// serveArgs is the command line of "kvstore serve" for p.
func (p *proc) serveArgs() []string {
	args := []string{"serve", "--id", p.id, "--raft", p.raft, "--http", p.http, "--data", p.data, "--peers", p.peers, "--log-level", "debug"}
	return append(append(args, p.flags...), p.auth...)
}

// startArgs runs the kvstore command line args for p and waits until its
// HTTP API answers.
func (c *testCluster) startArgs(p *proc, args []string) {
	c.t.Helper()
	if what := c.launch(p, args); what != "" {
		c.t.Fatalf("node %s could not listen for %s:\n%s", p.id, what, p.tail(40))
	}
}

// launch starts p with args and waits until p itself answers /status. It
// returns "HTTP" or "Raft" if p exited because the address was in use, and
// fails the test if it exited for another reason.
func (c *testCluster) launch(p *proc, args []string) string {
	c.t.Helper()
	c.spawn(p, args)
	return c.awaitAnswer(p)
}

// spawn starts p with args and returns at once.
func (c *testCluster) spawn(p *proc, args []string) {
	c.t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	p.mu.Lock()
	if p.log == nil {
		p.log = &bytes.Buffer{}
	}
	w := &lockedWriter{mu: &p.mu, w: p.log}
	p.mu.Unlock()
	cmd.Stdout, cmd.Stderr = w, w
	require.NoError(c.t, cmd.Start())
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// awaitAnswer waits until p, spawned, answers /status itself. It returns
// "HTTP" or "Raft" if p exited because the address was in use, and fails
// the test if it exited for another reason.
func (c *testCluster) awaitAnswer(p *proc) string {
	c.t.Helper()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	require.Eventually(c.t, func() bool {
		select {
		case <-done:
			return true // exited: reported below
		default:
		}
		// Another process may answer on a port it took: only p counts.
		resp, err := c.hc.Get(p.url() + "/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st api.Status
		return json.NewDecoder(resp.Body).Decode(&st) == nil && st.ID == p.id
	}, waitFor, 20*time.Millisecond, "node %s to answer", p.id)
	select {
	case <-done:
		out := p.tail(40)
		if strings.Contains(out, "address already in use") {
			if strings.Contains(out, "listen for HTTP") {
				return "HTTP"
			}
			return "Raft"
		}
		c.t.Fatalf("node %s exited at start:\n%s", p.id, out)
	default:
	}
	return ""
}

// kill sends SIGKILL to p and waits for it to exit.
func (c *testCluster) kill(p *proc) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// stop sends SIGTERM to p and waits for its clean exit.
func (c *testCluster) stop(p *proc) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-done
}

func (p *proc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.log == nil {
		return ""
	}
	return exampletest.LastLines(strings.TrimRight(p.log.String(), "\n"), n)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// cluster returns the /cluster view of node p.
func (c *testCluster) cluster(p *proc) (api.Cluster, error) {
	var v api.Cluster
	resp, err := c.hc.Get(p.url() + "/cluster")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v, err
}

// waitHealthy waits until every running node sees a leader and every
// member reachable, and knows every node's current HTTP address: each node
// records its address in the replicated directory after it starts (a
// write), so a test that counts log entries must not begin before.
func (c *testCluster) waitHealthy() {
	c.t.Helper()
	require.Eventually(c.t, func() bool {
		for _, p := range c.nodes {
			v, err := c.cluster(p)
			if err != nil || v.Leader == "" || v.Reachable != v.Voters || v.Voters != len(c.nodes) {
				return false
			}
			for _, m := range v.Members {
				if q := c.node(m.ID); q == nil || m.HTTP != q.url() {
					return false
				}
			}
		}
		return true
	}, waitFor, 50*time.Millisecond, "a healthy cluster")
}

// leader returns the node that leads, as node from sees it.
func (c *testCluster) leader(from *proc) *proc {
	c.t.Helper()
	var out *proc
	require.Eventually(c.t, func() bool {
		v, err := c.cluster(from)
		if err != nil || v.Leader == "" {
			return false
		}
		out = c.node(v.Leader)
		return out != nil
	}, waitFor, 50*time.Millisecond)
	return out
}

func (c *testCluster) node(id string) *proc {
	for _, p := range c.nodes {
		if p.id == id {
			return p
		}
	}
	return nil
}

// followers returns the nodes other than the leader.
func (c *testCluster) followers() []*proc {
	l := c.leader(c.nodes[0])
	var out []*proc
	for _, p := range c.nodes {
		if p != l {
			out = append(out, p)
		}
	}
	return out
}

// client returns a client of the given nodes only.
func (c *testCluster) client(ps ...*proc) *client.Client {
	c.t.Helper()
	var addrs []string
	for _, p := range ps {
		addrs = append(addrs, p.url())
	}
	cl, err := client.NewWithOptions(addrs, c.opts)
	require.NoError(c.t, err)
	return cl
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// rawResponse is an HTTP answer as the tests look at it.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r rawResponse) apiError(t *testing.T) api.Error {
	t.Helper()
	var e api.Error
	require.NoError(t, json.Unmarshal(r.body, &e), "error body %s", r.body)
	return e
}

func do(t *testing.T, method, url string, body io.Reader) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	return send(t, req)
}

// doPath sends path as it is, even when it is not a valid URL path (the
// way a sloppy client might).
func doPath(t *testing.T, method, base, path string, body io.Reader) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, base, body)
	require.NoError(t, err)
	req.URL.Opaque = path
	return send(t, req)
}

func send(t *testing.T, req *http.Request) rawResponse {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

// httpGetJSON gets url and decodes its JSON body into v (unless nil).
func httpGetJSON(url string, v any) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if v == nil {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}
