package kv

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/rago-raft/rago/raftserver"
	"github.com/stretchr/testify/require"
)

// writeSnapshot takes a snapshot of m and writes it out.
func writeSnapshot(t testing.TB, m *Machine) []byte {
	t.Helper()
	src, err := m.Snapshot()
	require.NoError(t, err)
	defer src.Release()
	var buf bytes.Buffer
	n, err := src.WriteTo(&buf)
	require.NoError(t, err)
	require.Equal(t, int64(buf.Len()), n)
	return buf.Bytes()
}

// restore loads a snapshot into a fresh machine.
func restore(t testing.TB, b []byte) *Machine {
	t.Helper()
	m := New()
	require.NoError(t, m.Restore(bytes.NewReader(b)))
	return m
}

// dump is every query's answer, as raw JSON so that even a nil value
// against an empty one shows: list, a get of every listed key, stats,
// nodes and recent.
func dump(t *testing.T, m *Machine) []string {
	t.Helper()
	ask := func(q Query) string {
		b, err := json.Marshal(q)
		require.NoError(t, err)
		out, err := m.Query(b)
		require.NoError(t, err)
		return string(out)
	}
	list := query(t, m, Query{Op: QueryList})
	require.False(t, list.More, "dump is for small machines")
	out := []string{ask(Query{Op: QueryList})}
	for _, e := range list.Items {
		out = append(out, ask(Query{Op: QueryGet, Key: e.Key}))
	}
	out = append(out, ask(Query{Op: QueryGet, Key: "never-written"}))
	for _, op := range []string{QueryStats, QueryNodes, QueryRecent, QueryChanges} {
		out = append(out, ask(Query{Op: op}))
	}
	return out
}

// unwrapSnapshotter finds the Snapshotter of a factory's machine the way
// raftserver's capability does: on the machine or on what it unwraps to.
func unwrapSnapshotter(t *testing.T, m raftserver.Machine) raftserver.Snapshotter {
	t.Helper()
	if s, ok := m.(raftserver.Snapshotter); ok {
		return s
	}
	u, ok := m.(interface{ Unwrap() any })
	require.True(t, ok, "the typed machine unwraps")
	s, ok := u.Unwrap().(raftserver.Snapshotter)
	require.True(t, ok, "the kv machine is a Snapshotter")
	return s
}

// mixed applies a mix of every kind of command, leaving some keys
// overwritten, some deleted, an empty value and a few nodes.
func mixed(a *applier) {
	for i := range 40 {
		a.apply(Command{Op: OpPut, Key: fmt.Sprint("k", i%13), Value: []byte(strings.Repeat("v", i))})
	}
	a.apply(Command{Op: OpPut, Key: "empty"})
	a.apply(Command{Op: OpPut, Key: "dir/é ünïcode", Value: []byte{0, 1, 2, 0xff}})
	a.apply(Command{Op: OpDelete, Key: "k3"})
	a.apply(Command{Op: OpDelete, Key: "missing"})
	a.apply(Command{Op: OpCAS, Key: "k4", Expect: &Condition{Kind: ExpectRevision, Revision: 31}, Value: []byte("cas")})
	a.apply(Command{Op: OpCAS, Key: "k5", Expect: &Condition{Kind: ExpectAbsent}, Value: []byte("no")})
	a.apply(Command{Op: OpCAS, Key: "k6", Expect: &Condition{Kind: ExpectValue, Value: []byte(strings.Repeat("v", 32))}, Delete: true})
	a.apply(Command{Op: OpCAS, Key: "new", Expect: &Condition{Kind: ExpectAbsent}, Value: []byte("created")})
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n2", Raft: "127.0.0.1:7002", HTTP: "http://127.0.0.1:8002"}})
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", Raft: "127.0.0.1:7001"}})
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n3", HTTP: "http://h:3"}})
	a.apply(Command{Op: OpForgetNode, Node: &NodeInfo{ID: "n3"}})
	a.apply(Command{Op: "bogus"})
}

func TestSnapshotRoundTrip(t *testing.T) {
	a := &applier{m: New()}
	mixed(a)
	b := writeSnapshot(t, a.m)
	require.True(t, bytes.HasPrefix(b, []byte("KVSNAP\x02")))
	r := restore(t, b)
	want := dump(t, a.m)
	require.Equal(t, want, dump(t, r))
	require.Contains(t, want[0], `"key":"empty","value":""`, "the dump shows an empty value")
	require.Equal(t, b, writeSnapshot(t, r), "a restored state writes the same bytes")

	// The restored machine goes on like the original.
	b2 := &applier{m: r, index: a.index}
	for _, x := range []*applier{a, b2} {
		x.apply(Command{Op: OpPut, Key: "k0", Value: []byte("after")})
		x.apply(Command{Op: OpPut, Key: "a-first", Value: []byte("new key")})
		x.apply(Command{Op: OpDelete, Key: "new"})
	}
	require.Equal(t, dump(t, a.m), dump(t, r))

	// An empty machine round trips too.
	empty := writeSnapshot(t, New())
	require.Equal(t, "KVSNAP\x02\x00\x00\x00\x00\x01\x00", string(empty))
	require.Equal(t, dump(t, New()), dump(t, restore(t, empty)))
}

// The factory's typed machine is a Snapshotter through its wrapper, which
// is how raftserver finds it; commands go in as JSON.
func TestSnapshotThroughFactory(t *testing.T) {
	fm, err := Factory(nil)
	require.NoError(t, err)
	index := uint64(0)
	apply := func(c Command) {
		b, err := json.Marshal(c)
		require.NoError(t, err)
		index++
		fm.Apply(&raftserver.ApplyContext{Index: index, Term: 1}, b)
	}
	apply(Command{Op: OpPut, Key: "a", Value: []byte("1")})
	apply(Command{Op: OpPut, Key: "b", Value: []byte("2")})
	apply(Command{Op: OpPut, Key: "a", Value: []byte("3")})
	apply(Command{Op: OpDelete, Key: "b"})
	apply(Command{Op: OpCAS, Key: "c", Expect: &Condition{Kind: ExpectAbsent}})
	apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", Raft: "r:1", HTTP: "http://h:1"}})

	src, err := unwrapSnapshotter(t, fm).Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = src.WriteTo(&buf)
	require.NoError(t, err)
	src.Release()

	fresh, err := Factory(nil)
	require.NoError(t, err)
	require.NoError(t, unwrapSnapshotter(t, fresh).Restore(bytes.NewReader(buf.Bytes())))
	orig := fm.(interface{ Unwrap() any }).Unwrap().(*Machine)
	got := fresh.(interface{ Unwrap() any }).Unwrap().(*Machine)
	require.Equal(t, dump(t, orig), dump(t, got))
	require.Equal(t, &Entry{Key: "a", Value: []byte("3"), Revision: 3, Created: 1}, query(t, got, Query{Op: QueryGet, Key: "a"}).Entry)
}

// The Source is the state at Snapshot, whatever Apply does before WriteTo.
func TestSnapshotIsPointInTime(t *testing.T) {
	a := &applier{m: New()}
	mixed(a)
	want := dump(t, a.m)
	wantBytes := writeSnapshot(t, a.m)
	src, err := a.m.Snapshot()
	require.NoError(t, err)

	// Overwrite every key in place, delete some, add others, change the
	// nodes and push the recent changes out.
	for _, e := range query(t, a.m, Query{Op: QueryList}).Items {
		a.apply(Command{Op: OpPut, Key: e.Key, Value: []byte("overwritten")})
	}
	a.apply(Command{Op: OpDelete, Key: "k0"})
	a.apply(Command{Op: OpCAS, Key: "k1", Expect: &Condition{Kind: ExpectValue, Value: []byte("overwritten")}, Delete: true})
	for i := range RecentChanges {
		a.apply(Command{Op: OpPut, Key: fmt.Sprint("later", i)})
	}
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", Raft: "moved:1"}})
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n0"}})
	a.apply(Command{Op: OpForgetNode, Node: &NodeInfo{ID: "n2"}})
	require.NotEqual(t, want, dump(t, a.m))

	var buf bytes.Buffer
	n, err := src.WriteTo(&buf)
	require.NoError(t, err)
	require.Equal(t, int64(buf.Len()), n)
	src.Release()
	require.Equal(t, wantBytes, buf.Bytes())
	require.Equal(t, want, dump(t, restore(t, buf.Bytes())))
}

// WriteTo runs on the writer's goroutine while Apply goes on: the race
// detector sees no shared write, and the bytes are the state at Snapshot.
func TestSnapshotWritesWhileApplying(t *testing.T) {
	a := &applier{m: New()}
	mixed(a)
	wantBytes := writeSnapshot(t, a.m)
	src, err := a.m.Snapshot()
	require.NoError(t, err)
	done := make(chan []byte)
	go func() {
		defer src.Release()
		var buf bytes.Buffer
		if _, err := src.WriteTo(&buf); err != nil {
			buf.Reset()
		}
		done <- buf.Bytes()
	}()
	for i := range 200 {
		a.apply(Command{Op: OpPut, Key: fmt.Sprint("k", i%20), Value: []byte{byte(i)}})
		a.apply(Command{Op: OpDelete, Key: fmt.Sprint("k", (i+7)%20)})
		a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: fmt.Sprint("n", i%4), HTTP: fmt.Sprint(i)}})
	}
	require.Equal(t, wantBytes, <-done)
}

// Release, with or without WriteTo, touches neither the machine nor
// another Source.
func TestSnapshotReleaseIsHarmless(t *testing.T) {
	a := &applier{m: New()}
	mixed(a)
	want := dump(t, a.m)
	wantBytes := writeSnapshot(t, a.m)

	unused, err := a.m.Snapshot()
	require.NoError(t, err)
	other, err := a.m.Snapshot()
	require.NoError(t, err)
	unused.Release()
	require.Equal(t, want, dump(t, a.m))

	var buf bytes.Buffer
	_, err = other.WriteTo(&buf)
	require.NoError(t, err)
	other.Release()
	require.Equal(t, wantBytes, buf.Bytes())

	// The machine goes on applying and snapshotting.
	require.Equal(t, StatusOK, a.apply(Command{Op: OpPut, Key: "k0", Value: []byte("x")}).Status)
	require.Equal(t, dump(t, a.m), dump(t, restore(t, writeSnapshot(t, a.m))))
}

// WriteTo stops at the writer's first error and returns it with the bytes
// that went through.
func TestSnapshotWriteError(t *testing.T) {
	a := &applier{m: New()}
	big := bytes.Repeat([]byte("x"), 10_000)
	for i := range 50 {
		a.apply(Command{Op: OpPut, Key: fmt.Sprint("k", i), Value: big})
	}
	full := errors.New("disk full")
	for _, limit := range []int{0, 1, 4096, 65536, 200_000} {
		src, err := a.m.Snapshot()
		require.NoError(t, err)
		w := &failingWriter{left: limit, err: full}
		n, err := src.WriteTo(w)
		src.Release()
		require.ErrorIs(t, err, full)
		require.Equal(t, int64(w.written), n)
		require.LessOrEqual(t, w.written, limit)
	}
}

type failingWriter struct {
	left, written int
	err           error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		w.written += w.left
		n := w.left
		w.left = 0
		return n, w.err
	}
	w.left -= len(p)
	w.written += len(p)
	return len(p), nil
}

func TestRestoreTruncated(t *testing.T) {
	a := &applier{m: New()}
	mixed(a)
	b := writeSnapshot(t, a.m)
	for i := range len(b) {
		m := New()
		err := m.Restore(bytes.NewReader(b[:i]))
		require.ErrorIs(t, err, ErrBadSnapshot, "prefix of %d bytes of %d", i, len(b))
		require.Equal(t, dump(t, New()), dump(t, m), "a failed restore changes nothing")
	}

	// A value longer than a read chunk, cut in its middle and at its end.
	a.apply(Command{Op: OpPut, Key: "large", Value: bytes.Repeat([]byte("L"), 3*readChunk+5)})
	b = writeSnapshot(t, a.m)
	require.Equal(t, dump(t, a.m), dump(t, restore(t, b)))
	at := bytes.Index(b, []byte("LLLL"))
	for _, cut := range []int{at, at + 1, at + readChunk, at + 2*readChunk + 3, at + 3*readChunk + 4, len(b) - 1} {
		require.ErrorIs(t, New().Restore(bytes.NewReader(b[:cut])), ErrBadSnapshot, "cut at %d", cut)
	}
}

func TestRestoreTrailingGarbage(t *testing.T) {
	a := &applier{m: New()}
	mixed(a)
	b := writeSnapshot(t, a.m)
	for _, tail := range []string{"\x00", "x", "KVSNAP\x01\x00\x00\x00"} {
		err := New().Restore(bytes.NewReader(append(bytes.Clone(b), tail...)))
		require.ErrorIs(t, err, ErrBadSnapshot)
		require.ErrorContains(t, err, "trailing")
	}
}

// snap builds a version 1 snapshot by hand: a string argument is written
// with its length, a uint64 or int as a uvarint, a []byte as it is.
func snap(parts ...any) []byte { return snapV(1, parts...) }

// snap2 builds a version 2 snapshot like snap.
func snap2(parts ...any) []byte { return snapV(2, parts...) }

func snapV(version byte, parts ...any) []byte {
	b := append([]byte("KVSNAP"), version)
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b = binary.AppendUvarint(b, uint64(len(p)))
			b = append(b, p...)
		case int:
			b = binary.AppendUvarint(b, uint64(p))
		case uint64:
			b = binary.AppendUvarint(b, p)
		case []byte:
			b = append(b, p...)
		default:
			panic(fmt.Sprintf("snap: %T", p))
		}
	}
	return b
}

func TestRestoreRejects(t *testing.T) {
	// The hand-made encoding agrees with the machine's.
	a := &applier{m: New()}
	a.apply(Command{Op: OpPut, Key: "k", Value: []byte("v")})
	a.apply(Command{Op: OpSetNode, Node: &NodeInfo{ID: "n1", Raft: "r", HTTP: "h"}})
	require.Equal(t, snap2(1, "k", "v", 1, 1, 1, "k", "put", 1, 1, "n1", "r", "h", 2, 1, 1, 1, "k", "put", "v"), writeSnapshot(t, a.m))
	// The sections of version 2 after the nodes: applied, since, history.
	v2 := func(tail ...any) []byte { return snap2(append([]any{0, 0, 0}, tail...)...) }

	entry := func(key string) []any { return []any{key, "v", 1, 1} }
	flat := func(parts ...[]any) []any {
		var out []any
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, c := range []struct {
		name, why string
		in        []byte
	}{
		{"empty", "header", nil},
		{"magic", "not a kv snapshot", []byte("KVSNAQ\x01\x00\x00\x00")},
		{"version", "version 3", []byte("KVSNAP\x03\x00\x00\x00")},
		{"v2 without history", "applied index", snap2(0, 0, 0)},
		{"history start 0", "history start", v2(5, 0, 0)},
		{"history start past applied", "history start", v2(5, 7, 0)},
		{"history past applied", "at most the applied index", v2(5, 1, 1, 6, "k", "put", "v")},
		{"history out of order", "is not after", v2(5, 1, 2, 3, "k", "put", "v", 2, "k", "put", "v")},
		{"history before its start", "is not after", v2(5, 3, 1, 2, "k", "put", "v")},
		{"history op", "unknown change", v2(5, 1, 1, 1, "k", "cas", "v")},
		{"history delete with a value", "unknown change", v2(5, 1, 1, 1, "k", "delete", "v")},
		{"history key", "control", v2(5, 1, 1, 1, "\x01", "put", "v")},
		{"too much history", "4097 is more than 4096", v2(5, 1, HistoryChanges+1)},
		{"empty key", "empty", snap(1, "", "v", 1, 1, 0, 0)},
		{"long key", "length 1025", snap(1, strings.Repeat("k", MaxKeyBytes+1), "v", 1, 1, 0, 0)},
		{"control key", "control", snap(1, "a\nb", "v", 1, 1, 0, 0)},
		{"not utf-8 key", "UTF-8", snap(1, "\xff", "v", 1, 1, 0, 0)},
		{"unsorted keys", "out of order", snap(flat([]any{2}, entry("b"), entry("a"), []any{0, 0})...)},
		{"repeated key", "out of order", snap(flat([]any{2}, entry("a"), entry("a"), []any{0, 0})...)},
		{"value too long", "length 67108865", snap(1, "k", maxSnapshotString+1)},
		{"too many recent", "65 is more than 64", snap(0, RecentChanges+1)},
		{"recent key", "control", snap(0, 1, "\x7f", "put", 1, 0)},
		{"recent op", "unknown change", snap(0, 1, "k", "cas", 1, 0)},
		{"long recent op", "length 17", snap(0, 1, "k", strings.Repeat("p", 17), 1, 0)},
		{"node id", "rago", snap(0, 0, 1, "rago1", "r", "h")},
		{"empty node id", "1 to 32", snap(0, 0, 1, "", "r", "h")},
		{"unsorted nodes", "out of order", snap(0, 0, 2, "n2", "", "", "n1", "", "")},
		{"repeated node", "out of order", snap(0, 0, 2, "n1", "", "", "n1", "", "")},
		{"count over int", "more than", snap(uint64(1) << 63)},
		{"varint overflow", "overflow", snap([]byte("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"))},
		{"varint not shortest", "shortest", snap([]byte{0x80, 0x00}, 0, 0)},
		{"length not shortest", "shortest", snap(1, []byte{0x81, 0x00, 'k'}, "v", 1, 1, 0, 0)},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := New()
			err := m.Restore(bytes.NewReader(c.in))
			require.ErrorIs(t, err, ErrBadSnapshot)
			require.ErrorContains(t, err, c.why)
			require.Equal(t, dump(t, New()), dump(t, m))
		})
	}
}

// A length or count the input does not hold fails at the end of the input
// without allocating what it claims.
func TestRestoreDoesNotTrustLengths(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
	}{
		{"huge entry count", snap(uint64(1) << 62)},
		{"huge node count", snap(0, 0, uint64(1)<<62)},
		{"value at the limit", snap(1, "k", maxSnapshotString, "only this")},
		{"address at the limit", snap(0, 0, 1, "n1", maxSnapshotString)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := New().Restore(bytes.NewReader(c.in))
			runtime.ReadMemStats(&after)
			require.ErrorIs(t, err, ErrBadSnapshot)
			require.ErrorIs(t, err, io.ErrUnexpectedEOF)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20))
		})
	}
}

// An error of the reader is returned as it is, not as a bad snapshot.
func TestRestoreReaderError(t *testing.T) {
	a := &applier{m: New()}
	mixed(a)
	b := writeSnapshot(t, a.m)
	broken := errors.New("disk on fire")
	for _, n := range []int{0, 3, 7, len(b) / 2, len(b)} {
		r := io.MultiReader(bytes.NewReader(b[:n]), &errReader{broken})
		err := New().Restore(r)
		require.ErrorIs(t, err, broken, "after %d bytes", n)
		require.NotErrorIs(t, err, ErrBadSnapshot)
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// FuzzRestore: Restore never panics on any input, and either rejects it
// as a bad snapshot or restores a state that writes the input back byte
// for byte (a state has a single encoding).
func FuzzRestore(f *testing.F) {
	a := &applier{m: New()}
	mixed(a)
	f.Add(writeSnapshot(f, a.m))
	f.Add(writeSnapshot(f, New()))
	f.Add(snap(2, "a", "", 0, 0, "b", "\x00", 9, 3, 2, "a", "put", 1, "z", "delete", 2, 1, "n1", "", "x"))
	f.Add(snap2(1, "a", "b", 3, 3, 1, "a", "put", 3, 0, 4, 2, 2, 2, "x", "delete", "", 3, "a", "put", "b"))
	f.Add([]byte("KVSNAP"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := New()
		if err := m.Restore(bytes.NewReader(b)); err != nil {
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("error without ErrBadSnapshot: %v", err)
			}
			if len(m.data) != 0 || len(m.keys) != 0 || len(m.recent) != 0 || len(m.nodes) != 0 {
				t.Fatalf("a failed restore changed the machine")
			}
			return
		}
		out := writeSnapshot(t, m)
		if b[6] == 1 {
			// Version 1 is written as version 2, which is stable.
			b = out
			m = restore(t, out)
			out = writeSnapshot(t, m)
		}
		if !bytes.Equal(b, out) {
			t.Fatalf("restored state writes %q, not the input %q", out, b)
		}
		// The restored machine answers queries and applies commands.
		for _, q := range []string{`{"op":"list"}`, `{"op":"nodes"}`, `{"op":"stats"}`, `{"op":"recent"}`, `{"op":"changes"}`} {
			if _, err := m.Query([]byte(q)); err != nil {
				t.Fatalf("query %s: %v", q, err)
			}
		}
		ctx := &raftserver.ApplyContext{Index: 1 << 40}
		for _, k := range m.keys[:min(len(m.keys), 3)] {
			m.Apply(ctx, Command{Op: OpDelete, Key: k})
		}
		m.Apply(ctx, Command{Op: OpPut, Key: "fuzz", Value: []byte("x")})
	})
}

// BenchmarkSnapshot measures a machine of 100,000 keys of 100-byte
// values: "view" is how long Snapshot blocks Apply (the copy of the view),
// "write" the serialisation that runs in the background, "restore" the
// load.
func BenchmarkSnapshot(b *testing.B) {
	a := &applier{m: New()}
	value := bytes.Repeat([]byte("v"), 100)
	for i := range 100_000 {
		a.apply(Command{Op: OpPut, Key: fmt.Sprintf("key/%08d", i), Value: bytes.Clone(value)})
	}
	data := writeSnapshot(b, a.m)
	b.Run("view", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			src, err := a.m.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			src.Release()
		}
	})
	b.Run("write", func(b *testing.B) {
		src, err := a.m.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := src.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		src.Release()
	})
	b.Run("restore", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if err := New().Restore(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
