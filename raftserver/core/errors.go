package core

import "errors"

// Errors returned by New, Config.Validate and the codecs, and carried in
// Reply actions. Test with errors.Is: most are wrapped with context.
var (
	// ErrInvalidConfig: a Config field is out of range; the message names the
	// field and its value.
	ErrInvalidConfig = errors.New("core: invalid config")
	// ErrInvalidMembership: a Membership lists an empty or duplicated member.
	ErrInvalidMembership = errors.New("core: invalid membership")
	// ErrInvalidState: the durable state handed to New contradicts itself or
	// the log (e.g. a log whose last term is above the persisted term).
	ErrInvalidState = errors.New("core: invalid durable state")
	// ErrMalformed: bytes that do not decode as a message or membership. It
	// also wraps wire.ErrMalformed when the low-level decoding failed.
	ErrMalformed = errors.New("core: malformed message")
	// ErrOutOfRange: a message carries a term above MaxTerm or an index
	// above MaxIndex (DecodeMessage wraps it with ErrMalformed; Step drops
	// such a message), a command would be appended past MaxIndex, or the
	// durable state handed to New holds such a value (with
	// ErrInvalidState).
	ErrOutOfRange = errors.New("core: term or index out of range")
	// ErrStorage: the LogReader failed. The Raft that saw it is broken: every
	// later Step returns this error, and the server must restart the member
	// from its durable state.
	ErrStorage = errors.New("core: log read failed")
	// ErrCompacted: a LogReader has no entry at that index any more (it is
	// covered by a snapshot). Returned by LogReader implementations.
	ErrCompacted = errors.New("core: index compacted")
	// ErrUnavailable: a LogReader has no entry at that index yet. Returned by
	// LogReader implementations.
	ErrUnavailable = errors.New("core: index beyond the log")

	// ErrNotLeader: this member is not the leader. The Reply's Leader field
	// names the leader when one is known; retry there. Nothing was appended.
	ErrNotLeader = errors.New("core: not leader")
	// ErrNoLeader: this member is not the leader and knows of none (an
	// election may be in progress). Nothing was appended; retry later.
	ErrNoLeader = errors.New("core: no leader")
	// ErrLeadershipLost: the command was appended but this member stopped
	// being leader before it committed. The outcome is unknown: the entry
	// may still commit under the next leader, or be discarded.
	ErrLeadershipLost = errors.New("core: leadership lost, outcome unknown")
	// ErrMembershipChangePending: a membership change is refused because
	// too many changes already wait for earlier ones to commit (a leader
	// queues changes while an earlier one has not committed yet, or it has
	// not yet committed an entry of its own term). Nothing was appended;
	// retry later.
	ErrMembershipChangePending = errors.New("core: membership change pending")
	// ErrUnknownMember: the request names a member that is not in the
	// cluster (remove, transfer) or is already in it (add).
	ErrUnknownMember = errors.New("core: unknown member")
	// ErrMemberExists: AddMember names a member that is already in the
	// cluster with the requested voting status.
	ErrMemberExists = errors.New("core: member already present")
	// ErrOtherIncarnation: AddMember names a member that the configuration
	// binds to another incarnation of its replica (see
	// Membership.Incarnations): remove it first, then add it again.
	ErrOtherIncarnation = errors.New("core: member bound to another incarnation")
	// ErrTransferInProgress: a leader transfer is under way; commands and
	// membership changes are refused until it ends. Retry later.
	ErrTransferInProgress = errors.New("core: leader transfer in progress")
	// ErrTransferFailed: the transfer target did not take over within the
	// check-quorum interval. This member is still the leader.
	ErrTransferFailed = errors.New("core: leader transfer failed")
)
