package node

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rago-raft/rago/examples/fleet/internal/shard"
	"github.com/rago-raft/rago/examples/internal/creds"
	"github.com/rago-raft/rago/examples/internal/nodedir"
	"github.com/rago-raft/rago/examples/internal/web"
	"github.com/rago-raft/rago/fleet"
	"github.com/rago-raft/rago/raftserver"
)

//go:embed web/index.html
var indexHTML []byte

// Error is the body of every answer that is not a success.
type Error struct {
	Status int    `json:"-"`
	Code   string `json:"code"`
	// Message says what happened and what to do, in words.
	Message string `json:"message"`
	Node    string `json:"node"`
	// OutcomeUnknown: a write that may or may not have been applied.
	OutcomeUnknown    bool `json:"outcome_unknown,omitempty"`
	RetryAfterSeconds int  `json:"retry_after_seconds,omitempty"`
}

// The codes of Error.
const (
	CodeNoRoute      = "no_route"
	CodeMethod       = "method_not_allowed"
	CodeInvalidKey   = "invalid_key"
	CodeInvalidArg   = "invalid_argument"
	CodeTooLarge     = "too_large"
	CodeKeyNotFound  = "key_not_found"
	CodeNotReady     = "not_ready"
	CodeNoLeader     = "no_leader"
	CodeTimeout      = "timeout"
	CodeShuttingDown = "shutting_down"
	CodeUnauthorized = "unauthorized"
	CodeUnknownNode  = "unknown_node"
	CodeInternal     = "internal"
)

// WriteResult answers PUT and DELETE /kv/{key}.
type WriteResult struct {
	Key      string `json:"key"`
	Shard    string `json:"shard"`
	Revision uint64 `json:"revision"`
	Created  bool   `json:"created,omitempty"`
	Deleted  bool   `json:"deleted,omitempty"`
}

// GetResult answers GET /kv/{key}. Value holds a UTF-8 value; other
// values come in ValueBase64.
type GetResult struct {
	Key         string `json:"key"`
	Shard       string `json:"shard"`
	Value       string `json:"value,omitempty"`
	ValueBase64 []byte `json:"value_base64,omitempty"`
	Revision    uint64 `json:"revision"`
	Consistency string `json:"consistency"`
}

func (n *Node) routes() http.Handler {
	return web.Logged(n.log, "X-Fleetkv-Node", n.cfg.ID, http.HandlerFunc(n.route))
}

func (n *Node) route(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if !n.authorized(w, r) {
		return
	}
	switch {
	case path == "/":
		if n.allow(w, r, http.MethodGet) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			_, _ = w.Write(indexHTML)
		}
	case path == "/favicon.ico":
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(path, "/kv/"):
		n.routeKey(w, r, path[len("/kv/"):])
	case path == "/status":
		if n.allow(w, r, http.MethodGet) {
			web.AllowCrossOriginReads(w)
			web.WriteJSON(w, http.StatusOK, n.status(r.Context()))
		}
	case path == "/placement":
		if n.allow(w, r, http.MethodGet) {
			n.handlePlacement(w, r)
		}
	case path == "/replicas":
		if n.allow(w, r, http.MethodGet) {
			web.AllowCrossOriginReads(w)
			web.WriteJSON(w, http.StatusOK, n.replicas())
		}
	case path == "/metrics":
		if n.allow(w, r, http.MethodGet) {
			n.metrics.ServeHTTP(w, r)
		}
	case path == "/activate":
		if n.allow(w, r, http.MethodPost) {
			n.handleActivate(w, r)
		}
	case path == "/deactivate":
		if n.allow(w, r, http.MethodPost) {
			n.handleDeactivate(w, r)
		}
	default:
		n.fail(w, &Error{Status: http.StatusNotFound, Code: CodeNoRoute,
			Message: fmt.Sprintf("no endpoint %s; see / for the page, /kv/{key}, /status, /placement, /replicas, /metrics, POST /activate, POST /deactivate", r.URL.Path)})
	}
}

// authorized lets every request through when the node has no token, and
// plain reads always; anything else needs the token (401 without).
func (n *Node) authorized(w http.ResponseWriter, r *http.Request) bool {
	if !n.token.Set() || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	ok, given := n.token.Check(r.Header.Get("Authorization"))
	if ok {
		return true
	}
	msg := "this node needs an API token for writes: send the header 'Authorization: Bearer TOKEN' (--api-token-file)"
	if given {
		msg = "the API token does not match this node's (--api-token-file)"
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="fleetkv"`)
	n.fail(w, &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: msg})
	return false
}

// allow answers 405 unless r uses method (HEAD counts as GET).
func (n *Node) allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	w.Header().Set("Allow", method)
	n.fail(w, &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethod,
		Message: fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, method)})
	return false
}

// routeKey serves /kv/{key}; the key is the rest of the path, unescaped,
// so it may hold slashes.
func (n *Node) routeKey(w http.ResponseWriter, r *http.Request, escaped string) {
	key, err := url.PathUnescape(escaped)
	if err == nil {
		err = shard.ValidateKey(key)
	}
	if err != nil {
		n.fail(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidKey, Message: "the key: " + err.Error()})
		return
	}
	group := shard.Name(shard.Of(key, n.cfg.Shards))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		n.handleGet(w, r, key, group)
	case http.MethodPut:
		n.handlePut(w, r, key, group)
	case http.MethodDelete:
		n.handleDelete(w, r, key, group)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
		n.fail(w, &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethod,
			Message: fmt.Sprintf("%s is not allowed on /kv/{key}: use GET, PUT or DELETE", r.Method)})
	}
}

// Consistency levels of a read, and the query kind each runs as.
var consistencies = map[string]raftserver.QueryKind{
	"linearizable": raftserver.QueryConsistent,
	"leader":       raftserver.QueryLeader,
	"local":        raftserver.QueryLocal,
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request, key, group string) {
	consistency := r.URL.Query().Get("consistency")
	if consistency == "" {
		consistency = "linearizable"
	}
	kind, ok := consistencies[consistency]
	if !ok {
		n.fail(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidArg, Message: fmt.Sprintf("consistency must be linearizable, leader or local, not %q", consistency)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	a, err := n.query(ctx, group, shard.Query{Op: shard.OpGet, Key: key}, kind)
	if err != nil {
		n.fail(w, n.fleetError(err, false))
		return
	}
	if !a.Found {
		n.fail(w, &Error{Status: http.StatusNotFound, Code: CodeKeyNotFound, Message: fmt.Sprintf("no key %q (shard %s)", key, group)})
		return
	}
	web.AllowCrossOriginReads(w)
	if v := r.URL.Query().Get("raw"); v == "1" || v == "true" {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Fleetkv-Revision", strconv.FormatUint(a.Revision, 10))
		_, _ = w.Write(a.Value)
		return
	}
	res := GetResult{Key: key, Shard: group, Revision: a.Revision, Consistency: consistency}
	if utf8.Valid(a.Value) {
		res.Value = string(a.Value)
	} else {
		res.ValueBase64 = a.Value
	}
	web.WriteJSON(w, http.StatusOK, res)
}

func (n *Node) handlePut(w http.ResponseWriter, r *http.Request, key, group string) {
	if r.ContentLength > int64(n.cfg.MaxValueBytes) {
		n.fail(w, n.tooLarge())
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(n.cfg.MaxValueBytes)))
	if _, big := errors.AsType[*http.MaxBytesError](err); big {
		n.fail(w, n.tooLarge())
		return
	} else if err != nil {
		n.fail(w, &Error{Status: http.StatusBadRequest, Code: CodeInvalidArg, Message: "reading the body: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	res, err := n.process(ctx, group, shard.Command{Op: shard.OpPut, Key: key, Value: value})
	if err != nil {
		n.fail(w, n.fleetError(err, true))
		return
	}
	web.WriteJSON(w, http.StatusOK, WriteResult{Key: key, Shard: group, Revision: res.Revision, Created: res.Created})
}

func (n *Node) handleDelete(w http.ResponseWriter, r *http.Request, key, group string) {
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	res, err := n.process(ctx, group, shard.Command{Op: shard.OpDelete, Key: key})
	if err != nil {
		n.fail(w, n.fleetError(err, true))
		return
	}
	if !res.Found {
		n.fail(w, &Error{Status: http.StatusNotFound, Code: CodeKeyNotFound, Message: fmt.Sprintf("no key %q to delete (shard %s)", key, group)})
		return
	}
	web.WriteJSON(w, http.StatusOK, WriteResult{Key: key, Shard: group, Revision: res.Revision, Deleted: true})
}

func (n *Node) tooLarge() *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge,
		Message: fmt.Sprintf("the value is larger than this node's limit of %d bytes; nothing was written", n.cfg.MaxValueBytes)}
}

// retryAfterSeconds is what a 503 asks the client to wait: about one
// election.
const retryAfterSeconds = 1

// fleetError maps an error of the fleet client to the HTTP error the
// client sees. write says whether the request was a command, whose
// outcome is unknown after a timeout.
func (n *Node) fleetError(err error, write bool) *Error {
	unavailable := func(code, msg string) *Error {
		return &Error{Status: http.StatusServiceUnavailable, Code: code, Message: msg, RetryAfterSeconds: retryAfterSeconds}
	}
	switch {
	case errors.Is(err, fleet.ErrNoSuchGroup):
		return unavailable(CodeNotReady, "the shard is not in the fleet's books yet (the nodes are still adding the shards); nothing was written: "+err.Error())
	case errors.Is(err, shard.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidArg, Message: err.Error()}
	case errors.Is(err, raftserver.ErrTimeout), errors.Is(err, raftserver.ErrLeadershipLost),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e := &Error{Status: http.StatusGatewayTimeout, Code: CodeTimeout}
		if write {
			e.OutcomeUnknown = true
			e.Message = "no answer in time: the write may have been applied, or may still be; read the key before you retry (" + err.Error() + ")"
		} else {
			e.Message = "no answer in time; a read changes nothing, so it is safe to retry (" + err.Error() + ")"
		}
		return e
	case errors.Is(err, raftserver.ErrNoLeader), errors.Is(err, raftserver.ErrNotLeader),
		errors.Is(err, raftserver.ErrUnreachable), errors.Is(err, raftserver.ErrNoSuchServer):
		return unavailable(CodeNoLeader, "the shard has no reachable leader right now (an election, or members moving); nothing was written: "+err.Error())
	case errors.Is(err, raftserver.ErrShuttingDown):
		if n.stopCtx.Err() != nil {
			return unavailable(CodeShuttingDown, "the node is shutting down")
		}
		return unavailable(CodeNoLeader, "the shard's leader was stopping and did not take the request; nothing was written: "+err.Error())
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
}

// Status is GET /status: this node, its view of the books and its
// reconciler.
type Status struct {
	ID       string `json:"id"`
	Raft     string `json:"raft"`
	HTTP     string `json:"http"`
	Zone     string `json:"zone"`
	RaftAuth string `json:"raft_auth"`
	APIToken bool   `json:"api_token"`
	// Ready: the node joined placement, the shards are in the books and
	// the node is in the directory. SetupError is why not yet.
	Ready      bool    `json:"ready"`
	SetupError string  `json:"setup_error,omitempty"`
	Uptime     float64 `json:"uptime_seconds"`
	Shards     int     `json:"shards"`
	// State is this node's state in the books ("" before it activated).
	State string `json:"state"`
	// Books summarises the books as this node last read them.
	Books BooksSummary `json:"books"`
	// Replicas and Leaders count the replicas of groups running on this
	// node (the books' member of a seed aside), and those that lead. A
	// replica removed from its group may run on until its node deletes
	// it, so Replicas can exceed the node's members in /placement.
	Replicas   int            `json:"replicas"`
	Leaders    int            `json:"leaders"`
	Reconciler ReconcilerView `json:"reconciler"`
}

// BooksSummary counts what the books hold.
type BooksSummary struct {
	Version     uint64 `json:"version"`
	Nodes       int    `json:"nodes"`
	ActiveNodes int    `json:"active_nodes"`
	Groups      int    `json:"groups"`
	Born        int    `json:"born"`
}

// ReconcilerView is fleet.Status in the API's JSON.
type ReconcilerView struct {
	Owned     int        `json:"owned"`
	Converged int        `json:"converged"`
	InFlight  []MoveView `json:"in_flight"`
	Done      uint64     `json:"done"`
	Failed    uint64     `json:"failed"`
	LastError string     `json:"last_error,omitempty"`
	Surveyed  int64      `json:"surveyed_ms,omitempty"`
}

// MoveView is one change a reconciler has in flight.
type MoveView struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
	Node  string `json:"node"`
	// By is the node whose reconciler runs it.
	By string `json:"by,omitempty"`
}

func (n *Node) status(ctx context.Context) Status {
	n.mu.Lock()
	st := Status{Ready: n.ready, SetupError: n.setupErr}
	n.mu.Unlock()
	st.ID, st.Raft, st.HTTP, st.Zone = n.cfg.ID, n.sys.Name(), n.httpURL, n.cfg.Zone
	st.RaftAuth, st.APIToken = creds.RaftAuth(n.cfg.ClusterSecret, n.cfg.TLS), n.token.Set()
	st.Uptime = time.Since(n.started).Seconds()
	st.Shards = n.cfg.Shards
	if b := n.agent.CachedBooks(); b != nil {
		st.Books = summarize(b)
		if me := b.Nodes[n.sys.Name()]; me != nil {
			st.State = string(me.State)
		}
	}
	for _, m := range n.sys.Metrics().Servers {
		if !m.Running || m.Cluster == fleet.BooksCluster {
			continue
		}
		st.Replicas++
		if m.Role == "leader" {
			st.Leaders++
		}
	}
	st.Reconciler = reconcilerView(n.agent.Status())
	return st
}

// Replicas is GET /replicas: the replicas of groups running on this node
// now, one by one, as the node's system knows them (the books' member of
// a seed aside). /placement says what each group's leader counts as its
// members; this says which of them exist, so that a test can check that
// every voter a leader counts is a replica that runs.
type Replicas struct {
	ID       string        `json:"id"`
	Raft     string        `json:"raft"`
	Replicas []ReplicaView `json:"replicas"`
}

// ReplicaView is one running replica: its group, and its role and term as
// it last published them.
type ReplicaView struct {
	Group string `json:"group"`
	Role  string `json:"role"`
	Term  uint64 `json:"term"`
}

func (n *Node) replicas() Replicas {
	out := Replicas{ID: n.cfg.ID, Raft: n.sys.Name(), Replicas: []ReplicaView{}}
	for _, m := range n.sys.Metrics().Servers {
		if !m.Running || m.Cluster == fleet.BooksCluster {
			continue
		}
		out.Replicas = append(out.Replicas, ReplicaView{Group: m.Cluster, Role: m.Role, Term: m.Term})
	}
	return out
}

func summarize(b *fleet.Books) BooksSummary {
	s := BooksSummary{Version: b.Version, Nodes: len(b.Nodes), ActiveNodes: len(b.ActiveNodes()), Groups: len(b.Groups)}
	for _, g := range b.Groups {
		if g.Born {
			s.Born++
		}
	}
	return s
}

func reconcilerView(s fleet.Status) ReconcilerView {
	v := ReconcilerView{Owned: s.Owned, Converged: s.Converged, Done: s.Done, Failed: s.Failed, LastError: s.LastError, InFlight: []MoveView{}}
	if !s.Surveyed.IsZero() {
		v.Surveyed = s.Surveyed.UnixMilli()
	}
	for _, c := range s.InFlight {
		v.InFlight = append(v.InFlight, MoveView{Group: c.Group, Kind: string(c.Kind), Node: c.Node, By: s.Node})
	}
	return v
}

// handleActivate serves POST /activate: this node joins placement (again).
func (n *Node) handleActivate(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	if err := n.agent.Activate(ctx); err != nil {
		n.fail(w, n.fleetError(err, true))
		return
	}
	n.log.Info("activated: this node takes members again")
	web.WriteJSON(w, http.StatusOK, map[string]string{"node": n.sys.Name(), "state": string(fleet.NodeActive)})
}

// handleDeactivate serves POST /deactivate?node=ID: the node (this one
// without the parameter; an id or a Raft address) hands its members over
// and takes no new ones.
func (n *Node) handleDeactivate(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	target := r.URL.Query().Get("node")
	name, e := n.resolveNode(ctx, target)
	if e != nil {
		n.fail(w, e)
		return
	}
	if err := n.agent.Deactivate(ctx, name); err != nil {
		if errors.Is(err, fleet.ErrUnknownNode) {
			n.fail(w, &Error{Status: http.StatusNotFound, Code: CodeUnknownNode, Message: err.Error()})
			return
		}
		n.fail(w, n.fleetError(err, true))
		return
	}
	n.log.Info("deactivated a node: its members move away", "target", name)
	web.WriteJSON(w, http.StatusOK, map[string]string{"node": name, "state": string(fleet.NodeDeactivating)})
}

// resolveNode turns an id or a Raft address into the node's name in the
// books ("" is this node).
func (n *Node) resolveNode(ctx context.Context, target string) (string, *Error) {
	switch target {
	case "", n.cfg.ID, n.sys.Name():
		return n.sys.Name(), nil
	}
	if nodedir.CheckAddress(target) == nil {
		return target, nil
	}
	dir, err := n.directory(ctx)
	if err != nil {
		return "", n.fleetError(err, false)
	}
	for name, e := range dir {
		if e.ID == target {
			return name, nil
		}
	}
	return "", &Error{Status: http.StatusNotFound, Code: CodeUnknownNode, Message: fmt.Sprintf("no node %q in the directory; give its id or Raft address", target)}
}

func (n *Node) fail(w http.ResponseWriter, e *Error) {
	e.Node = n.cfg.ID
	if e.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	web.WriteJSON(w, e.Status, e)
}
