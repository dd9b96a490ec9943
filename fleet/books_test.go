package fleet

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/raftserver"
)

// bookLog applies commands to a books machine as a log would.
type bookLog struct {
	t     *testing.T
	m     *booksMachine
	index uint64
}

func newBookLog(t *testing.T) *bookLog {
	m, err := NewBooksMachine(nil)
	require.NoError(t, err)
	return &bookLog{t: t, m: m.(*booksMachine)}
}

func (l *bookLog) do(c bookCmd) error {
	data, err := json.Marshal(c)
	require.NoError(l.t, err)
	l.index++
	var r bookReply
	require.NoError(l.t, json.Unmarshal(l.m.Apply(&raftserver.ApplyContext{Index: l.index, Term: 1}, data), &r))
	return r.err()
}

var kind = &raftserver.MachineSpec{Kind: "register"}

func TestBooksNodesAndGroups(t *testing.T) {
	l := newBookLog(t)
	require.ErrorIs(t, l.do(bookCmd{Op: opAddGroup, Group: "g", Machine: kind, Replicas: 3}), ErrNoActiveNodes)
	for _, n := range []struct{ name, zone string }{{"n1", "a"}, {"n2", "b"}, {"n3", "c"}} {
		require.NoError(t, l.do(bookCmd{Op: opActivate, Node: n.name, Zone: n.zone, At: 100}))
	}
	require.NoError(t, l.do(bookCmd{Op: opAddGroup, Group: "g", Machine: kind, Replicas: 3}))
	b := l.m.b
	require.Equal(t, b.Placement("g")[0], b.Groups["g"].Founder, "the founder is the desired leader when the group is added")
	require.ErrorIs(t, l.do(bookCmd{Op: opAddGroup, Group: "g", Machine: kind, Replicas: 3}), ErrGroupExists)

	for _, bad := range []bookCmd{
		{Op: opAddGroup, Group: "", Machine: kind, Replicas: 3},
		{Op: opAddGroup, Group: "a/b", Machine: kind, Replicas: 3},
		{Op: opAddGroup, Group: "h", Replicas: 3},
		{Op: opAddGroup, Group: "h", Machine: &raftserver.MachineSpec{Kind: BooksKind}, Replicas: 3},
		{Op: opAddGroup, Group: "h", Machine: kind, Replicas: 0},
		{Op: opAddGroup, Group: "h", Machine: kind, Replicas: maxReplicas + 1},
		{Op: "explode"},
	} {
		require.ErrorIs(t, l.do(bad), ErrInvalidGroup, "%+v", bad)
	}
	require.ErrorIs(t, l.do(bookCmd{Op: opDeactivate, Node: "n9"}), ErrUnknownNode)

	// A founder that leaves before the birth gives the group to the node
	// placement prefers now; its own birth is refused.
	founder := b.Groups["g"].Founder
	version := b.Version
	require.NoError(t, l.do(bookCmd{Op: opDeactivate, Node: founder}))
	require.Greater(t, b.Version, version)
	require.NotEqual(t, founder, b.Groups["g"].Founder)
	require.Equal(t, b.Placement("g")[0], b.Groups["g"].Founder)
	require.ErrorIs(t, l.do(bookCmd{Op: opBorn, Group: "g", Node: founder}), ErrNotFounder)
	require.NoError(t, l.do(bookCmd{Op: opBorn, Group: "g", Node: b.Groups["g"].Founder}))
	require.True(t, b.Groups["g"].Born)
	// Once born, the founder stays whatever happens to its node.
	newFounder := b.Groups["g"].Founder
	require.NoError(t, l.do(bookCmd{Op: opDeactivate, Node: newFounder}))
	require.Equal(t, newFounder, b.Groups["g"].Founder)

	// Seen and purge: only a node still unseen since the horizon goes, and
	// it comes back when it is seen again.
	require.NoError(t, l.do(bookCmd{Op: opActivate, Node: "n1", Zone: "a", At: 100}))
	require.NoError(t, l.do(bookCmd{Op: opActivate, Node: "n2", Zone: "b", At: 100}))
	require.NoError(t, l.do(bookCmd{Op: opSeen, Node: "n1", At: 500}))
	require.NoError(t, l.do(bookCmd{Op: opPurge, Node: "n1", At: 400}))
	require.Equal(t, NodeActive, b.Nodes["n1"].State, "a node seen after the horizon was purged")
	version = b.Version
	require.NoError(t, l.do(bookCmd{Op: opSeen, Node: "n1", At: 450}))
	require.Equal(t, int64(500), b.Nodes["n1"].LastSeen, "last seen went back in time")
	require.Equal(t, version, b.Version, "a report changed placement's version")
	require.NoError(t, l.do(bookCmd{Op: opPurge, Node: "n1", At: 600}))
	require.Equal(t, NodeGone, b.Nodes["n1"].State)
	require.NotContains(t, b.ActiveNodes(), Node{Name: "n1", Zone: "a"})
	require.NoError(t, l.do(bookCmd{Op: opSeen, Node: "n1", At: 700}))
	require.Equal(t, NodeActive, b.Nodes["n1"].State)
	// A deactivated node stays so when it reports.
	require.NoError(t, l.do(bookCmd{Op: opDeactivate, Node: "n2"}))
	require.NoError(t, l.do(bookCmd{Op: opSeen, Node: "n2", At: 800}))
	require.Equal(t, NodeDeactivating, b.Nodes["n2"].State)

	// Removed names cannot come back.
	require.NoError(t, l.do(bookCmd{Op: opRemoveGroup, Group: "g"}))
	require.NoError(t, l.do(bookCmd{Op: opRemoveGroup, Group: "g"}), "a retried removal")
	require.ErrorIs(t, l.do(bookCmd{Op: opRemoveGroup, Group: "nope"}), ErrNoSuchGroup)
	require.ErrorIs(t, l.do(bookCmd{Op: opAddGroup, Group: "g", Machine: kind, Replicas: 3}), ErrGroupRemoved)
}

func TestBooksSnapshotAndQuery(t *testing.T) {
	l := newBookLog(t)
	require.NoError(t, l.do(bookCmd{Op: opActivate, Node: "n1", Zone: "a", At: 1}))
	require.NoError(t, l.do(bookCmd{Op: opAddGroup, Group: "g", Machine: kind, Replicas: 1}))
	require.NoError(t, l.do(bookCmd{Op: opMembers, Group: "g", Members: []string{"n1"}}))

	src, err := l.m.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = src.WriteTo(&buf)
	require.NoError(t, err)
	restored, _ := NewBooksMachine(nil)
	require.NoError(t, restored.(*booksMachine).Restore(bytes.NewReader(buf.Bytes())))
	require.Equal(t, l.m.b, restored.(*booksMachine).b)
	require.Error(t, restored.(*booksMachine).Restore(bytes.NewReader([]byte(`{"Nodes":{}}`))), "a snapshot without groups")
	require.Error(t, restored.(*booksMachine).Restore(bytes.NewReader([]byte(`{`))))

	q := func(since uint64) booksAnswer {
		data, _ := json.Marshal(booksQuery{Since: since})
		out, err := l.m.Query(data)
		require.NoError(t, err)
		var a booksAnswer
		require.NoError(t, json.Unmarshal(out, &a))
		return a
	}
	require.NotNil(t, q(0).Books)
	require.True(t, q(l.m.b.Version).Unchanged)
	require.NotNil(t, q(l.m.b.Version-1).Books)
	_, err = l.m.Query([]byte("not json"))
	require.ErrorIs(t, err, ErrInvalidGroup)
}
