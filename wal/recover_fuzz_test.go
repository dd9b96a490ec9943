package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path"
	"testing"

	"github.com/rago-raft/rago/wal/walfs"
	"github.com/stretchr/testify/require"
)

// modelLogs is the expected content of every UID's log: entry i-1 has
// index i.
type modelLogs map[string][]Entry

func (m modelLogs) clone() modelLogs {
	c := modelLogs{}
	for uid, es := range m {
		c[uid] = append([]Entry(nil), es...)
	}
	return c
}

// batchMark is where one synced batch ended and what the logs were then.
type batchMark struct {
	file  uint64
	start int64
	end   int64
	logs  modelLogs
}

// buildDamageWAL writes a seeded WAL of several small files, one batch
// per flush, and returns the file system and the marks of every batch.
func buildDamageWAL(t testing.TB, seed uint64) (*walfs.Mem, []batchMark) {
	fs := walfs.NewMem()
	cfg := testConfig(fs)
	cfg.MaxFileBytes = 600
	h := openHarness(t, cfg)
	rng := rand.New(rand.NewPCG(seed, 7))
	model := modelLogs{}
	var marks []batchMark
	for b := 0; b < 6+rng.IntN(6); b++ {
		for _, uid := range []string{"a", "b", "c"} {
			if rng.IntN(2) == 0 {
				continue
			}
			log := model[uid]
			at := uint64(len(log)) + 1
			if len(log) > 0 && rng.IntN(4) == 0 {
				at = 1 + rng.Uint64N(uint64(len(log)))
			}
			n := 1 + rng.IntN(3)
			es := make([]Entry, n)
			for i := range es {
				es[i] = ent(at+uint64(i), uint64(b+1), fmt.Sprintf("%s-%d-%d", uid, b, i))
			}
			require.NoError(t, h.writer(uid).Write(es...))
			model[uid] = append(log[:at-1], es...)
		}
		if len(h.o.core.pending) == 0 {
			continue
		}
		h.flush()
		start := h.o.core.fileBytes - int64(h.o.core.lastLen)
		if start == 0 {
			start = fileHeaderLen
		}
		marks = append(marks, batchMark{file: h.o.core.file, start: start, end: h.o.core.fileBytes, logs: model.clone()})
	}
	h.close()
	return fs, marks
}

// recoveredLogs reads every UID's log back from the mem tables.
func recoveredLogs(t testing.TB, o *opened) modelLogs {
	got := modelLogs{}
	for _, uid := range []string{"a", "b", "c"} {
		log := o.tables.Get(uid)
		if log == nil {
			continue
		}
		v := log.View()
		last, _, ok := v.Last()
		if !ok {
			continue
		}
		for i := uint64(1); i <= last; i++ {
			e, p := v.Get(i)
			require.Equal(t, Present, p, "%s index %d", uid, i)
			got[uid] = append(got[uid], e)
		}
	}
	return got
}

func sameLogs(t testing.TB, want, got modelLogs) {
	t.Helper()
	for _, uid := range []string{"a", "b", "c"} {
		require.Equal(t, len(want[uid]), len(got[uid]), uid)
		for i := range want[uid] {
			w, g := want[uid][i], got[uid][i]
			require.Equal(t, w.Index, g.Index)
			require.Equal(t, w.Term, g.Term)
			require.Equal(t, string(w.Payload), string(g.Payload))
		}
	}
}

// FuzzRecoverDamaged damages one WAL file (truncation, overwritten bytes
// or appended garbage) and checks recovery: it either fails with a
// CorruptionError, or returns exactly the logs of every batch before the
// damage. If the damage spares the last batch of the last file, which
// proves the damaged batch had been synced, recovery must fail.
func FuzzRecoverDamaged(f *testing.F) {
	f.Add(uint64(1), uint8(0), uint8(0), uint16(100), []byte{})
	f.Add(uint64(2), uint8(1), uint8(1), uint16(30), []byte{0xff})
	f.Add(uint64(3), uint8(2), uint8(0), uint16(0), []byte("garbage"))
	f.Add(uint64(4), uint8(1), uint8(0), uint16(500), []byte{0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, seed uint64, mode, fileSel uint8, pos uint16, garbage []byte) {
		if bytes.Contains(garbage, binary.LittleEndian.AppendUint32(nil, batchMagic)) {
			return // garbage that may hold a forged valid batch proves nothing
		}
		fs, marks := buildDamageWAL(t, seed)
		files := map[uint64]bool{}
		var seqs []uint64
		for _, m := range marks {
			if !files[m.file] {
				files[m.file] = true
				seqs = append(seqs, m.file)
			}
		}
		file := seqs[int(fileSel)%len(seqs)]
		isLast := file == seqs[len(seqs)-1]
		name := path.Join("/wal", fileName(file))
		orig, err := fs.ReadFile(name)
		require.NoError(t, err)
		data := append([]byte(nil), orig...)
		at := int(pos) % (len(data) + 1)
		switch mode % 3 {
		case 0:
			data = data[:at]
		case 1:
			for i, g := range garbage {
				if at+i < len(data) {
					data[at+i] = g
				} else {
					data = append(data, g)
				}
			}
		case 2:
			data = append(data, garbage...)
		}
		x := 0 // first changed offset
		for x < len(data) && x < len(orig) && data[x] == orig[x] {
			x++
		}
		if x == len(data) && x == len(orig) {
			return // no change
		}
		rewrite(t, fs, name, data)

		if x == len(orig) && allZero(data[x:]) {
			// Zeros after a file's last batch are what a preallocated
			// file holds until it is cut: not damage, in any file.
			o, err := open(testConfig(fs))
			require.NoError(t, err, "zeros appended to %s", name)
			sameLogs(t, marks[len(marks)-1].logs, recoveredLogs(t, o))
			return
		}

		// before: batches entirely before the damage; lastSpared: the
		// final batch of the last file is intact and after the damage.
		before := 0
		for _, m := range marks {
			if m.file < file || m.file == file && m.end <= int64(x) {
				before++
			}
		}
		final := marks[len(marks)-1]
		lastSpared := isLast && final.start > int64(x) && int64(len(data)) >= final.end &&
			bytes.Equal(data[final.start:final.end], orig[final.start:final.end])

		o, err := open(testConfig(fs))
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt)
			return
		}
		require.True(t, isLast, "damage at %d of non-last file %s went unnoticed", x, name)
		require.False(t, lastSpared, "damage at %d before the intact final batch went unnoticed", x)
		want := modelLogs{}
		if before > 0 {
			want = marks[before-1].logs
		}
		sameLogs(t, want, recoveredLogs(t, o))
		// A second recovery of the cut directory sees a clean WAL.
		_, err = open(testConfig(fs))
		require.NoError(t, err)
	})
}
