package actor

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/internal/wire"
)

type (
	versioned   struct{ V uint8 }
	badVersions struct{}
)

// versionedCodec reads versions 2 and 3 and writes 3; Decode reports the
// version it was handed, so a test sees whether it ran at all.
var versionedCodec = Codec[versioned]{Tag: 5200, Version: 3, MinVersion: 2,
	Encode: func(b []byte, _ versioned) []byte { return b },
	Decode: func(v uint8, _ []byte) (versioned, error) { return versioned{V: v}, nil },
}

func init() { MustRegister(versionedCodec) }

func TestVersionErrorNamesBothVersions(t *testing.T) {
	_, err := decodeFrame(append([]byte{3}, appendFrame(nil, "a:1", 1, 0, nil)[1:]...))
	var ve *VersionError
	require.ErrorAs(t, err, &ve)
	require.EqualError(t, err, "actor: frame version 3, this node speaks 1")
	require.ErrorIs(t, err, ErrUnsupportedVersion)
	require.ErrorIs(t, err, ErrBadMessage, "a refused frame is bad input like any other")

	_, err = decodeMessage(5200, 4, nil)
	require.EqualError(t, err, "actor: actor.versioned (tag 5200) version 4, this node speaks 2 to 3")
	_, err = decodeMessage(5200, 1, nil)
	require.ErrorIs(t, err, ErrUnsupportedVersion)
	for _, v := range []uint8{2, 3} {
		m, err := decodeMessage(5200, v, nil)
		require.NoError(t, err)
		require.Equal(t, versioned{V: v}, m, "Decode gets the version it declared it reads")
	}
}

func TestEveryCodecRefusesVersionsItDoesNotKnow(t *testing.T) {
	for tag, e := range codecs.Load().byTag {
		for _, v := range []uint8{0, e.minimum - 1, e.version + 1, 255} {
			if v >= e.minimum && v <= e.version {
				continue // wrapped around: a version it reads
			}
			_, err := decodeMessage(tag, v, nil)
			require.ErrorIs(t, err, ErrUnsupportedVersion, "%v (tag %d) version %d", e.typ, tag, v)
		}
	}
	// The builtins refuse on their own too, should anything call them
	// without the table's check.
	_, err := codecs.Load().byTag[1].decode(2, nil)
	require.ErrorIs(t, err, ErrUnsupportedVersion)
	_, err = codecs.Load().byTag[2].decode(0, nil)
	require.ErrorIs(t, err, ErrUnsupportedVersion)
}

func TestCodecVersionRangeIsValidated(t *testing.T) {
	err := Register(Codec[badVersions]{Tag: 5201, Version: 1, MinVersion: 2,
		Encode: func(b []byte, _ badVersions) []byte { return b },
		Decode: func(uint8, []byte) (badVersions, error) { return badVersions{}, nil }})
	require.ErrorIs(t, err, ErrInvalidConfig)
}

func TestPreambleVersionIsChecked(t *testing.T) {
	require.NoError(t, checkPreamble(preamble))
	other := preamble
	require.NoError(t, checkPreamble(preambleAuth))
	other[4] = connVersionAuth + 1
	err := checkPreamble(other)
	require.ErrorIs(t, err, ErrUnsupportedVersion)
	require.EqualError(t, err, "actor: connection version 3, this node speaks 1 to 2")
	err = checkPreamble([5]byte{'G', 'E', 'T', ' ', '/'})
	require.ErrorIs(t, err, ErrBadMessage)
	require.False(t, errors.Is(err, ErrUnsupportedVersion), "a stray client is not a node of another version")
}

// TestMessagesOfUnknownVersionsAreNotDelivered: a message whose version
// its codec does not read, and a frame of another version, are dropped and
// counted; the next good message arrives.
func TestMessagesOfUnknownVersionsAreNotDelivered(t *testing.T) {
	a := startNode(t)
	ib := newInbox(t, a)
	item := func(version uint8) []byte {
		b := []byte{opSend}
		b = wire.AppendString(b, ib.Ref().Name)
		b = wire.AppendUvarint(b, 2) // string's tag
		b = append(b, version)
		return wire.AppendString(b, "payload")
	}
	a.receiveFrame(appendFrame(nil, "peer:1", 1, 1, item(2)))
	future := appendFrame(nil, "peer:1", 1, 1, item(1))
	future[0] = frameVersion + 1
	a.receiveFrame(future)
	st := a.Stats()
	require.EqualValues(t, 2, st.RefusedVersion)
	require.EqualValues(t, 2, st.DroppedBadMessage)
	noMessage(t, ib, 50*time.Millisecond)
	a.receiveFrame(appendFrame(nil, "peer:1", 1, 1, item(1)))
	require.Equal(t, "payload", recv[string](t, ib))
}

// TestConnectionOfAnUnknownVersionIsRefused: a node speaking another
// connection version is turned away at the preamble, and counted.
func TestConnectionOfAnUnknownVersionIsRefused(t *testing.T) {
	a := startNode(t)
	c, err := net.Dial("tcp", a.Name())
	require.NoError(t, err)
	defer c.Close()
	pre := preamble
	pre[4] = connVersionAuth + 1
	_, err = c.Write(pre[:])
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(waitFor)))
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err, "the node closes the connection")
	eventually(t, func() bool { return a.Stats().RefusedVersion == 1 }, "the refusal is counted")
}
