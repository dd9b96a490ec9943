// Package client is a Go client of the kvstore HTTP API, used by the
// command line and the tests. It knows several nodes, sends requests to
// the leader when it knows it (any node would forward a write, but the
// leader saves a hop), moves on to the next node when one does not answer,
// and retries while the cluster has no leader, until its context ends.
// It only ever talks to the nodes it was given. Local reads, which ask for
// one node's own state, go to them in the order given.
//
// It retries only what cannot have been applied: a request whose
// connection was refused, and answers 503 (the node says nothing was
// written). A write whose connection broke after it was sent, and a 504,
// have an unknown outcome and are returned to the caller as such.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
)

// ErrUnreachable means that no node answered.
var ErrUnreachable = errors.New("kvstore: no node answers")

// ErrOutcomeUnknown wraps a write that may or may not have been applied:
// its connection broke after the request was sent.
var ErrOutcomeUnknown = errors.New("kvstore: outcome unknown")

// Client talks to a kvstore cluster. It is safe for concurrent use.
type Client struct {
	http  *http.Client
	token string // sent as a bearer token when set

	given []string // the addresses as given, for local reads

	mu     sync.Mutex
	addrs  []string // the node most likely to be the leader first
	probed bool     // asked for the leader once already
}

// Options are a client's optional settings.
type Options struct {
	// RootCAs, if set, are the only authorities trusted for the
	// certificates of https:// nodes (a kvstore node serves HTTPS with its
	// node certificate, which chains to the cluster's own CA), and a bare
	// host:port gets https:// instead of http://.
	RootCAs *x509.CertPool
	// Token, if set, goes with every request as "Authorization: Bearer
	// <token>": nodes with an API token need it for writes and admin
	// endpoints.
	Token string
}

// New returns a client for the nodes at addrs (base URLs such as
// http://127.0.0.1:8001; a bare host:port gets http://).
func New(addrs []string) (*Client, error) { return NewWithOptions(addrs, Options{}) }

// NewWithOptions is New with options.
func NewWithOptions(addrs []string, opts Options) (*Client, error) {
	c := &Client{http: &http.Client{}, token: opts.Token}
	scheme := "http://"
	if opts.RootCAs != nil {
		scheme = "https://"
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
		c.http.Transport = t
	}
	// Go drops the Authorization header when a redirect leaves the host,
	// and a backup is redirected to the leader's node, which may be
	// another host. The redirect comes from a node of the cluster and
	// names another one, so the token goes along, but never from https
	// down to http, where anyone on the path could read it.
	c.http.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if c.token != "" && !(via[0].URL.Scheme == "https" && req.URL.Scheme != "https") {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		return nil
	}
	for _, a := range addrs {
		a = strings.TrimRight(strings.TrimSpace(a), "/")
		if a == "" {
			continue
		}
		if !strings.Contains(a, "://") {
			a = scheme + a
		}
		u, err := url.Parse(a)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("kvstore: %q is not a node address (http://host:port)", a)
		}
		c.addrs = append(c.addrs, a)
	}
	if len(c.addrs) == 0 {
		return nil, fmt.Errorf("kvstore: no node address given")
	}
	c.given = append([]string(nil), c.addrs...)
	return c, nil
}

// Addrs returns the node addresses, the preferred one first.
func (c *Client) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.addrs...)
}

// prefer moves addr to the front.
func (c *Client) prefer(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.addrs {
		if a == addr {
			copy(c.addrs[1:i+1], c.addrs[:i])
			c.addrs[0] = addr
			return
		}
	}
	c.addrs = append([]string{addr}, c.addrs...)
}

// demote moves addr to the back, after a try that went wrong.
func (c *Client) demote(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.addrs {
		if a == addr {
			c.addrs = append(append(c.addrs[:i:i], c.addrs[i+1:]...), addr)
			return
		}
	}
}

// findLeader asks the nodes once for the cluster's leader and, if it is
// one of the addresses given, prefers it. Only those: a caller that leaves
// a node out means it (and a leader that froze may still be named as the
// leader for a moment).
func (c *Client) findLeader(ctx context.Context) {
	c.mu.Lock()
	done := c.probed
	c.probed = true
	c.mu.Unlock()
	if done {
		return
	}
	var cl api.Cluster
	addr, err := c.once(ctx, c.Addrs(), http.MethodGet, "/cluster", nil, &cl, false)
	if err != nil {
		return
	}
	c.prefer(addr)
	if leader := strings.TrimRight(cl.LeaderHTTP, "/"); slices.Contains(c.given, leader) {
		c.prefer(leader)
	}
}

// do sends a request, following the rules in the package comment, and
// decodes a 2xx answer into out. A 4xx or 5xx answer is an *api.Error.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any, write bool) error {
	c.findLeader(ctx)
	return c.retry(ctx, func() (string, error) { return c.once(ctx, c.Addrs(), method, path, body, out, write) })
}

// doLocal sends a read that asks for the answering node's own state to the
// nodes in the order given: following the leader would defeat its purpose.
func (c *Client) doLocal(ctx context.Context, path string, out any) error {
	return c.retry(ctx, func() (string, error) { return c.once(ctx, c.given, http.MethodGet, path, nil, out, false) })
}

// retry runs attempt until it succeeds, fails for good, or ctx ends.
func (c *Client) retry(ctx context.Context, attempt func() (string, error)) error {
	backoff := 100 * time.Millisecond
	for {
		addr, err := attempt()
		if err == nil {
			c.prefer(addr)
			return nil
		}
		var ae *api.Error
		retry := (errors.Is(err, ErrUnreachable) && !untrusted(err)) || (errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable)
		if !retry {
			return err
		}
		wait := backoff
		if ae != nil && ae.RetryAfterSeconds > 0 {
			wait = time.Duration(ae.RetryAfterSeconds) * time.Second
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// once tries the nodes in order until one answers with anything but 503,
// and returns that node. A 503 says nothing was done, and another node may
// see the cluster differently (a removed node has no member; a node cut
// off from the others sees no quorum), so the next node gets its chance;
// the last 503 is returned if none does better.
func (c *Client) once(ctx context.Context, addrs []string, method, path string, body []byte, out any, write bool) (string, error) {
	var errs []error
	var unavailable *api.Error
	var unavailableAddr string
	for _, addr := range addrs {
		status, b, retryAfter, err := c.send(ctx, addr, method, path, body)
		switch {
		case err != nil && ctx.Err() != nil:
			return "", fmt.Errorf("%w (%w)", ctx.Err(), err)
		case err != nil:
			c.demote(addr)
			if write && !refused(err) {
				return addr, fmt.Errorf("%w: %s %s: no answer after the request was sent: %w", ErrOutcomeUnknown, method, addr+path, err)
			}
			errs = append(errs, err)
			continue
		case status >= 400:
			ae := errorAnswer(status, b, retryAfter)
			if ae.Status == http.StatusServiceUnavailable {
				unavailable, unavailableAddr = ae, addr
				continue
			}
			return addr, ae
		}
		if out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				return addr, fmt.Errorf("kvstore: the answer of %s does not decode: %w", addr, err)
			}
		}
		return addr, nil
	}
	if unavailable != nil {
		return unavailableAddr, unavailable
	}
	return "", fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
}

// errorAnswer decodes a 4xx or 5xx answer.
func errorAnswer(status int, b []byte, retryAfter string) *api.Error {
	ae := &api.Error{}
	if json.Unmarshal(b, ae) != nil || ae.Code == "" {
		ae = &api.Error{Code: api.CodeInternal, Message: strings.TrimSpace(string(b))}
	}
	ae.Status = status
	if s, err := strconv.Atoi(retryAfter); err == nil {
		ae.RetryAfterSeconds = s
	}
	return ae
}

// openStream asks addr for path, an answer read as a stream: the response
// of a 2xx, an *api.Error for a 4xx or 5xx, or the transport's error.
func (c *Client) openStream(ctx context.Context, addr, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr+path, nil)
	if err != nil {
		return nil, err
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		return nil, errorAnswer(resp.StatusCode, b, resp.Header.Get("Retry-After"))
	}
	return resp, nil
}

// Backup streams a backup of the cluster's state into w. It is taken
// through the leader (a node that does not lead redirects to it); nodes
// that answer 503 or not at all are skipped and retried as for any
// request. Once the backup streams, an error ends it, and w holds part of
// it: check what w got (raftserver.ReadBackupInfo) before relying on it.
func (c *Client) Backup(ctx context.Context, w io.Writer) error {
	c.findLeader(ctx)
	return c.retry(ctx, func() (string, error) {
		var errs []error
		var unavailable *api.Error
		var unavailableAddr string
		for _, addr := range c.Addrs() {
			resp, err := c.openStream(ctx, addr, "/backup")
			var ae *api.Error
			switch {
			case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
				unavailable, unavailableAddr = ae, addr
				continue
			case ae != nil:
				return addr, ae
			case err != nil && ctx.Err() != nil:
				return "", fmt.Errorf("%w (%w)", ctx.Err(), err)
			case err != nil:
				c.demote(addr)
				errs = append(errs, err)
				continue
			}
			_, err = io.Copy(w, resp.Body)
			resp.Body.Close()
			if err != nil {
				return addr, fmt.Errorf("kvstore: the backup from %s broke off: %w", addr, err)
			}
			return addr, nil
		}
		if unavailable != nil {
			return unavailableAddr, unavailable
		}
		return "", fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
	})
}

// Watch calls fn with every change of the keys with prefix from revision
// from on (0: from now), in revision order, until ctx ends or fn returns
// an error (which Watch returns). When the node it streams from goes, or
// ends the stream, it resumes on another node from the revision after the
// last one it handed to fn, so fn sees every change once. A revision older
// than the history the nodes keep fails with an *api.Error of code
// compacted, whose Since says where a watch can start.
func (c *Client) Watch(ctx context.Context, prefix string, from uint64, fn func(api.WatchEvent) error) error {
	c.findLeader(ctx)
	next := from
	backoff := 100 * time.Millisecond
	for {
		progressed, err := c.watchOnce(ctx, prefix, &next, fn)
		var ae *api.Error
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &ae):
			// A 4xx, or compacted, stays so on every node; a 5xx or an
			// error line of a node that lost its member does not.
			if ae.Code == api.CodeCompacted || (ae.Status >= 400 && ae.Status < 500) {
				return err
			}
		case untrusted(err):
			return err
		case errors.Is(err, ErrUnreachable), errors.Is(err, errStreamBroke):
		default:
			return err // fn's own
		}
		if progressed {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// errStreamBroke: a watch stream ended without an error line (the node or
// the connection went).
var errStreamBroke = errors.New("kvstore: the watch stream broke off")

// watchOnce streams from the first node that takes the watch, and returns
// when that stream ends; progressed says whether it handed anything to fn.
func (c *Client) watchOnce(ctx context.Context, prefix string, next *uint64, fn func(api.WatchEvent) error) (progressed bool, err error) {
	var errs []error
	for _, addr := range c.Addrs() {
		q := url.Values{"prefix": {prefix}}
		if *next > 0 {
			q.Set("from_revision", strconv.FormatUint(*next, 10))
		}
		resp, err := c.openStream(ctx, addr, "/watch?"+q.Encode())
		var ae *api.Error
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
			errs = append(errs, ae)
			continue
		case ae != nil:
			return false, ae
		case err != nil && ctx.Err() != nil:
			return false, ctx.Err()
		case err != nil:
			c.demote(addr)
			errs = append(errs, err)
			continue
		}
		if *next == 0 {
			*next, _ = strconv.ParseUint(resp.Header.Get("X-Kvstore-From-Revision"), 10, 64)
		}
		c.prefer(addr)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var ev api.WatchEvent
			if err := dec.Decode(&ev); err != nil {
				return progressed, fmt.Errorf("%w: %s: %w", errStreamBroke, addr, err)
			}
			if ev.Error != nil {
				return progressed, ev.Error
			}
			if ev.Revision < *next {
				continue // already handed out (cannot happen with a sane node)
			}
			if err := fn(ev); err != nil {
				return progressed, err
			}
			*next, progressed = ev.Revision+1, true
		}
	}
	return false, fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
}

// send makes one request to one node and reads its whole answer. Each node
// gets a bounded try, so that a frozen node (which accepts connections and
// never answers) does not hold the request until the caller gives up; a
// write that runs out of this time has an unknown outcome, like any write
// without an answer.
func (c *Client) send(ctx context.Context, addr, method, path string, body []byte) (status int, answer []byte, retryAfter string, err error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout(path))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, addr+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	c.authorize(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	answer, err = io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, "", fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, answer, resp.Header.Get("Retry-After"), nil
}

// authorize adds the API token to req, if the client has one.
func (c *Client) authorize(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// attemptTimeout is how long one node may take to answer path. A node
// answers /status and /cluster from memory, and anything else within its
// own request timeout (5 s by default), with a 503 or 504 if the cluster
// cannot answer in time.
func attemptTimeout(path string) time.Duration {
	if strings.HasPrefix(path, "/status") || strings.HasPrefix(path, "/cluster?") || path == "/cluster" {
		return 2 * time.Second
	}
	return 8 * time.Second
}

// refused reports whether err happened before the request could reach a
// server (nothing was sent), so that trying another node is safe and a
// write's outcome is known: not applied.
func refused(err error) bool {
	var op *net.OpError
	// A certificate the client does not trust stops the handshake before
	// the request is written.
	return (errors.As(err, &op) && op.Op == "dial") || untrusted(err)
}

// untrusted reports whether err holds a certificate the client does not
// trust: waiting does not fix that, so it is not retried.
func untrusted(err error) bool {
	var cert *tls.CertificateVerificationError
	return errors.As(err, &cert)
}

func keyPath(key string) string { return "/kv/" + url.PathEscape(key) }

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key string, value []byte) (api.WriteResult, error) {
	var r api.WriteResult
	if value == nil {
		value = []byte{}
	}
	err := c.do(ctx, http.MethodPut, keyPath(key), value, &r, true)
	return r, err
}

// Get reads key at the given consistency ("" for linearizable).
func (c *Client) Get(ctx context.Context, key, consistency string) (api.GetResult, error) {
	var r api.GetResult
	path := keyPath(key)
	if consistency != "" {
		path += "?consistency=" + url.QueryEscape(consistency)
	}
	if consistency == "local" {
		return r, c.doLocal(ctx, path, &r)
	}
	err := c.do(ctx, http.MethodGet, path, nil, &r, false)
	return r, err
}

// Delete deletes key.
func (c *Client) Delete(ctx context.Context, key string) (api.WriteResult, error) {
	var r api.WriteResult
	err := c.do(ctx, http.MethodDelete, keyPath(key), nil, &r, true)
	return r, err
}

// CAS applies a compare-and-set; a mismatch is an *api.Error with code
// cas_mismatch and the key's current state.
func (c *Client) CAS(ctx context.Context, key string, req api.CASRequest) (api.WriteResult, error) {
	var r api.WriteResult
	b, err := json.Marshal(req)
	if err != nil {
		return r, err
	}
	err = c.do(ctx, http.MethodPost, keyPath(key)+"/cas", b, &r, true)
	return r, err
}

// List lists keys with prefix after the key after, up to limit (0: the
// node's default).
func (c *Client) List(ctx context.Context, prefix, after string, limit int, consistency string) (api.ListResult, error) {
	var r api.ListResult
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if consistency != "" {
		q.Set("consistency", consistency)
	}
	path := "/kv"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if consistency == "local" {
		return r, c.doLocal(ctx, path, &r)
	}
	err := c.do(ctx, http.MethodGet, path, nil, &r, false)
	return r, err
}

// Status returns the status of the first node given that answers.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var r api.Status
	_, err := c.once(ctx, c.given, http.MethodGet, "/status", nil, &r, false)
	return r, err
}

// Cluster returns the cluster as the first node given that answers sees
// it: from its last probe, or, with fresh, from a probe made for this
// request.
func (c *Client) Cluster(ctx context.Context, fresh bool) (api.Cluster, error) {
	var r api.Cluster
	path := "/cluster"
	if fresh {
		path += "?fresh=true"
	}
	_, err := c.once(ctx, c.given, http.MethodGet, path, nil, &r, false)
	return r, err
}

// AddMember asks the cluster to add a node.
func (c *Client) AddMember(ctx context.Context, req api.JoinRequest) (api.MembersResult, error) {
	var r api.MembersResult
	b, err := json.Marshal(req)
	if err != nil {
		return r, err
	}
	err = c.do(ctx, http.MethodPost, "/cluster/members", b, &r, true)
	return r, err
}

// RemoveMember asks the cluster to remove the node id.
func (c *Client) RemoveMember(ctx context.Context, id string) (api.MembersResult, error) {
	var r api.MembersResult
	err := c.do(ctx, http.MethodDelete, "/cluster/members/"+url.PathEscape(id), nil, &r, true)
	return r, err
}
