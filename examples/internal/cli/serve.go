package cli

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// NewLogger makes a node's logger from its --log-level and --log-format;
// a value it does not know is a usage mistake.
func NewLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, Usagef("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, Usagef("--log-format %q: use text or json", format)
}

// ServeUntilSignal runs a node until SIGINT or SIGTERM (or, under a demo,
// until the demo is gone: see ParentGone), then stops it with stop, which
// gets 15 seconds; a second signal exits at once, for a stop that hangs.
func ServeUntilSignal(stop func(context.Context) error, logger *slog.Logger, parentEnv string) error {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case s := <-sig:
		logger.Info("stopping", "signal", s.String())
	case <-ParentGone(parentEnv):
		logger.Warn("stopping: the demo that started this node is gone")
	}
	go func() {
		<-sig
		logger.Warn("second signal: exiting without a clean stop")
		os.Exit(1)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return stop(ctx)
}

// ParentGone is closed when the process whose id is in the environment
// variable parentEnv is no longer this process's parent; it never closes
// when the variable is unset or names another process.
//
// A demo passes its process id to the nodes it starts in parentEnv: a node
// whose demo was killed with SIGKILL, and so could not stop it, stops by
// itself instead of holding the demo's ports forever.
func ParentGone(parentEnv string) <-chan struct{} {
	ch := make(chan struct{})
	want, err := strconv.Atoi(os.Getenv(parentEnv))
	if err != nil || want != os.Getppid() {
		return ch
	}
	go func() {
		for os.Getppid() == want {
			time.Sleep(time.Second)
		}
		close(ch)
	}()
	return ch
}
