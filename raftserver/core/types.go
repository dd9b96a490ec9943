package core

import "fmt"

// ServerID names one member of one cluster: a locally registered actor name
// plus the node it lives on. It outlives process restarts. The zero value
// means "nobody" (no leader known, no vote cast).
type ServerID struct {
	Name string
	Node string
}

// IsZero reports whether id is the zero ServerID ("nobody").
func (id ServerID) IsZero() bool { return id.Name == "" && id.Node == "" }

// String renders id as name@node.
func (id ServerID) String() string {
	if id.IsZero() {
		return "none"
	}
	return id.Name + "@" + id.Node
}

// less orders ServerIDs by node, then name, for deterministic iteration.
func (id ServerID) less(o ServerID) bool {
	if id.Node != o.Node {
		return id.Node < o.Node
	}
	return id.Name < o.Name
}

// EntryType says what a log entry carries. Values are part of the wire and
// on-disk format: never renumber them.
type EntryType uint8

const (
	// EntryNormal carries a client command for the user's machine.
	EntryNormal EntryType = 1
	// EntryNoop is appended by a new leader at the start of its term so that
	// it can commit (and so learn the commit index of) earlier entries.
	EntryNoop EntryType = 2
	// EntryConfig carries an encoded Membership (see Membership.AppendBinary).
	// A member uses the latest config entry in its log, committed or not.
	EntryConfig EntryType = 3
)

// maxEntryType is the highest EntryType this version knows. Later types
// (machine version bumps, snapshots markers) get the next numbers.
const maxEntryType = EntryConfig

// String names the entry type.
func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "normal"
	case EntryNoop:
		return "noop"
	case EntryConfig:
		return "config"
	default:
		return fmt.Sprintf("EntryType(%d)", uint8(t))
	}
}

// Entry is one Raft log entry. Index starts at 1; Term is the term of the
// leader that created it. Data is owned by the log once appended: callers
// must not modify it afterwards.
type Entry struct {
	Index uint64
	Term  uint64
	Type  EntryType
	Data  []byte
}

// size is the entry's rough byte cost, used for message and read budgets.
func (e *Entry) size() int { return len(e.Data) + 24 }

// HardState is what a member must have durable before it acts on it: the
// current term and the vote cast in that term (zero ServerID for none).
type HardState struct {
	Term     uint64
	VotedFor ServerID
}

// Role is a member's Raft role.
type Role uint8

const (
	// RoleFollower accepts entries from a leader; with no leader known it
	// waits for an election timer to start a pre-vote.
	RoleFollower Role = iota + 1
	// RolePreVote asks the voters whether it could win, without raising its
	// term, so a member that cannot win never disrupts the others.
	RolePreVote
	// RoleCandidate has raised its term and voted for itself.
	RoleCandidate
	// RoleLeader accepts commands and replicates them.
	RoleLeader
)

// String names the role as Ra does.
func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RolePreVote:
		return "pre_vote"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	default:
		return fmt.Sprintf("Role(%d)", uint8(r))
	}
}
