package raftserver

import (
	"errors"
	"time"

	"github.com/rago-raft/rago/actor"
)

// logServers is the log supervisor's last child and stands for the node's
// servers there: starting it has the manager start the servers, stopping it
// has the manager stop them. So when one of the log processes fails and
// the supervisor restarts them all, the servers stop before the log
// processes they use and start after the new ones run, re-registering with
// the new WAL and reading their state from disk. It costs one process, not
// one child per server.
type logServers struct{ sys *System }

func (g *logServers) Receive(ctx *actor.Context, msg actor.Message) {
	switch msg.(type) {
	case actor.Started:
		if _, err := ctx.Node().Call(g.sys.manager, &managerResume{}, time.Hour); err != nil {
			g.sys.logger.Error("the servers were not started after the log processes", "err", err)
		}
	case *managerSync:
		_ = ctx.Reply(true)
	case actor.Terminating:
		if _, err := ctx.Node().Call(g.sys.manager, &managerSuspend{}, 2*g.sys.cfg.ShutdownTimeout+time.Minute); err != nil && !errors.Is(err, actor.ErrNodeStopped) {
			g.sys.logger.Error("the servers were not stopped before the log processes", "err", err)
		}
	}
}

// failedStart is what a log process's restart spawns when the process
// could not be made (its WAL directory does not recover, say): it exits at
// once with the error, which the supervisor counts as another failure.
type failedStart struct{ err error }

func (f failedStart) Receive(ctx *actor.Context, msg actor.Message) {
	if _, ok := msg.(actor.Started); ok {
		ctx.Exit(actor.ErrorReason(f.err))
	}
}
