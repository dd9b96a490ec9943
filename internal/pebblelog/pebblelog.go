// Package pebblelog routes pebble's logs to slog, for the rooms that open
// a pebble database (meta, segment): one copy, so both log pebble alike.
package pebblelog

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// Logger is a pebble.Logger writing to L: pebble's informational chatter
// at debug level, its errors at error level, each tagged component=pebble.
type Logger struct{ L *slog.Logger }

var _ pebble.Logger = Logger{}

func (p Logger) Infof(format string, args ...any) {
	p.L.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p Logger) Errorf(format string, args ...any) {
	p.L.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf keeps pebble's contract (it does not return) after logging.
func (p Logger) Fatalf(format string, args ...any) {
	p.L.Error(fmt.Sprintf(format, args...), "component", "pebble", "fatal", true)
	pebble.DefaultLogger.Fatalf(format, args...)
}
