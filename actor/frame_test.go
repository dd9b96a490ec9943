package actor

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/internal/wire"
)

// appendFrame builds a whole frame around already encoded items, as the
// link's pump writes it (header, then items).
func appendFrame(b []byte, src string, epoch uint64, count int, items []byte) []byte {
	return append(appendFrameHeader(b, src, epoch, count), items...)
}

func TestFrameRoundTrip(t *testing.T) {
	var items []byte
	items = append(items, opSend)
	items = wire.AppendString(items, "target")
	items, err := appendMessage(items, mustCodec(t, echo{}), echo{N: -3, Text: "héllo"})
	require.NoError(t, err)
	items = append(items, opCall)
	items = wire.AppendString(items, "svc")
	items = wire.AppendUvarint(items, 77)
	items, err = appendMessage(items, mustCodec(t, []byte(nil)), []byte{1, 2, 3})
	require.NoError(t, err)
	items = append(items, opReplyErr)
	items = wire.AppendUvarint(items, 9)
	items = append(items, replyErrNoProcess)
	items = append(items, opControl, ctlDown)
	items = wire.AppendUvarint(items, 5)
	items = appendReason(items, Reason{Kind: ReasonCrash, Detail: "boom"})

	f, err := decodeFrame(appendFrame(nil, "node-a:1", 3, 4, items))
	require.NoError(t, err)
	require.Equal(t, "node-a:1", f.src)
	require.Equal(t, uint64(3), f.epoch)
	require.Equal(t, 4, f.count)

	it := readItem(f.items)
	require.Equal(t, uint8(opSend), it.op)
	require.Equal(t, "target", it.target)
	m, err := it.msg.decode()
	require.NoError(t, err)
	require.Equal(t, echo{N: -3, Text: "héllo"}, m)

	it = readItem(f.items)
	require.Equal(t, uint8(opCall), it.op)
	require.Equal(t, uint64(77), it.callID)
	m, err = it.msg.decode()
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3}, m)

	it = readItem(f.items)
	require.Equal(t, uint8(opReplyErr), it.op)
	require.Equal(t, uint8(replyErrNoProcess), it.code)

	it = readItem(f.items)
	require.Equal(t, uint8(ctlDown), it.ctl)
	require.Equal(t, Reason{Kind: ReasonCrash, Detail: "boom"}, it.reason)
	require.NoError(t, f.items.Done())
}

func TestDecodeFrameRejectsBadHeaders(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":         nil,
		"version":       {9, 0, 0, 0},
		"no source":     appendFrame(nil, "", 1, 0, nil),
		"huge count":    append(appendFrame(nil, "a:1", 1, 0, nil)[:len(appendFrame(nil, "a:1", 1, 0, nil))-1], 0xFF, 0xFF, 0x03),
		"truncated src": {frameVersion, 10, 'a'},
	} {
		_, err := decodeFrame(b)
		require.ErrorIs(t, err, ErrBadMessage, name)
	}
}

type (
	mine      struct{}
	other     struct{}
	explosive struct{ X int }
)

var mineCodec = Codec[mine]{Tag: 5000, Version: 1,
	Encode: func(b []byte, _ mine) []byte { return b },
	Decode: func(uint8, []byte) (mine, error) { return mine{}, nil },
}

func init() {
	MustRegister(mineCodec)
	MustRegister(Codec[explosive]{Tag: 5100, Version: 1,
		Encode: func(b []byte, _ explosive) []byte { panic("encode bug") },
		Decode: func(uint8, []byte) (explosive, error) { panic("decode bug") },
	})
}

func TestCodecRegistration(t *testing.T) {
	require.ErrorIs(t, Register(mineCodec), ErrCodecConflict, "same tag and type")
	require.ErrorIs(t, Register(Codec[other]{Tag: 5000, Encode: func(b []byte, _ other) []byte { return b },
		Decode: func(uint8, []byte) (other, error) { return other{}, nil }}), ErrCodecConflict, "same tag")
	require.ErrorIs(t, Register(Codec[mine]{Tag: 5002, Encode: func(b []byte, _ mine) []byte { return b },
		Decode: func(uint8, []byte) (mine, error) { return mine{}, nil }}), ErrCodecConflict, "same type")
	require.ErrorIs(t, Register(Codec[other]{Tag: 7, Encode: func(b []byte, _ other) []byte { return b },
		Decode: func(uint8, []byte) (other, error) { return other{}, nil }}), ErrInvalidConfig, "reserved tag")
	require.ErrorIs(t, Register(Codec[other]{Tag: 5001}), ErrInvalidConfig, "no functions")
	require.Panics(t, func() { MustRegister(mineCodec) })
}

func TestPanickingCodecsBecomeErrors(t *testing.T) {
	_, err := appendMessage(nil, mustCodec(t, explosive{}), explosive{})
	require.ErrorIs(t, err, ErrNotSerializable)
	_, err = decodeMessage(5100, 1, nil)
	require.ErrorIs(t, err, ErrBadMessage)
	_, err = decodeMessage(4999, 1, nil)
	require.ErrorIs(t, err, ErrBadMessage, "unknown tag")
}

// decodeAll decodes a frame and every item and message in it the way a
// node does, without delivering anything.
func decodeAll(b []byte) error {
	f, err := decodeFrame(b)
	if err != nil {
		return err
	}
	for range f.count {
		it := readItem(f.items)
		if err := f.items.Err(); err != nil {
			return err
		}
		if it.op == opSend || it.op == opCall || it.op == opReply {
			_, _ = it.msg.decode()
		}
	}
	return f.items.Done()
}

// FuzzFrameDecoder: any bytes decode to an error or to items, never a panic.
// Run it longer with: go test -run XXX -fuzz FuzzFrameDecoder ./actor/
func FuzzFrameDecoder(f *testing.F) {
	var items []byte
	items = append(items, opSend)
	items = wire.AppendString(items, "t")
	items, _ = appendMessage(items, mustCodec(f, echo{}), echo{N: 1, Text: "x"})
	items = append(items, opControl, ctlHello)
	items = wire.AppendUint64(items, 42)
	items = append(items, opControl, ctlMonitor, 1, 1, 'w', 1, 't')
	items = append(items, opControl, ctlExit, 1, 't', uint8(ReasonKilled), 0)
	f.Add(appendFrame(nil, "a:1", 1, 4, items))
	f.Add(appendFrame(nil, "a:1", 1, 1, []byte{opReplyErr, 1, 1}))
	f.Add([]byte{frameVersion, 3, 'a', ':', '1', 1, 200})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeAll(b)
	})
}

func TestRoundtripCopiesThroughTheCodec(t *testing.T) {
	in := []byte("payload")
	out, err := Roundtrip(in)
	require.NoError(t, err)
	require.Equal(t, in, out)
	out.([]byte)[0] = 'P'
	require.Equal(t, byte('p'), in[0], "the copy shares nothing with the original")
	_, err = Roundtrip(struct{ unregistered int }{})
	require.ErrorIs(t, err, ErrNotSerializable)
	_, err = Roundtrip(explosive{})
	require.ErrorIs(t, err, ErrNotSerializable)
}

// appendItem encodes an item as the link writes it; the inverse of
// readItem, for round trips.
func appendItem(b []byte, it item) []byte {
	b = append(b, it.op)
	msg := func(b []byte) []byte {
		b = wire.AppendUvarint(b, uint64(it.msg.tag))
		b = append(b, it.msg.version)
		return wire.AppendBytes(b, it.msg.payload)
	}
	switch it.op {
	case opSend:
		b = wire.AppendString(b, it.target)
		b = msg(b)
	case opCall:
		b = wire.AppendString(b, it.target)
		b = wire.AppendUvarint(b, it.callID)
		b = msg(b)
	case opReply:
		b = wire.AppendUvarint(b, it.callID)
		b = msg(b)
	case opReplyErr:
		b = wire.AppendUvarint(b, it.callID)
		b = append(b, it.code)
	case opControl:
		b = append(b, it.ctl)
		switch it.ctl {
		case ctlHello:
			b = wire.AppendUint64(b, it.inc)
		case ctlHelloAck:
			b = wire.AppendUint64(b, it.inc)
			b = wire.AppendUvarint(b, it.epoch)
		case ctlMonitor:
			b = wire.AppendUvarint(b, it.id)
			b = wire.AppendString(b, it.watcher)
			b = wire.AppendString(b, it.target)
		case ctlDemonitor:
			b = wire.AppendUvarint(b, it.id)
			b = wire.AppendString(b, it.target)
		case ctlDown:
			b = wire.AppendUvarint(b, it.id)
			b = appendReason(b, it.reason)
		case ctlExit:
			b = wire.AppendString(b, it.target)
			b = appendReason(b, it.reason)
		}
	}
	return b
}

// readFrame decodes a whole frame into its header and items.
func readFrame(b []byte) (frame, []item, error) {
	f, err := decodeFrame(b)
	if err != nil {
		return frame{}, nil, err
	}
	items := make([]item, 0, f.count)
	for range f.count {
		it := readItem(f.items)
		if err := f.items.Err(); err != nil {
			return frame{}, nil, err
		}
		items = append(items, it)
	}
	return f, items, f.items.Done()
}

// FuzzFrameRoundTrip: a frame that decodes, with all its items, encodes
// again to a frame that decodes to the same header and items; a message
// in it that decodes survives its codec's round trip. Frames of another
// version are refused with a VersionError.
func FuzzFrameRoundTrip(f *testing.F) {
	var items []byte
	items = append(items, opSend)
	items = wire.AppendString(items, "t")
	items, _ = appendMessage(items, mustCodec(f, echo{}), echo{N: 1, Text: "x"})
	items = append(items, opCall)
	items = wire.AppendString(items, "svc")
	items = wire.AppendUvarint(items, 7)
	items, _ = appendMessage(items, mustCodec(f, "s"), "s")
	items = append(items, opReply, 7)
	items, _ = appendMessage(items, mustCodec(f, []byte(nil)), []byte{1, 2})
	items = append(items, opControl, ctlHelloAck)
	items = wire.AppendUint64(items, 42)
	items = append(items, 3)
	items = append(items, opControl, ctlDemonitor, 4, 1, 't')
	items = append(items, opControl, ctlDown, 4, uint8(ReasonCrash), 2, 'o', 'k')
	f.Add(appendFrame(nil, "a:1", 1, 6, items))
	f.Add(appendFrame(nil, "b:2", 9, 1, []byte{opReplyErr, 1, replyErrBadCall}))
	f.Add([]byte{frameVersion + 1, 3, 'a', ':', '1', 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, its, err := readFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadMessage) && !errors.Is(err, wire.ErrMalformed) {
				t.Fatalf("error %v is neither ErrBadMessage nor wire.ErrMalformed", err)
			}
			if len(b) > 0 && b[0] != frameVersion {
				require.ErrorIs(t, err, ErrUnsupportedVersion)
			}
			return
		}
		require.Equal(t, uint8(frameVersion), b[0])
		var body []byte
		for _, it := range its {
			body = appendItem(body, it)
		}
		fr2, its2, err := readFrame(appendFrame(nil, fr.src, fr.epoch, len(its), body))
		require.NoError(t, err)
		require.Equal(t, fr.src, fr2.src)
		require.Equal(t, fr.epoch, fr2.epoch)
		require.Equal(t, its, its2)
		for _, it := range its {
			if it.op != opSend && it.op != opCall && it.op != opReply {
				continue
			}
			m, err := it.msg.decode()
			if err != nil {
				require.ErrorIs(t, err, ErrBadMessage)
				continue
			}
			again, err := Roundtrip(m)
			require.NoError(t, err)
			require.Equal(t, m, again)
		}
	})
}
