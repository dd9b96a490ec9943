package shard

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/raftserver"
)

func apply(t *testing.T, m raftserver.Machine, index uint64, c Command) Result {
	t.Helper()
	b, _ := json.Marshal(c)
	var r Result
	require.NoError(t, json.Unmarshal(m.Apply(&raftserver.ApplyContext{Index: index}, b), &r))
	return r
}

func query(t *testing.T, m raftserver.Machine, q Query) Answer {
	t.Helper()
	b, _ := json.Marshal(q)
	out, err := m.(raftserver.Querier).Query(b)
	require.NoError(t, err)
	var a Answer
	require.NoError(t, json.Unmarshal(out, &a))
	return a
}

func TestMachine(t *testing.T) {
	m, err := Factory(Spec(3, 8).Config)
	require.NoError(t, err)
	require.Equal(t, Result{Revision: 1, Created: true}, apply(t, m, 1, Command{Op: OpPut, Key: "a", Value: []byte("1")}))
	require.Equal(t, Result{Revision: 2}, apply(t, m, 2, Command{Op: OpPut, Key: "a", Value: []byte("2")}))
	apply(t, m, 3, Command{Op: OpPut, Key: "b/1", Value: []byte("x")})
	require.Equal(t, Answer{Found: true, Value: []byte("2"), Revision: 2, Keys: 2}, query(t, m, Query{Op: OpGet, Key: "a"}))
	require.Equal(t, Result{Revision: 4, Found: true}, apply(t, m, 4, Command{Op: OpDelete, Key: "a"}))
	require.Equal(t, Result{}, apply(t, m, 5, Command{Op: OpDelete, Key: "a"}), "a delete of nothing")
	require.False(t, query(t, m, Query{Op: OpGet, Key: "a"}).Found)
	require.Contains(t, apply(t, m, 6, Command{Op: OpPut}).Error, "empty key")
	require.Contains(t, apply(t, m, 7, Command{Op: "swap", Key: "k"}).Error, "unknown operation")
	require.Equal(t, []Item{{Key: "b/1", Value: []byte("x"), Revision: 3}}, query(t, m, Query{Op: OpList, Prefix: "b/"}).Items)
	_, err = m.(raftserver.Querier).Query([]byte(`{"op":"nope"}`))
	require.ErrorIs(t, err, ErrInvalid)

	// A snapshot restores the same state on a fresh machine.
	src, err := m.(raftserver.Snapshotter).Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = src.WriteTo(&buf)
	require.NoError(t, err)
	m2, _ := Factory(nil)
	require.NoError(t, m2.(raftserver.Snapshotter).Restore(&buf))
	require.Equal(t, query(t, m, Query{Op: OpList}), query(t, m2, Query{Op: OpList}))
	require.Equal(t, Config{Shard: 3, Shards: 8}, m2.(*Machine).cfg)
	require.Error(t, m2.(raftserver.Snapshotter).Restore(bytes.NewReader([]byte("{"))))
}

// TestOf: the shard of a key is FNV-1a modulo the count, stable across
// releases (it is where the key's data lives).
func TestOf(t *testing.T) {
	require.Equal(t, 0, Of("anything", 1))
	// FNV-1a 32 of "a" is 0xe40c292c.
	require.Equal(t, int(uint32(0xe40c292c)%500), Of("a", 500))
	counts := make([]int, 16)
	for i := range 16000 {
		counts[Of(string(rune('a'+i%26))+string(rune(i)), 16)]++
	}
	for i, c := range counts {
		require.InDelta(t, 1000, c, 300, "shard %d", i)
	}
	require.Equal(t, "kv-0042", Name(42))
}
