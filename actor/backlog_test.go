package actor

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestUnreadCountsWhatAPausedReaderHolds(t *testing.T) {
	a, b := startNode(t), startNode(t)
	ib := newInbox(t, b)
	require.NoError(t, a.Send(ib.Ref(), echo{N: 0}))
	require.Equal(t, echo{N: 0}, recv[echo](t, ib))
	require.Zero(t, b.Unread(a.Name()), "everything a sent was handled")
	require.Zero(t, b.Unread("127.0.0.1:1"), "a node never heard from")

	b.PauseReads(a.Name(), true)
	const count = 100
	for i := 1; i <= count; i++ {
		require.NoError(t, a.Send(ib.Ref(), echo{N: i, Text: "held"}))
	}
	require.Eventually(t, func() bool { return b.Unread(a.Name()) > 0 }, waitFor, 5*time.Millisecond,
		"b counts the bytes a sent while b's reader is paused")
	noMessage(t, ib, 200*time.Millisecond)
	require.Positive(t, b.Unread(a.Name()), "still held")
	require.Zero(t, a.Unread(b.Name()), "a's own reading is not paused")

	b.PauseReads(a.Name(), false)
	for i := 1; i <= count; i++ {
		require.Equal(t, echo{N: i, Text: "held"}, recv[echo](t, ib), "nothing lost, in order")
	}
	require.Eventually(t, func() bool { return b.Unread(a.Name()) == 0 }, waitFor, 5*time.Millisecond)
}

func TestStopEndsAPause(t *testing.T) {
	a := startNode(t)
	b, err := StartNode(Config{Address: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	ib := newInbox(t, b)
	require.NoError(t, a.Send(ib.Ref(), echo{N: 1}))
	recv[echo](t, ib)
	b.PauseReads(a.Name(), true)
	require.NoError(t, a.Send(ib.Ref(), echo{N: 2}))
	require.Eventually(t, func() bool { return b.Unread(a.Name()) > 0 }, waitFor, 5*time.Millisecond)
	stopped := make(chan struct{})
	go func() { b.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(waitFor):
		t.Fatal("Stop waits for a paused reader")
	}
}

// The start of a frame whose rest has not come says nothing about the
// peer: only whole frames count as ready.
func TestReadyBytesCountsOnlyWholeFrames(t *testing.T) {
	frame := func(body string) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(body)))
		return append(b, body...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want int
	}{
		{"nothing", nil, 0},
		{"part of a header", []byte{5, 0}, 0},
		{"a header alone", frame("hello")[:4], 0},
		{"a frame cut short", frame("hello")[:7], 0},
		{"a whole frame", frame("hello"), 9},
		{"a whole frame and the start of the next", append(frame("hello"), frame("world")[:6]...), 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReader(bytes.NewReader(tc.in))
			_, _ = r.Peek(1) // fill the buffer
			require.Equal(t, tc.want, readyBytes(r))
		})
	}
}
