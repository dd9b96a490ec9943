package core

import (
	"fmt"
	"maps"
	"slices"

	"github.com/rago-raft/rago/internal/wire"
)

// Membership is a cluster configuration: the voters, whose majority decides
// elections and commits, and the non-voters, which receive the log but do
// not count. A ServerID appears at most once across both lists.
type Membership struct {
	Voters    []ServerID
	NonVoters []ServerID
	// Incarnations binds members to one incarnation of their replica: the
	// number it drew when it was created (Config.Incarnation). Votes,
	// requests for votes and acknowledgements from a bound member that
	// carry another incarnation are dropped, and a replica that finds
	// itself bound to another incarnation neither votes nor stands: it is a new replica under an old name (its disk was
	// lost or replaced, or it was deleted and created again), which must
	// not count as the voter whose log it lacks. A member missing here is
	// not bound yet: the leader binds it once it hears from it. Nil when
	// no member is bound.
	Incarnations map[ServerID]uint64
}

// Validate reports a Membership with an empty or duplicated ServerID, or
// an incarnation that is zero or bound to a non-member.
func (m Membership) Validate() error {
	seen := make(map[ServerID]bool, len(m.Voters)+len(m.NonVoters))
	for _, list := range [][]ServerID{m.Voters, m.NonVoters} {
		for _, id := range list {
			if id.Name == "" || id.Node == "" {
				return fmt.Errorf("%w: member %q has an empty name or node", ErrInvalidMembership, id.String())
			}
			if seen[id] {
				return fmt.Errorf("%w: member %s listed twice", ErrInvalidMembership, id)
			}
			seen[id] = true
		}
	}
	for id, inc := range m.Incarnations {
		if !seen[id] || inc == 0 {
			return fmt.Errorf("%w: incarnation %d bound to %s, which is not a member or is zero", ErrInvalidMembership, inc, id)
		}
	}
	return nil
}

// Incarnation returns the incarnation id is bound to, 0 if none.
func (m Membership) Incarnation(id ServerID) uint64 { return m.Incarnations[id] }

// bind returns a copy of m with id bound to inc.
func (m Membership) bind(id ServerID, inc uint64) Membership {
	next := m.Clone()
	if next.Incarnations == nil {
		next.Incarnations = map[ServerID]uint64{}
	}
	next.Incarnations[id] = inc
	return next
}

// IsVoter reports whether id is a voter.
func (m Membership) IsVoter(id ServerID) bool { return slices.Contains(m.Voters, id) }

// IsNonVoter reports whether id is a non-voter.
func (m Membership) IsNonVoter(id ServerID) bool { return slices.Contains(m.NonVoters, id) }

// Contains reports whether id is a voter or a non-voter.
func (m Membership) Contains(id ServerID) bool { return m.IsVoter(id) || m.IsNonVoter(id) }

// onNode reports whether a member runs on node.
func (m Membership) onNode(node string) bool {
	for _, list := range [][]ServerID{m.Voters, m.NonVoters} {
		for _, id := range list {
			if id.Node == node {
				return true
			}
		}
	}
	return false
}

// empty reports whether the configuration names no member: a new member's
// before it hears from the cluster.
func (m Membership) empty() bool { return len(m.Voters) == 0 && len(m.NonVoters) == 0 }

// Clone returns a deep copy whose slices the caller may modify.
func (m Membership) Clone() Membership {
	c := Membership{Voters: slices.Clone(m.Voters), NonVoters: slices.Clone(m.NonVoters)}
	if len(m.Incarnations) > 0 {
		c.Incarnations = maps.Clone(m.Incarnations)
	}
	return c
}

// peers returns every member except self, sorted, for deterministic sends.
func (m Membership) peers(self ServerID) []ServerID {
	out := make([]ServerID, 0, len(m.Voters)+len(m.NonVoters))
	for _, list := range [][]ServerID{m.Voters, m.NonVoters} {
		for _, id := range list {
			if id != self {
				out = append(out, id)
			}
		}
	}
	slices.SortFunc(out, compareIDs)
	return out
}

func compareIDs(a, b ServerID) int {
	switch {
	case a.less(b):
		return -1
	case b.less(a):
		return 1
	default:
		return 0
	}
}

// String renders the membership for logs and errors.
func (m Membership) String() string {
	if len(m.Incarnations) == 0 {
		return fmt.Sprintf("voters=%v non-voters=%v", m.Voters, m.NonVoters)
	}
	return fmt.Sprintf("voters=%v non-voters=%v incarnations=%v", m.Voters, m.NonVoters, m.boundIDs())
}

// boundIDs returns the bound members, sorted, for deterministic encoding.
func (m Membership) boundIDs() []ServerID {
	ids := slices.Collect(maps.Keys(m.Incarnations))
	slices.SortFunc(ids, compareIDs)
	return ids
}

// AppendBinary appends the wire encoding of m, the payload of an EntryConfig
// entry:
//
//	uvarint  number of voters, then per voter: string name, string node
//	uvarint  number of non-voters, then the same
//	uvarint  number of bound members, then per member (sorted by name,
//	         node): string name, string node, uvarint incarnation
func (m Membership) AppendBinary(b []byte) []byte {
	for _, list := range [][]ServerID{m.Voters, m.NonVoters} {
		b = wire.AppendUvarint(b, uint64(len(list)))
		for _, id := range list {
			b = appendServerID(b, id)
		}
	}
	b = wire.AppendUvarint(b, uint64(len(m.Incarnations)))
	for _, id := range m.boundIDs() {
		b = appendServerID(b, id)
		b = wire.AppendUvarint(b, m.Incarnations[id])
	}
	return b
}

// DecodeMembership decodes the payload of an EntryConfig entry. Malformed
// bytes, empty or duplicated members yield an error wrapping ErrMalformed
// (and wire.ErrMalformed); it never panics.
func DecodeMembership(b []byte) (Membership, error) {
	r := wire.NewReader(b)
	m := readMembership(r)
	if err := r.Done(); err != nil {
		return Membership{}, fmt.Errorf("%w: membership: %w", ErrMalformed, err)
	}
	if err := m.Validate(); err != nil {
		return Membership{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return m, nil
}

// readMembership reads what AppendBinary wrote, without validating it.
func readMembership(r *wire.Reader) Membership {
	var m Membership
	// Each ServerID takes at least two length bytes.
	if n := r.Len(2); n > 0 {
		m.Voters = make([]ServerID, n)
		for i := range m.Voters {
			m.Voters[i] = readServerID(r)
		}
	}
	if n := r.Len(2); n > 0 {
		m.NonVoters = make([]ServerID, n)
		for i := range m.NonVoters {
			m.NonVoters[i] = readServerID(r)
		}
	}
	// Each binding takes at least three bytes.
	if n := r.Len(3); n > 0 {
		m.Incarnations = make(map[ServerID]uint64, n)
		var prev ServerID
		for i := range n {
			id := readServerID(r)
			if i > 0 && !prev.less(id) {
				r.Fail("incarnations not sorted or repeated")
			}
			m.Incarnations[id], prev = r.Uvarint(), id
		}
	}
	return m
}

func appendServerID(b []byte, id ServerID) []byte {
	b = wire.AppendString(b, id.Name)
	return wire.AppendString(b, id.Node)
}

func readServerID(r *wire.Reader) ServerID {
	name := r.String()
	node := r.String()
	return ServerID{Name: name, Node: node}
}
