package failuredetector

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/wire"
)

func TestHeartbeatLayout(t *testing.T) {
	b := appendHeartbeat(nil, heartbeat{From: "h:1", Incarnation: 0x0102030405060708, Seq: 300, Watching: true})
	want := []byte{
		3, 'h', ':', '1', // from
		8, 7, 6, 5, 4, 3, 2, 1, // incarnation, little endian
		0xac, 0x02, // seq 300 as uvarint
		1, // flags: watching
	}
	require.Equal(t, want, b)
	hb, err := decodeHeartbeat(heartbeatVersion, b)
	require.NoError(t, err)
	require.Equal(t, heartbeat{From: "h:1", Incarnation: 0x0102030405060708, Seq: 300, Watching: true}, hb)
}

func TestHeartbeatRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		hb := heartbeat{
			From:        rapid.StringN(1, 64, maxNodeNameLen).Draw(t, "from"),
			Incarnation: rapid.Uint64Min(1).Draw(t, "inc"),
			Seq:         rapid.Uint64Min(1).Draw(t, "seq"),
			Watching:    rapid.Bool().Draw(t, "watching"),
		}
		if len(hb.From) > maxNodeNameLen {
			t.Skip("name longer than the limit in bytes")
		}
		got, err := decodeHeartbeat(heartbeatVersion, appendHeartbeat(nil, hb))
		if err != nil {
			t.Fatalf("decode %+v: %v", hb, err)
		}
		if got != hb {
			t.Fatalf("round trip: got %+v, want %+v", got, hb)
		}
	})
}

func TestHeartbeatRejectsBadInput(t *testing.T) {
	valid := heartbeat{From: "127.0.0.1:4000", Incarnation: 42, Seq: 7, Watching: true}
	good := appendHeartbeat(nil, valid)
	// Every proper prefix is truncated input.
	for n := range len(good) {
		_, err := decodeHeartbeat(heartbeatVersion, good[:n])
		require.ErrorIs(t, err, wire.ErrMalformed, "prefix of %d bytes", n)
	}
	cases := map[string]struct {
		version uint8
		data    []byte
	}{
		"unknown version":  {2, good},
		"trailing byte":    {1, append(bytes.Clone(good), 0)},
		"empty name":       {1, appendHeartbeat(nil, heartbeat{From: "", Incarnation: 1, Seq: 1})},
		"long name":        {1, appendHeartbeat(nil, heartbeat{From: strings.Repeat("x", maxNodeNameLen+1), Incarnation: 1, Seq: 1})},
		"zero incarnation": {1, appendHeartbeat(nil, heartbeat{From: "n", Incarnation: 0, Seq: 1})},
		"zero seq":         {1, appendHeartbeat(nil, heartbeat{From: "n", Incarnation: 1, Seq: 0})},
		"unknown flag": {1, func() []byte {
			b := bytes.Clone(good)
			b[len(b)-1] |= 0x80
			return b
		}()},
		"name length beyond input": {1, []byte{0xff, 0xff, 0x03, 'a'}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := decodeHeartbeat(tc.version, tc.data)
			require.ErrorIs(t, err, wire.ErrMalformed)
		})
	}
	for _, v := range []uint8{0, 2, 255} {
		_, err := decodeHeartbeat(v, good)
		require.ErrorIs(t, err, actor.ErrUnsupportedVersion, "version %d", v)
	}
}

// FuzzDecodeHeartbeat checks that the decoder never panics, and that what
// it accepts is a valid heartbeat that survives a round trip.
func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add(uint8(1), appendHeartbeat(nil, heartbeat{From: "127.0.0.1:4000", Incarnation: 42, Seq: 7, Watching: true}))
	f.Add(uint8(1), appendHeartbeat(nil, heartbeat{From: "n", Incarnation: 1 << 63, Seq: 1 << 40}))
	f.Add(uint8(1), []byte{})
	f.Add(uint8(1), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add(uint8(2), appendHeartbeat(nil, heartbeat{From: "n", Incarnation: 1, Seq: 1}))
	f.Add(uint8(1), []byte{1, 'n', 1, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x00, 0}) // non-minimal varint
	f.Fuzz(func(t *testing.T, version uint8, data []byte) {
		hb, err := decodeHeartbeat(version, data)
		if err != nil {
			return
		}
		if hb.From == "" || len(hb.From) > maxNodeNameLen || hb.Incarnation == 0 || hb.Seq == 0 {
			t.Fatalf("accepted an invalid heartbeat %+v from % x", hb, data)
		}
		again, err := decodeHeartbeat(heartbeatVersion, appendHeartbeat(nil, hb))
		if err != nil || again != hb {
			t.Fatalf("round trip of %+v: %+v, %v", hb, again, err)
		}
	})
}
