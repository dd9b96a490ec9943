package core

import (
	"fmt"
	"strings"

	"github.com/rago-raft/rago/internal/wire"
)

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
func (id ServerID) less(o ServerID) bool { return id.Compare(o) < 0 }

// Compare orders ServerIDs by node, then name (for slices.SortFunc and
// deterministic iteration): -1, 0 or +1.
func (id ServerID) Compare(o ServerID) int {
	if c := strings.Compare(id.Node, o.Node); c != 0 {
		return c
	}
	return strings.Compare(id.Name, o.Name)
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
	// EntryMachineVersion raises the cluster's machine version: its data is
	// the new version (see EncodeMachineVersion). The leader appends one
	// when a quorum of voters runs code that supports a higher version than
	// the effective one. Every member applies it at the same index and
	// switches its machine there; a member whose code does not support the
	// version stops applying just before it.
	EntryMachineVersion EntryType = 4
)

// maxEntryType is the highest EntryType this version knows. Later types
// get the next numbers.
const maxEntryType = EntryMachineVersion

// String names the entry type.
func (t EntryType) String() string {
	switch t {
	case EntryNormal:
		return "normal"
	case EntryNoop:
		return "noop"
	case EntryConfig:
		return "config"
	case EntryMachineVersion:
		return "machine_version"
	default:
		return fmt.Sprintf("EntryType(%d)", uint8(t))
	}
}

// Entry is one Raft log entry. Index starts at 1; Term is the term of the
// leader that created it. Data is owned by the log once appended: callers
// must not modify it afterwards.
//
// Framed, if not nil, is Type's byte followed by Data in one buffer, of
// which Data is the tail: the entry laid out as a log stores it, by
// whoever made it, so that storage can keep those bytes instead of a copy.
// Like Data it is never modified. Nothing in the core reads it; storage
// must check the layout (see FramedOK) before it relies on it.
type Entry struct {
	Index  uint64
	Term   uint64
	Type   EntryType
	Data   []byte
	Framed []byte
}

// FramedOK reports whether e.Framed is set and holds exactly e.Type's byte
// followed by e.Data, Data being the very bytes at Framed[1:].
func (e *Entry) FramedOK() bool {
	f := e.Framed
	if len(f) != 1+len(e.Data) || f[0] != byte(e.Type) {
		return false
	}
	return len(e.Data) == 0 || &f[1] == &e.Data[0]
}

// size is the entry's rough byte cost, used for message and read budgets.
func (e *Entry) size() int { return len(e.Data) + 24 }

// EncodeMachineVersion returns the data of an EntryMachineVersion entry
// for version v: one uvarint.
func EncodeMachineVersion(v uint64) []byte { return wire.AppendUvarint(nil, v) }

// DecodeMachineVersion decodes the data of an EntryMachineVersion entry.
// Anything but exactly one uvarint yields an error wrapping ErrMalformed
// (and wire.ErrMalformed).
func DecodeMachineVersion(data []byte) (uint64, error) {
	r := wire.NewReader(data)
	v := r.Uvarint()
	if err := r.Done(); err != nil {
		return 0, fmt.Errorf("%w: machine version: %w", ErrMalformed, err)
	}
	return v, nil
}

// Snapshot describes a durable snapshot of the machine: its state after
// applying every entry up to Index. The server writes the snapshot itself
// (package snapshot); the core only sees this description, in
// Config.Snapshot at start, in SnapshotTaken, in the InstallSnapshot message
// and in the SendSnapshot and RestoreSnapshot actions.
type Snapshot struct {
	// Index and Term are those of the last entry the snapshot covers.
	Index uint64
	Term  uint64
	// Members is the configuration in effect at Index: that of the last
	// EntryConfig entry at or below Index. A snapshot taken before any config
	// entry carries no voters, which stands for the initial members
	// (Config.InitialMembers of whoever restores it).
	Members Membership
	// MachineVersion is the machine version in effect at Index: that of the
	// last EntryMachineVersion entry at or below Index, 0 if none.
	MachineVersion uint64
}

// IsZero reports whether s describes no snapshot (Index 0).
func (s Snapshot) IsZero() bool { return s.Index == 0 }

// Clone returns a deep copy of s.
func (s Snapshot) Clone() Snapshot {
	s.Members = s.Members.Clone()
	return s
}

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
