package actor

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/internal/wire"
)

// echo is a test message that crosses nodes.
type echo struct {
	N    int
	Text string
}

func init() {
	MustRegister(Codec[echo]{
		Tag: 1000, Version: 1,
		Encode: func(b []byte, m echo) []byte {
			b = wire.AppendVarint(b, int64(m.N))
			return wire.AppendString(b, m.Text)
		},
		Decode: func(_ uint8, data []byte) (echo, error) {
			r := wire.NewReader(data)
			m := echo{N: r.Int(), Text: r.String()}
			return m, r.Done()
		},
	})
}

const waitFor = 10 * time.Second

func startNode(t testing.TB) *Node {
	t.Helper()
	n, err := StartNode(Config{Address: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(n.Stop)
	return n
}

func newInbox(t testing.TB, n *Node) *Inbox {
	t.Helper()
	ib, err := n.NewInbox()
	require.NoError(t, err)
	return ib
}

// recv waits for the next message of type T on ib, failing the test on
// anything else or a timeout.
func recv[T any](t testing.TB, ib *Inbox) T {
	t.Helper()
	m, err := ib.ReceiveTimeout(waitFor)
	require.NoError(t, err, "waiting for %T", *new(T))
	v, ok := m.(T)
	require.True(t, ok, "want %T, got %T: %+v", *new(T), m, m)
	return v
}

// recvUntil skips messages until one of type T arrives.
func recvUntil[T any](t testing.TB, ib *Inbox) T {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		m, err := ib.ReceiveTimeout(time.Until(deadline))
		require.NoError(t, err, "waiting for %T", *new(T))
		if v, ok := m.(T); ok {
			return v
		}
	}
	t.Fatalf("no %T within %v", *new(T), waitFor)
	panic("unreachable")
}

// noMessage checks that nothing arrives on ib within d.
func noMessage(t testing.TB, ib *Inbox, d time.Duration) {
	t.Helper()
	select {
	case m := <-ib.C():
		t.Fatalf("unexpected message %T: %+v", m, m)
	case <-time.After(d):
	}
}

// echoServer replies to every call with the request and forwards every
// sent message to fwd (if set).
func echoServer(fwd Ref) Process {
	return ProcessFunc(func(ctx *Context, msg Message) {
		switch m := msg.(type) {
		case Started, Terminating:
		case string:
			switch m {
			case "crash":
				panic("asked to crash")
			case "stop":
				ctx.Stop()
				return
			}
			if _, ok := ctx.ReplyTo(); ok {
				_ = ctx.Reply(m)
			} else if !fwd.IsZero() {
				_ = ctx.Send(fwd, m)
			}
		default:
			if _, ok := ctx.ReplyTo(); ok {
				_ = ctx.Reply(m)
			} else if !fwd.IsZero() {
				_ = ctx.Send(fwd, m)
			}
		}
	})
}

func eventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, waitFor, 5*time.Millisecond, fmt.Sprintf(format, args...))
}
