package fleet

import (
	"context"
	"slices"
	"sync"

	"github.com/rago-raft/rago/raftserver"
)

// GroupReport is one group as Inspect found it.
type GroupReport struct {
	Name string
	// Placement is where the group belongs (Placement[0] should lead).
	Placement []string
	// Leader, Voters and NonVoters are as the group's leader reported them
	// (empty if no leader answered).
	Leader    string
	Voters    []string
	NonVoters []string
	Born      bool
	// Converged: the members are exactly Placement, all voters, and
	// Placement[0] leads.
	Converged bool
}

// Report is the state of every group of the books.
type Report struct {
	Groups []GroupReport
	// Converged counts the converged groups; Leaderless those whose leader
	// did not answer.
	Converged, Leaderless int
	// MembersPerNode counts the voters on each node.
	MembersPerNode map[string]int
}

// Inspect asks every group of b for its leader's status, through sys (any
// node of the fleet), and compares it with placement. It makes one or two
// status calls per group: for tests, benchmarks and dashboards, not for a
// hot path.
func Inspect(ctx context.Context, sys *raftserver.System, b *Books) Report {
	names := b.GroupNames()
	out := make([]GroupReport, len(names))
	var wg sync.WaitGroup
	work := make(chan int)
	for range surveyWorkers {
		wg.Go(func() {
			for i := range work {
				out[i] = inspectGroup(ctx, sys, b, names[i])
			}
		})
	}
	for i := range names {
		work <- i
	}
	close(work)
	wg.Wait()
	r := Report{Groups: out, MembersPerNode: map[string]int{}}
	for _, g := range out {
		if g.Converged {
			r.Converged++
		}
		if g.Leader == "" {
			r.Leaderless++
		}
		for _, v := range g.Voters {
			r.MembersPerNode[v]++
		}
	}
	return r
}

func inspectGroup(ctx context.Context, sys *raftserver.System, b *Books, name string) GroupReport {
	g := b.Groups[name]
	r := GroupReport{Name: name, Placement: b.Placement(name), Born: g.Born}
	candidates := slices.Clone(r.Placement)
	for _, n := range append(slices.Clone(g.Members), g.Founder) {
		if !slices.Contains(candidates, n) {
			candidates = append(candidates, n)
		}
	}
	L := leaderAmong(ctx, sys, name, candidates)
	if L == nil {
		return r
	}
	r.Leader, r.Voters, r.NonVoters = L.ID.Node, nodesOf(L.Voters), nodesOf(L.NonVoters)
	r.Converged = converged(r.Placement, L)
	return r
}

// leaderAmong returns the status of group's leader, asking its members on
// the candidate nodes in turn (and the leader they name); nil if none
// answers.
func leaderAmong(ctx context.Context, sys *raftserver.System, group string, candidates []string) *raftserver.ServerStatus {
	for _, n := range candidates {
		st, err := sys.Overview(ctx, raftserver.ServerID{Name: group, Node: n})
		if err != nil {
			continue
		}
		if st.Role == "leader" {
			return st
		}
		if st.Leader.IsZero() {
			continue
		}
		if l, err := sys.Overview(ctx, st.Leader); err == nil && l.Role == "leader" {
			return l
		}
	}
	return nil
}
