package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name       string
		blockBytes int
		meta, data []byte
		step       int
	}{
		{"empty", 64, nil, nil, 1},
		{"meta only", 64, []byte("membership"), nil, 1},
		{"one short block", 64, []byte("m"), pattern(1, 10), 3},
		{"exact blocks", 64, []byte("m"), pattern(2, 256), 64},
		{"blocks and a tail", 64, pattern(3, 1000), pattern(4, 1000), 7},
		{"big writes", 64, nil, pattern(5, 5000), 5000},
		{"default blocks", 0, []byte("x"), pattern(6, 3<<20+17), 100_000},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), Options{BlockBytes: tc.blockBytes})
			index, term := uint64(10+i), uint64(3)
			info := writeSnap(t, s, "uid-A_1", index, term, tc.meta, tc.data, tc.step)
			require.Equal(t, index, info.Index)
			require.Equal(t, term, info.Term)
			require.NotZero(t, info.ID)
			require.Equal(t, int64(len(tc.data)), info.DataSize)

			latest, corrupt, err := s.Latest("uid-A_1")
			require.NoError(t, err)
			require.Empty(t, corrupt)
			require.Equal(t, info, latest)
			require.NoError(t, s.Verify(info))

			meta, data, err := readAll(s, info)
			require.NoError(t, err)
			require.Equal(t, len(tc.meta), len(meta))
			require.True(t, bytes.Equal(tc.meta, meta))
			require.True(t, bytes.Equal(tc.data, data), "data differs")

			st, err := os.Stat(filepath.Join(s.Dir(), "uid-A_1", snapName(index, term)))
			require.NoError(t, err)
			require.Equal(t, st.Size(), info.Size)
		})
	}
}

// smallFile writes a snapshot with several tiny blocks and returns its
// store, info, meta, data and path.
func smallFile(t *testing.T) (*Store, Info, []byte, []byte, string) {
	t.Helper()
	s := openStore(t, t.TempDir(), Options{BlockBytes: 16})
	meta, data := []byte("meta-blob"), pattern(9, 50)
	info := writeSnap(t, s, "u", 7, 2, meta, data, 50)
	return s, info, meta, data, filepath.Join(s.Dir(), "u", snapName(7, 2))
}

// checkDamaged asserts that a damaged file is refused by Verify and that
// a Reader never returns data that is not the original's or io.EOF.
func checkDamaged(t *testing.T, s *Store, info Info, data []byte, what string) {
	t.Helper()
	err := s.Verify(info)
	require.ErrorIs(t, err, ErrCorrupt, what)
	var ce *CorruptError
	require.ErrorAs(t, err, &ce, what)
	require.NotEmpty(t, ce.File)
	r, err := s.Open(info)
	if err != nil {
		require.ErrorIs(t, err, ErrCorrupt, what)
		return
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	require.ErrorIs(t, err, ErrCorrupt, what)
	require.True(t, isPrefix(got, data), "%s: reader returned data that is not the original's", what)
}

func TestEveryBitFlipIsDetected(t *testing.T) {
	s, info, _, data, path := smallFile(t)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	for bit := int64(0); bit < int64(len(orig))*8; bit++ {
		b := bytes.Clone(orig)
		b[bit/8] ^= 1 << (bit % 8)
		require.NoError(t, os.WriteFile(path, b, 0o644))
		checkDamaged(t, s, info, data, "bit "+itoa(bit))
	}
}

func TestEveryTruncationIsDetected(t *testing.T) {
	s, info, _, data, path := smallFile(t)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	for n := 0; n < len(orig); n++ {
		require.NoError(t, os.WriteFile(path, orig[:n], 0o644))
		checkDamaged(t, s, info, data, "length "+itoa(int64(n)))
	}
	// Bytes after the trailer are damage too.
	require.NoError(t, os.WriteFile(path, append(bytes.Clone(orig), 0), 0o644))
	checkDamaged(t, s, info, data, "a trailing byte")
}

func TestMovedBlocksAreDetected(t *testing.T) {
	s, info, meta, data, path := smallFile(t)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	// Blocks of 16 data bytes are 25 bytes long and start after the header.
	h := fixedHeaderBytes + len(meta) + crcBytes
	blk := blockHeaderBytes + 16 + crcBytes
	swapped := bytes.Clone(orig)
	copy(swapped[h:], orig[h+blk:h+2*blk])
	copy(swapped[h+blk:], orig[h:h+blk])
	require.NoError(t, os.WriteFile(path, swapped, 0o644))
	checkDamaged(t, s, info, data, "swapped blocks")

	// Dropping a block and fixing up the trailer's count still fails.
	dropped := append(bytes.Clone(orig[:h]), orig[h+blk:]...)
	tr := len(dropped) - trailerBytes
	binary.LittleEndian.PutUint64(dropped[tr+1:], uint64(len(data)-16))
	require.NoError(t, os.WriteFile(path, dropped, 0o644))
	checkDamaged(t, s, info, data, "dropped block")
}

func TestZeroedRegionIsDetected(t *testing.T) {
	s, info, meta, data, path := smallFile(t)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	h := fixedHeaderBytes + len(meta) + crcBytes
	for start := h; start < len(orig); start += 5 {
		b := bytes.Clone(orig)
		clear(b[start:min(start+30, len(b))])
		require.NoError(t, os.WriteFile(path, b, 0o644))
		checkDamaged(t, s, info, data, "zeroed at "+itoa(int64(start)))
	}
}

func TestCorruptErrorNamesFileAndOffset(t *testing.T) {
	s, info, meta, _, path := smallFile(t)
	h := int64(fixedHeaderBytes + len(meta) + crcBytes)
	blk := int64(blockHeaderBytes + 16 + crcBytes)
	// A flipped data byte in the third block is reported at that block.
	flipBit(t, path, (h+2*blk+blockHeaderBytes+3)*8)
	err := s.Verify(info)
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, path, ce.File)
	require.Equal(t, h+2*blk, ce.Offset)
	require.Contains(t, ce.Error(), path)
}

func TestHeaderMustMatchTheName(t *testing.T) {
	s, info, _, data, path := smallFile(t)
	// The same bytes under another index's name do not verify.
	other := filepath.Join(filepath.Dir(path), snapName(8, 2))
	require.NoError(t, os.Rename(path, other))
	moved := info
	moved.Index = 8
	checkDamaged(t, s, moved, data, "renamed file")
	_, corrupt, err := s.Latest("u")
	require.ErrorIs(t, err, ErrNotFound)
	require.Len(t, corrupt, 1)
}

func TestVerifierAcceptsAnySplit(t *testing.T) {
	_, info, _, _, path := smallFile(t)
	orig, err := os.ReadFile(path)
	require.NoError(t, err)
	for step := 1; step <= len(orig); step++ {
		v := newVerifier("x", &header{index: info.Index, term: info.Term, id: info.ID})
		for off := 0; off < len(orig); off += step {
			require.NoError(t, v.write(orig[off:min(off+step, len(orig))]), "step %d", step)
		}
		require.NoError(t, v.finish())
		require.Equal(t, int64(50), v.data)
	}
}

// FuzzReader feeds arbitrary damage of a valid file to Verify and to a
// Reader: neither may accept anything but the original bytes, and a
// Reader may hand out only a prefix of the original data.
func FuzzReader(f *testing.F) {
	s := openStore(f, f.TempDir(), Options{BlockBytes: 16})
	meta, data := []byte("meta-blob"), pattern(11, 70)
	info := writeSnap(f, s, "u", 5, 1, meta, data, 70)
	path := filepath.Join(s.Dir(), "u", snapName(5, 1))
	orig, err := os.ReadFile(path)
	require.NoError(f, err)
	f.Add(orig)
	f.Add(orig[:len(orig)-1])
	f.Add(append(bytes.Clone(orig), 1))
	f.Add([]byte{})
	f.Add(orig[:fixedHeaderBytes])
	f.Fuzz(func(t *testing.T, b []byte) {
		require.NoError(t, os.WriteFile(path, b, 0o644))
		verr := s.Verify(info)
		if bytes.Equal(b, orig) {
			require.NoError(t, verr)
		} else {
			require.Error(t, verr)
		}
		r, err := s.Open(info)
		if err != nil {
			require.Error(t, verr, "Open failed on a file Verify accepts")
			return
		}
		defer r.Close()
		got, rerr := io.ReadAll(r)
		require.True(t, isPrefix(got, data))
		if rerr == nil {
			require.NoError(t, verr, "Reader reached EOF on a file Verify refuses")
			require.Equal(t, data, got)
			require.Equal(t, meta, r.Meta())
		} else {
			require.True(t, errors.Is(rerr, ErrCorrupt), "unexpected error %v", rerr)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
