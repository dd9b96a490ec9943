package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/client"
	"github.com/stretchr/testify/require"
)

// clusterMaxValue is the --max-value of TestCluster's nodes. The limit
// checks are the same at any limit, and a value at the default limit
// (1 MiB) costs seconds of CPU under the race detector (JSON and base64 on
// every member), more than the nodes' 5 s --timeout on a loaded machine.
const clusterMaxValue = 256 << 10

// One cluster of three node processes serves the tests that leave it
// healthy; each subtest uses keys of its own.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	c := startCluster(t, 3, "--max-value", fmt.Sprint(clusterMaxValue))

	t.Run("PutViaOneNodeReadLinearizablyViaAnother", func(t *testing.T) { testPutReadAcrossNodes(t, c) })
	t.Run("ReadConsistencies", func(t *testing.T) { testReadConsistencies(t, c) })
	t.Run("CASDeleteList", func(t *testing.T) { testCASDeleteList(t, c) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, c) })
	t.Run("Profiler", func(t *testing.T) { testProfiler(t, c) })
	t.Run("ClientCommandLine", func(t *testing.T) { testClientCommandLine(t, c) })
	t.Run("WebPageInBrowser", func(t *testing.T) { testWebPage(t, c) })
	t.Run("JoinAndLeave", func(t *testing.T) { testJoinAndLeave(t, c) })
}

// testProfiler: Go's profiler answers on the HTTP port.
func testProfiler(t *testing.T, c *testCluster) {
	base := c.nodes[0].url()
	r := do(t, http.MethodGet, base+"/debug/pprof/", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "goroutine")
	r = do(t, http.MethodGet, base+"/debug/pprof/goroutine?debug=1", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "goroutine profile: total")
	r = do(t, http.MethodGet, base+"/debug/pprof/cmdline", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "serve")
	r = do(t, http.MethodGet, base+"/debug/pprof/profile?seconds=1", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.NotEmpty(t, r.body, "a CPU profile")
}

func testPutReadAcrossNodes(t *testing.T, c *testCluster) {
	// Node 2 and node 3 of the issue: a follower takes the write (and
	// forwards it), another node answers the read.
	// In plain HTTP, as the README shows it: the follower forwards the
	// write to the leader itself.
	fs := c.followers()
	writer, reader := fs[0], fs[1]
	r := do(t, http.MethodPut, writer.url()+"/kv/greeting", strings.NewReader("hello, raft"))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var res api.WriteResult
	require.NoError(t, json.Unmarshal(r.body, &res))
	require.True(t, res.Created)
	require.NotEqual(t, writer.id, res.Leader, "a follower forwards the write to the leader")

	r = do(t, http.MethodGet, reader.url()+"/kv/greeting", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var got api.GetResult
	require.NoError(t, json.Unmarshal(r.body, &got))
	require.Equal(t, "hello, raft", got.Value)
	require.Equal(t, res.Revision, got.Revision)
	require.Equal(t, "linearizable", got.Consistency, "the default")
	require.Equal(t, res.Leader, got.ServedBy, "a linearizable read runs on the leader")

	// The same through the Go client, with a key that holds a slash.
	ctx := ctxFor(t)
	_, err := c.client(writer).Put(ctx, "users/ada", []byte(`{"lang":"en"}`))
	require.NoError(t, err)
	got, err = c.client(reader).Get(ctx, "users/ada", "linearizable")
	require.NoError(t, err)
	require.Equal(t, `{"lang":"en"}`, got.Value)
}

func testReadConsistencies(t *testing.T, c *testCluster) {
	ctx := ctxFor(t)
	res, err := c.client(c.nodes[0]).Put(ctx, "consistency/x", []byte{0xff, 0x00, 'b'})
	require.NoError(t, err)
	for _, p := range c.nodes {
		cl := c.client(p)
		got, err := cl.Get(ctx, "consistency/x", "leader")
		require.NoError(t, err)
		v, err := got.Bytes()
		require.NoError(t, err)
		require.Equal(t, []byte{0xff, 0x00, 'b'}, v, "binary values survive as base64")
		require.NotEmpty(t, got.ValueBase64)
		// A local read sees what this node applied: eventually the write.
		require.Eventually(t, func() bool {
			got, err := cl.Get(ctx, "consistency/x", "local")
			return err == nil && got.Revision == res.Revision && got.ServedBy == p.id
		}, waitFor, 20*time.Millisecond)
	}
	// The raw form gives the bytes.
	r := do(t, http.MethodGet, c.nodes[1].url()+"/kv/consistency/x?raw=1", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, []byte{0xff, 0x00, 'b'}, r.body)
	require.Equal(t, fmt.Sprint(res.Revision), r.header.Get("X-Kvstore-Revision"))
	// Compare and set takes binary values in base64, on both sides.
	r = do(t, http.MethodPost, c.nodes[1].url()+"/kv/consistency/x/cas",
		strings.NewReader(`{"expected_base64": "/wBi", "value_base64": "AP8="}`))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	after, err := c.client(c.nodes[0]).Get(ctx, "consistency/x", "linearizable")
	require.NoError(t, err)
	v, err := after.Bytes()
	require.NoError(t, err)
	require.Equal(t, []byte{0x00, 0xff}, v)
}

func testCASDeleteList(t *testing.T, c *testCluster) {
	ctx := ctxFor(t)
	cl := c.client(c.nodes...)
	str := func(s string) *string { return &s }
	rev := func(n uint64) *uint64 { return &n }

	// Create only if absent, twice: the second one mismatches.
	res, err := cl.CAS(ctx, "lock", api.CASRequest{Expected: []byte("null"), Value: str("n1")})
	require.NoError(t, err)
	require.True(t, res.Created)
	_, err = cl.CAS(ctx, "lock", api.CASRequest{Expected: []byte("null"), Value: str("n2")})
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusConflict, ae.Status)
	require.Equal(t, api.CodeCASMismatch, ae.Code)
	require.Equal(t, "n1", ae.Current.Value)

	// By value, then by revision, then a conditional delete.
	res, err = cl.CAS(ctx, "lock", api.CASRequest{Expected: []byte(`"n1"`), Value: str("n3")})
	require.NoError(t, err)
	_, err = cl.CAS(ctx, "lock", api.CASRequest{ExpectedRevision: rev(res.Revision - 1), Value: str("x")})
	require.ErrorAs(t, err, &ae)
	require.Equal(t, api.CodeCASMismatch, ae.Code)
	res, err = cl.CAS(ctx, "lock", api.CASRequest{ExpectedRevision: rev(res.Revision), Delete: true})
	require.NoError(t, err)
	require.True(t, res.Deleted)
	_, err = cl.Get(ctx, "lock", "")
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusNotFound, ae.Status)
	require.Equal(t, api.CodeKeyNotFound, ae.Code)

	// Delete, and delete again.
	_, err = cl.Put(ctx, "doomed", []byte("x"))
	require.NoError(t, err)
	del, err := cl.Delete(ctx, "doomed")
	require.NoError(t, err)
	require.True(t, del.Deleted)
	_, err = cl.Delete(ctx, "doomed")
	require.ErrorAs(t, err, &ae)
	require.Equal(t, api.CodeKeyNotFound, ae.Code)

	// List by prefix, in pages.
	for i := range 5 {
		_, err := cl.Put(ctx, fmt.Sprintf("list/%d", i), []byte(fmt.Sprint("v", i)))
		require.NoError(t, err)
	}
	page, err := cl.List(ctx, "list/", "", 3, "")
	require.NoError(t, err)
	require.Equal(t, []string{"list/0", "list/1", "list/2"}, keysOf(page.Items))
	require.True(t, page.More)
	page, err = cl.List(ctx, "list/", page.Next, 3, "")
	require.NoError(t, err)
	require.Equal(t, []string{"list/3", "list/4"}, keysOf(page.Items))
	require.False(t, page.More)
	require.Equal(t, "v4", page.Items[1].Value)
	all, err := cl.List(ctx, "", "", 0, "local")
	require.NoError(t, err)
	require.Subset(t, keysOf(all.Items), []string{"greeting", "list/0", "users/ada"})
}

func keysOf(es []api.Entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.Key)
	}
	return out
}

func testBadInput(t *testing.T, c *testCluster) {
	ctx := ctxFor(t)
	node := c.nodes[1].url()
	before, err := c.client(c.nodes[1]).List(ctx, "", "", 0, "")
	require.NoError(t, err)
	status := func() api.Status {
		var st api.Status
		r := do(t, http.MethodGet, node+"/status", nil)
		require.Equal(t, http.StatusOK, r.status)
		require.NoError(t, json.Unmarshal(r.body, &st))
		return st
	}
	commitBefore := status().CommitIndex

	oversize := bytes.Repeat([]byte("x"), clusterMaxValue+1)
	cases := []struct {
		name, method, path string
		body               []byte
		status             int
		code               string
		allow              string
	}{
		{"malformed cas json", http.MethodPost, "/kv/bad/cas", []byte(`{"expected": "a", "value": `), 400, api.CodeInvalidJSON, ""},
		{"cas json of the wrong shape", http.MethodPost, "/kv/bad/cas", []byte(`{"expected": 7, "value": "x"}`), 400, api.CodeInvalidJSON, ""},
		{"cas with unknown field", http.MethodPost, "/kv/bad/cas", []byte(`{"expectd": "a", "value": "x"}`), 400, api.CodeInvalidJSON, ""},
		{"cas with two conditions", http.MethodPost, "/kv/bad/cas", []byte(`{"expected": "a", "expected_revision": 3, "value": "x"}`), 400, api.CodeInvalidJSON, ""},
		{"cas with neither value nor delete", http.MethodPost, "/kv/bad/cas", []byte(`{"expected": "a"}`), 400, api.CodeInvalidJSON, ""},
		{"cas with a value and a binary value", http.MethodPost, "/kv/bad/cas", []byte(`{"expected": "a", "value": "x", "value_base64": "eA=="}`), 400, api.CodeInvalidJSON, ""},
		{"cas with bad base64", http.MethodPost, "/kv/bad/cas", []byte(`{"expected": null, "value_base64": "not base64!"}`), 400, api.CodeInvalidJSON, ""},
		{"cas with bad expected base64", http.MethodPost, "/kv/bad/cas", []byte(`{"expected_base64": "%%", "value": "x"}`), 400, api.CodeInvalidJSON, ""},
		{"malformed join json", http.MethodPost, "/cluster/members", []byte(`[1,2`), 400, api.CodeInvalidJSON, ""},
		{"join with a bad id", http.MethodPost, "/cluster/members", []byte(`{"id":"rago_system","raft":"127.0.0.1:9"}`), 400, api.CodeInvalidArgument, ""},
		{"empty key on put", http.MethodPut, "/kv/", []byte("x"), 400, api.CodeInvalidKey, ""},
		{"empty key on get", http.MethodGet, "/kv/", nil, 400, api.CodeInvalidKey, ""},
		{"key with a control character", http.MethodPut, "/kv/a%00b", []byte("x"), 400, api.CodeInvalidKey, ""},
		{"key too long", http.MethodPut, "/kv/" + strings.Repeat("k", 1025), []byte("x"), 400, api.CodeInvalidKey, ""},
		{"oversize value", http.MethodPut, "/kv/big", oversize, 413, api.CodeTooLarge, ""},
		{"oversize cas value", http.MethodPost, "/kv/big/cas", []byte(`{"expected":null,"value":"` + string(oversize) + `"}`), 413, api.CodeTooLarge, ""},
		{"bad consistency", http.MethodGet, "/kv/greeting?consistency=eventual", nil, 400, api.CodeInvalidArgument, ""},
		{"bad limit", http.MethodGet, "/kv?limit=-1", nil, 400, api.CodeInvalidArgument, ""},
		{"unknown route", http.MethodGet, "/v2/keys/greeting", nil, 404, api.CodeNoRoute, ""},
		{"unknown member", http.MethodDelete, "/cluster/members/n9", nil, 404, api.CodeNodeNotFound, ""},
		{"wrong method on a key", http.MethodPatch, "/kv/greeting", []byte("x"), 405, api.CodeMethod, "GET, HEAD, PUT, DELETE, POST"},
		{"post without cas", http.MethodPost, "/kv/greeting", []byte("x"), 405, api.CodeMethod, "GET, HEAD, PUT, DELETE"},
		{"wrong method on status", http.MethodPost, "/status", nil, 405, api.CodeMethod, "GET, HEAD"},
		{"wrong method on the list", http.MethodDelete, "/kv", nil, 405, api.CodeMethod, "GET, HEAD"},
		{"wrong method on members", http.MethodGet, "/cluster/members", nil, 405, api.CodeMethod, "POST"},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			var body *bytes.Reader
			if tc.body != nil {
				body = bytes.NewReader(tc.body)
			}
			var r rawResponse
			if body != nil {
				r = doPath(t, tc.method, node, tc.path, body)
			} else {
				r = doPath(t, tc.method, node, tc.path, nil)
			}
			require.Equal(t, tc.status, r.status, "%s", r.body)
			require.Equal(t, "application/json", r.header.Get("Content-Type"))
			e := r.apiError(t)
			require.Equal(t, tc.code, e.Code)
			require.NotEmpty(t, e.Message)
			require.Equal(t, c.nodes[1].id, e.Node)
			if tc.allow != "" {
				require.Equal(t, tc.allow, r.header.Get("Allow"))
			}
		})
	}

	// Nothing was written: the same keys, and not one new log entry.
	after, err := c.client(c.nodes[1]).List(ctx, "", "", 0, "")
	require.NoError(t, err)
	require.Equal(t, keysOf(before.Items), keysOf(after.Items))
	require.Equal(t, commitBefore, status().CommitIndex)

	// The node is unaffected: it takes a good write.
	res, err := c.client(c.nodes[1]).Put(ctx, "after-bad-input", []byte("fine"))
	require.NoError(t, err)
	require.True(t, res.Created)
	// A value of exactly the limit is accepted.
	res, err = c.client(c.nodes[1]).Put(ctx, "exactly-the-limit", oversize[:clusterMaxValue])
	require.NoError(t, err)
	got, err := c.client(c.nodes[2]).Get(ctx, "exactly-the-limit", "")
	require.NoError(t, err)
	require.Equal(t, clusterMaxValue, len(got.Value))
}

func testClientCommandLine(t *testing.T, c *testCluster) {
	addr := "--addr=" + c.nodes[0].url() + "," + c.nodes[1].url() + "," + c.nodes[2].url()
	kv := func(wantStatus int, args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		status := run(append([]string{args[0], addr}, args[1:]...), &out, &errOut)
		require.Equal(t, wantStatus, status, "kvstore %v: stdout %q stderr %q", args, out.String(), errOut.String())
		return out.String() + errOut.String()
	}
	require.Contains(t, kv(0, "put", "cli/a", "one"), "created cli/a at revision")
	require.Equal(t, "one\n", kv(0, "get", "cli/a"))
	require.Equal(t, "one\n", kv(0, "get", "--consistency", "local", "cli/a"), "flags may come before the arguments")
	require.Contains(t, kv(0, "put", "cli/a", "two"), "updated cli/a")
	require.Contains(t, kv(1, "cas", "cli/a", "--expect", "one", "three"), `mismatch: the key is "two"`)
	require.Contains(t, kv(0, "cas", "cli/a", "--expect", "two", "three"), "swapped")
	require.Contains(t, kv(0, "cas", "cli/b", "--expect-absent", "new"), "swapped")
	require.Contains(t, kv(0, "put", "--", "cli/dash", "-5"), "created")
	require.Equal(t, "-5\n", kv(0, "get", "cli/dash"))
	require.Equal(t, "cli/a     three\ncli/b     new\ncli/dash  -5\n", kv(0, "list", "cli/"))
	require.Equal(t, "cli/a\ncli/b\n", kv(0, "list", "--keys", "--limit", "2", "cli/"))
	require.Contains(t, kv(0, "del", "cli/a"), "deleted cli/a")
	require.Contains(t, kv(1, "get", "cli/a"), "key_not_found")
	require.Contains(t, kv(1, "del", "cli/a"), "key_not_found")
	require.Contains(t, kv(0, "cas", "cli/b", "--expect", "new", "--delete"), "deleted cli/b")

	st := kv(0, "status")
	require.Contains(t, st, "3 of 3 voters reachable")
	for _, p := range c.nodes {
		require.Contains(t, st, p.url())
	}
	require.Contains(t, kv(0, "get", "--json", "greeting"), `"served_by"`)

	// Mistakes on the command line exit with 2 and say what is wrong.
	require.Contains(t, kv(2, "get"), "want one KEY")
	require.Contains(t, kv(2, "cas", "k", "v"), "exactly one of --expect")
	require.Contains(t, kv(2, "put", "--bogus", "k", "v"), "flag provided but not defined")
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run([]string{"frobnicate"}, &out, &errOut))
	require.Contains(t, errOut.String(), `unknown command "frobnicate"`)
	require.Equal(t, 0, run([]string{"help", "cas"}, &out, &errOut))
	require.Contains(t, errOut.String()+out.String(), "--expect-revision")

	// No node at the address: a clear error, not a hang.
	out.Reset()
	errOut.Reset()
	require.Equal(t, 1, run([]string{"get", "x", "--addr", "http://" + freePort(t), "--timeout", "1s"}, &out, &errOut))
	require.Contains(t, errOut.String(), "no node answers")
}

func testJoinAndLeave(t *testing.T, c *testCluster) {
	ctx := ctxFor(t)
	cl := c.client(c.nodes...)
	for i := range 20 {
		_, err := cl.Put(ctx, fmt.Sprintf("join/%02d", i), []byte("before n4"))
		require.NoError(t, err)
	}
	n4 := &proc{id: "n4", raft: freePort(t), http: freePort(t), data: t.TempDir() + "/n4"}
	c.startArgs(n4, append([]string{"join", "--id", n4.id, "--raft", n4.raft, "--http", n4.http, "--data", n4.data, "--via", c.nodes[0].url()}, c.auth()...))
	t.Cleanup(func() { c.kill(n4) })

	// n4 is a member, known to every node, and has every key.
	require.Eventually(t, func() bool {
		v, err := c.cluster(c.nodes[2])
		return err == nil && v.Voters == 4 && v.Reachable == 4
	}, waitFor, 50*time.Millisecond, "n4 in the cluster")
	n4c := c.client(n4)
	require.Eventually(t, func() bool {
		l, err := n4c.List(ctx, "join/", "", 0, "local")
		return err == nil && l.Count == 20
	}, waitFor, 50*time.Millisecond, "n4 has the keys")
	res, err := n4c.Put(ctx, "join/from-n4", []byte("hi"))
	require.NoError(t, err)
	require.NotEqual(t, "n4", res.Leader, "n4 joined as a follower")

	// kvstore leave removes it; the cluster goes back to three.
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"leave", "--id", "n4", "--addr", c.nodes[1].url()}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "removed n4; the members are now n1,n2,n3")
	require.Eventually(t, func() bool {
		v, err := c.cluster(c.nodes[0])
		return err == nil && v.Voters == 3 && v.Reachable == 3 && c.node(v.Leader) != nil
	}, waitFor, 50*time.Millisecond, "three members again")
	// The removed node says so, and writes nothing.
	r := do(t, http.MethodPut, n4.url()+"/kv/join/after-leave", strings.NewReader("x"))
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	require.Equal(t, api.CodeNotMember, r.apiError(t).Code)
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.Equal(t, 1, run([]string{"leave", "--id", "n4", "--addr", c.nodes[1].url()}, &out, &errOut))
	require.Contains(t, errOut.String(), "node_not_found")
	_, err = cl.Get(ctx, "join/after-leave", "")
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, api.CodeKeyNotFound, ae.Code)
	_, err = cl.Put(ctx, "join/after-leave", []byte("x"))
	require.NoError(t, err)
}

// TestFailover: SIGKILL of the leader, its return, a full restart, a loss
// of quorum, and SIGSTOP of the leader; no acknowledged write is ever lost.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	c := startCluster(t, 3)
	ctx := ctxFor(t)
	acked := map[string]string{}
	maybe := map[string]string{} // outcome unknown: may or may not be there
	write := func(cl *client.Client, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			k, v := fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i)
			_, err := cl.Put(ctx, k, []byte(v))
			var ae *api.Error
			switch {
			case err == nil:
				acked[k] = v
			case errors.Is(err, client.ErrOutcomeUnknown), errors.As(err, &ae) && ae.OutcomeUnknown:
				maybe[k] = v
			default:
				require.NoError(t, err, "write %s", k)
			}
		}
	}
	check := func(p *proc, consistency string) bool {
		l, err := c.client(p).List(ctx, "k", "", 0, consistency)
		if err != nil {
			return false
		}
		got := map[string]string{}
		for _, e := range l.Items {
			got[e.Key] = e.Value
		}
		for k, v := range acked {
			if got[k] != v {
				return false
			}
		}
		for k, v := range got {
			if acked[k] != v && maybe[k] != v {
				t.Errorf("%s has %s=%q, which nobody wrote", p.id, k, v)
			}
		}
		return true
	}
	write(c.client(c.nodes...), 0, 150)
	require.Len(t, acked, 150)

	// SIGKILL the leader: writes resume on a new leader.
	old := c.leader(c.nodes[0])
	c.kill(old)
	var rest []*proc
	for _, p := range c.nodes {
		if p != old {
			rest = append(rest, p)
		}
	}
	write(c.client(rest...), 150, 300)
	require.GreaterOrEqual(t, len(acked), 290, "writes resume after the leader's death (maybe: %d)", len(maybe))
	// The survivors' views name the new leader (after their next probe).
	require.Eventually(t, func() bool {
		v, err := c.cluster(rest[0])
		return err == nil && v.Leader != "" && v.Leader != old.id && c.node(v.Leader) != nil
	}, waitFor, 50*time.Millisecond, "a new leader")
	// The dead node is still listed as a member, with what it said last.
	v, err := c.cluster(rest[0])
	require.NoError(t, err)
	found := false
	for _, m := range v.Members {
		if m.ID == old.id {
			found = true
			require.False(t, m.Reachable)
			require.True(t, m.Member, "a member that does not answer is still a member")
			require.Positive(t, m.Term, "its last known term, not 0")
			require.NotEmpty(t, m.LastSeen)
			require.NotEmpty(t, m.Error)
		}
	}
	require.True(t, found, "%s listed in %+v", old.id, v.Members)

	// The killed node restarts, catches up and serves every key from its
	// own machine.
	c.start(old)
	require.Eventually(t, func() bool { return check(old, "local") }, waitFor, 100*time.Millisecond, "%s catches up", old.id)
	require.True(t, check(old, "linearizable"))
	c.waitHealthy()

	// All three killed and restarted: every acknowledged key is there.
	for _, p := range c.nodes {
		c.kill(p)
	}
	for _, p := range c.nodes {
		c.start(p)
	}
	c.waitHealthy()
	for _, p := range c.nodes {
		require.True(t, check(p, "linearizable"), "after a full restart, via %s", p.id)
	}

	// Two of three down: the survivor refuses writes with 503 and
	// Retry-After (or, before its probes notice, times out with an
	// unknown outcome); never does it claim success.
	survivor := c.nodes[2]
	c.kill(c.nodes[0])
	c.kill(c.nodes[1])
	require.Eventually(t, func() bool {
		r := do(t, http.MethodPut, survivor.url()+"/kv/no-quorum", strings.NewReader("x"))
		switch r.status {
		case http.StatusServiceUnavailable:
			e := r.apiError(t)
			return e.Code == api.CodeNoQuorum && r.header.Get("Retry-After") != ""
		case http.StatusGatewayTimeout:
			require.True(t, r.apiError(t).OutcomeUnknown)
			maybe["no-quorum"] = "x"
			return false
		}
		t.Fatalf("a write without quorum answered %d: %s", r.status, r.body)
		return false
	}, waitFor, 100*time.Millisecond, "503 no_quorum")
	// Reads that need no quorum still work.
	r := do(t, http.MethodGet, survivor.url()+"/kv/k0001?consistency=local", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = do(t, http.MethodGet, survivor.url()+"/kv/k0001", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status, "a linearizable read needs a quorum: %s", r.body)

	// One back: a quorum again, writes go through.
	c.start(c.nodes[0])
	_, err = c.client(c.nodes[0], survivor).Put(ctx, "quorum-back", []byte("yes"))
	require.NoError(t, err)
	c.start(c.nodes[1])
	c.waitHealthy()
	require.True(t, check(c.nodes[1], "linearizable"))

	// SIGSTOP the leader: its connections stay open, the failure detector
	// notices its silence, and writes resume on a new leader. After
	// SIGCONT it follows the new leader and catches up.
	frozen := c.leader(c.nodes[0])
	require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGSTOP))
	var others []*proc
	for _, p := range c.nodes {
		if p != frozen {
			others = append(others, p)
		}
	}
	write(c.client(others...), 300, 400)
	require.GreaterOrEqual(t, len(acked), 380, "writes resume while the leader is frozen (maybe: %d)", len(maybe))
	require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGCONT))
	require.Eventually(t, func() bool { return check(frozen, "local") }, waitFor, 100*time.Millisecond, "%s catches up after SIGCONT", frozen.id)
	c.waitHealthy()
}

// TestServeRefusesBadStarts: a node that cannot start says why and exits
// with status 1, leaving nothing running.
func TestServeRefusesBadStarts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	dir := t.TempDir()
	secret := filepath.Join(dir, "cluster.secret")
	require.NoError(t, os.WriteFile(secret, []byte("a test secret of more than 16 bytes"), 0o600))
	serve := func(args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], append(append([]string{"serve"}, args...), "--secret-file", secret)...)
		cmd.Env = append(os.Environ(), runMainEnv+"=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "serve %v should fail; output:\n%s", args, out)
		return exit.ExitCode(), string(out)
	}
	raft := freePort(t)
	peers := "--peers=n1=" + raft + ",n2=" + freePort(t) + ",n3=" + freePort(t)

	code, out := serve("--id", "n1", "--raft", raft, "--http", busy.Addr().String(), "--data", dir+"/a", peers)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "address already in use")
	require.NotContains(t, out, "panic")

	code, out = serve("--id", "n1", "--raft", raft, "--http", freePort(t), "--data", dir+"/b")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "give --peers to form a new cluster")

	// A data directory remembers its node.
	code, out = serve("--id", "n2", "--raft", raft, "--http", freePort(t), "--data", dir+"/a", "--peers=n1="+freePort(t)+",n2="+raft)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "belongs to node n1")

	code, out = serve("--id", "n1", "--raft", raft, "--http", freePort(t), "--data", dir+"/c", "--peers=n2=127.0.0.1:1")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "must include this node")

	code, out = serve("--id", "n1", "--http", freePort(t), "--data", dir+"/d")
	require.Equal(t, 2, code, out)
	require.Contains(t, out, "--raft is required")
}
