package raftserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver/core"
)

// maxRedirects bounds how many not-leader hints in a row one request
// follows before it goes back to the member the caller named, so that
// members that name each other cannot bounce a request for ever.
const maxRedirects = 8

// rejoinPoll is how often Rejoin asks a rejoining member how far it got.
const rejoinPoll = 50 * time.Millisecond

// Pauses between rounds of a request that found no leader: the first is
// short (an election usually takes a few tens of milliseconds), then they
// double up to the cap.
const (
	retryBackoffMin = 10 * time.Millisecond
	retryBackoffMax = 320 * time.Millisecond
)

// call makes a call to a server and maps the actor layer's errors.
func (s *System) call(ctx context.Context, to ServerID, req actor.Message) (actor.Message, error) {
	if err := s.Err(); err != nil && to.Node == s.node.Name() {
		return nil, err // its servers stay down: say why, not "no such server"
	}
	reply, err := s.node.CallContext(ctx, Ref(to), req)
	if err != nil {
		return nil, callError(to.String(), err)
	}
	return reply, nil
}

// callError maps the actor layer's call errors onto ours; what names the
// process called.
func callError(what string, err error) error {
	switch {
	case errors.Is(err, actor.ErrNoProcess):
		return fmt.Errorf("%w: %s: %w", ErrNoSuchServer, what, err)
	case errors.Is(err, actor.ErrNodeDown):
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, what, err)
	case errors.Is(err, actor.ErrTimeout):
		return fmt.Errorf("%w: %s: %w", ErrTimeout, what, err)
	case errors.Is(err, actor.ErrNodeLost), errors.Is(err, actor.ErrProcessExited):
		// The request may have been served: its outcome is unknown, as
		// after a timeout, but the caller learns it at once.
		return fmt.Errorf("%w: %s: no answer will come: %w", ErrTimeout, what, err)
	case errors.Is(err, actor.ErrNodeStopped):
		return fmt.Errorf("%w: %w", ErrShuttingDown, err)
	}
	return err
}

// redirect runs one request against the leader; see followLeader.
func (s *System) redirect(ctx context.Context, via ServerID, once func(to ServerID) (ServerID, error)) (ServerID, error) {
	return followLeader(ctx, via, once, sleepCtx)
}

// followLeader runs one request against the leader of via's cluster. once
// sends the request to one server and returns the leader it named and the
// error it answered. What follows an answer is refusal's decision: a named
// leader is asked at once; a request not served goes back to via after a
// pause (doubling from retryBackoffMin to retryBackoffMax) until ctx ends;
// any other answer ends the request.
//
// Going back to via rather than asking the hint again matters: a leader
// that removed itself may still be named by members that have not heard
// it stepped down, and only via is known to be a member the caller meant.
// wait pauses for d or until ctx ends (tests pass their own).
func followLeader(ctx context.Context, via ServerID, once func(to ServerID) (ServerID, error), wait func(context.Context, time.Duration) error) (ServerID, error) {
	target := via
	redirects := 0
	backoff := retryBackoffMin
	for {
		leader, err := once(target)
		if err == nil {
			return leader, nil
		}
		var named ServerID
		if nl := (*NotLeaderError)(nil); errors.As(err, &nl) {
			named = nl.Leader
		}
		switch refusal(err, named, target, via, redirects) {
		case refusalFollow:
			redirects++
			target = named
			continue
		case refusalFinal:
			return leader, err
		}
		if werr := wait(ctx, backoff); werr != nil {
			return leader, err
		}
		backoff = min(2*backoff, retryBackoffMax)
		target, redirects = via, 0
	}
}

// refusalAction is what a client does with a request that failed.
type refusalAction uint8

const (
	refusalFinal  refusalAction = iota // the answer stands: report it
	refusalFollow                      // not served: send it to the leader named
	refusalRetry                       // not served: ask via again after a pause
)

// refusal classifies err, the answer of target to a request made through
// via after redirects hops to named leaders; named is the leader the
// answer named, if any. Synchronous calls (followLeader) and pipelines
// (Pipeline) decide the same way:
//   - a not-leader answer that names another leader is followed, up to
//     maxRedirects hops in a row;
//   - without one, or when via knows no leader, or its node is
//     reconnecting, via is asked again after a pause;
//   - so is via when a hinted leader is gone or going (the hint was stale:
//     it was removed or stopped);
//   - any other answer (success, a machine error, an unknown outcome)
//     stands.
func refusal(err error, named, target, via ServerID, redirects int) refusalAction {
	switch {
	case errors.Is(err, ErrNotLeader) && !named.IsZero() && named != target && redirects < maxRedirects:
		return refusalFollow
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader), errors.Is(err, ErrUnreachable):
		return refusalRetry
	case target != via && (errors.Is(err, ErrNoSuchServer) || errors.Is(err, ErrShuttingDown)):
		return refusalRetry
	}
	return refusalFinal
}

// sleepCtx waits for d with up to 50% jitter (so that callers that failed
// together do not retry together), or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	d += time.Duration(rand.Int64N(int64(d)/2 + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ProcessCommand sends cmd to the cluster of via, following redirects to
// the leader, and waits until it is applied. It returns the machine's
// reply and the leader that applied it.
//
// Errors: ErrNoLeader if no leader emerged before ctx ended (nothing was
// appended); ErrTimeout or ErrLeadershipLost if the outcome is unknown (the
// command may have been applied); ErrNoSuchServer if via does not exist;
// ErrMachine if the machine panicked on the command or rejected it
// (ApplyContext.Reject). cmd's buffer may be reused once it returns.
func (s *System) ProcessCommand(ctx context.Context, via ServerID, cmd []byte) (reply []byte, leader ServerID, err error) {
	// A local server may still take the request after ctx ended: it must
	// not see the caller reuse the buffer. The copy is made in the form
	// the server logs, so that a local server need not copy it again.
	enc := frameUserCommand(cmd)
	return s.processCommand(ctx, via, &commandReq{Data: enc[2:len(enc):len(enc)], userCommand: enc})
}

func (s *System) processCommand(ctx context.Context, via ServerID, req *commandReq) (reply []byte, leader ServerID, err error) {
	return s.processCommandWait(ctx, via, req, sleepCtx)
}

// processCommandWait is processCommand with wait as the pause before via
// is asked again (see followLeader); a wait that fails at once makes a
// request that found no leader through via return at once.
func (s *System) processCommandWait(ctx context.Context, via ServerID, req *commandReq, wait func(context.Context, time.Duration) error) (reply []byte, leader ServerID, err error) {
	leader, err = followLeader(ctx, via, func(to ServerID) (ServerID, error) {
		res, err := s.call(ctx, to, req)
		if err != nil {
			return ServerID{}, err
		}
		r := res.(*commandResult)
		reply = r.Reply
		return r.Leader, r.Err.err(to)
	}, wait)
	return reply, leader, err
}

// PipelineCommand sends cmd to via without waiting; cmd's buffer may be
// reused as soon as it returns. The notify process
// later receives an *Applied carrying correlation and the reply (batched
// with other commands applied together), or a *Rejected (ErrNotLeader with
// the leader to resend to, ErrNoLeader, ErrLeadershipLost). Pipelined
// commands are not redirected: resend rejected ones yourself.
//
// Nothing arrives if via or its node is down, so a caller keeps a window
// of correlations in flight (e.g. up to 1000) and treats those not
// answered within a timeout as unknown, resending through another member.
// PipelineCommand returns an error only when the request cannot be sent.
func (s *System) PipelineCommand(via ServerID, cmd []byte, correlation uint64, notify actor.Ref) error {
	if s.node.IsLocal(Ref(via)) {
		if err := s.Err(); err != nil {
			return err
		}
		if !s.node.Alive(Ref(via)) {
			return fmt.Errorf("%w: %s", ErrNoSuchServer, via)
		}
		// A local server gets the request itself, later: it must not see
		// the caller reuse cmd's buffer. (A remote one gets it encoded now.)
		cmd = bytes.Clone(cmd)
	}
	return s.node.Send(Ref(via), &commandReq{Data: cmd, Pipeline: true, Notify: notify, Correlation: correlation})
}

func (s *System) query(ctx context.Context, via ServerID, req *queryReq, follow bool) (*queryResult, ServerID, error) {
	var out *queryResult
	once := func(to ServerID) (ServerID, error) {
		res, err := s.call(ctx, to, req)
		if err != nil {
			return ServerID{}, err
		}
		out = res.(*queryResult)
		return out.Leader, out.Err.err(to)
	}
	if !follow {
		leader, err := once(via)
		return out, leader, err
	}
	leader, err := s.redirect(ctx, via, once)
	return out, leader, err
}

// ConsistentQuery runs q on the leader's machine (its Querier) after the
// leader confirmed, with a round of messages to a quorum, that it still
// leads, at a commit index at least as high as when q arrived: the answer
// is linearizable. It follows redirects like ProcessCommand.
func (s *System) ConsistentQuery(ctx context.Context, via ServerID, q []byte) ([]byte, ServerID, error) {
	res, leader, err := s.query(ctx, via, &queryReq{Kind: core.QueryConsistent, Query: q}, true)
	if err != nil {
		return nil, leader, err
	}
	return res.Reply, leader, nil
}

// LeaderQuery runs q on the machine of the member that believes it leads,
// without confirming it: fast, and possibly stale during a partition.
func (s *System) LeaderQuery(ctx context.Context, via ServerID, q []byte) ([]byte, ServerID, error) {
	res, leader, err := s.query(ctx, via, &queryReq{Kind: core.QueryLeader, Query: q}, true)
	if err != nil {
		return nil, leader, err
	}
	return res.Reply, leader, nil
}

// LocalQuery runs q on server's own machine at whatever it has applied,
// whatever its role. It returns the reply and server, the member that
// answered.
func (s *System) LocalQuery(ctx context.Context, server ServerID, q []byte) ([]byte, ServerID, error) {
	res, _, err := s.query(ctx, server, &queryReq{Kind: core.QueryLocal, Query: q}, false)
	if err != nil {
		return nil, server, err
	}
	return res.Reply, server, nil
}

// QueryKind is the consistency of a query: QueryConsistent, QueryLeader
// or QueryLocal.
type QueryKind = core.QueryKind

// The query kinds, from the strongest to the cheapest.
const (
	// QueryConsistent runs on the leader after it confirmed with a quorum
	// that it still leads: linearizable.
	QueryConsistent = core.QueryConsistent
	// QueryLeader runs on the member that believes it leads, without
	// confirming it: possibly stale during a partition.
	QueryLeader = core.QueryLeader
	// QueryLocal runs on the member asked, at whatever it has applied.
	QueryLocal = core.QueryLocal
)

// QueryFunc runs fn over the machine of server with the given consistency,
// on the server's goroutine, and returns its result. fn gets the machine
// its factory built: for a typed machine (NewTypedMachine), the
// TypedMachine value; QueryMachine asserts its type for you. The server
// that runs fn (server itself for QueryLocal, the leader otherwise) must
// be on this node: a function cannot travel; use the byte queries
// otherwise (ErrNotLocal). fn must not modify the machine or keep it.
func (s *System) QueryFunc(ctx context.Context, server ServerID, kind QueryKind, fn func(machine any) (any, error)) (any, ServerID, error) {
	if kind != QueryConsistent && kind != QueryLeader && kind != QueryLocal {
		return nil, ServerID{}, fmt.Errorf("%w: query kind %d", ErrInvalidConfig, kind)
	}
	return s.localQuery(ctx, server, func() *queryReq { return &queryReq{Kind: kind, fn: fn} })
}

// localQuery runs a query that cannot travel (a function, a backup) on
// server, or on the leader it names if that is local too, and returns the
// result's Value.
func (s *System) localQuery(ctx context.Context, server ServerID, req func() *queryReq) (any, ServerID, error) {
	if !s.node.IsLocal(Ref(server)) {
		return nil, ServerID{}, fmt.Errorf("%w: %s", ErrNotLocal, server)
	}
	res, leader, err := s.query(ctx, server, req(), false)
	if err != nil {
		var nl *NotLeaderError
		if errors.As(err, &nl) && !nl.Leader.IsZero() && !s.node.IsLocal(Ref(nl.Leader)) {
			return nil, leader, fmt.Errorf("%w: the leader %s is on another node: %w", ErrNotLocal, nl.Leader, err)
		}
		if errors.As(err, &nl) && !nl.Leader.IsZero() {
			res, leader, err = s.query(ctx, nl.Leader, req(), false)
		}
		if err != nil {
			return nil, leader, err
		}
	}
	return res.Value, leader, nil
}

// QueryMachine is QueryFunc for a machine of type M (for a typed machine,
// the TypedMachine value given to NewTypedMachine): fn gets it typed. A
// machine of another type fails with ErrMachine.
func QueryMachine[M, T any](ctx context.Context, s *System, server ServerID, kind QueryKind, fn func(m M) (T, error)) (T, ServerID, error) {
	var zero T
	v, leader, err := s.QueryFunc(ctx, server, kind, func(machine any) (any, error) {
		m, ok := machine.(M)
		if !ok {
			return nil, fmt.Errorf("%w: machine is a %T, not a %T", ErrMachine, machine, *new(M))
		}
		return fn(m)
	})
	if err != nil {
		return zero, leader, err
	}
	t, _ := v.(T) // nil when fn returned a nil T
	return t, leader, nil
}

func (s *System) member(ctx context.Context, via ServerID, op uint8, m ServerID) (ServerID, error) {
	return s.memberAs(ctx, via, op, m, 0)
}

// memberAs is member for an added member bound to incarnation inc.
func (s *System) memberAs(ctx context.Context, via ServerID, op uint8, m ServerID, inc uint64) (ServerID, error) {
	return s.redirect(ctx, via, func(to ServerID) (ServerID, error) {
		res, err := s.call(ctx, to, &memberReq{Op: op, Member: m, Incarnation: inc})
		if err != nil {
			return ServerID{}, err
		}
		r := res.(*memberResult)
		return r.Leader, r.Err.err(to)
	})
}

// AddMember adds member to the cluster of via as a voter, through its
// leader, and returns once the change is committed. Start the member first
// (StartServer with no InitialMembers) so the leader can replicate to it,
// and so that the configuration binds the member to that replica (its
// incarnation, derived from its UID): a replica that later loses its data
// cannot count as this member again (see Rejoin).
//
// Changes take effect one at a time. A change that arrives while another
// one, or a new leader's first entry, is uncommitted waits its turn at the
// leader (so AddMember right after StartCluster simply waits), and is
// checked against the membership when its turn comes. ErrMembershipChange
// means it was refused: the member is already there, or too many changes
// wait already. If the leader changes meanwhile the request follows the
// new one, until ctx ends.
func (s *System) AddMember(ctx context.Context, via, member ServerID) (ServerID, error) {
	return s.memberAs(ctx, via, opAddMember, member, s.incarnationOf(ctx, member))
}

// AddNonVoter adds member as a non-voting member, which receives the log
// but does not count toward quorums; AddMember on it later promotes it.
func (s *System) AddNonVoter(ctx context.Context, via, member ServerID) (ServerID, error) {
	return s.memberAs(ctx, via, opAddNonVoter, member, s.incarnationOf(ctx, member))
}

// incarnationOf asks member for the incarnation of its replica. If it does
// not answer, it returns 0, and the leader binds member to the first
// incarnation it hears from.
func (s *System) incarnationOf(ctx context.Context, member ServerID) uint64 {
	st, err := s.Overview(ctx, member)
	if err != nil || st.UID == "" {
		return 0
	}
	return incarnationOf(st.UID)
}

// Rejoin makes member, a replica that restarted without the data of the
// member it replaces (a lost or replaced disk, or a server deleted and
// started again under the same ID), a voter of via's cluster again, the
// only safe way: the cluster's configuration binds each voter to one
// incarnation of its replica, and drops the votes and acknowledgements of
// any other, which lacks what the bound one acknowledged. Rejoin removes
// member from the configuration, adds it back as a non-voter bound to the
// running replica, waits until that replica holds the log up to the
// leader's commit index at that point, and promotes it. Start member first
// (StartServer, with no InitialMembers). It returns the leader.
//
// Until the promotion, the cluster has one voter fewer; a cluster of
// three with the member gone already tolerates no other failure, which
// Rejoin does not change. Status shows when it is needed: the member's
// ServerStatus.Stale, or the leader's ServerStatus.Strangers.
func (s *System) Rejoin(ctx context.Context, via, member ServerID) (ServerID, error) {
	inc := s.incarnationOf(ctx, member)
	if inc == 0 {
		return ServerID{}, fmt.Errorf("%w: %s does not answer: start it before Rejoin", ErrNoSuchServer, member)
	}
	leader, err := s.member(ctx, via, opRemoveMember, member)
	if err != nil && !errors.Is(err, ErrMembershipChange) {
		return leader, err
	}
	if leader, err = s.memberAs(ctx, via, opAddNonVoter, member, inc); err != nil {
		return leader, err
	}
	st, err := s.Overview(ctx, leader)
	if err != nil {
		return leader, err
	}
	for target := st.Commit; ; {
		ms, err := s.Overview(ctx, member)
		if err == nil && ms.StableIndex >= target && ms.Commit >= target {
			break
		}
		select {
		case <-ctx.Done():
			return leader, fmt.Errorf("%w: %s did not catch up to index %d: %w", ErrTimeout, member, target, ctx.Err())
		case <-time.After(rejoinPoll):
		}
	}
	return s.memberAs(ctx, leader, opAddMember, member, inc)
}

// RemoveMember removes member from the cluster of via and returns once the
// change is committed. The removed server stops once it has applied its
// removal, keeping its data until deleted; a removed leader steps down
// first. The leader tells a removed follower for 100 ticks
// (RaftConfig.TickInterval; ten seconds by default), and tells one that
// was down or cut off meanwhile when it comes back and asks for votes, as
// long as it still leads and its log still holds the removal; one it
// cannot tell runs on until it is stopped or deleted on its node.
func (s *System) RemoveMember(ctx context.Context, via, member ServerID) (ServerID, error) {
	return s.member(ctx, via, opRemoveMember, member)
}

// TransferLeadership asks the leader of via's cluster to hand leadership
// to to, and returns once it stepped down for to's election.
func (s *System) TransferLeadership(ctx context.Context, via, to ServerID) error {
	_, err := s.member(ctx, via, opTransfer, to)
	return err
}

// Overview returns server's status.
func (s *System) Overview(ctx context.Context, server ServerID) (*ServerStatus, error) {
	res, err := s.call(ctx, server, &statusReq{})
	if err != nil {
		return nil, err
	}
	return res.(*ServerStatus), nil
}

// WaitForLeader waits until via's cluster has a leader and returns it:
// for instance after StartCluster, or after a restart, before the first
// commands. It asks via, follows the leader it names, and while no leader
// is known (an election is under way, a node is reconnecting) asks via
// again with backoff, until ctx ends: with ErrNoLeader once a server
// answered that it knows none, even if ctx ends while it is asked again,
// and with ErrTimeout if no answer came.
func (s *System) WaitForLeader(ctx context.Context, via ServerID) (ServerID, error) {
	var knowsNone error
	return s.redirect(ctx, via, func(to ServerID) (ServerID, error) {
		st, err := s.Overview(ctx, to)
		switch {
		case err != nil && knowsNone != nil && ctx.Err() != nil:
			// The deadline came during a repeated question: the last
			// answer stands, rather than a timeout that says less.
			return ServerID{}, knowsNone
		case err != nil:
			return ServerID{}, err
		case st.Role == core.RoleLeader.String():
			return to, nil
		case st.Leader.IsZero():
			knowsNone = fmt.Errorf("%w: %s knows none", ErrNoLeader, to)
			return ServerID{}, knowsNone
		}
		return st.Leader, &NotLeaderError{Server: to, Leader: st.Leader}
	})
}

// Members returns the voters of via's cluster as via knows them, and the
// leader it knows.
func (s *System) Members(ctx context.Context, via ServerID) ([]ServerID, ServerID, error) {
	st, err := s.Overview(ctx, via)
	if err != nil {
		return nil, ServerID{}, err
	}
	return st.Voters, st.Leader, nil
}

// systemCall sends a request to the system manager of a node.
func (s *System) systemCall(ctx context.Context, node string, req *systemReq) error {
	res, err := s.node.CallContext(ctx, actor.Ref{Name: managerName, Node: node}, req)
	if err != nil {
		if errors.Is(err, actor.ErrNoProcess) {
			return fmt.Errorf("%w: no rago system on node %s", ErrNoSuchServer, node)
		}
		return callError("system on node "+node, err)
	}
	return res.(*systemResult).Err.err(ServerID{Name: managerName, Node: node})
}

// StartServer starts one server on its node (which must run a rago system
// that knows the machine kind). With no InitialMembers it waits to be
// added to a running cluster (AddMember). It fails with ErrClusterExists
// if the node already has a server of that name.
func (s *System) StartServer(ctx context.Context, cfg ServerConfig) error {
	return s.systemCall(ctx, cfg.ID.Node, &systemReq{Op: sysStart, Config: cfg})
}

// RestartServer starts a stopped (or given-up) server again from its
// durable state.
func (s *System) RestartServer(ctx context.Context, id ServerID) error {
	return s.systemCall(ctx, id.Node, &systemReq{Op: sysRestart, Name: id.Name})
}

// StopServer stops a server and keeps its data; RestartServer (or a
// restart of its node) brings it back.
func (s *System) StopServer(ctx context.Context, id ServerID) error {
	return s.systemCall(ctx, id.Node, &systemReq{Op: sysStop, Name: id.Name})
}

// ForceDeleteServer stops a server and deletes its data, without telling
// its cluster: remove it with RemoveMember first unless the whole cluster
// goes. A server on another node is deleted only if that node's
// SystemConfig.AllowRemoteDelete is on; otherwise it fails with
// ErrNotPermitted and nothing is done.
func (s *System) ForceDeleteServer(ctx context.Context, id ServerID) error {
	return s.systemCall(ctx, id.Node, &systemReq{Op: sysDelete, Name: id.Name})
}

// DeleteCluster force-deletes every member. Members that cannot be reached,
// or whose nodes refuse deletes from this one (ErrNotPermitted, see
// ForceDeleteServer), are reported in the error; the others are deleted.
func (s *System) DeleteCluster(ctx context.Context, members []ServerID) error {
	var errs []error
	for _, id := range members {
		if err := s.ForceDeleteServer(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// StartCluster starts a new cluster of the given members (each on its
// node, which must run a rago system knowing machine.Kind) and waits until
// it has elected a leader. It returns the members it started and those it
// could not. With fewer than a quorum started it deletes the started ones
// again and fails with ErrNotEnoughMembers. If a member already exists it
// fails with ErrClusterExists (see StartOrRestartCluster). A started member
// whose node refuses deletes from this one (see ForceDeleteServer) is
// stopped instead, and keeps its record there: StartOrRestartCluster
// starts it again, and its own node can delete it.
func (s *System) StartCluster(ctx context.Context, cluster string, machine MachineSpec, members []ServerID) (started, notStarted []ServerID, err error) {
	return s.startCluster(ctx, cluster, machine, members, sysStart)
}

// StartOrRestartCluster is StartCluster for a cluster that may already
// exist: existing members are restarted if they are stopped, and left
// alone if they run.
func (s *System) StartOrRestartCluster(ctx context.Context, cluster string, machine MachineSpec, members []ServerID) (started, notStarted []ServerID, err error) {
	return s.startCluster(ctx, cluster, machine, members, sysStartOrRestart)
}

func (s *System) startCluster(ctx context.Context, cluster string, machine MachineSpec, members []ServerID, op uint8) (started, notStarted []ServerID, err error) {
	if err := checkNewCluster(cluster, members); err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, id := range members {
		cfg := ServerConfig{ID: id, Cluster: cluster, Machine: machine, InitialMembers: members}
		if err := s.systemCall(ctx, id.Node, &systemReq{Op: op, Config: cfg}); err != nil {
			notStarted = append(notStarted, id)
			errs = append(errs, err)
			continue
		}
		started = append(started, id)
	}
	joined := errors.Join(errs...)
	exists := op == sysStart && errors.Is(joined, ErrClusterExists)
	if exists || len(started) <= len(members)/2 {
		// Undo: delete what this call created (a new server has no data
		// worth keeping). StartOrRestartCluster creates nothing it would
		// have to undo twice, so it leaves its members alone.
		if op == sysStart {
			for _, id := range started {
				if err := s.ForceDeleteServer(context.Background(), id); errors.Is(err, ErrNotPermitted) {
					// Stopped at least, so that it does not stand for a
					// cluster that was never formed.
					_ = s.StopServer(context.Background(), id)
				}
			}
		}
		if exists {
			return nil, members, joined
		}
		return nil, members, fmt.Errorf("%w: started %d of %d: %w", ErrNotEnoughMembers, len(started), len(members), joined)
	}
	// Do not wait for an election timer: ask one member to stand now.
	_ = s.node.Send(Ref(started[0]), &memberReq{Op: opTriggerElection})
	if err := s.waitForLeader(ctx, started); err != nil {
		return started, notStarted, err
	}
	return started, notStarted, nil
}

// checkNewCluster checks the name and members of a cluster to start.
func checkNewCluster(cluster string, members []ServerID) error {
	if cluster == "" || len(members) == 0 {
		return fmt.Errorf("%w: a cluster needs a name and members", ErrInvalidConfig)
	}
	if err := (core.Membership{Voters: members}).Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// waitForLeader polls the members until one reports a leader.
func (s *System) waitForLeader(ctx context.Context, members []ServerID) error {
	for {
		for _, id := range members {
			st, err := s.Overview(ctx, id)
			if err == nil && !st.Leader.IsZero() {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: no leader elected in time among %v", ErrNoLeader, members)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// LocalServers lists the servers running on this node. It fails, wrapping
// ErrTimeout or ErrShuttingDown, if the system's manager does not answer
// before ctx ends or the system stops: that is not the same as having no
// servers, and a caller deciding whether to start one must not read it so.
func (s *System) LocalServers(ctx context.Context) ([]ServerConfig, error) {
	res, err := s.node.CallContext(ctx, s.manager, &managerList{})
	if err != nil {
		return nil, callError("system on node "+s.node.Name(), err)
	}
	return res.([]ServerConfig), nil
}

// Leader returns the leader and members of cluster as this node's
// leaderboard knows them. It fails with ErrNoSuchCluster if no server on
// this node belongs to the cluster, and ErrNoLeader if none is known.
func (s *System) Leader(cluster string) (ServerID, []ServerID, error) {
	leader, members, ok := s.board.Lookup(cluster)
	switch {
	case !ok:
		return ServerID{}, nil, fmt.Errorf("%w: %q is unknown on %s", ErrNoSuchCluster, cluster, s.node.Name())
	case leader.IsZero():
		return ServerID{}, members, fmt.Errorf("%w: cluster %q", ErrNoLeader, cluster)
	}
	return leader, members, nil
}
