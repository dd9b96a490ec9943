package fleet

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/rago-raft/rago/raftserver"
)

// groupModel is a group's configuration as the reconciler's steps change
// it, with every member alive and a non-voter caught up one step after it
// was added.
type groupModel struct {
	voters, nonVoters []string
	leader            string
	fresh             map[string]bool // non-voters added in the last step
}

func (m *groupModel) status(group string) *raftserver.ServerStatus {
	id := func(n string) raftserver.ServerID { return raftserver.ServerID{Name: group, Node: n} }
	st := &raftserver.ServerStatus{ID: id(m.leader), Role: "leader", Commit: 100}
	for _, v := range m.voters {
		st.Voters = append(st.Voters, id(v))
	}
	for _, n := range m.nonVoters {
		st.NonVoters = append(st.NonVoters, id(n))
		match := uint64(100)
		if m.fresh[n] {
			match = 0
		}
		st.Progress = append(st.Progress, raftserver.Progress{ID: id(n), Match: match})
	}
	return st
}

// TestPlanConvergesSafely: from any configuration to any placement, the
// steps plan takes reach placement, led by its first node, in a bounded
// number of steps; a member is removed only when every node placement
// wants is a voter (so its replacement caught up); the leader is never
// removed, and the group never has fewer voters than placement wants
// members, once it reached that many.
func TestPlanConvergesSafely(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		all := []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7"}
		voters := rapid.SliceOfNDistinct(rapid.SampledFrom(all), 1, 5, rapid.ID).Draw(t, "voters")
		var rest []string
		for _, n := range all {
			if !slices.Contains(voters, n) {
				rest = append(rest, n)
			}
		}
		nonVoters := rapid.SliceOfNDistinct(rapid.SampledFrom(append(rest, "-")), 0, 2, rapid.ID).Draw(t, "nonvoters")
		nonVoters = slices.DeleteFunc(nonVoters, func(n string) bool { return n == "-" })
		place := rapid.SliceOfNDistinct(rapid.SampledFrom(all), 1, 5, rapid.ID).Draw(t, "placement")
		m := &groupModel{voters: voters, nonVoters: nonVoters, leader: rapid.SampledFrom(voters).Draw(t, "leader"), fresh: map[string]bool{}}

		reached := len(m.voters) >= len(place)
		for step := 0; ; step++ {
			if step > 4*len(all) {
				t.Fatalf("no convergence after %d steps: %+v to %v", step, m, place)
			}
			c, ok := plan("g", place, m.status("g"), 0)
			fresh := map[string]bool{}
			if !ok {
				if len(m.nonVoters) > 0 && len(m.fresh) > 0 {
					m.fresh = fresh // waiting for a catch-up: it comes
					continue
				}
				break
			}
			switch c.Kind {
			case ChangeAdd:
				m.nonVoters = append(m.nonVoters, c.Node)
				fresh[c.Node] = true
			case ChangePromote:
				if !slices.Contains(m.nonVoters, c.Node) || m.fresh[c.Node] {
					t.Fatalf("promoted %s, not a caught-up non-voter", c.Node)
				}
				m.nonVoters = slices.DeleteFunc(m.nonVoters, func(n string) bool { return n == c.Node })
				m.voters = append(m.voters, c.Node)
			case ChangeRemove:
				if c.Node == m.leader {
					t.Fatalf("removed the leader %s", c.Node)
				}
				if slices.Contains(m.voters, c.Node) {
					for _, p := range place {
						if !slices.Contains(m.voters, p) {
							t.Fatalf("removed voter %s while %s, wanted, is not a voter", c.Node, p)
						}
					}
				}
				m.voters = slices.DeleteFunc(m.voters, func(n string) bool { return n == c.Node })
				m.nonVoters = slices.DeleteFunc(m.nonVoters, func(n string) bool { return n == c.Node })
			case ChangeTransfer:
				if !slices.Contains(m.voters, c.Node) || c.Node != place[0] {
					t.Fatalf("transfer to %s, not the desired leader or not a voter", c.Node)
				}
				m.leader = c.Node
			default:
				t.Fatalf("unexpected change %+v", c)
			}
			m.fresh = fresh
			if reached && len(m.voters) < len(place) {
				t.Fatalf("voters fell to %v, below placement's %d", m.voters, len(place))
			}
			reached = reached || len(m.voters) >= len(place)
		}
		if !converged(place, m.status("g")) {
			t.Fatalf("stopped short of placement %v: %+v", place, m)
		}
	})
}

func TestPlanRejoinsStrangers(t *testing.T) {
	st := (&groupModel{voters: []string{"n1", "n2", "n3"}, leader: "n1"}).status("g")
	st.Strangers = []raftserver.ServerID{{Name: "g", Node: "n2"}}
	c, ok := plan("g", []string{"n1", "n2", "n3"}, st, 0)
	if !ok || c.Kind != ChangeRejoin || c.Node != "n2" {
		t.Fatalf("a stranger in placement is not rejoined: %+v", c)
	}
	st.Strangers = []raftserver.ServerID{{Name: "g", Node: "n9"}}
	if c, ok := plan("g", []string{"n1", "n2", "n3"}, st, 0); ok {
		t.Fatal(fmt.Sprintf("acted on a stranger off placement: %+v", c))
	}
}
