package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/kv"
	"github.com/rago-raft/rago/raftserver"
)

// Consistency levels of a read.
const (
	Linearizable = "linearizable"
	Leader       = "leader"
	Local        = "local"
)

// retryAfterSeconds is what a 503 asks the client to wait: about one
// election, or one probe of the watcher.
const retryAfterSeconds = 1

// write sends cmd through this node's member, which forwards it to the
// leader, and waits until it is applied. It answers 503 at once when the
// watcher sees too few members to commit anything.
func (n *Node) write(ctx context.Context, cmd kv.Command) (kv.Result, string, *api.Error) {
	if e := n.quorumCheck(ctx); e != nil {
		return kv.Result{}, "", e
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	res, leader, err := n.client.Process(ctx, n.self, cmd)
	if err != nil {
		return kv.Result{}, "", n.raftError(err, true)
	}
	if res.Status == kv.StatusInvalid {
		// The HTTP layer validates first, so this is a key the machine
		// refuses for a reason the edge did not check.
		return res, leader.Name, &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidArgument, Message: res.Error}
	}
	return res, leader.Name, nil
}

// read runs q at the given consistency: linearizable and leader reads run
// on the leader's machine (forwarded by this node's member), local reads on
// this node's machine as it is.
func (n *Node) read(ctx context.Context, q kv.Query, consistency string) (kv.Answer, string, *api.Error) {
	if consistency == Linearizable {
		if e := n.quorumCheck(ctx); e != nil {
			return kv.Answer{}, "", e
		}
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	b, _ := json.Marshal(q)
	var reply []byte
	var served raftserver.ServerID
	var err error
	switch consistency {
	case Linearizable:
		reply, served, err = n.sys.ConsistentQuery(ctx, n.self, b)
	case Leader:
		reply, served, err = n.sys.LeaderQuery(ctx, n.self, b)
	default:
		reply, _, err = n.sys.LocalQuery(ctx, n.self, b)
		served = n.self
	}
	if err != nil {
		return kv.Answer{}, "", n.raftError(err, false)
	}
	var a kv.Answer
	if err := json.Unmarshal(reply, &a); err != nil {
		return kv.Answer{}, "", &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: "the machine's answer does not decode: " + err.Error()}
	}
	return a, served.Name, nil
}

// parseConsistency reads ?consistency=, linearizable by default.
func parseConsistency(s string) (string, *api.Error) {
	switch s {
	case "":
		return Linearizable, nil
	case Linearizable, Leader, Local:
		return s, nil
	}
	return "", badArg("consistency must be linearizable, leader or local, not %q", s)
}

// quorumCheck answers 503 no_quorum when the watcher has current evidence
// that nothing can commit through this node (see watcher.noQuorum): a
// write would wait for its timeout and end with an unknown outcome. Without
// such evidence the request goes ahead and Raft decides: a leader that can
// commit takes every write.
func (n *Node) quorumCheck(ctx context.Context) *api.Error {
	reachable, quorum, refuse := n.watch.noQuorum(ctx)
	if !refuse {
		return nil
	}
	return &api.Error{
		Status:            http.StatusServiceUnavailable,
		Code:              api.CodeNoQuorum,
		Message:           fmt.Sprintf("only %d of the members are reachable from %s and a quorum is %d: nothing can commit until more members are back; nothing was written", reachable, n.cfg.ID, quorum),
		RetryAfterSeconds: retryAfterSeconds,
	}
}

// raftError maps an error of the rago client API to the HTTP error the
// client sees. write says whether the request was a command, whose outcome
// is unknown after a timeout.
func (n *Node) raftError(err error, write bool) *api.Error {
	unavailable := func(code, msg string) *api.Error {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: code, Message: msg, RetryAfterSeconds: retryAfterSeconds}
	}
	switch {
	case errors.Is(err, raftserver.ErrNoLeader), errors.Is(err, raftserver.ErrNotLeader):
		// ErrNotLeader surfaces only when redirects ran out while the
		// leader was changing: the same situation for the client.
		return unavailable(api.CodeNoLeader, "the cluster has no leader right now (an election is running, or too few members are up); nothing was written: "+err.Error())
	case errors.Is(err, raftserver.ErrTimeout), errors.Is(err, raftserver.ErrLeadershipLost),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		e := &api.Error{Status: http.StatusGatewayTimeout, Code: api.CodeTimeout}
		if write {
			e.OutcomeUnknown = true
			e.Message = "no answer in time: the write may have been applied, or may still be; read the key before you retry (" + err.Error() + ")"
		} else {
			e.Message = "no answer in time; a read changes nothing, so it is safe to retry (" + err.Error() + ")"
		}
		return e
	case errors.Is(err, raftserver.ErrNoSuchServer):
		if running, lerr := n.memberRunning(); lerr == nil && !running {
			return unavailable(api.CodeNotMember, fmt.Sprintf("node %s runs no member of the cluster (it was removed, or is not added yet): ask another node", n.cfg.ID))
		}
		return unavailable(api.CodeNoLeader, "the member the request was sent to is gone; nothing was written: "+err.Error())
	case errors.Is(err, raftserver.ErrUnreachable):
		// The request was not sent: the node of the leader this node's
		// member knows of is not connected (it went down, or is
		// reconnecting), until the request's time ran out.
		return unavailable(api.CodeNoLeader, "the leader's node is not reachable from this node right now; nothing was written: "+err.Error())
	case errors.Is(err, raftserver.ErrShuttingDown):
		if n.stopCtx.Err() != nil {
			return unavailable(api.CodeShuttingDown, "the node is shutting down")
		}
		// Another node is: the leader the request went to was stopping,
		// and did not take it.
		return unavailable(api.CodeNoLeader, "the leader was stopping and did not take the request; nothing was written: "+err.Error())
	case errors.Is(err, raftserver.ErrMembershipChange):
		return &api.Error{Status: http.StatusConflict, Code: api.CodeMembership, Message: err.Error()}
	}
	return &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: err.Error()}
}

// memberRunning reports whether this node's member runs.
func (n *Node) memberRunning() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	servers, err := n.sys.LocalServers(ctx)
	if err != nil {
		return false, err
	}
	for _, s := range servers {
		if s.ID == n.self {
			return true, nil
		}
	}
	return false, nil
}

func badArg(format string, args ...any) *api.Error {
	return &api.Error{Status: http.StatusBadRequest, Code: api.CodeInvalidArgument, Message: fmt.Sprintf(format, args...)}
}
