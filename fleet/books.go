package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/rago-raft/rago/raftserver"
	"github.com/rago-raft/rago/snapshot"
)

// The books are the fleet's single source of truth: the nodes that may
// host members and the groups to run. They live in a Raft cluster of
// their own (BooksKind, on the seed nodes), so every change is a command
// that a quorum agreed to, applied in the same order everywhere.

// BooksKind is the machine kind of the bookkeeping cluster. Machines adds
// it to a node's machine kinds.
const BooksKind = "rago.fleet.books"

// NodeState is a node's state in the books.
type NodeState string

// The states of a node.
const (
	// NodeActive: the node hosts members; placement uses it.
	NodeActive NodeState = "active"
	// NodeDeactivating: the node hands its members over and takes no new
	// ones; placement skips it. It stays so until activated again.
	NodeDeactivating NodeState = "deactivating"
	// NodeGone: the node was not seen for PurgeAfter; placement skips it
	// and its members are replaced. It becomes active again when it is
	// seen again.
	NodeGone NodeState = "gone"
)

// NodeInfo is a node as the books hold it.
type NodeInfo struct {
	Name  string
	Zone  string
	State NodeState
	// LastSeen is the wall-clock time (Unix milliseconds) of the node's
	// latest report, by its own clock.
	LastSeen int64
	// Changed is the books' index of its latest state change.
	Changed uint64
}

// GroupInfo is a consensus group as the books hold it.
type GroupInfo struct {
	Name     string
	Machine  raftserver.MachineSpec
	Replicas int
	// Founder is the one node allowed to create the group's first member,
	// chosen when the group is added (its desired leader then) and chosen
	// again only while the group is unborn and the founder left.
	Founder string
	// Born: the founder created the first member. From then on members
	// only join the running group; nobody creates it again.
	Born bool
	// Members are the voters last reported by the node that reconciles
	// the group: a routing hint, not the truth (the group's own
	// configuration is).
	Members []string
}

// Books is the state of the bookkeeping machine. Version changes whenever
// something placement depends on changes (nodes' states and zones, groups
// added or removed, births); Index is the last command applied.
type Books struct {
	Nodes   map[string]*NodeInfo
	Groups  map[string]*GroupInfo
	Removed map[string]uint64 // removed group names, with the index of removal
	Version uint64
	Index   uint64
}

func newBooks() *Books {
	return &Books{Nodes: map[string]*NodeInfo{}, Groups: map[string]*GroupInfo{}, Removed: map[string]uint64{}}
}

// ActiveNodes returns the nodes placement uses, sorted by name.
func (b *Books) ActiveNodes() []Node {
	var out []Node
	for _, name := range slices.Sorted(maps.Keys(b.Nodes)) {
		if n := b.Nodes[name]; n.State == NodeActive {
			out = append(out, Node{Name: n.Name, Zone: n.Zone})
		}
	}
	return out
}

// Placement returns where group's members belong now (the first is its
// desired leader), or nil for a group the books do not hold.
func (b *Books) Placement(group string) []string {
	g := b.Groups[group]
	if g == nil {
		return nil
	}
	return Place(group, b.ActiveNodes(), g.Replicas)
}

// GroupNames returns the groups' names, sorted.
func (b *Books) GroupNames() []string { return slices.Sorted(maps.Keys(b.Groups)) }

// Errors the books answer with. They cross nodes as codes (bookReply.Code).
var (
	// ErrGroupExists: a group of that name is already in the books.
	ErrGroupExists = errors.New("fleet: group exists")
	// ErrNoSuchGroup: the books hold no group of that name.
	ErrNoSuchGroup = errors.New("fleet: no such group")
	// ErrGroupRemoved: a group of that name was removed; names are not
	// reused, so that a slow node cannot mistake the new group's members
	// for the old one's.
	ErrGroupRemoved = errors.New("fleet: group name was removed and cannot be reused")
	// ErrUnknownNode: the books hold no node of that name (it never
	// activated).
	ErrUnknownNode = errors.New("fleet: unknown node")
	// ErrNoActiveNodes: no node is active, so a new group has nowhere to go.
	ErrNoActiveNodes = errors.New("fleet: no active nodes")
	// ErrNotFounder: a node other than the group's founder tried to record
	// its birth (the founder changed meanwhile).
	ErrNotFounder = errors.New("fleet: not the group's founder")
	// ErrInvalidGroup: a group spec or name is malformed.
	ErrInvalidGroup = errors.New("fleet: invalid group")
)

var bookCodes = map[string]error{
	"exists":       ErrGroupExists,
	"no_group":     ErrNoSuchGroup,
	"removed":      ErrGroupRemoved,
	"unknown_node": ErrUnknownNode,
	"no_nodes":     ErrNoActiveNodes,
	"not_founder":  ErrNotFounder,
	"invalid":      ErrInvalidGroup,
}

func codeOf(err error) string {
	for code, e := range bookCodes {
		if errors.Is(err, e) {
			return code
		}
	}
	return "invalid"
}

// bookCmd is a command to the books (JSON on the log).
type bookCmd struct {
	Op       string                  `json:"op"`
	Node     string                  `json:"node,omitempty"`
	Zone     string                  `json:"zone,omitempty"`
	At       int64                   `json:"at,omitempty"`
	Group    string                  `json:"group,omitempty"`
	Machine  *raftserver.MachineSpec `json:"machine,omitempty"`
	Replicas int                     `json:"replicas,omitempty"`
	Members  []string                `json:"members,omitempty"`
}

// The books' operations.
const (
	opActivate    = "activate"
	opDeactivate  = "deactivate"
	opSeen        = "seen"
	opPurge       = "purge"
	opAddGroup    = "add_group"
	opRemoveGroup = "remove_group"
	opBorn        = "born"
	opMembers     = "members"
)

// bookReply is the books' answer to a command: "" or an error code.
type bookReply struct {
	Code   string `json:"code,omitempty"`
	Detail string `json:"detail,omitempty"`
}

func (r bookReply) err() error {
	if r.Code == "" {
		return nil
	}
	if e, ok := bookCodes[r.Code]; ok {
		if r.Detail != "" {
			return fmt.Errorf("%w: %s", e, r.Detail)
		}
		return e
	}
	return fmt.Errorf("fleet: books answered %q: %s", r.Code, r.Detail)
}

// booksMachine is the bookkeeping cluster's machine.
type booksMachine struct{ b *Books }

// NewBooksMachine is the MachineFactory of BooksKind.
func NewBooksMachine([]byte) (raftserver.Machine, error) {
	return &booksMachine{b: newBooks()}, nil
}

// Apply applies one command to the books. It never uses the time: the
// times in the books are those the commands carry.
func (m *booksMachine) Apply(ctx *raftserver.ApplyContext, data []byte) []byte {
	var c bookCmd
	var r bookReply
	if err := json.Unmarshal(data, &c); err != nil {
		r = bookReply{Code: "invalid", Detail: err.Error()}
	} else if err := m.apply(ctx.Index, c); err != nil {
		r = bookReply{Code: codeOf(err), Detail: err.Error()}
	}
	m.b.Index = ctx.Index
	// The books are small and stand on their own after every command.
	ctx.ReleaseCursor(ctx.Index)
	out, _ := json.Marshal(r)
	return out
}

func (m *booksMachine) apply(index uint64, c bookCmd) error {
	b := m.b
	changed := func() { b.Version = index }
	switch c.Op {
	case opActivate:
		if c.Node == "" {
			return fmt.Errorf("%w: a node needs a name", ErrInvalidGroup)
		}
		n := b.Nodes[c.Node]
		if n == nil {
			n = &NodeInfo{Name: c.Node}
			b.Nodes[c.Node] = n
		}
		if n.State != NodeActive || n.Zone != c.Zone {
			n.State, n.Zone, n.Changed = NodeActive, c.Zone, index
			changed()
		}
		n.LastSeen = max(n.LastSeen, c.At)
	case opDeactivate:
		n := b.Nodes[c.Node]
		if n == nil {
			return fmt.Errorf("%w: %s", ErrUnknownNode, c.Node)
		}
		if n.State != NodeDeactivating {
			n.State, n.Changed = NodeDeactivating, index
			m.refound(c.Node)
			changed()
		}
	case opSeen:
		n := b.Nodes[c.Node]
		if n == nil {
			return fmt.Errorf("%w: %s", ErrUnknownNode, c.Node)
		}
		n.LastSeen = max(n.LastSeen, c.At)
		if n.State == NodeGone {
			// It was gone only for want of news: it is back.
			n.State, n.Changed = NodeActive, index
			changed()
		}
	case opPurge:
		// Conditional, so that a late or repeated purge does nothing:
		// only a node still active and still unseen since At goes.
		n := b.Nodes[c.Node]
		if n == nil {
			return fmt.Errorf("%w: %s", ErrUnknownNode, c.Node)
		}
		if n.State == NodeActive && n.LastSeen < c.At {
			n.State, n.Changed = NodeGone, index
			m.refound(c.Node)
			changed()
		}
	case opAddGroup:
		if err := checkGroup(c); err != nil {
			return err
		}
		if _, ok := b.Removed[c.Group]; ok {
			return fmt.Errorf("%w: %s", ErrGroupRemoved, c.Group)
		}
		if g := b.Groups[c.Group]; g != nil {
			return fmt.Errorf("%w: %s", ErrGroupExists, c.Group)
		}
		place := Place(c.Group, b.ActiveNodes(), c.Replicas)
		if len(place) == 0 {
			return ErrNoActiveNodes
		}
		b.Groups[c.Group] = &GroupInfo{Name: c.Group, Machine: *c.Machine, Replicas: c.Replicas, Founder: place[0]}
		changed()
	case opRemoveGroup:
		if b.Groups[c.Group] == nil {
			if _, ok := b.Removed[c.Group]; ok {
				return nil // already removed: a retry
			}
			return fmt.Errorf("%w: %s", ErrNoSuchGroup, c.Group)
		}
		delete(b.Groups, c.Group)
		b.Removed[c.Group] = index
		changed()
	case opBorn:
		g := b.Groups[c.Group]
		switch {
		case g == nil:
			return fmt.Errorf("%w: %s", ErrNoSuchGroup, c.Group)
		case g.Founder != c.Node:
			return fmt.Errorf("%w: %s founds %s, not %s", ErrNotFounder, g.Founder, c.Group, c.Node)
		case !g.Born:
			g.Born, g.Members = true, []string{c.Node}
			changed()
		}
	case opMembers:
		if g := b.Groups[c.Group]; g != nil {
			g.Members = slices.Clone(c.Members)
		}
	default:
		return fmt.Errorf("%w: unknown operation %q", ErrInvalidGroup, c.Op)
	}
	return nil
}

// refound gives the unborn groups that node was to found to the node that
// placement now prefers, so that a group whose founder left still starts.
func (m *booksMachine) refound(node string) {
	active := m.b.ActiveNodes()
	for _, name := range m.b.GroupNames() {
		g := m.b.Groups[name]
		if g.Born || g.Founder != node {
			continue
		}
		if place := Place(name, active, g.Replicas); len(place) > 0 {
			g.Founder = place[0]
		}
	}
}

// maxReplicas bounds a group's replica count: a Raft group of more voters
// gains little and costs every write a larger quorum.
const maxReplicas = 9

func checkGroup(c bookCmd) error {
	switch {
	case !validGroupName(c.Group):
		return fmt.Errorf("%w: name %q (1-128 bytes of letters, digits, '-', '_', '.')", ErrInvalidGroup, c.Group)
	case c.Machine == nil || c.Machine.Kind == "":
		return fmt.Errorf("%w: %s needs a machine kind", ErrInvalidGroup, c.Group)
	case c.Machine.Kind == BooksKind:
		return fmt.Errorf("%w: %s cannot run the books' machine", ErrInvalidGroup, c.Group)
	case c.Replicas < 1 || c.Replicas > maxReplicas:
		return fmt.Errorf("%w: %s: replicas %d not in [1, %d]", ErrInvalidGroup, c.Group, c.Replicas, maxReplicas)
	}
	return nil
}

// validGroupName: group names become server and cluster names.
func validGroupName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}

// booksQuery asks for the books if their Version is above Since.
type booksQuery struct {
	Since uint64 `json:"since"`
}

// booksAnswer carries the books, or nothing when unchanged.
type booksAnswer struct {
	Books     *Books `json:"books,omitempty"`
	Unchanged bool   `json:"unchanged,omitempty"`
}

// Query answers a booksQuery.
func (m *booksMachine) Query(q []byte) ([]byte, error) {
	var bq booksQuery
	if err := json.Unmarshal(q, &bq); err != nil {
		return nil, fmt.Errorf("%w: books query: %w", ErrInvalidGroup, err)
	}
	if bq.Since != 0 && m.b.Version <= bq.Since {
		return json.Marshal(booksAnswer{Unchanged: true})
	}
	return json.Marshal(booksAnswer{Books: m.b})
}

// Snapshot captures the books; they are small, so a copy in JSON is the
// view.
func (m *booksMachine) Snapshot() (snapshot.Source, error) {
	b, err := json.Marshal(m.b)
	if err != nil {
		return nil, err
	}
	return snapshot.BytesSource(b), nil
}

// Restore loads books a Snapshot wrote.
func (m *booksMachine) Restore(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	b := &Books{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(b); err != nil {
		return fmt.Errorf("fleet: books snapshot: %w", err)
	}
	if b.Nodes == nil || b.Groups == nil || b.Removed == nil {
		return errors.New("fleet: books snapshot lacks nodes, groups or removed")
	}
	m.b = b
	return nil
}

// Overview reports the books' size in ServerStatus.Machine.
func (m *booksMachine) Overview() map[string]string {
	return map[string]string{
		"nodes":   fmt.Sprint(len(m.b.Nodes)),
		"groups":  fmt.Sprint(len(m.b.Groups)),
		"version": fmt.Sprint(m.b.Version),
	}
}

// Machines returns kinds with the books' machine added: pass it as
// SystemConfig.Machines on every node of a fleet.
func Machines(kinds map[string]raftserver.MachineFactory) map[string]raftserver.MachineFactory {
	out := maps.Clone(kinds)
	if out == nil {
		out = map[string]raftserver.MachineFactory{}
	}
	out[BooksKind] = NewBooksMachine
	return out
}
