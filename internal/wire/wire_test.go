package wire

import (
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
	var b []byte
	b = AppendUvarint(b, math.MaxUint64)
	b = AppendVarint(b, math.MinInt64)
	b = AppendBytes(b, []byte("payload"))
	b = AppendString(b, "")
	b = AppendUint8(b, 7)
	b = AppendBool(b, true)
	b = AppendUint16(b, 0xBEEF)
	b = AppendUint32(b, 0xDEADBEEF)
	b = AppendUint64(b, math.MaxUint64-1)
	b = AppendVarint(b, -42)

	r := NewReader(b)
	require.Equal(t, uint64(math.MaxUint64), r.Uvarint())
	require.Equal(t, int64(math.MinInt64), r.Varint())
	require.Equal(t, []byte("payload"), r.Bytes())
	require.Equal(t, "", r.String())
	require.Equal(t, uint8(7), r.Uint8())
	require.True(t, r.Bool())
	require.Equal(t, uint16(0xBEEF), r.Uint16())
	require.Equal(t, uint32(0xDEADBEEF), r.Uint32())
	require.Equal(t, uint64(math.MaxUint64-1), r.Uint64())
	require.Equal(t, -42, r.Int())
	require.NoError(t, r.Done())
}

func TestUvarintLen(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, math.MaxUint32, math.MaxUint64} {
		require.Len(t, AppendUvarint(nil, v), UvarintLen(v), "value %d", v)
	}
}

func TestErrorsStick(t *testing.T) {
	r := NewReader(AppendUvarint(nil, 1000)) // a length far beyond the input
	require.Nil(t, r.Bytes())
	require.ErrorIs(t, r.Err(), ErrMalformed)
	first := r.Err()
	require.Zero(t, r.Uint64())
	require.Equal(t, first, r.Err(), "the first error sticks")
}

func TestLenRejectsHugeCounts(t *testing.T) {
	b := AppendUvarint(nil, 1<<40)
	b = append(b, 1, 2, 3)
	r := NewReader(b)
	require.Zero(t, r.Len(1))
	require.ErrorIs(t, r.Err(), ErrMalformed)

	r = NewReader(append(AppendUvarint(nil, 2), 1, 2, 3, 4))
	require.Equal(t, 2, r.Len(2))
	require.NoError(t, r.Err())
}

func TestDoneRejectsTrailingBytes(t *testing.T) {
	r := NewReader([]byte{1, 2})
	r.Uint8()
	require.ErrorIs(t, r.Done(), ErrMalformed)
}

func TestBadBool(t *testing.T) {
	r := NewReader([]byte{2})
	r.Bool()
	require.True(t, errors.Is(r.Err(), ErrMalformed))
}

func TestBytesCopyDoesNotAlias(t *testing.T) {
	b := AppendBytes(nil, []byte("abc"))
	p := NewReader(b).BytesCopy()
	b[1] = 'X'
	require.Equal(t, []byte("abc"), p)
}

// FuzzReader drives every reader method over arbitrary input: it must never
// panic, and after an error every value is zero.
func FuzzReader(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendBytes(AppendUvarint(nil, 5), []byte("hello")))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(data)
		for i := 0; r.Err() == nil && r.Remaining() > 0 && i < 1000; i++ {
			switch data[r.Offset()] % 9 {
			case 0:
				r.Uvarint()
			case 1:
				r.Varint()
			case 2:
				r.Bytes()
			case 3:
				r.Len(3)
			case 4:
				r.Bool()
			case 5:
				r.Uint16()
			case 6:
				r.Uint32()
			case 7:
				r.Uint64()
			case 8:
				r.Int()
			}
		}
		if r.Err() != nil {
			require.Zero(t, r.Uvarint())
			require.Nil(t, r.Bytes())
		}
	})
}
