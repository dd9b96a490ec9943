package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rago-raft/rago/raftserver"
)

// Client sends commands and queries to groups by name. It finds a group's
// members without asking anyone: the node's leaderboard first (it knows
// the leader of every group with a member on this node), then the members
// the books last recorded, then the group's placement. Commands go through
// a session, so each is applied once however many members it is retried
// through. A Client is safe for concurrent use.
type Client struct {
	a       *Agent
	session *raftserver.Session
}

// Route returns the members a request for group is sent through, in the
// order they are tried. It fails with ErrNoSuchGroup if the books (as last
// read) do not hold the group.
func (c *Client) Route(ctx context.Context, group string) ([]raftserver.ServerID, error) {
	b := c.a.books.Load()
	if b == nil || b.Groups[group] == nil {
		// A group added since the last read, or no read yet.
		var err error
		if b, err = c.a.readBooks(ctx, 0); err != nil {
			return nil, err
		}
	}
	g := b.Groups[group]
	if g == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchGroup, group)
	}
	var out []raftserver.ServerID
	add := func(node string) {
		if id := (raftserver.ServerID{Name: group, Node: node}); node != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	if leader, _, err := c.a.sys.Leader(group); err == nil {
		add(leader.Node)
	}
	for _, n := range g.Members {
		add(n)
	}
	for _, n := range b.Placement(group) {
		add(n)
	}
	add(g.Founder)
	return out, nil
}

// Process applies cmd to group's machine exactly once and returns the
// machine's reply. Errors are those of raftserver.Session.ProcessCommand,
// and ErrNoSuchGroup.
func (c *Client) Process(ctx context.Context, group string, cmd []byte) ([]byte, error) {
	vias, err := c.Route(ctx, group)
	if err != nil {
		return nil, err
	}
	reply, _, err := c.session.ProcessCommandAny(ctx, vias, cmd)
	return reply, err
}

// Query runs q on group's machine with the given consistency (for
// raftserver.QueryLocal, on the first member of the route that answers).
func (c *Client) Query(ctx context.Context, group string, kind raftserver.QueryKind, q []byte) ([]byte, error) {
	vias, err := c.Route(ctx, group)
	if err != nil {
		return nil, err
	}
	var errs []error
	for i, via := range vias {
		// Each member gets a share of the time left, so that one that is
		// down (a call to it waits for its node) leaves time for the next.
		attempt, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && i < len(vias)-1 {
			attempt, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(len(vias)-i))
		}
		var reply []byte
		switch kind {
		case raftserver.QueryConsistent:
			reply, _, err = c.a.sys.ConsistentQuery(attempt, via, q)
		case raftserver.QueryLeader:
			reply, _, err = c.a.sys.LeaderQuery(attempt, via, q)
		default:
			reply, _, err = c.a.sys.LocalQuery(attempt, via, q)
		}
		cancel()
		if err == nil {
			return reply, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || !(errors.Is(err, raftserver.ErrUnreachable) || errors.Is(err, raftserver.ErrNoSuchServer) ||
			errors.Is(err, raftserver.ErrNoLeader) || errors.Is(err, raftserver.ErrTimeout)) {
			break
		}
	}
	return nil, fmt.Errorf("fleet: query %s: %w", group, errors.Join(errs...))
}
