// Package kv is the replicated state machine of the kvstore example: a
// sorted map of keys to byte values, plus the small directory of nodes
// (their Raft and HTTP addresses) that lets every node show every other
// node's web address.
//
// Commands and replies travel as JSON through raftserver's typed machine
// (NewTypedMachine, TypedClient); queries are JSON bytes for the Querier
// interface, so that they can run on the leader of another node. JSON keeps
// the log readable for a newcomer at the price of base64 for values (a
// value of 1 MiB is an entry of about 1.4 MiB).
//
// Every command is validated before the state changes, and Apply never
// panics on input: a bad command gets a Result with StatusInvalid on every
// member alike.
//
// The machine is a raftserver.Snapshotter: Snapshot takes a cheap
// point-in-time view that is written in a compact binary format in the
// background, and Restore reads it back (see snapshot.go).
package kv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/rago-raft/rago/raftserver"
)

// Kind is the machine kind registered on every node of the example.
const Kind = "kv"

// Limits the machine enforces itself, because they bound its memory per key
// and are the same on every node. The value size limit is not here: it is
// a per-node setting enforced at the HTTP edge, and a machine must not
// depend on configuration that could differ between members.
const (
	MaxKeyBytes = 1024
	// RecentChanges is how many of the latest changes the machine keeps for
	// the web page's recent-keys table.
	RecentChanges = 64
	// HistoryChanges and HistoryBytes bound the history of changes, with
	// their values, that watches read (GET /watch): the latest changes,
	// at most this many and at most this many bytes of keys and values.
	// A watch that falls further behind is told it was compacted.
	HistoryChanges = 4096
	HistoryBytes   = 8 << 20
)

// Operations of a Command.
const (
	OpPut        = "put"
	OpDelete     = "delete"
	OpCAS        = "cas"
	OpSetNode    = "set_node"
	OpForgetNode = "forget_node"
)

// Kinds of a CAS condition.
const (
	// ExpectValue: the key exists with exactly Condition.Value.
	ExpectValue = "value"
	// ExpectAbsent: the key does not exist.
	ExpectAbsent = "absent"
	// ExpectRevision: the key's revision is Condition.Revision (0 means the
	// key does not exist).
	ExpectRevision = "revision"
)

// Command is one write. The JSON field names are the log's format: an
// entry written by one version of the example is applied by the next, so
// rename nothing.
type Command struct {
	Op    string `json:"op"`
	Key   string `json:"key,omitempty"`
	Value []byte `json:"value,omitempty"`
	// Expect is the condition of a CAS.
	Expect *Condition `json:"expect,omitempty"`
	// Delete makes a CAS delete the key instead of setting Value.
	Delete bool `json:"delete,omitempty"`
	// Node is the record of set_node; forget_node uses only its ID.
	Node *NodeInfo `json:"node,omitempty"`
}

// Condition is what a CAS compares the key's current state with.
type Condition struct {
	Kind     string `json:"kind"`
	Value    []byte `json:"value,omitempty"`
	Revision uint64 `json:"revision,omitempty"`
}

// NodeInfo is one node of the cluster as the directory records it.
type NodeInfo struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
}

// Status says how a command went. It is part of the reply, not an error,
// because the outcome is the same on every member.
type Status string

// Statuses of a Result.
const (
	StatusOK       Status = "ok"
	StatusNotFound Status = "not_found"
	StatusMismatch Status = "mismatch"
	StatusInvalid  Status = "invalid"
)

// Result is the reply to a Command.
type Result struct {
	Status Status `json:"status"`
	// Error explains StatusInvalid.
	Error string `json:"error,omitempty"`
	// Revision is the log index of the change the command made (put, cas),
	// or of the key's last change before it was deleted (delete).
	Revision uint64 `json:"revision,omitempty"`
	// Created reports that a put or cas created the key.
	Created bool `json:"created,omitempty"`
	// Current is the key as it is after a CAS mismatch (nil: absent).
	Current *Entry `json:"current,omitempty"`
}

// Entry is one key and its value. Revision is the log index of the key's
// last change, so it grows with every write to the key and is the same on
// every member; Created is the log index at which the key was created.
type Entry struct {
	Key      string `json:"key"`
	Value    []byte `json:"value"`
	Revision uint64 `json:"revision"`
	Created  uint64 `json:"created"`
}

// Change is one entry of the recent-changes list.
type Change struct {
	Key      string `json:"key"`
	Op       string `json:"op"`
	Revision uint64 `json:"revision"`
}

// Event is one change of the history: a put with the value it wrote, or a
// delete. Revision is the change's log index.
type Event struct {
	Revision uint64 `json:"revision"`
	Key      string `json:"key"`
	Op       string `json:"op"`
	Value    []byte `json:"value,omitempty"`
}

func (e *Event) size() int { return len(e.Key) + len(e.Value) }

// Machine is the key-value state. It is used only from its server's
// goroutine (Apply and Query), so it needs no locks.
type Machine struct {
	data map[string]*Entry
	// keys holds the keys of data in byte order, for prefix scans. Inserts
	// and deletes shift the slice (O(n)); that is cheap next to a Raft
	// round trip up to a few hundred thousand keys.
	keys []string
	// recent holds the last RecentChanges changes, oldest first.
	recent []Change
	nodes  map[string]NodeInfo
	// history holds the latest changes with their values, oldest first,
	// within HistoryChanges and HistoryBytes (historyBytes counts them);
	// since is the lowest revision from which on every change is in it.
	// applied is the index of the last command applied.
	history      []Event
	historyBytes int
	since        uint64
	applied      uint64
}

// New returns an empty machine.
func New() *Machine {
	return &Machine{data: map[string]*Entry{}, nodes: map[string]NodeInfo{}, since: 1}
}

// Factory builds the machine wrapped for raftserver: JSON commands and
// replies, byte queries. Register it under Kind on every node.
func Factory(config []byte) (raftserver.Machine, error) {
	if len(config) != 0 {
		return nil, fmt.Errorf("kv: the machine takes no configuration, got %d bytes", len(config))
	}
	return raftserver.NewTypedMachine[Command, Result](New(), raftserver.JSON[Command]{}, raftserver.JSON[Result]{}), nil
}

// ValidateKey reports why key cannot be stored, or nil. Keys are non-empty
// UTF-8 of at most MaxKeyBytes bytes without control characters, so that
// they print, sort and travel in URLs and JSON unchanged.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("the key is empty")
	case len(key) > MaxKeyBytes:
		return fmt.Errorf("the key has %d bytes, more than the limit of %d", len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return fmt.Errorf("the key is not valid UTF-8")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("the key contains the control character %U", r)
		}
	}
	return nil
}

// ValidateNodeID reports why id cannot name a node, or nil. A node id is
// also the registered name of the node's Raft server, so it stays short and
// plain, and may not start with "rago", the prefix of the library's own
// processes.
func ValidateNodeID(id string) error {
	if id == "" || len(id) > 32 {
		return fmt.Errorf("node id %q must have 1 to 32 characters", id)
	}
	for i, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '-' || r == '_'))
		if !ok {
			return fmt.Errorf("node id %q may hold only letters, digits, '-' and '_', and must start with a letter or digit", id)
		}
	}
	if strings.HasPrefix(strings.ToLower(id), "rago") {
		return fmt.Errorf("node id %q may not start with \"rago\"", id)
	}
	return nil
}

// validate checks a command before Apply touches the state.
func (c *Command) validate() error {
	switch c.Op {
	case OpPut, OpDelete:
		return ValidateKey(c.Key)
	case OpCAS:
		if err := ValidateKey(c.Key); err != nil {
			return err
		}
		if c.Expect == nil {
			return fmt.Errorf("a cas needs a condition")
		}
		switch c.Expect.Kind {
		case ExpectValue, ExpectAbsent, ExpectRevision:
		default:
			return fmt.Errorf("unknown cas condition %q", c.Expect.Kind)
		}
		if c.Delete && len(c.Value) != 0 {
			return fmt.Errorf("a cas either sets a value or deletes, not both")
		}
		return nil
	case OpSetNode, OpForgetNode:
		if c.Node == nil {
			return fmt.Errorf("%s needs a node", c.Op)
		}
		return ValidateNodeID(c.Node.ID)
	}
	return fmt.Errorf("unknown operation %q", c.Op)
}

// Apply applies one committed command. It depends only on the state, the
// command and the entry's index, as a Raft machine must.
func (m *Machine) Apply(ctx *raftserver.ApplyContext, c Command) Result {
	// The state never refers back to the log, so a snapshot may replace the log up to any command.
	ctx.ReleaseCursor(ctx.Index)
	m.applied = ctx.Index
	if err := c.validate(); err != nil {
		return Result{Status: StatusInvalid, Error: err.Error()}
	}
	switch c.Op {
	case OpPut:
		created := m.set(c.Key, c.Value, ctx.Index)
		return Result{Status: StatusOK, Revision: ctx.Index, Created: created}
	case OpDelete:
		e, ok := m.data[c.Key]
		if !ok {
			return Result{Status: StatusNotFound}
		}
		m.remove(c.Key, ctx.Index)
		return Result{Status: StatusOK, Revision: e.Revision}
	case OpCAS:
		return m.cas(c, ctx.Index)
	case OpSetNode:
		m.nodes[c.Node.ID] = *c.Node
		return Result{Status: StatusOK, Revision: ctx.Index}
	case OpForgetNode:
		if _, ok := m.nodes[c.Node.ID]; !ok {
			return Result{Status: StatusNotFound}
		}
		delete(m.nodes, c.Node.ID)
		return Result{Status: StatusOK, Revision: ctx.Index}
	}
	// validate accepted an operation this switch lacks: a programming
	// error, reported like any invalid command rather than by a panic.
	return Result{Status: StatusInvalid, Error: fmt.Sprintf("operation %q is not implemented", c.Op)}
}

func (m *Machine) cas(c Command, index uint64) Result {
	cur, exists := m.data[c.Key]
	var match bool
	switch c.Expect.Kind {
	case ExpectValue:
		match = exists && bytes.Equal(cur.Value, c.Expect.Value)
	case ExpectAbsent:
		match = !exists
	case ExpectRevision:
		match = (!exists && c.Expect.Revision == 0) || (exists && cur.Revision == c.Expect.Revision)
	}
	if !match {
		r := Result{Status: StatusMismatch}
		if exists {
			e := *cur
			r.Current = &e
		}
		return r
	}
	if c.Delete {
		if !exists {
			// The condition held (absent, or revision 0) and there is
			// nothing to delete: succeed without a change.
			return Result{Status: StatusOK}
		}
		m.remove(c.Key, index)
		return Result{Status: StatusOK, Revision: cur.Revision}
	}
	created := m.set(c.Key, c.Value, index)
	return Result{Status: StatusOK, Revision: index, Created: created}
}

// set stores value under key at index and reports whether it created key.
func (m *Machine) set(key string, value []byte, index uint64) bool {
	e, ok := m.data[key]
	if !ok {
		e = &Entry{Key: key, Created: index}
		m.data[key] = e
		i, _ := slices.BinarySearch(m.keys, key)
		m.keys = slices.Insert(m.keys, i, key)
	}
	// The command's bytes belong to this entry from now on: the typed
	// machine decoded a fresh slice for it.
	e.Value, e.Revision = value, index
	if e.Value == nil {
		e.Value = []byte{}
	}
	m.note(key, OpPut, index, e.Value)
	return !ok
}

func (m *Machine) remove(key string, index uint64) {
	delete(m.data, key)
	if i, ok := slices.BinarySearch(m.keys, key); ok {
		m.keys = slices.Delete(m.keys, i, i+1)
	}
	m.note(key, OpDelete, index, nil)
}

// note records a change in the recent list and the history. value is
// shared with the entry: stored values are never changed in place.
func (m *Machine) note(key, op string, index uint64, value []byte) {
	if len(m.recent) == RecentChanges {
		m.recent = append(m.recent[:0], m.recent[1:]...)
	}
	m.recent = append(m.recent, Change{Key: key, Op: op, Revision: index})
	m.record(Event{Revision: index, Key: key, Op: op, Value: value})
}

// record appends e to the history and drops the oldest changes beyond its
// bounds (keeping e itself whatever its size).
func (m *Machine) record(e Event) {
	m.history = append(m.history, e)
	m.historyBytes += e.size()
	for len(m.history) > 1 && (len(m.history) > HistoryChanges || m.historyBytes > HistoryBytes) {
		old := m.history[0]
		m.history[0] = Event{} // let its value go
		m.history = m.history[1:]
		m.historyBytes -= old.size()
		m.since = old.Revision + 1
	}
}

// changes answers QueryChanges: the history's changes from revision
// q.From on whose key has q.Prefix, at most q.Limit (MaxListItems for 0)
// and MaxListBytes of them.
func (m *Machine) changes(q Query, a *Answer) {
	limit := q.Limit
	if limit <= 0 || limit > MaxListItems {
		limit = MaxListItems
	}
	a.Since, a.Through = m.since, m.applied
	a.Changes = []Event{}
	i, _ := slices.BinarySearchFunc(m.history, q.From, func(e Event, rev uint64) int {
		switch {
		case e.Revision < rev:
			return -1
		case e.Revision > rev:
			return 1
		}
		return 0
	})
	size := 0
	for ; i < len(m.history); i++ {
		e := m.history[i]
		if !strings.HasPrefix(e.Key, q.Prefix) {
			continue
		}
		if len(a.Changes) == limit || (len(a.Changes) > 0 && size > MaxListBytes) {
			a.More = true
			a.Through = a.Changes[len(a.Changes)-1].Revision
			return
		}
		a.Changes = append(a.Changes, e)
		size += e.size()
	}
}

// Queries.
const (
	QueryGet    = "get"
	QueryList   = "list"
	QueryStats  = "stats"
	QueryNodes  = "nodes"
	QueryRecent = "recent"
	// QueryChanges reads the history of changes, for watches.
	QueryChanges = "changes"
)

// Bounds on one query's answer, which travels between nodes as one
// message: a list stops after MaxListBytes of keys and values (but returns
// at least one item) and after MaxListItems items.
const (
	MaxListBytes = 4 << 20
	MaxListItems = 10000
	// PreviewBytes is how much of a value the recent-changes list carries.
	PreviewBytes = 64
)

// Query is a read. Field names are part of the wire format between nodes.
type Query struct {
	Op     string `json:"op"`
	Key    string `json:"key,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	// After makes a list start after this key (the previous page's Next).
	After string `json:"after,omitempty"`
	// Limit bounds the items of list, recent and changes.
	Limit int `json:"limit,omitempty"`
	// From is the first revision changes asks for.
	From uint64 `json:"from,omitempty"`
}

// Answer is the reply to a Query; the fields of its operation are set.
type Answer struct {
	// Entry is the answer to get; nil when the key does not exist.
	Entry *Entry `json:"entry,omitempty"`
	// Items, More and Next answer list. More says that keys with the
	// prefix follow Next.
	Items []Entry `json:"items,omitempty"`
	More  bool    `json:"more,omitempty"`
	Next  string  `json:"next,omitempty"`
	// Stats answers stats.
	Stats *Stats `json:"stats,omitempty"`
	// Nodes answers nodes, sorted by id.
	Nodes []NodeInfo `json:"nodes,omitempty"`
	// Recent answers recent, newest first.
	Recent []RecentEntry `json:"recent,omitempty"`
	// Changes answers changes, oldest first. Since is the lowest revision
	// from which on the history holds every change: a From below it may
	// miss changes (compacted). Through is the revision up to which the
	// answer is complete: the last command applied, or with More the last
	// change returned.
	Changes []Event `json:"changes,omitempty"`
	Since   uint64  `json:"since,omitempty"`
	Through uint64  `json:"through,omitempty"`
}

// Stats summarises a member's machine.
type Stats struct {
	Keys int `json:"keys"`
	// Recent are the keys of the latest changes, newest first.
	Recent []Change `json:"recent"`
}

// RecentEntry is a recent change with the key's current state: Value is
// its first PreviewBytes bytes (Truncated says there is more), Exists is
// false once the key was deleted.
type RecentEntry struct {
	Change
	Exists    bool   `json:"exists"`
	Value     []byte `json:"value,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	// CurrentRevision is the key's revision now, which is newer than the
	// change's when the key was written again since.
	CurrentRevision uint64 `json:"current_revision,omitempty"`
}

// Query answers a read. It implements raftserver.Querier (through the typed
// machine's wrapper) and must not change the state.
func (m *Machine) Query(b []byte) ([]byte, error) {
	var q Query
	if err := json.Unmarshal(b, &q); err != nil {
		return nil, fmt.Errorf("kv: query does not decode: %w", err)
	}
	var a Answer
	switch q.Op {
	case QueryGet:
		if e, ok := m.data[q.Key]; ok {
			c := *e
			a.Entry = &c
		}
	case QueryList:
		m.list(q, &a)
	case QueryStats:
		a.Stats = &Stats{Keys: len(m.data), Recent: m.latest(q.Limit)}
	case QueryNodes:
		a.Nodes = make([]NodeInfo, 0, len(m.nodes))
		for _, n := range m.nodes {
			a.Nodes = append(a.Nodes, n)
		}
		sort.Slice(a.Nodes, func(i, j int) bool { return a.Nodes[i].ID < a.Nodes[j].ID })
	case QueryChanges:
		m.changes(q, &a)
	case QueryRecent:
		for _, c := range m.latest(q.Limit) {
			r := RecentEntry{Change: c}
			if e, ok := m.data[c.Key]; ok {
				r.Exists, r.CurrentRevision = true, e.Revision
				r.Value = e.Value[:min(len(e.Value), PreviewBytes)]
				r.Truncated = len(e.Value) > PreviewBytes
			}
			a.Recent = append(a.Recent, r)
		}
	default:
		return nil, fmt.Errorf("kv: unknown query %q", q.Op)
	}
	return json.Marshal(a)
}

func (m *Machine) list(q Query, a *Answer) {
	limit := q.Limit
	if limit <= 0 || limit > MaxListItems {
		limit = MaxListItems
	}
	start := q.Prefix
	if q.After > start {
		start = q.After
	}
	i, _ := slices.BinarySearch(m.keys, start)
	if i < len(m.keys) && m.keys[i] == q.After {
		i++
	}
	size := 0
	a.Items = []Entry{}
	for ; i < len(m.keys) && strings.HasPrefix(m.keys[i], q.Prefix); i++ {
		if len(a.Items) == limit || (len(a.Items) > 0 && size > MaxListBytes) {
			a.More, a.Next = true, a.Items[len(a.Items)-1].Key
			return
		}
		e := m.data[m.keys[i]]
		a.Items = append(a.Items, *e)
		size += len(e.Key) + len(e.Value)
	}
}

// latest returns up to n of the latest changes, newest first (all for
// n <= 0).
func (m *Machine) latest(n int) []Change {
	if n <= 0 || n > len(m.recent) {
		n = len(m.recent)
	}
	out := make([]Change, 0, n)
	for i := len(m.recent) - 1; i >= len(m.recent)-n; i-- {
		out = append(out, m.recent[i])
	}
	return out
}
