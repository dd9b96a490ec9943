package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
)

// kvstoreOK runs a kvstore command line in the test process and fails the
// test unless it succeeds; it returns stdout.
func kvstoreOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run(args, &out, &errOut), "kvstore %v: %s", args, errOut.String())
	return out.String()
}

// tlsArgs are the flags that give node id its certificate from dir.
func tlsArgs(dir, id string) []string {
	return []string{"--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, id+".pem"), "--tls-key", filepath.Join(dir, id+"-key.pem")}
}

// useCA makes the cluster's HTTP client and Go clients trust the CA in
// file, for nodes that serve HTTPS.
func (c *testCluster) useCA(file string) {
	c.t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(c.t, err)
	pool := x509.NewCertPool()
	require.True(c.t, pool.AppendCertsFromPEM(b))
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool}
	c.hc = &http.Client{Transport: t}
	c.opts.RootCAs = pool
}

// status returns p's GET /status.
func (c *testCluster) status(p *proc) api.Status {
	c.t.Helper()
	resp, err := c.hc.Get(p.url() + "/status")
	require.NoError(c.t, err)
	defer resp.Body.Close()
	var st api.Status
	require.NoError(c.t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

// TestMutualTLSAndAPIToken: certificates made by "kvstore certs" let two
// nodes form a cluster over mutual TLS and serve HTTPS; writes and admin
// endpoints need the API token and reads do not; the client commands work
// with --tls-ca and --api-token-file. A node with a certificate from
// another CA, and a node without credentials, are refused by the members'
// Raft ports and never join; a node with the right certificate and token
// joins over HTTPS.
func TestMutualTLSAndAPIToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	dir := t.TempDir()
	certs, other := filepath.Join(dir, "certs"), filepath.Join(dir, "other")
	made := kvstoreOK(t, "certs", "--dir", certs, "--nodes", "n1=127.0.0.1,n2=127.0.0.1,n3=127.0.0.1:7003")
	require.Contains(t, made, "made a new CA")
	require.Contains(t, made, "n3 (127.0.0.1, until ")
	kvstoreOK(t, "certs", "--dir", other, "--nodes", "x1=127.0.0.1")
	ca := filepath.Join(certs, "ca.pem")
	token := writeFile(t, filepath.Join(dir, "api.token"), "a-token-for-this-test-0123456789\n", 0o600)
	bearer := "Bearer a-token-for-this-test-0123456789"

	c := newTestCluster(t, 2)
	c.useCA(ca)
	for _, p := range c.nodes {
		p.scheme = "https"
		p.auth = append(tlsArgs(certs, p.id), "--api-token-file", token)
		c.start(p)
	}
	c.waitHealthy()
	n1, n2 := c.nodes[0], c.nodes[1]
	addr := "--addr=" + n1.url() + "," + n2.url()
	req := func(method, url, auth, body string) rawResponse {
		t.Helper()
		r, err := http.NewRequest(method, url, strings.NewReader(body))
		require.NoError(t, err)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		resp, err := c.hc.Do(r)
		require.NoError(t, err)
		defer resp.Body.Close()
		var b bytes.Buffer
		_, err = b.ReadFrom(resp.Body)
		require.NoError(t, err)
		return rawResponse{status: resp.StatusCode, header: resp.Header, body: b.Bytes()}
	}

	t.Run("HTTPSAndToken", func(t *testing.T) {
		st := c.status(n1)
		require.Equal(t, "tls", st.RaftAuth)
		require.True(t, st.APIToken)
		require.True(t, strings.HasPrefix(st.HTTP, "https://"), st.HTTP)

		r := req(http.MethodPut, n1.url()+"/kv/tls/a", "", "no token")
		require.Equal(t, http.StatusUnauthorized, r.status, "%s", r.body)
		require.Equal(t, api.CodeUnauthorized, r.apiError(t).Code)
		r = req(http.MethodPut, n1.url()+"/kv/tls/a", "Bearer not-the-token-at-all-0123", "wrong token")
		require.Equal(t, http.StatusUnauthorized, r.status, "%s", r.body)
		r = req(http.MethodPut, n2.url()+"/kv/tls/a", bearer, "with the token")
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		r = req(http.MethodGet, n1.url()+"/kv/tls/a", "", "")
		require.Equal(t, http.StatusOK, r.status, "reads need no token: %s", r.body)
		require.Contains(t, string(r.body), "with the token")
		r = req(http.MethodGet, n1.url()+"/backup", "", "")
		require.Equal(t, http.StatusUnauthorized, r.status, "a backup is an admin request")

		// The command line: --tls-ca to trust the nodes, and the token
		// for writes and backups only.
		var out, errOut bytes.Buffer
		require.Equal(t, 1, run([]string{"put", addr, "--tls-ca", ca, "tls/b", "x"}, &out, &errOut))
		require.Contains(t, errOut.String(), "401 unauthorized")
		require.Contains(t, errOut.String(), "--api-token-file")
		require.Contains(t, kvstoreOK(t, "put", addr, "--tls-ca", ca, "--api-token-file", token, "tls/b", "from the cli"), "created tls/b")
		require.Equal(t, "from the cli\n", kvstoreOK(t, "get", addr, "--tls-ca", ca, "tls/b"))
		require.Contains(t, kvstoreOK(t, "status", addr, "--tls-ca", ca), "2 of 2 voters reachable")
		backup := filepath.Join(dir, "kv.backup")
		require.Contains(t, kvstoreOK(t, "backup", "--addr", c.followers()[0].url(), "--tls-ca", ca, "--api-token-file", token, "--out", backup), "written to")

		// Without the CA the client does not trust the nodes, and says so
		// at once rather than retrying.
		out.Reset()
		errOut.Reset()
		start := time.Now()
		require.Equal(t, 1, run([]string{"get", addr, "tls/b"}, &out, &errOut))
		require.Contains(t, errOut.String(), "give its CA with --tls-ca")
		require.Less(t, time.Since(start), 5*time.Second, "an untrusted certificate is not retried")
	})

	t.Run("WebPageAsksForTheToken", func(t *testing.T) {
		// Chromium trusts the system's CAs only; the test's CA is not
		// one, and teaching it a CA takes a certificate database.
		b := newBrowser(t, chromedp.Flag("ignore-certificate-errors", true))
		b.step(chromedp.Navigate(n1.url() + "/"))
		b.step(chromedp.WaitVisible(chromedp.CSS("#token"))) // /status said the node has a token
		b.step(
			chromedp.SendKeys(chromedp.CSS("#key"), "web/k"),
			chromedp.SendKeys(chromedp.CSS("#value"), "typed with the token"),
			chromedp.Click(chromedp.CSS("#put")),
		)
		refused := b.poll(`(() => { const r = document.querySelector("#result.error"); return r ? r.textContent : ""; })()`)
		require.True(t, strings.HasPrefix(refused, "This node needs its API token"), "the page says %q", refused)
		b.step(
			chromedp.SendKeys(chromedp.CSS("#token"), strings.TrimPrefix(bearer, "Bearer ")),
			chromedp.Click(chromedp.CSS("#put")),
			chromedp.WaitVisible(chromedp.CSS("#result.ok")),
		)
		got := b.poll(`document.querySelector("#result").textContent`)
		require.Contains(t, got, "created web/k")
		r := req(http.MethodGet, n2.url()+"/kv/web/k", "", "")
		require.Contains(t, string(r.body), "typed with the token")
	})

	refused := func() uint64 {
		return c.status(n1).RefusedConnections + c.status(n2).RefusedConnections
	}
	// intruder starts a node that believes it forms a cluster with n1 and
	// n2, with the given credentials, and checks that the members refuse
	// its connections and that it never gets a leader.
	intruder := func(t *testing.T, id string, auth ...string) *proc {
		x := &proc{id: id, raft: freePort(t), http: freePort(t), data: filepath.Join(t.TempDir(), "data"), auth: auth}
		x.peers = id + "=" + x.raft + ",n1=" + n1.raft + ",n2=" + n2.raft
		before := refused()
		c.start(x)
		t.Cleanup(func() { c.kill(x) })
		require.Eventually(t, func() bool { return refused() > before }, waitFor, 50*time.Millisecond,
			"the members refuse %s's connections", id)
		// Long enough for a few elections of its own: none succeeds.
		time.Sleep(time.Second)
		st := c.status(x)
		require.Empty(t, st.Leader, "%s found no leader: %+v", id, st)
		v, err := c.cluster(n1)
		require.NoError(t, err)
		require.Equal(t, 2, v.Voters)
		require.Equal(t, 2, v.Reachable)
		require.Contains(t, []string{"n1", "n2"}, v.Leader)
		return x
	}

	t.Run("AnotherCAIsRefused", func(t *testing.T) {
		// Its own certificate is valid (for its own CA), so it starts;
		// the members do not trust it, and it does not trust them.
		x := intruder(t, "x1", append(tlsArgs(other, "x1"), "--insecure-http")...)
		require.NotZero(t, c.status(x).FailedHandshakes, "x1's own handshakes fail")
		require.Contains(t, n1.tail(1000)+n2.tail(1000), "refused a connection")
	})

	t.Run("NoCredentialsIsRefused", func(t *testing.T) {
		intruder(t, "x2", "--insecure")
	})

	t.Run("JoinOverHTTPSWithTheToken", func(t *testing.T) {
		n3 := &proc{id: "n3", raft: freePort(t), http: freePort(t), data: filepath.Join(t.TempDir(), "n3"), scheme: "https"}
		join := func(p *proc, extra ...string) []string {
			args := []string{"join", "--id", p.id, "--raft", p.raft, "--http", p.http, "--data", p.data, "--via", n1.url(), "--log-level", "debug"}
			return append(append(args, tlsArgs(certs, p.id)...), extra...)
		}

		// Without the token the cluster does not add it.
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], join(&proc{id: "n3", raft: freePort(t), http: freePort(t), data: filepath.Join(t.TempDir(), "n3")})...)
		cmd.Env = append(os.Environ(), runMainEnv+"=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.True(t, errors.As(err, &exit), "join without the token should fail:\n%s", out)
		require.Contains(t, string(out), "unauthorized")

		c.startArgs(n3, join(n3, "--api-token-file", token))
		t.Cleanup(func() { c.kill(n3) })
		require.Eventually(t, func() bool {
			v, err := c.cluster(n1)
			return err == nil && v.Voters == 3 && v.Reachable == 3
		}, waitFor, 50*time.Millisecond, "n3 in the cluster")
		require.Eventually(t, func() bool {
			r := req(http.MethodGet, n3.url()+"/kv/tls/b?consistency=local", "", "")
			return r.status == http.StatusOK && strings.Contains(string(r.body), "from the cli")
		}, waitFor, 50*time.Millisecond, "n3 has the keys")
	})
}
