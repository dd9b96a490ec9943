package pebblelog

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

// pebble's chatter must stay below the info level operators run at, and
// its errors must reach them.
func TestLevels(t *testing.T) {
	var buf bytes.Buffer
	l := Logger{L: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Infof("flushed %d", 3)
	l.Errorf("bad %s", "sst")
	require.Contains(t, buf.String(), `level=DEBUG msg="flushed 3" component=pebble`)
	require.Contains(t, buf.String(), `level=ERROR msg="bad sst" component=pebble`)
}
