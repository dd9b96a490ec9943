package kv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rago-raft/rago/raftserver"
	"github.com/stretchr/testify/require"
)

// applier feeds commands to a machine with growing log indexes.
type applier struct {
	m     *Machine
	index uint64
}

func (a *applier) apply(c Command) Result {
	a.index++
	return a.m.Apply(&raftserver.ApplyContext{Index: a.index, Term: 1}, c)
}

func query(t *testing.T, m *Machine, q Query) Answer {
	t.Helper()
	b, err := json.Marshal(q)
	require.NoError(t, err)
	out, err := m.Query(b)
	require.NoError(t, err)
	var a Answer
	require.NoError(t, json.Unmarshal(out, &a))
	return a
}

func TestPutGetDelete(t *testing.T) {
	a := &applier{m: New()}
	r := a.apply(Command{Op: OpPut, Key: "k", Value: []byte("v1")})
	require.Equal(t, Result{Status: StatusOK, Revision: 1, Created: true}, r)
	r = a.apply(Command{Op: OpPut, Key: "k", Value: []byte("v2")})
	require.Equal(t, Result{Status: StatusOK, Revision: 2}, r)

	got := query(t, a.m, Query{Op: QueryGet, Key: "k"})
	require.Equal(t, &Entry{Key: "k", Value: []byte("v2"), Revision: 2, Created: 1}, got.Entry)

	r = a.apply(Command{Op: OpDelete, Key: "k"})
	require.Equal(t, Result{Status: StatusOK, Revision: 2}, r)
	require.Nil(t, query(t, a.m, Query{Op: QueryGet, Key: "k"}).Entry)
	r = a.apply(Command{Op: OpDelete, Key: "k"})
	require.Equal(t, StatusNotFound, r.Status)

	// An empty value is a value, not a missing key.
	a.apply(Command{Op: OpPut, Key: "empty"})
	got = query(t, a.m, Query{Op: QueryGet, Key: "empty"})
	require.NotNil(t, got.Entry)
	require.Empty(t, got.Entry.Value)
}

func TestCAS(t *testing.T) {
	a := &applier{m: New()}
	cas := func(cond Condition, value string, del bool) Result {
		c := Command{Op: OpCAS, Key: "k", Expect: &cond, Delete: del}
		if !del {
			c.Value = []byte(value)
		}
		return a.apply(c)
	}
	// Create only if absent.
	r := cas(Condition{Kind: ExpectAbsent}, "one", false)
	require.Equal(t, Result{Status: StatusOK, Revision: 1, Created: true}, r)
	r = cas(Condition{Kind: ExpectAbsent}, "again", false)
	require.Equal(t, StatusMismatch, r.Status)
	require.Equal(t, &Entry{Key: "k", Value: []byte("one"), Revision: 1, Created: 1}, r.Current)

	// By value.
	require.Equal(t, StatusMismatch, cas(Condition{Kind: ExpectValue, Value: []byte("two")}, "x", false).Status)
	r = cas(Condition{Kind: ExpectValue, Value: []byte("one")}, "two", false)
	require.Equal(t, Result{Status: StatusOK, Revision: 4}, r)

	// By revision: the revision of the last change, 0 for absent.
	require.Equal(t, StatusMismatch, cas(Condition{Kind: ExpectRevision, Revision: 1}, "x", false).Status)
	require.Equal(t, StatusOK, cas(Condition{Kind: ExpectRevision, Revision: 4}, "three", false).Status)
	require.Equal(t, StatusMismatch, cas(Condition{Kind: ExpectRevision, Revision: 0}, "x", false).Status)

	// Delete on a condition.
	require.Equal(t, StatusMismatch, cas(Condition{Kind: ExpectValue, Value: []byte("two")}, "", true).Status)
	require.Equal(t, StatusOK, cas(Condition{Kind: ExpectValue, Value: []byte("three")}, "", true).Status)
	require.Nil(t, query(t, a.m, Query{Op: QueryGet, Key: "k"}).Entry)
	// A value condition never matches an absent key, even an empty value.
	require.Equal(t, StatusMismatch, cas(Condition{Kind: ExpectValue}, "x", false).Status)
	require.Equal(t, StatusOK, cas(Condition{Kind: ExpectRevision, Revision: 0}, "four", false).Status)
}

func TestInvalidCommandsChangeNothing(t *testing.T) {
	a := &applier{m: New()}
	a.apply(Command{Op: OpPut, Key: "keep", Value: []byte("v")})
	bad := []Command{
		{Op: "frobnicate", Key: "k"},
		{Op: OpPut, Key: ""},
		{Op: OpPut, Key: strings.Repeat("x", MaxKeyBytes+1)},
		{Op: OpPut, Key: "bad\x00key"},
		{Op: OpPut, Key: "\xff\xfe"},
		{Op: OpCAS, Key: "keep"},
		{Op: OpCAS, Key: "keep", Expect: &Condition{Kind: "maybe"}},
		{Op: OpCAS, Key: "keep", Expect: &Condition{Kind: ExpectAbsent}, Delete: true, Value: []byte("x")},
		{Op: OpSetNode},
		{Op: OpSetNode, Node: &NodeInfo{ID: "rago_system"}},
		{Op: OpForgetNode, Node: &NodeInfo{ID: ""}},
	}
	before := query(t, a.m, Query{Op: QueryList})
	for _, c := range bad {
		r := a.apply(c)
		require.Equal(t, StatusInvalid, r.Status, "%+v", c)
		require.NotEmpty(t, r.Error)
	}
	require.Equal(t, before, query(t, a.m, Query{Op: QueryList}))
	require.Len(t, query(t, a.m, Query{Op: QueryStats}).Stats.Recent, 1)
}

func TestListByPrefixWithPaging(t *testing.T) {
	a := &applier{m: New()}
	for _, k := range []string{"b/2", "a", "b/1", "b/3", "c", "b"} {
		a.apply(Command{Op: OpPut, Key: k, Value: []byte("v" + k)})
	}
	keys := func(items []Entry) []string {
		var out []string
		for _, e := range items {
			out = append(out, e.Key)
		}
		return out
	}
	all := query(t, a.m, Query{Op: QueryList})
	require.Equal(t, []string{"a", "b", "b/1", "b/2", "b/3", "c"}, keys(all.Items))
	require.False(t, all.More)

	page := query(t, a.m, Query{Op: QueryList, Prefix: "b/", Limit: 2})
	require.Equal(t, []string{"b/1", "b/2"}, keys(page.Items))
	require.True(t, page.More)
	require.Equal(t, "b/2", page.Next)
	page = query(t, a.m, Query{Op: QueryList, Prefix: "b/", Limit: 2, After: page.Next})
	require.Equal(t, []string{"b/3"}, keys(page.Items))
	require.False(t, page.More)

	none := query(t, a.m, Query{Op: QueryList, Prefix: "zzz"})
	require.Empty(t, none.Items)
	require.False(t, none.More)
}

func TestListStopsAtByteBound(t *testing.T) {
	a := &applier{m: New()}
	big := make([]byte, MaxListBytes/2)
	for i := range 4 {
		a.apply(Command{Op: OpPut, Key: fmt.Sprint("k", i), Value: big})
	}
	// len, not require.Len: a failure would print megabytes of values.
	page := query(t, a.m, Query{Op: QueryList})
	require.Equal(t, 2, len(page.Items), "stops once past the bound")
	require.True(t, page.More)
	rest := query(t, a.m, Query{Op: QueryList, After: page.Next})
	require.Equal(t, 2, len(rest.Items))
	require.False(t, rest.More)
}

func TestRecentAndStats(t *testing.T) {
	a := &applier{m: New()}
	for i := range RecentChanges + 10 {
		a.apply(Command{Op: OpPut, Key: fmt.Sprint("k", i), Value: []byte(strings.Repeat("x", i))})
	}
	a.apply(Command{Op: OpDelete, Key: "k3"})
	st := query(t, a.m, Query{Op: QueryStats, Limit: 3}).Stats
	require.Equal(t, RecentChanges+9, st.Keys)
	require.Equal(t, []Change{
		{Key: "k3", Op: OpDelete, Revision: uint64(RecentChanges + 11)},
		{Key: fmt.Sprint("k", RecentChanges+9), Op: OpPut, Revision: uint64(RecentChanges + 10)},
		{Key: fmt.Sprint("k", RecentChanges+8), Op: OpPut, Revision: uint64(RecentChanges + 9)},
	}, st.Recent)

	rec := query(t, a.m, Query{Op: QueryRecent}).Recent
	require.Len(t, rec, RecentChanges, "the list is bounded")
	require.False(t, rec[0].Exists)
	require.True(t, rec[1].Exists)
	require.Len(t, rec[1].Value, PreviewBytes)
	require.True(t, rec[1].Truncated)
}

func TestNodeDirectory(t *testing.T) {
	a := &applier{m: New()}
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n2", Raft: "127.0.0.1:7002", HTTP: "http://127.0.0.1:8002"}})
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", Raft: "127.0.0.1:7001", HTTP: "http://127.0.0.1:8001"}})
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", Raft: "127.0.0.1:7001", HTTP: "http://127.0.0.1:9001"}})
	nodes := query(t, a.m, Query{Op: QueryNodes}).Nodes
	require.Equal(t, []NodeInfo{
		{ID: "n1", Raft: "127.0.0.1:7001", HTTP: "http://127.0.0.1:9001"},
		{ID: "n2", Raft: "127.0.0.1:7002", HTTP: "http://127.0.0.1:8002"},
	}, nodes)
	require.Equal(t, StatusOK, a.apply(Command{Op: OpForgetNode, Node: &NodeInfo{ID: "n2"}}).Status)
	require.Equal(t, StatusNotFound, a.apply(Command{Op: OpForgetNode, Node: &NodeInfo{ID: "n2"}}).Status)
	require.Len(t, query(t, a.m, Query{Op: QueryNodes}).Nodes, 1)
	require.Zero(t, query(t, a.m, Query{Op: QueryStats}).Stats.Keys, "nodes are not keys")
}

func TestBadQueries(t *testing.T) {
	m := New()
	_, err := m.Query([]byte("{"))
	require.Error(t, err)
	_, err = m.Query([]byte(`{"op":"drop_tables"}`))
	require.Error(t, err)
}

// Two machines fed the same commands reach the same state: the answers to
// every query match byte for byte (map order must never leak out).
func TestDeterministic(t *testing.T) {
	run := func() []byte {
		a := &applier{m: New()}
		for i := range 300 {
			k := fmt.Sprint("k", i%37)
			switch i % 5 {
			case 0, 1:
				a.apply(Command{Op: OpPut, Key: k, Value: []byte(fmt.Sprint(i))})
			case 2:
				a.apply(Command{Op: OpDelete, Key: k})
			case 3:
				a.apply(Command{Op: OpCAS, Key: k, Expect: &Condition{Kind: ExpectAbsent}, Value: []byte("c")})
			case 4:
				a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: fmt.Sprint("n", i%7), HTTP: fmt.Sprint(i)}})
			}
		}
		var out []byte
		for _, q := range []Query{{Op: QueryList}, {Op: QueryStats}, {Op: QueryNodes}, {Op: QueryRecent}} {
			b, err := json.Marshal(q)
			require.NoError(t, err)
			ans, err := a.m.Query(b)
			require.NoError(t, err)
			out = append(out, ans...)
		}
		return out
	}
	require.Equal(t, run(), run())
}

// The factory's machine takes JSON commands through raftserver's typed
// wrapper and answers byte queries.
func TestFactoryRoundTrip(t *testing.T) {
	m, err := Factory(nil)
	require.NoError(t, err)
	cmd, err := json.Marshal(Command{Op: OpPut, Key: "k", Value: []byte("v")})
	require.NoError(t, err)
	require.NotEmpty(t, m.Apply(&raftserver.ApplyContext{Index: 7, Term: 2}, cmd))
	q, ok := m.(raftserver.Querier)
	require.True(t, ok)
	b, err := q.Query([]byte(`{"op":"get","key":"k"}`))
	require.NoError(t, err)
	var a Answer
	require.NoError(t, json.Unmarshal(b, &a))
	require.Equal(t, &Entry{Key: "k", Value: []byte("v"), Revision: 7, Created: 7}, a.Entry)

	_, err = Factory([]byte("x"))
	require.Error(t, err)
}

// The history keeps the latest changes with their values for watches,
// within its bounds, and says from which revision on it is complete.
func TestHistoryOfChanges(t *testing.T) {
	a := &applier{m: New()}
	a.apply(Command{Op: OpPut, Key: "w/a", Value: []byte("1")})                                                             // 1
	a.apply(Command{Op: OpPut, Key: "x/b", Value: []byte("2")})                                                             // 2
	a.apply(Command{Op: OpCAS, Key: "w/a", Expect: &Condition{Kind: ExpectValue, Value: []byte("no")}, Value: []byte("3")}) // 3: mismatch
	a.apply(Command{Op: OpCAS, Key: "w/a", Expect: &Condition{Kind: ExpectValue, Value: []byte("1")}, Value: []byte("4")})  // 4
	a.apply(Command{Op: OpDelete, Key: "w/a"})                                                                              // 5
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1"}})                                                              // 6: no change of a key
	got := query(t, a.m, Query{Op: QueryChanges, Prefix: "w/", From: 1})
	require.Equal(t, []Event{
		{Revision: 1, Key: "w/a", Op: OpPut, Value: []byte("1")},
		{Revision: 4, Key: "w/a", Op: OpPut, Value: []byte("4")},
		{Revision: 5, Key: "w/a", Op: OpDelete},
	}, got.Changes, "what happened, CAS outcomes included")
	require.Equal(t, uint64(1), got.Since)
	require.Equal(t, uint64(6), got.Through)
	require.False(t, got.More)

	got = query(t, a.m, Query{Op: QueryChanges, From: 2, Limit: 2})
	require.Equal(t, []uint64{2, 4}, revisions(got.Changes))
	require.True(t, got.More)
	require.Equal(t, uint64(4), got.Through, "complete up to the last change returned")

	// Past its bounds the oldest changes go, and Since moves on.
	b := &applier{m: New()}
	for i := range HistoryChanges + 10 {
		b.apply(Command{Op: OpPut, Key: fmt.Sprint("k", i%7), Value: []byte("v")})
	}
	got = query(t, b.m, Query{Op: QueryChanges, From: 1, Limit: 1})
	require.Equal(t, uint64(11), got.Since)
	require.Equal(t, uint64(11), got.Changes[0].Revision)
	big := bytes.Repeat([]byte("x"), HistoryBytes/3)
	for range 4 {
		b.apply(Command{Op: OpPut, Key: "big", Value: big})
	}
	got = query(t, b.m, Query{Op: QueryChanges, From: 1})
	require.Len(t, got.Changes, 2, "bytes bound the history too")
	require.Equal(t, got.Changes[0].Revision, got.Since)

	// A version 1 snapshot has no history: it is complete from the change
	// after the last recent one.
	old := snap(1, "k", "v", 7, 7, 1, "k", "put", 7, 0)
	r := restore(t, old)
	got = query(t, r, Query{Op: QueryChanges, From: 1})
	require.Empty(t, got.Changes)
	require.Equal(t, uint64(8), got.Since)
	r.Apply(&raftserver.ApplyContext{Index: 9}, Command{Op: OpPut, Key: "k", Value: []byte("w")})
	got = query(t, r, Query{Op: QueryChanges, From: 8})
	require.Equal(t, []uint64{9}, revisions(got.Changes))
}

func revisions(es []Event) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Revision)
	}
	return out
}
