// Package api holds the JSON documents of the kvstore HTTP API, shared by
// the node that serves them and the client that reads them. The README of
// the example documents each one; the field names are the API.
package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Error codes of an Error. They are stable: clients switch on them.
const (
	CodeInvalidJSON     = "invalid_json"     // 400: the body is not the JSON document expected
	CodeInvalidKey      = "invalid_key"      // 400: empty, too long, not UTF-8, control characters
	CodeInvalidArgument = "invalid_argument" // 400: a bad query parameter or field
	CodeKeyNotFound     = "key_not_found"    // 404
	CodeNodeNotFound    = "node_not_found"   // 404: DELETE /cluster/members/{id} of a non-member
	CodeNoRoute         = "no_route"         // 404: no such endpoint
	CodeUnauthorized    = "unauthorized"     // 401: a write or admin request without the node's API token
	CodeCompacted       = "compacted"        // 410: a watch's revision is older than the history kept
	CodeMethod          = "method_not_allowed"
	CodeCASMismatch     = "cas_mismatch"        // 409
	CodeMembership      = "membership_conflict" // 409: another change in progress
	CodeTooLarge        = "value_too_large"     // 413
	CodeNoLeader        = "no_leader"           // 503
	CodeNoQuorum        = "no_quorum"           // 503
	CodeNotMember       = "not_member"          // 503: this node runs no member of the cluster
	CodeShuttingDown    = "shutting_down"       // 503
	CodeTimeout         = "timeout"             // 504
	CodeInternal        = "internal"            // 500
)

// Error is the body of every response with a status of 400 or more.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// OutcomeUnknown is set on a 504 for a write: it may have been applied,
	// or may still be. Read the key before writing it again.
	OutcomeUnknown bool `json:"outcome_unknown,omitempty"`
	// RetryAfterSeconds repeats the Retry-After header of a 503.
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
	// Current is the key as it is now, on a 409 cas_mismatch (absent: nil).
	Current *Entry `json:"current,omitempty"`
	// Node is the node that answered.
	Node string `json:"node,omitempty"`
	// Since is set on a 410 compacted: the oldest revision a watch can
	// start from now.
	Since uint64 `json:"since,omitempty"`
	// Status is the HTTP status; it is not part of the body.
	Status int `json:"-"`
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	if e.OutcomeUnknown {
		s += " (outcome unknown)"
	}
	return s
}

// Entry is a key with its value.
type Entry struct {
	Key string `json:"key"`
	// Value is the value when it is valid UTF-8; ValueBase64 otherwise.
	Value       string `json:"value,omitempty"`
	ValueBase64 string `json:"value_base64,omitempty"`
	// Revision is the log index of the key's last change; Created the
	// log index at which it was created.
	Revision uint64 `json:"revision"`
	Created  uint64 `json:"created,omitempty"`
}

// NewEntry builds an Entry, choosing the value's form.
func NewEntry(key string, value []byte, revision, created uint64) Entry {
	e := Entry{Key: key, Revision: revision, Created: created}
	if utf8.Valid(value) {
		e.Value = string(value)
	} else {
		e.ValueBase64 = base64.StdEncoding.EncodeToString(value)
	}
	return e
}

// Bytes returns the value as stored.
func (e Entry) Bytes() ([]byte, error) {
	if e.ValueBase64 != "" {
		return base64.StdEncoding.DecodeString(e.ValueBase64)
	}
	return []byte(e.Value), nil
}

// WatchEvent is one line of GET /watch: a change of a key (Op "put" with
// the value written, or "delete"), or, as the last line of a stream that
// ends in error, Error.
type WatchEvent struct {
	Revision    uint64 `json:"revision,omitempty"`
	Key         string `json:"key,omitempty"`
	Op          string `json:"op,omitempty"`
	Value       string `json:"value,omitempty"`
	ValueBase64 string `json:"value_base64,omitempty"`
	Error       *Error `json:"error,omitempty"`
}

// GetResult answers GET /kv/{key}.
type GetResult struct {
	Entry
	Consistency string `json:"consistency"`
	// ServedBy is the member whose machine answered: the leader for
	// linearizable and leader reads, this node for local ones.
	ServedBy string `json:"served_by"`
}

// WriteResult answers PUT /kv/{key}, DELETE /kv/{key} and a successful
// POST /kv/{key}/cas.
type WriteResult struct {
	Key string `json:"key"`
	// Revision is the log index of the change (for a delete: of the key's
	// last change before it).
	Revision uint64 `json:"revision"`
	Created  bool   `json:"created,omitempty"`
	Deleted  bool   `json:"deleted,omitempty"`
	// Leader is the member that applied the write.
	Leader string `json:"leader"`
}

// CASRequest is the body of POST /kv/{key}/cas. Give exactly one of
// Expected (a JSON string: the current value must equal it; JSON null: the
// key must not exist), ExpectedBase64 (the current value, base64-encoded,
// for values that are not text) and ExpectedRevision (0: the key must not
// exist). Then one of Value, ValueBase64 and Delete.
type CASRequest struct {
	Expected         json.RawMessage `json:"expected,omitempty"`
	ExpectedBase64   *string         `json:"expected_base64,omitempty"`
	ExpectedRevision *uint64         `json:"expected_revision,omitempty"`
	Value            *string         `json:"value,omitempty"`
	ValueBase64      *string         `json:"value_base64,omitempty"`
	Delete           bool            `json:"delete,omitempty"`
}

// ListResult answers GET /kv.
type ListResult struct {
	Items []Entry `json:"items"`
	Count int     `json:"count"`
	// More says that more keys with the prefix follow; ask again with
	// after=Next.
	More        bool   `json:"more"`
	Next        string `json:"next,omitempty"`
	Consistency string `json:"consistency"`
	ServedBy    string `json:"served_by"`
}

// RecentItem is one row of GET /recent: a change and the key's current
// value (a preview of its first bytes).
type RecentItem struct {
	Key       string `json:"key"`
	Op        string `json:"op"`
	Revision  uint64 `json:"revision"`
	Exists    bool   `json:"exists"`
	Value     string `json:"value,omitempty"`
	Binary    bool   `json:"binary,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// RecentResult answers GET /recent.
type RecentResult struct {
	Items    []RecentItem `json:"items"`
	ServedBy string       `json:"served_by"`
}

// Node is a node as the cluster's directory knows it.
type Node struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	HTTP string `json:"http,omitempty"`
	// Voter is false for a member that receives the log without voting.
	Voter bool `json:"voter"`
	// Bound (in GET /status) says that the answering member's
	// configuration binds this member to one replica: a replica of it
	// that lost its data is then recognized and not counted as this one.
	Bound bool `json:"bound,omitempty"`
}

// Status answers GET /status: one node's view of itself.
type Status struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
	// Member is false when the node runs no member of the cluster (it was
	// removed, or has not been added yet).
	Member      bool   `json:"member"`
	Role        string `json:"role,omitempty"`
	Term        uint64 `json:"term"`
	Leader      string `json:"leader,omitempty"`
	LeaderHTTP  string `json:"leader_http,omitempty"`
	CommitIndex uint64 `json:"commit_index"`
	LastApplied uint64 `json:"last_applied"`
	FirstIndex  uint64 `json:"first_index"`
	LastIndex   uint64 `json:"last_index"`
	// SnapshotIndex is the index of the member's newest snapshot (0: none
	// yet): the log before FirstIndex is covered by it.
	SnapshotIndex uint64 `json:"snapshot_index"`
	Members       []Node `json:"members"`
	Keys          int    `json:"keys"`
	// RecentKeys are the keys of this member's latest changes, newest
	// first, as its own machine has applied them.
	RecentKeys []string `json:"recent_keys"`
	// Stale says that the cluster's configuration, as this member holds
	// it, names an earlier replica of this node (its data was lost or
	// replaced): it neither votes nor stands until it has rejoined.
	// Strangers are members heard from as another replica than the one
	// the configuration names.
	Stale         bool     `json:"stale,omitempty"`
	Strangers     []string `json:"strangers,omitempty"`
	UptimeSeconds float64  `json:"uptime_seconds"`
	Error         string   `json:"error,omitempty"`
	// RaftAuth says how the answering node authenticates its Raft
	// connections: "tls", "secret", "tls+secret" or "none" (--insecure).
	// Only GET /status fills it and the two counters below, which count
	// the connections its Raft port refused (peers without the right
	// credentials) and the handshakes it failed when dialling.
	RaftAuth           string `json:"raft_auth,omitempty"`
	RefusedConnections uint64 `json:"refused_connections,omitempty"`
	FailedHandshakes   uint64 `json:"failed_handshakes,omitempty"`
	// APIToken says that writes and admin endpoints of the answering
	// node need its API token (GET /status only).
	APIToken bool `json:"api_token,omitempty"`
}

// MemberView is one member in GET /cluster, as the answering node sees it.
// Every member of the configuration is listed with Member true. For one
// that did not answer the last probe (Reachable false) the status fields
// are those of its last answer (see LastSeen), or empty if it never
// answered.
type MemberView struct {
	Status
	// Reachable says the answering node got this member's status in its
	// last probe; Error says why not.
	Reachable bool `json:"reachable"`
	// LastSeen is when the member last answered (RFC 3339), empty if never.
	LastSeen string `json:"last_seen,omitempty"`
	// Behind is how many committed entries the member has yet to apply,
	// measured against the leader's commit index.
	Behind uint64 `json:"behind"`
	// RejoinedSeconds is how long ago the member became reachable again
	// after being unreachable; absent when it never was away.
	RejoinedSeconds *float64 `json:"rejoined_seconds,omitempty"`
}

// Cluster answers GET /cluster.
type Cluster struct {
	ObservedBy string       `json:"observed_by"`
	Leader     string       `json:"leader,omitempty"`
	LeaderHTTP string       `json:"leader_http,omitempty"`
	Members    []MemberView `json:"members"`
	// Voters is how many voting members the cluster has, Quorum how many
	// of them must be reachable for writes, Reachable how many the
	// observer reached in its last probe.
	Voters    int `json:"voters"`
	Quorum    int `json:"quorum"`
	Reachable int `json:"reachable"`
	// AgeSeconds is the age of the probe the view comes from.
	AgeSeconds float64 `json:"age_seconds"`
}

// JoinRequest is the body of POST /cluster/members.
type JoinRequest struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
}

// MembersResult answers POST and DELETE on /cluster/members.
type MembersResult struct {
	// Changed is false when the request found the membership already as
	// asked (the node was already a member).
	Changed bool   `json:"changed"`
	Members []Node `json:"members"`
	// ReplicaDeleted says, for a removal, that the removed member's
	// replica was deleted on its node. When false (its node was down),
	// delete the node's data directory before starting it again.
	ReplicaDeleted bool `json:"replica_deleted,omitempty"`
}

// MetricsSummary answers GET /metrics/summary: what the web page's charts
// show of one node, sampled once a second from rago's metrics of its
// member (System.Metrics). Samples are oldest first; the node keeps the
// last two minutes of them.
type MetricsSummary struct {
	Node            string          `json:"node"`
	IntervalSeconds float64         `json:"interval_seconds"`
	Samples         []MetricsSample `json:"samples"`
}

// MetricsSample is one interval of a node's member, ending at Time (Unix
// milliseconds).
type MetricsSample struct {
	Time int64  `json:"t"`
	Role string `json:"role,omitempty"`
	// CommitsPerSecond: commands this member committed as leader (their
	// callers got the answer), per second over the interval; 0 on a
	// follower. AppliedPerSecond: commands it applied to its machine, on
	// every member.
	CommitsPerSecond float64 `json:"commits_per_second"`
	AppliedPerSecond float64 `json:"applied_per_second"`
	// CommitP50Ms and CommitP99Ms are quantiles of the commit latency of
	// the commands committed in the interval, in milliseconds; absent
	// when none was.
	CommitP50Ms *float64 `json:"commit_p50_ms,omitempty"`
	CommitP99Ms *float64 `json:"commit_p99_ms,omitempty"`
	// Lag is, on a leader, how many entries each follower (by node id)
	// does not yet hold durably.
	Lag map[string]uint64 `json:"lag,omitempty"`
}
