package actor

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lineLog keeps the messages logged at Info and above.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelInfo }
func (l *lineLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.lines = append(l.lines, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *lineLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lineLog) WithGroup(string) slog.Handler      { return l }

func (l *lineLog) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// TestAnOutageIsLoggedOnceNotAtEveryAttempt: while a peer stays down, the
// node tries it again every ReconnectInterval. The first loss is logged,
// then a summary at doubling intervals, not a line per attempt; and its
// return once.
func TestAnOutageIsLoggedOnceNotAtEveryAttempt(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nobody listens there: every dial is refused

	logs := &lineLog{}
	a, err := StartNode(Config{Address: "127.0.0.1:0", ShutdownTimeout: 2 * time.Second, ReconnectInterval: 10 * time.Millisecond, Logger: slog.New(logs)})
	require.NoError(t, err)
	defer a.Stop()
	target := Ref{Name: "echo", Node: addr}
	attempts := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			_ = a.Send(target, "ping")
		}
	}
	attempts(1500 * time.Millisecond)
	require.Greater(t, int(a.Stats().DroppedLinkDown), 20, "many attempts were made")
	require.Equal(t, 1, logs.count("peer lost"))
	require.LessOrEqual(t, logs.count("peer still unreachable"), 2, "summed up at doubling intervals")
	require.Zero(t, logs.count("peer back"))

	b, err := StartNode(Config{Address: addr, ShutdownTimeout: 2 * time.Second})
	require.NoError(t, err)
	defer b.Stop()
	_, err = b.SpawnNamed("echo", echoServer(Ref{}))
	require.NoError(t, err)
	eventually(t, func() bool {
		_ = a.Send(target, "ping")
		return logs.count("peer back") == 1
	}, "the return is logged")
	require.Equal(t, 1, logs.count("peer lost"))
}
