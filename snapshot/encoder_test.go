package snapshot

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func encode(t *testing.T, index, term uint64, meta, data []byte) ([]byte, Info) {
	t.Helper()
	var out bytes.Buffer
	e, err := NewEncoder(&out, index, term, meta)
	require.NoError(t, err)
	// Written in uneven pieces, across block boundaries.
	for len(data) > 0 {
		n := min(len(data), 100_003)
		_, err := e.Write(data[:n])
		require.NoError(t, err)
		data = data[n:]
	}
	info, err := e.Close()
	require.NoError(t, err)
	_, err = e.Close()
	require.ErrorIs(t, err, ErrFinished)
	require.Equal(t, int64(out.Len()), info.Size)
	return out.Bytes(), info
}

func TestEncoderWritesWhatAStreamReaderVerifies(t *testing.T) {
	data := pattern(3, 3*DefaultBlockBytes+17)
	file, info := encode(t, 42, 7, []byte("meta"), data)
	require.Equal(t, Info{Index: 42, Term: 7, ID: info.ID, Size: int64(len(file)), DataSize: int64(len(data))}, info)

	r, err := NewStreamReader(bytes.NewReader(file), "backup")
	require.NoError(t, err)
	require.Equal(t, Info{Index: 42, Term: 7, ID: info.ID}, r.Info())
	require.Equal(t, []byte("meta"), r.Meta())
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, data, got)
	require.NoError(t, r.Close())
	_, err = r.Read(make([]byte, 1))
	require.Error(t, err)

	// An empty state is a valid snapshot too.
	file, _ = encode(t, 1, 1, nil, nil)
	r, err = NewStreamReader(bytes.NewReader(file), "empty")
	require.NoError(t, err)
	got, err = io.ReadAll(r)
	require.NoError(t, err)
	require.Empty(t, got)

	_, err = NewEncoder(io.Discard, 0, 1, nil)
	require.ErrorIs(t, err, ErrInvalid)
}

// Damage anywhere is found before the damaged bytes are handed out, and
// a stream that is no snapshot at all is refused at once.
func TestStreamReaderRefusesDamage(t *testing.T) {
	data := pattern(5, 2*DefaultBlockBytes)
	file, _ := encode(t, 9, 2, []byte("m"), data)
	readAll := func(b []byte) ([]byte, error) {
		r, err := NewStreamReader(bytes.NewReader(b), "backup")
		if err != nil {
			return nil, err
		}
		return io.ReadAll(r)
	}
	for _, off := range []int{0, 12, 45, 60, DefaultBlockBytes, len(file) - 20, len(file) - 1} {
		bad := bytes.Clone(file)
		bad[off] ^= 0x40
		got, err := readAll(bad)
		require.ErrorIs(t, err, ErrCorrupt, "byte %d flipped", off)
		require.True(t, bytes.HasPrefix(data, got), "only verified data was handed out (byte %d flipped)", off)
	}
	for _, n := range []int{0, 10, 60, len(file) / 2, len(file) - 1} {
		_, err := readAll(file[:n])
		require.ErrorIs(t, err, ErrCorrupt, "cut to %d bytes", n)
	}
	_, err := readAll(append(bytes.Clone(file), 0))
	require.ErrorIs(t, err, ErrCorrupt, "a byte after the trailer")
	_, err = NewStreamReader(strings.NewReader(strings.Repeat("{\"not\": \"a snapshot\"}\n", 10)), "foreign")
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "bad magic")
}
