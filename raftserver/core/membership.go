package core

import (
	"fmt"
	"slices"

	"github.com/rago-raft/rago/internal/wire"
)

// Membership is a cluster configuration: the voters, whose majority decides
// elections and commits, and the non-voters, which receive the log but do
// not count. A ServerID appears at most once across both lists.
type Membership struct {
	Voters    []ServerID
	NonVoters []ServerID
}

// Validate reports a Membership with an empty or duplicated ServerID.
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
	return nil
}

// IsVoter reports whether id is a voter.
func (m Membership) IsVoter(id ServerID) bool { return slices.Contains(m.Voters, id) }

// IsNonVoter reports whether id is a non-voter.
func (m Membership) IsNonVoter(id ServerID) bool { return slices.Contains(m.NonVoters, id) }

// Contains reports whether id is a voter or a non-voter.
func (m Membership) Contains(id ServerID) bool { return m.IsVoter(id) || m.IsNonVoter(id) }

// empty reports whether the configuration names no member: a new member's
// before it hears from the cluster.
func (m Membership) empty() bool { return len(m.Voters) == 0 && len(m.NonVoters) == 0 }

// Clone returns a deep copy whose slices the caller may modify.
func (m Membership) Clone() Membership {
	return Membership{Voters: slices.Clone(m.Voters), NonVoters: slices.Clone(m.NonVoters)}
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
	return fmt.Sprintf("voters=%v non-voters=%v", m.Voters, m.NonVoters)
}

// AppendBinary appends the wire encoding of m, the payload of an EntryConfig
// entry:
//
//	uvarint  number of voters, then per voter: string name, string node
//	uvarint  number of non-voters, then the same
func (m Membership) AppendBinary(b []byte) []byte {
	for _, list := range [][]ServerID{m.Voters, m.NonVoters} {
		b = wire.AppendUvarint(b, uint64(len(list)))
		for _, id := range list {
			b = appendServerID(b, id)
		}
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
