package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
)

const watchHelp = `
Prints every change of the keys that start with PREFIX (all keys without
one), as the cluster commits them, until Ctrl-C: a line per change,
REVISION, put or delete, KEY and the value written. With --from-revision it
starts with the changes since that revision, if the nodes still keep them
(the latest few thousand). When the node it streams from goes, it goes on
from another one: no change is missed or printed twice.

	kvstore watch users/
	kvstore watch --from-revision 120 --count 10`

func runWatch(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("watch", stderr, watchHelp)
	cf := registerClientFlags(fs)
	from := fs.Uint64("from-revision", 0, "start with the changes from this `revision` on (default: from now)")
	count := fs.Int("count", 0, "stop after this many changes (default: run until interrupted)")
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return cli.Usagef("unexpected argument %q", pos[1])
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	c, _, cancel, err := cf.client()
	if err != nil {
		return err
	}
	cancel() // a watch has no deadline unless --timeout is given
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	timeoutSet := false
	fs.Visit(func(f *flag.Flag) { timeoutSet = timeoutSet || f.Name == "timeout" })
	if timeoutSet {
		var cancelTimeout context.CancelFunc
		ctx, cancelTimeout = context.WithTimeout(ctx, cf.timeout)
		defer cancelTimeout()
	}
	seen := 0
	errEnough := errors.New("enough")
	err = c.Watch(ctx, prefix, *from, func(ev api.WatchEvent) error {
		if cf.json {
			if err := printJSON(stdout, ev); err != nil {
				return err
			}
		} else {
			line := fmt.Sprintf("%d\t%s\t%s", ev.Revision, ev.Op, ev.Key)
			switch {
			case ev.ValueBase64 != "":
				line += "\t(base64) " + ev.ValueBase64
			case ev.Op == "put":
				line += "\t" + strings.ReplaceAll(ev.Value, "\n", `\n`)
			}
			fmt.Fprintln(stdout, line)
		}
		if seen++; *count > 0 && seen >= *count {
			return errEnough
		}
		return nil
	})
	switch {
	case errors.Is(err, errEnough):
		return nil
	case errors.Is(err, context.Canceled):
		return nil // interrupted
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no more changes within --timeout %v", cf.timeout)
	}
	return explain(err)
}
