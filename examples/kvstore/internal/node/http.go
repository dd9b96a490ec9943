package node

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rago-raft/rago/examples/internal/nodedir"
	"github.com/rago-raft/rago/examples/internal/web"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/kv"
	"github.com/rago-raft/rago/raftserver"
)

//go:embed web/index.html
var indexHTML []byte

// List bounds of GET /kv.
const (
	defaultListLimit   = 1000
	defaultRecentLimit = 20
)

// maxJSONOverhead is what a JSON body may hold beyond its values: the
// keys, quotes and escapes of a CAS or membership request.
const maxJSONOverhead = 64 << 10

// routes returns the node's HTTP handler. Routing is by hand rather than
// with ServeMux patterns because keys may contain slashes (list by prefix
// works best with keys like "users/42"), and because every miss must be a
// JSON error with its own code.
func (n *Node) routes() http.Handler {
	return web.Logged(n.log, "X-Kvstore-Node", n.cfg.ID, http.HandlerFunc(n.route))
}

func (n *Node) route(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if !n.authorized(w, r, path) {
		return
	}
	switch {
	case path == "/":
		if !n.allow(w, r, http.MethodGet) {
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(indexHTML)
	case strings.HasPrefix(path, "/debug/pprof/"):
		// Go's profiler, for whoever runs the node: /debug/pprof/ lists
		// the profiles; go tool pprof http://HOST/debug/pprof/profile?seconds=10
		// takes a CPU profile.
		servePprof(w, r, path[len("/debug/pprof/"):])
	case path == "/metrics":
		// rago's and Go's metrics for Prometheus; a read like /status.
		if n.allow(w, r, http.MethodGet) {
			n.metrics.ServeHTTP(w, r)
		}
	case path == "/metrics/summary":
		if n.allow(w, r, http.MethodGet) {
			n.handleMetricsSummary(w, r)
		}
	case path == "/favicon.ico":
		// Browsers ask for it; answer without a 404 in the log.
		w.WriteHeader(http.StatusNoContent)
	case path == "/kv":
		if n.allow(w, r, http.MethodGet) {
			n.handleList(w, r)
		}
	case strings.HasPrefix(path, "/kv/"):
		n.routeKey(w, r, path[len("/kv/"):])
	case path == "/status":
		if n.allow(w, r, http.MethodGet) {
			n.handleStatus(w, r)
		}
	case path == "/cluster":
		if n.allow(w, r, http.MethodGet) {
			n.handleCluster(w, r)
		}
	case path == "/recent":
		if n.allow(w, r, http.MethodGet) {
			n.handleRecent(w, r)
		}
	case path == "/watch":
		if n.allow(w, r, http.MethodGet) {
			n.handleWatch(w, r)
		}
	case path == "/backup":
		if n.allow(w, r, http.MethodGet) {
			n.handleBackup(w, r)
		}
	case path == "/cluster/members":
		if n.allow(w, r, http.MethodPost) {
			n.handleAddMember(w, r)
		}
	case strings.HasPrefix(path, "/cluster/members/"):
		if n.allow(w, r, http.MethodDelete) {
			id, err := url.PathUnescape(path[len("/cluster/members/"):])
			if err != nil {
				n.fail(w, badArg("the node id in the path does not decode: %v", err))
				return
			}
			n.handleRemoveMember(w, r, id)
		}
	default:
		n.fail(w, &api.Error{Status: http.StatusNotFound, Code: api.CodeNoRoute,
			Message: fmt.Sprintf("no endpoint %s; see GET / for the page, /kv, /kv/{key}, /status, /cluster, /watch, /backup, /metrics, /debug/pprof/", r.URL.Path)})
	}
}

// routeKey serves /kv/{key} and /kv/{key}/cas. A key is the rest of the
// path, unescaped, so it may contain slashes; POST always means cas, so a
// key that itself ends in "/cas" is read and written with GET and PUT as
// usual and swapped with POST /kv/{key}/cas/cas.
func (n *Node) routeKey(w http.ResponseWriter, r *http.Request, escaped string) {
	if r.Method == http.MethodPost {
		k, ok := strings.CutSuffix(escaped, "/cas")
		if !ok {
			w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
			n.fail(w, &api.Error{Status: http.StatusMethodNotAllowed, Code: api.CodeMethod,
				Message: "POST works only on /kv/{key}/cas; use PUT to set a key"})
			return
		}
		escaped = k
	}
	key, err := url.PathUnescape(escaped)
	if err != nil {
		n.fail(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidKey, Message: "the key in the path does not decode: " + err.Error()})
		return
	}
	if err := kv.ValidateKey(key); err != nil {
		n.fail(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidKey, Message: err.Error()})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		n.handleGet(w, r, key)
	case http.MethodPut:
		n.handlePut(w, r, key)
	case http.MethodDelete:
		n.handleDelete(w, r, key)
	case http.MethodPost:
		n.handleCAS(w, r, key)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE, POST")
		n.fail(w, &api.Error{Status: http.StatusMethodNotAllowed, Code: api.CodeMethod,
			Message: fmt.Sprintf("%s is not allowed on /kv/{key}: use GET, PUT, DELETE, or POST /kv/{key}/cas", r.Method)})
	}
}

// allow answers 405 unless r uses method (HEAD counts as GET).
func (n *Node) allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method || (method == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	allowed := method
	if method == http.MethodGet {
		allowed = "GET, HEAD"
	}
	w.Header().Set("Allow", allowed)
	n.fail(w, &api.Error{Status: http.StatusMethodNotAllowed, Code: api.CodeMethod,
		Message: fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, allowed)})
	return false
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request, key string) {
	consistency, e := parseConsistency(r.URL.Query().Get("consistency"))
	if e != nil {
		n.fail(w, e)
		return
	}
	a, served, e := n.read(r.Context(), kv.Query{Op: kv.QueryGet, Key: key}, consistency)
	if e != nil {
		n.fail(w, e)
		return
	}
	if a.Entry == nil {
		n.fail(w, &api.Error{Status: http.StatusNotFound, Code: api.CodeKeyNotFound, Message: fmt.Sprintf("no key %q", key)})
		return
	}
	web.AllowCrossOriginReads(w)
	if wantsRaw(r) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Kvstore-Revision", strconv.FormatUint(a.Entry.Revision, 10))
		w.Header().Set("X-Kvstore-Served-By", served)
		_, _ = w.Write(a.Entry.Value)
		return
	}
	web.WriteJSON(w, http.StatusOK, api.GetResult{
		Entry:       api.NewEntry(a.Entry.Key, a.Entry.Value, a.Entry.Revision, a.Entry.Created),
		Consistency: consistency,
		ServedBy:    served,
	})
}

// wantsRaw reports whether the client asked for the value's bytes rather
// than JSON.
func wantsRaw(r *http.Request) bool {
	if v := r.URL.Query().Get("raw"); v == "1" || v == "true" {
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), "application/octet-stream")
}

func (n *Node) handlePut(w http.ResponseWriter, r *http.Request, key string) {
	value, e := n.readBody(w, r, n.cfg.MaxValueBytes, "value (--max-value)")
	if e != nil {
		n.fail(w, e)
		return
	}
	res, leader, e := n.write(r.Context(), kv.Command{Op: kv.OpPut, Key: key, Value: value})
	if e != nil {
		n.fail(w, e)
		return
	}
	web.WriteJSON(w, http.StatusOK, api.WriteResult{Key: key, Revision: res.Revision, Created: res.Created, Leader: leader})
}

func (n *Node) handleDelete(w http.ResponseWriter, r *http.Request, key string) {
	res, leader, e := n.write(r.Context(), kv.Command{Op: kv.OpDelete, Key: key})
	if e != nil {
		n.fail(w, e)
		return
	}
	if res.Status == kv.StatusNotFound {
		n.fail(w, &api.Error{Status: http.StatusNotFound, Code: api.CodeKeyNotFound, Message: fmt.Sprintf("no key %q to delete", key)})
		return
	}
	web.WriteJSON(w, http.StatusOK, api.WriteResult{Key: key, Revision: res.Revision, Deleted: true, Leader: leader})
}

func (n *Node) handleCAS(w http.ResponseWriter, r *http.Request, key string) {
	// Two values and the JSON around them; values heavy in escapes (\"
	// and \u0000 take 2 and 6 bytes) may hit this before --max-value.
	body, e := n.readBody(w, r, 2*n.cfg.MaxValueBytes+maxJSONOverhead, "cas request (twice --max-value plus 64 KiB)")
	if e != nil {
		n.fail(w, e)
		return
	}
	var req api.CASRequest
	if e := decodeJSON(body, &req); e != nil {
		n.fail(w, e)
		return
	}
	cmd := kv.Command{Op: kv.OpCAS, Key: key, Delete: req.Delete}
	conditions := 0
	for _, given := range []bool{len(req.Expected) > 0, req.ExpectedBase64 != nil, req.ExpectedRevision != nil} {
		if given {
			conditions++
		}
	}
	switch {
	case conditions != 1:
		n.fail(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidJSON,
			Message: `give exactly one of "expected" (a string, or null for "must not exist"), "expected_base64" and "expected_revision"`})
		return
	case req.ExpectedRevision != nil:
		cmd.Expect = &kv.Condition{Kind: kv.ExpectRevision, Revision: *req.ExpectedRevision}
	case req.ExpectedBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*req.ExpectedBase64)
		if err != nil {
			n.fail(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidJSON, Message: `"expected_base64" is not base64: ` + err.Error()})
			return
		}
		cmd.Expect = &kv.Condition{Kind: kv.ExpectValue, Value: b}
	case string(req.Expected) == "null":
		cmd.Expect = &kv.Condition{Kind: kv.ExpectAbsent}
	default:
		var s string
		if err := json.Unmarshal(req.Expected, &s); err != nil {
			n.fail(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidJSON, Message: `"expected" must be a string or null`})
			return
		}
		cmd.Expect = &kv.Condition{Kind: kv.ExpectValue, Value: []byte(s)}
	}
	outcomes := 0
	for _, given := range []bool{req.Delete, req.Value != nil, req.ValueBase64 != nil} {
		if given {
			outcomes++
		}
	}
	switch {
	case outcomes != 1:
		n.fail(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidJSON,
			Message: `give exactly one of the new "value" (a string), "value_base64" and "delete": true`})
		return
	case req.Value != nil:
		cmd.Value = []byte(*req.Value)
	case req.ValueBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*req.ValueBase64)
		if err != nil {
			n.fail(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidJSON, Message: `"value_base64" is not base64: ` + err.Error()})
			return
		}
		cmd.Value = b
	}
	if len(cmd.Value) > n.cfg.MaxValueBytes || len(cmd.Expect.Value) > n.cfg.MaxValueBytes {
		n.fail(w, tooLarge("value (--max-value)", n.cfg.MaxValueBytes))
		return
	}
	res, leader, e := n.write(r.Context(), cmd)
	if e != nil {
		n.fail(w, e)
		return
	}
	if res.Status == kv.StatusMismatch {
		e := &api.Error{Status: http.StatusConflict, Code: api.CodeCASMismatch, Message: fmt.Sprintf("key %q does not match the expected state; nothing was written", key)}
		if res.Current != nil {
			c := api.NewEntry(res.Current.Key, res.Current.Value, res.Current.Revision, res.Current.Created)
			e.Current = &c
		}
		n.fail(w, e)
		return
	}
	web.WriteJSON(w, http.StatusOK, api.WriteResult{Key: key, Revision: res.Revision, Created: res.Created, Deleted: req.Delete && res.Revision != 0, Leader: leader})
}

func (n *Node) handleList(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	consistency, e := parseConsistency(qs.Get("consistency"))
	if e != nil {
		n.fail(w, e)
		return
	}
	limit, e := intParam(qs.Get("limit"), defaultListLimit, kv.MaxListItems)
	if e != nil {
		n.fail(w, e)
		return
	}
	q := kv.Query{Op: kv.QueryList, Prefix: qs.Get("prefix"), After: qs.Get("after"), Limit: limit}
	a, served, e := n.read(r.Context(), q, consistency)
	if e != nil {
		n.fail(w, e)
		return
	}
	out := api.ListResult{Items: make([]api.Entry, 0, len(a.Items)), More: a.More, Next: a.Next, Consistency: consistency, ServedBy: served}
	for _, it := range a.Items {
		out.Items = append(out.Items, api.NewEntry(it.Key, it.Value, it.Revision, it.Created))
	}
	out.Count = len(out.Items)
	web.AllowCrossOriginReads(w)
	web.WriteJSON(w, http.StatusOK, out)
}

func (n *Node) handleRecent(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	consistency, e := parseConsistency(qs.Get("consistency"))
	if e != nil {
		n.fail(w, e)
		return
	}
	limit, e := intParam(qs.Get("limit"), defaultRecentLimit, kv.RecentChanges)
	if e != nil {
		n.fail(w, e)
		return
	}
	a, served, e := n.read(r.Context(), kv.Query{Op: kv.QueryRecent, Limit: limit}, consistency)
	if e != nil {
		n.fail(w, e)
		return
	}
	out := api.RecentResult{Items: make([]api.RecentItem, 0, len(a.Recent)), ServedBy: served}
	for _, c := range a.Recent {
		it := api.RecentItem{Key: c.Key, Op: c.Op, Revision: c.Revision, Exists: c.Exists, Truncated: c.Truncated}
		if c.Exists {
			e := api.NewEntry(c.Key, c.Value, 0, 0)
			it.Value, it.Binary = e.Value, e.ValueBase64 != ""
			if it.Binary {
				// A preview cut in the middle of a character is not
				// UTF-8 either; the page shows such values as binary.
				it.Value = e.ValueBase64
			}
		}
		out.Items = append(out.Items, it)
	}
	web.AllowCrossOriginReads(w)
	web.WriteJSON(w, http.StatusOK, out)
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	st, err := n.memberStatus(ctx, n.self, n.directory(ctx))
	if err != nil {
		st.Error = err.Error()
		running, lerr := n.memberRunning()
		st.Member = running
		if lerr != nil {
			st.Error += "; " + lerr.Error()
		}
	}
	st.HTTP = n.httpURL
	st.UptimeSeconds = time.Since(n.started).Seconds()
	st.RaftAuth = n.cfg.raftAuth()
	stats := n.sys.Node().Stats()
	st.RefusedConnections, st.FailedHandshakes = stats.RefusedConnections, stats.FailedHandshakes
	st.APIToken = n.token.Set()
	web.AllowCrossOriginReads(w)
	web.WriteJSON(w, http.StatusOK, st)
}

func (n *Node) handleCluster(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Query().Get("fresh") {
	case "", "false", "0":
	case "true", "1":
		// Probe now rather than answer from the last probe, which may be
		// up to a probe interval old.
		n.watch.probe(r.Context())
	default:
		n.fail(w, badArg("fresh must be true or false"))
		return
	}
	web.AllowCrossOriginReads(w)
	web.WriteJSON(w, http.StatusOK, n.watch.snapshot())
}

func (n *Node) handleAddMember(w http.ResponseWriter, r *http.Request) {
	body, e := n.readBody(w, r, maxJSONOverhead, "join request")
	if e != nil {
		n.fail(w, e)
		return
	}
	var req api.JoinRequest
	if e := decodeJSON(body, &req); e != nil {
		n.fail(w, e)
		return
	}
	if err := kv.ValidateNodeID(req.ID); err != nil {
		n.fail(w, badArg("%v", err))
		return
	}
	if err := nodedir.CheckAddress(req.Raft); err != nil {
		n.fail(w, badArg("raft: %v", err))
		return
	}
	if u, err := url.Parse(req.HTTP); req.HTTP != "" && (err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https")) {
		n.fail(w, badArg("http %q is not an http:// URL", req.HTTP))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	st, err := n.sys.Overview(ctx, n.self)
	if err != nil {
		n.fail(w, n.raftError(err, false))
		return
	}
	id := raftserver.ServerID{Name: req.ID, Node: req.Raft}
	for _, m := range slices.Concat(st.Voters, st.NonVoters) {
		if m.Name == req.ID && m != id {
			n.fail(w, &api.Error{Status: http.StatusConflict, Code: api.CodeMembership,
				Message: fmt.Sprintf("a member named %s already exists at %s; remove it first", m.Name, m.Node)})
			return
		}
	}
	changed := !slices.Contains(st.Voters, id)
	voters := slices.Clone(st.Voters)
	if bound := st.Incarnations[id]; bound != 0 {
		// A member of that name exists: if its replica is not the one the
		// configuration binds (it lost its data and started again), it
		// comes back as a new incarnation.
		if js, err := n.sys.Overview(ctx, id); err == nil && js.Incarnation != bound {
			changed = true
		}
	}
	if changed {
		add, actx := n.sys.AddMember, ctx
		if slices.Contains(slices.Concat(st.Voters, st.NonVoters), id) {
			// Rejoin waits for the new replica to catch up.
			var cancel context.CancelFunc
			add = n.sys.Rejoin
			actx, cancel = context.WithTimeout(r.Context(), max(n.cfg.RequestTimeout, time.Minute))
			defer cancel()
		}
		if _, err := add(actx, n.self, id); err != nil {
			n.fail(w, n.raftError(err, true))
			return
		}
		if !slices.Contains(voters, id) {
			voters = append(voters, id)
		}
		n.log.Info("member added", "member", id.String())
	}
	if req.HTTP != "" {
		info := kv.NodeInfo{ID: req.ID, Raft: req.Raft, HTTP: req.HTTP}
		if _, _, err := n.client.Process(ctx, n.self, kv.Command{Op: kv.OpSetNode, Node: &info}); err != nil {
			// The member is in; only its web address is missing, and the
			// node records it itself once it runs.
			n.log.Warn("member added but its HTTP address not recorded", "member", id.String(), "err", err)
		}
	}
	web.WriteJSON(w, http.StatusOK, api.MembersResult{Changed: changed, Members: n.nodeList(ctx, voters, st.NonVoters)})
}

func (n *Node) handleRemoveMember(w http.ResponseWriter, r *http.Request, idText string) {
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	st, err := n.sys.Overview(ctx, n.self)
	if err != nil {
		n.fail(w, n.raftError(err, false))
		return
	}
	var target raftserver.ServerID
	all := slices.Concat(st.Voters, st.NonVoters)
	for _, m := range all {
		if m.Name == idText {
			target = m
		}
	}
	if target.IsZero() {
		n.fail(w, &api.Error{Status: http.StatusNotFound, Code: api.CodeNodeNotFound,
			Message: fmt.Sprintf("%s is not a member; the members are %v", idText, memberIDs(all))})
		return
	}
	if _, err := n.sys.RemoveMember(ctx, n.self, target); err != nil {
		n.fail(w, n.raftError(err, true))
		return
	}
	n.log.Info("member removed", "member", target.String())
	if _, _, err := n.client.Process(ctx, n.self, kv.Command{Op: kv.OpForgetNode, Node: &kv.NodeInfo{ID: target.Name}}); err != nil {
		n.log.Warn("member removed but its directory entry kept", "member", target.String(), "err", err)
	}
	// A removed member stops once it has applied its removal, but keeps
	// its data, and one that was down or cut off may never hear of it.
	// Delete it on its node: its node then answers not_member, and can
	// join again.
	deleted := true
	if err := n.sys.ForceDeleteServer(ctx, target); err != nil {
		deleted = false
		n.log.Warn("member removed but its replica not deleted (is its node down?); delete its data before starting it again",
			"member", target.String(), "err", err)
	}
	var voters, nonVoters []raftserver.ServerID
	for _, m := range st.Voters {
		if m != target {
			voters = append(voters, m)
		}
	}
	for _, m := range st.NonVoters {
		if m != target {
			nonVoters = append(nonVoters, m)
		}
	}
	web.WriteJSON(w, http.StatusOK, api.MembersResult{Changed: true, Members: n.nodeList(ctx, voters, nonVoters), ReplicaDeleted: deleted})
}

func (n *Node) nodeList(ctx context.Context, voters, nonVoters []raftserver.ServerID) []api.Node {
	dir := n.directory(ctx)
	out := []api.Node{}
	for _, v := range voters {
		out = append(out, api.Node{ID: v.Name, Raft: v.Node, HTTP: dir[v.Name].HTTP, Voter: true})
	}
	for _, v := range nonVoters {
		out = append(out, api.Node{ID: v.Name, Raft: v.Node, HTTP: dir[v.Name].HTTP})
	}
	return out
}

// readBody reads a request body of at most limit bytes; what names it in
// the 413 message.
func (n *Node) readBody(w http.ResponseWriter, r *http.Request, limit int, what string) ([]byte, *api.Error) {
	if r.ContentLength > int64(limit) {
		return nil, tooLarge(what, limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, tooLarge(what, limit)
	case err != nil:
		return nil, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidArgument, Message: "reading the body: " + err.Error()}
	}
	return b, nil
}

func tooLarge(what string, limit int) *api.Error {
	return &api.Error{Status: http.StatusRequestEntityTooLarge, Code: api.CodeTooLarge,
		Message: fmt.Sprintf("the %s is larger than this node's limit of %d bytes; nothing was written", what, limit)}
}

// decodeJSON decodes exactly one JSON object with known fields.
func decodeJSON(b []byte, v any) *api.Error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidJSON, Message: "the body is not the JSON expected: " + jsonProblem(err)}
	}
	if dec.More() {
		return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidJSON, Message: "the body holds more than one JSON value"}
	}
	return nil
}

// jsonProblem says what is wrong with a request body in the API's terms:
// encoding/json's own messages name Go types (api.CASRequest, int64),
// which mean nothing to a client.
func jsonProblem(err error) string {
	var typ *json.UnmarshalTypeError
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &typ):
		want := "a " + typ.Type.Kind().String()
		switch typ.Type.Kind().String() {
		case "int", "int64", "uint64", "float64":
			want = "a number"
		case "struct", "map":
			want = "an object"
		case "slice":
			want = "an array"
		}
		if typ.Field == "" {
			return fmt.Sprintf("the body must be %s, not %s", want, typ.Value)
		}
		return fmt.Sprintf("%q must be %s, not %s", typ.Field, want, typ.Value)
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d (%s)", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.Is(err, io.EOF):
		return "the body is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends in the middle of its JSON"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func intParam(s string, def, max int) (int, *api.Error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > max {
		return 0, badArg("limit must be a number from 1 to %d, not %q", max, s)
	}
	return v, nil
}

func (n *Node) fail(w http.ResponseWriter, e *api.Error) {
	e.Node = n.cfg.ID
	if e.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	web.WriteJSON(w, e.Status, e)
}

// servePprof answers /debug/pprof/NAME with net/http/pprof.
func servePprof(w http.ResponseWriter, r *http.Request, name string) {
	switch name {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r) // the list, and the named profiles (heap, goroutine...)
	}
}
