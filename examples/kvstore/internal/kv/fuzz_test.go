package kv

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rago-raft/rago/raftserver"
)

// FuzzApply feeds arbitrary commands and queries to a machine with a few
// keys: nothing panics, and a command that fails validation leaves every
// query's answer as it was.
func FuzzApply(f *testing.F) {
	for _, s := range []string{
		`{"op":"put","key":"a","value":"eA=="}`,
		`{"op":"cas","key":"a","expect":{"kind":"value","value":"eA=="},"delete":true}`,
		`{"op":"cas","key":"b","expect":{"kind":"revision","revision":3},"value":"eQ=="}`,
		`{"op":"set_node","node":{"id":"n1","raft":"h:1","http":"http://h:2"}}`,
		`{"op":"forget_node","node":{"id":"n1"}}`,
		`{"op":"delete","key":""}`,
		`{"op":"list","prefix":"a","after":"a","limit":2}`,
		`{"op":"recent","limit":-1}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := New()
		ctx := &raftserver.ApplyContext{Index: 1, Term: 1}
		for _, k := range []string{"a", "a/b", "b"} {
			m.Apply(ctx, Command{Op: OpPut, Key: k, Value: []byte(k)})
			ctx.Index++
		}
		m.Apply(ctx, Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", Raft: "h:1"}})
		ctx.Index++
		snapshot := func() []byte {
			var out []byte
			for _, q := range []string{`{"op":"list"}`, `{"op":"nodes"}`, `{"op":"stats"}`, `{"op":"recent"}`} {
				a, err := m.Query([]byte(q))
				if err != nil {
					t.Fatalf("query %s: %v", q, err)
				}
				out = append(out, a...)
			}
			return out
		}
		before := snapshot()

		// As a query: any answer or error, no panic.
		_, _ = m.Query(b)

		var c Command
		if json.Unmarshal(b, &c) != nil {
			return
		}
		r := m.Apply(ctx, c)
		if r.Status == StatusInvalid && !bytes.Equal(before, snapshot()) {
			t.Fatalf("invalid command %q changed the state", b)
		}
		if r.Status == StatusInvalid && r.Error == "" {
			t.Fatalf("invalid command %q without a reason", b)
		}
	})
}
