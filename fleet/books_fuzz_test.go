package fleet

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rago-raft/rago/raftserver"
)

// FuzzBooksApply feeds the books machine arbitrary commands after a few
// valid ones: it must answer each with a reply (an error code for what it
// refuses), never panic, keep every group's founder among the nodes it
// knows, and snapshot to what it restores.
func FuzzBooksApply(f *testing.F) {
	for _, c := range []bookCmd{
		{Op: opActivate, Node: "n4", Zone: "b", At: 9},
		{Op: opAddGroup, Group: "h", Machine: &raftserver.MachineSpec{Kind: "k"}, Replicas: 2},
		{Op: opDeactivate, Node: "n1"},
		{Op: opPurge, Node: "n2", At: 1 << 40},
		{Op: opBorn, Group: "g", Node: "n3"},
		{Op: opMembers, Group: "g", Members: []string{"n1"}},
		{Op: opRemoveGroup, Group: "g"},
	} {
		b, _ := json.Marshal(c)
		f.Add(b)
	}
	f.Add([]byte(`{"op":"add_group","group":"x","replicas":-1}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, cmd []byte) {
		m, _ := NewBooksMachine(nil)
		bm := m.(*booksMachine)
		index := uint64(0)
		apply := func(data []byte) {
			index++
			out := bm.Apply(&raftserver.ApplyContext{Index: index, Term: 1}, data)
			var r bookReply
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("reply %q is not a reply: %v", out, err)
			}
		}
		for _, c := range []bookCmd{
			{Op: opActivate, Node: "n1", Zone: "a", At: 1},
			{Op: opActivate, Node: "n2", Zone: "b", At: 1},
			{Op: opActivate, Node: "n3", Zone: "c", At: 1},
			{Op: opAddGroup, Group: "g", Machine: &raftserver.MachineSpec{Kind: "k"}, Replicas: 3},
		} {
			b, _ := json.Marshal(c)
			apply(b)
		}
		apply(cmd)
		apply(cmd) // a retry must be as harmless as the first
		for name, g := range bm.b.Groups {
			if bm.b.Nodes[g.Founder] == nil {
				t.Fatalf("group %s founded by %q, a node the books do not hold", name, g.Founder)
			}
		}
		src, err := bm.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := src.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		again, _ := NewBooksMachine(nil)
		if err := again.(*booksMachine).Restore(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatalf("restore what was snapshotted: %v", err)
		}
	})
}
