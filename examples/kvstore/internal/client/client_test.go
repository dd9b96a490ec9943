package client

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/stretchr/testify/require"
)

// closedAddr returns the URL of a port nobody listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestNewNormalizesAddresses(t *testing.T) {
	c, err := New([]string{" 127.0.0.1:8001/ ", "", "http://h:2"})
	require.NoError(t, err)
	require.Equal(t, []string{"http://127.0.0.1:8001", "http://h:2"}, c.Addrs())
	_, err = New([]string{" ", ""})
	require.Error(t, err)
}

// A node that does not listen is skipped, and the client prefers the node
// that answered from then on.
func TestMovesOnFromARefusedConnection(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cluster" {
			w.Write([]byte(`{"observed_by":"n2","members":[]}`))
			return
		}
		w.Write([]byte(`{"key":"k","revision":3,"leader":"n2"}`))
	}))
	defer srv.Close()
	down := closedAddr(t)
	c, err := New([]string{down, srv.URL})
	require.NoError(t, err)
	res, err := c.Put(ctx(t), "k", []byte("v"))
	require.NoError(t, err)
	require.Equal(t, uint64(3), res.Revision)
	require.Equal(t, srv.URL, c.Addrs()[0])
}

// 503 says nothing was written: the client waits Retry-After and tries
// again until the cluster answers.
func TestRetriesUnavailable(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cluster" {
			w.Write([]byte(`{}`))
			return
		}
		if calls.Add(1) < 3 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"code":"no_leader","message":"election"}`))
			return
		}
		w.Write([]byte(`{"key":"k","revision":9}`))
	}))
	defer srv.Close()
	c, err := New([]string{srv.URL})
	require.NoError(t, err)
	res, err := c.Put(ctx(t), "k", []byte("v"))
	require.NoError(t, err)
	require.Equal(t, uint64(9), res.Revision)
	require.Equal(t, int32(3), calls.Load())
}

// A 504 on a write is returned at once, never retried: the write may have
// been applied.
func TestDoesNotRetryUnknownOutcomes(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cluster" {
			w.Write([]byte(`{}`))
			return
		}
		calls.Add(1)
		w.WriteHeader(http.StatusGatewayTimeout)
		w.Write([]byte(`{"code":"timeout","message":"no answer","outcome_unknown":true}`))
	}))
	defer srv.Close()
	c, err := New([]string{srv.URL})
	require.NoError(t, err)
	_, err = c.Put(ctx(t), "k", []byte("v"))
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusGatewayTimeout, ae.Status)
	require.True(t, ae.OutcomeUnknown)
	require.Equal(t, int32(1), calls.Load())
}

// A write whose connection breaks after it was sent has an unknown
// outcome; it is not sent to the next node.
func TestBrokenConnectionAfterSendIsUnknown(t *testing.T) {
	var second atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		second.Add(1)
		w.Write([]byte(`{"key":"k","revision":1}`))
	}))
	defer other.Close()
	breaker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cluster" {
			w.Write([]byte(`{}`))
			return
		}
		// Hang up without an answer, as a node killed mid-request does.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer breaker.Close()
	c, err := New([]string{breaker.URL, other.URL})
	require.NoError(t, err)
	_, err = c.Delete(ctx(t), "k")
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	require.Zero(t, second.Load(), "an unknown write is not sent again elsewhere")
}

// Local reads go to the nodes as given, not to the leader; other requests
// go to the leader when it is among the nodes given.
func TestLocalReadsStayOnTheGivenNode(t *testing.T) {
	var leaderHits atomic.Int32
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaderHits.Add(1)
		w.Write([]byte(`{"key":"k","value":"from the leader","served_by":"n1"}`))
	}))
	defer leader.Close()
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cluster" {
			w.Write([]byte(`{"leader":"n1","leader_http":"` + leader.URL + `"}`))
			return
		}
		w.Write([]byte(`{"key":"k","value":"local","served_by":"n2","consistency":"` + r.URL.Query().Get("consistency") + `"}`))
	}))
	defer follower.Close()
	c, err := New([]string{follower.URL, leader.URL})
	require.NoError(t, err)
	got, err := c.Get(ctx(t), "k", "local")
	require.NoError(t, err)
	require.Equal(t, "local", got.Value)
	require.Equal(t, "local", got.Consistency)

	// A linearizable read follows the leader that the follower named.
	got, err = c.Get(ctx(t), "k", "")
	require.NoError(t, err)
	require.Equal(t, "from the leader", got.Value)
	require.Equal(t, int32(1), leaderHits.Load())

	// A leader that was not given is not used.
	c, err = New([]string{follower.URL})
	require.NoError(t, err)
	got, err = c.Get(ctx(t), "k", "")
	require.NoError(t, err)
	require.Equal(t, "local", got.Value)
	require.Equal(t, int32(1), leaderHits.Load())
}

func TestUnreachable(t *testing.T) {
	c, err := New([]string{closedAddr(t)})
	require.NoError(t, err)
	cctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Get(cctx, "k", "")
	require.True(t, errors.Is(err, ErrUnreachable), "%v", err)
}

// With options, the client trusts only the given CA for https:// nodes,
// gives bare addresses https://, and sends the token with every request,
// also after a redirect to another host (a backup taken at the leader's
// node), where Go itself would drop it.
func TestTokenAndCA(t *testing.T) {
	const token = "tok-of-sixteen-chars"
	authorized := func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token }
	leaderLn, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback for a second host: %v", err)
	}
	leader := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r) {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"code":"unauthorized","message":"no token"}`))
			return
		}
		w.Write([]byte("backup bytes"))
	}))
	leader.Listener.Close()
	leader.Listener = leaderLn
	leader.StartTLS()
	defer leader.Close()
	follower := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/cluster":
			w.Write([]byte(`{"observed_by":"n2","members":[]}`))
		case r.URL.Path == "/backup":
			http.Redirect(w, r, leader.URL+"/backup", http.StatusTemporaryRedirect)
		case !authorized(r):
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"code":"unauthorized","message":"no token"}`))
		default:
			w.Write([]byte(`{"key":"k","revision":3,"leader":"n2"}`))
		}
	}))
	defer follower.Close()
	pool := x509.NewCertPool()
	pool.AddCert(follower.Certificate()) // both servers present httptest's certificate

	c, err := NewWithOptions([]string{strings.TrimPrefix(follower.URL, "https://")}, Options{RootCAs: pool, Token: token})
	require.NoError(t, err)
	require.Equal(t, []string{follower.URL}, c.Addrs(), "a bare address gets https:// with a CA")
	_, err = c.Put(ctx(t), "k", []byte("v"))
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, c.Backup(ctx(t), &buf))
	require.Equal(t, "backup bytes", buf.String(), "the token followed the redirect to the leader")

	// Without the token: 401, returned at once (retrying cannot help).
	c, err = NewWithOptions([]string{follower.URL}, Options{RootCAs: pool})
	require.NoError(t, err)
	_, err = c.Put(ctx(t), "k", []byte("v"))
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusUnauthorized, ae.Status)

	// Without the CA: the node's certificate is not trusted, and a write
	// that never got past the handshake was not applied.
	c, err = New([]string{follower.URL})
	require.NoError(t, err)
	_, err = c.Put(ctx(t), "k", []byte("v"))
	require.ErrorIs(t, err, ErrUnreachable)
	require.NotErrorIs(t, err, ErrOutcomeUnknown)
	require.ErrorContains(t, err, "certificate")
}
