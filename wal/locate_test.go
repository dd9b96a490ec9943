package wal

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// fileRecords reads a closed WAL file back and returns, per UID and index,
// where its last record lies: what a table of the file must point at.
func fileRecords(t require.TestingT, fs walfs.FS, path string) map[string]map[uint64][2]int64 {
	data, err := fs.ReadFile(path)
	require.NoError(t, err)
	out := map[string]map[uint64][2]int64{}
	require.NoError(t, ScanFile(bytes.NewReader(data), func(rec Record, off int64, n int) error {
		if out[rec.UID] == nil {
			out[rec.UID] = map[uint64][2]int64{}
		}
		out[rec.UID][rec.Index] = [2]int64{off, int64(n)}
		return nil
	}))
	return out
}

// requireLocated checks that every table of cf knows where its records
// are, that those are the file's last records of each index, and that the
// bytes there decode to the table's entries. It also checks the same
// through Entries.From, as the segment writer asks for a suffix.
func requireLocated(t require.TestingT, fs walfs.FS, cf *ClosedFile) {
	want := fileRecords(t, fs, cf.Path)
	data, err := fs.ReadFile(cf.Path)
	require.NoError(t, err)
	for _, tb := range cf.Tables {
		for _, skip := range []int{0, tb.Entries.Len() / 2} {
			es := tb.Entries.From(skip)
			calls := 0
			ok := es.Records(func(i int, off int64, n int) {
				require.Equal(t, calls, i, "positions come in order")
				calls++
				e := es.At(i)
				require.Equal(t, want[tb.UID][e.Index], [2]int64{off, int64(n)}, "%s index %d in %s", tb.UID, e.Index, cf.Path)
				rec, err := DecodeRecord(data[off : off+int64(n)])
				require.NoError(t, err)
				require.Equal(t, tb.UID, rec.UID)
				require.Equal(t, e.Term, rec.Term)
				require.True(t, bytes.Equal(e.Payload, rec.Payload), "payload of index %d", e.Index)
			})
			require.True(t, ok, "%s in %s has no record offsets", tb.UID, cf.Path)
			require.Equal(t, es.Len(), calls)
		}
	}
}

// TestTablesKnowWhereTheirRecordsAre writes random runs, overwrites and
// resets of several UIDs, with and without prefixes, shared or not, over
// small files, and
// checks that each closed table points at its records exactly as a scan
// of the file finds them: live, and again after recovery.
func TestTablesKnowWhereTheirRecordsAre(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		fs := walfs.NewMem()
		cfg := testConfig(fs)
		cfg.MaxBatchEntries = rapid.IntRange(1, 8).Draw(rt, "batch")
		h := openHarness(t, cfg)
		uids := []string{"a", "bb", "a-much-longer-uid"}
		last := map[string]uint64{}
		steps := rapid.IntRange(1, 120).Draw(rt, "steps")
		for s := 0; s < steps; s++ {
			uid := rapid.SampledFrom(uids).Draw(rt, "uid")
			from := last[uid] + 1
			reset := false
			switch rapid.IntRange(0, 9).Draw(rt, "kind") {
			case 0: // overwrite a suffix
				if last[uid] > 0 {
					lo := uint64(1)
					if last[uid] > 4 {
						lo = last[uid] - 4
					}
					from = rapid.Uint64Range(lo, last[uid]).Draw(rt, "from")
				}
			case 1: // restart the log higher up
				reset = true
				from = last[uid] + rapid.Uint64Range(1, 20).Draw(rt, "jump")
			}
			n := rapid.IntRange(1, 5).Draw(rt, "n")
			es := make([]Entry, n)
			for i := range es {
				p := bytes.Repeat([]byte{byte(s)}, rapid.SampledFrom([]int{0, 1, 30, 700}).Draw(rt, "size"))
				es[i] = Entry{Index: from + uint64(i), Term: uint64(s + 1), Payload: p}
				if rapid.Bool().Draw(rt, "prefixed") {
					es[i].Prefix, es[i].Prefixed = byte(i+1), true
				}
				es[i].Shared = rapid.Bool().Draw(rt, "shared")
			}
			w := h.writer(uid)
			if reset {
				require.NoError(rt, w.WriteReset(es...))
			} else {
				require.NoError(rt, w.Write(es...))
			}
			last[uid] = from + uint64(n) - 1
			if rapid.IntRange(0, 2).Draw(rt, "flush") == 0 {
				h.flush()
			}
		}
		h.flush()
		h.o.core.forceRoll = true
		require.NoError(rt, h.writer("a").Write(Entry{Index: last["a"] + 1, Term: 1000}))
		h.flush()
		require.NotEmpty(rt, h.closed)
		for _, cf := range h.closed {
			requireLocated(rt, fs, cf)
		}
		h.close()

		h2 := openHarness(t, testConfig(fs.Crash(nil)))
		require.NotEmpty(rt, h2.closed)
		for _, cf := range h2.closed {
			requireLocated(rt, fs, cf)
		}
		h2.close()
	})
}

// TestPrefixIsStoredBeforeThePayload checks what a prefixed write looks
// like to every reader: the mem tables, a scan of the file, recovery.
func TestPrefixIsStoredBeforeThePayload(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	a := h.writer("a")
	require.NoError(t, a.Write(
		Entry{Index: 1, Term: 1, Prefix: 7, Prefixed: true, Payload: []byte("seven")},
		Entry{Index: 2, Term: 1, Prefix: 0, Prefixed: true},
		Entry{Index: 3, Term: 1, Payload: []byte("plain")},
	))
	h.flush()
	require.Equal(t, []any{Written{UID: "a", Term: 1, From: 1, To: 3}}, h.take("a"))
	want := map[uint64]string{1: "\x07seven", 2: "\x00", 3: "plain"}
	check := func(v View) {
		for i, p := range want {
			e, pr := v.Get(i)
			require.Equal(t, Present, pr)
			require.Equal(t, p, string(e.Payload), "index %d", i)
			require.False(t, e.Prefixed)
		}
	}
	check(a.Mem().View())
	inflight, inBytes := a.InFlight()
	require.Zero(t, inflight)
	require.Zero(t, inBytes, "credit counts the prefix both ways")
	h.close()
	h2 := openHarness(t, testConfig(fs.Crash(nil)))
	check(h2.o.tables.Get("a").View())
	require.Len(t, h2.closed, 1)
	scanned := map[uint64]string{}
	data, err := fs.ReadFile(h2.closed[0].Path)
	require.NoError(t, err)
	require.NoError(t, ScanFile(bytes.NewReader(data), func(rec Record, _ int64, _ int) error {
		scanned[rec.Index] = string(rec.Payload)
		return nil
	}))
	require.Equal(t, want, scanned)
	h2.close()

	// The limit on a payload counts the prefix.
	cfg := testConfig(walfs.NewMem())
	cfg.MaxPayloadBytes = 4
	h3 := openHarness(t, cfg)
	require.NoError(t, h3.writer("a").Write(Entry{Index: 1, Term: 1, Payload: []byte("four")}))
	err = h3.writer("a").Write(Entry{Index: 2, Term: 1, Prefix: 1, Prefixed: true, Payload: []byte("four")})
	require.ErrorIs(t, err, ErrInvalid)
	require.Contains(t, err.Error(), fmt.Sprint(5))
	h3.close()
}

// TestSharedPayloadsAreKept checks that the mem tables keep a shared
// payload of sharedMinBytes or more instead of a copy, copy everything
// else, and that every reader sees the same bytes either way: the mem
// tables, and recovery from the file.
func TestSharedPayloadsAreKept(t *testing.T) {
	fs := walfs.NewMem()
	h := openHarness(t, testConfig(fs))
	a := h.writer("a")
	big := bytes.Repeat([]byte("b"), sharedMinBytes)
	small := bytes.Repeat([]byte("s"), sharedMinBytes-1)
	notShared := bytes.Repeat([]byte("n"), sharedMinBytes)
	prefixed := bytes.Repeat([]byte("p"), sharedMinBytes)
	require.NoError(t, a.Write(
		Entry{Index: 1, Term: 1, Payload: big, Shared: true},
		Entry{Index: 2, Term: 1, Payload: small, Shared: true},
		Entry{Index: 3, Term: 1, Payload: notShared},
		Entry{Index: 4, Term: 1, Payload: prefixed, Prefix: 9, Prefixed: true, Shared: true},
		Entry{Index: 5, Term: 2, Payload: big, Shared: true},
	))
	h.flush()
	require.Equal(t, []any{Written{UID: "a", Term: 2, From: 1, To: 5}}, h.take("a"))
	want := map[uint64]string{1: string(big), 2: string(small), 3: string(notShared), 4: "\x09" + string(prefixed), 5: string(big)}
	v := a.Mem().View()
	for i, p := range want {
		e, pr := v.Get(i)
		require.Equal(t, Present, pr)
		require.Equal(t, p, string(e.Payload), "index %d", i)
		require.Equal(t, i == 1 || i == 5, &e.Payload[0] == &big[0], "index %d: kept only if shared, large enough and not prefixed", i)
	}
	h.close()
	h2 := openHarness(t, testConfig(fs.Crash(nil)))
	v = h2.o.tables.Get("a").View()
	for i, p := range want {
		e, pr := v.Get(i)
		require.Equal(t, Present, pr)
		require.Equal(t, p, string(e.Payload), "recovered index %d", i)
	}
	h2.close()
}

// TestPackedEntriesHaveNoRecords checks that entries the WAL did not write
// say so instead of inventing offsets.
func TestPackedEntriesHaveNoRecords(t *testing.T) {
	es := PackEntries(Entry{Index: 1, Term: 1, Payload: []byte("x")}, Entry{Index: 2, Term: 1})
	require.False(t, es.Records(func(int, int64, int) { t.Fatal("called") }))
	require.True(t, Entries{}.Records(func(int, int64, int) { t.Fatal("called") }), "nothing to locate")
}
