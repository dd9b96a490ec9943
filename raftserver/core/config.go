package core

import (
	"fmt"
	"log/slog"
)

// Defaults applied by New to zero-valued optional fields.
const (
	DefaultMaxInFlight        = 1000
	DefaultMaxAppendBytes     = 1 << 20
	DefaultElectionTimeoutMs  = 300
	DefaultMaxElectionBackoff = 4
	DefaultTickMs             = 100
	DefaultCheckQuorumMs      = 1000
	DefaultSnapshotRetryMs    = 30000
)

// maxSnapshotBackoff caps the doubling of SnapshotRetryMs between
// transfers of a snapshot to the same follower (so up to 16x).
const maxSnapshotBackoff = 4

// Config configures one member. Zero-valued optional fields take the
// defaults above; Validate reports the fields that are still out of range.
type Config struct {
	// ID is this member. Required.
	ID ServerID
	// InitialMembers is the cluster configuration used while the log holds
	// no config entry. A member joining an existing cluster starts with an
	// empty InitialMembers and waits for the leader to contact it.
	InitialMembers Membership
	// MaxInFlight bounds, per follower, how many entries the leader streams
	// beyond the follower's acknowledged match index without waiting.
	MaxInFlight uint64
	// MaxAppendBytes bounds the entry bytes in one AppendEntries message
	// (one entry is always sent, however large).
	MaxAppendBytes int
	// ElectionTimeoutMs is the base election timeout. The timer the core asks
	// for lasts d + jitter in [0, d), where d is base doubled per failed
	// round, up to 2^MaxElectionBackoff times base.
	ElectionTimeoutMs int64
	// LeaderLostTimeoutMs is the base of the timer armed when the leader
	// is known to be gone (LeaderDown, NodeSuspected) or a voter came back:
	// base + jitter in [0, base). The evidence is direct, so it may be
	// shorter than ElectionTimeoutMs; default ElectionTimeoutMs, at most
	// ElectionTimeoutMs.
	LeaderLostTimeoutMs int64
	// MaxElectionBackoff caps the doubling of the election timeout after
	// rounds that did not elect anyone (so a lone survivor retries rarely).
	MaxElectionBackoff int
	// TickMs is the period of the ticker a leader asks for while it has work
	// in flight (see StartTicker).
	TickMs int64
	// CheckQuorumMs is the check-quorum window: a voter heard from in this
	// window or the one before counts as reachable whatever the failure
	// detector says (silence alone never deposes a leader; see
	// docs/raft-core.md). Also the time a leader transfer may take. At least
	// 2*TickMs.
	CheckQuorumMs int64
	// SnapshotRetryMs is how long a leader waits for a follower to confirm
	// that it installed a snapshot before it sends the snapshot again,
	// doubled per attempt up to 16 times. Set it above the time a transfer
	// takes: a transfer that outlasts it is started afresh (the doubling
	// lets a slow one fit eventually). At least TickMs.
	SnapshotRetryMs int64
	// MachineVersion is the highest machine version this member's code
	// supports. The leader raises the cluster's version (an
	// EntryMachineVersion entry) once a quorum of voters supports more than
	// the effective version. A member never applies entries past a version
	// it does not support, and never leads a cluster whose version is above
	// it. Default 0.
	MachineVersion uint64
	// Snapshot is durable state, not configuration: the latest snapshot the
	// member holds durably (zero if none). The LogReader handed to New must
	// continue it: FirstIndex() <= Snapshot.Index+1 <= LastIndex()+1 and
	// Term(Snapshot.Index) == Snapshot.Term. The server has restored the
	// machine from it; Apply actions start at Snapshot.Index+1.
	Snapshot Snapshot
	// RecoverTo and RecoverTerm are durable state too, nonzero when the
	// member lost log entries it may have acknowledged: its newest snapshot
	// failed verification at start, and the server reset the log to an
	// older snapshot (or to none). They are the index and term of the last
	// entry of the lost log. Until the member's log again holds, durably and
	// matching a leader, the committed entries up to RecoverTo, it does not
	// campaign (it could lead without entries a quorum relies on), and it
	// grants (pre-)votes only to logs at least as up to date as the lost
	// one, as it would have with its log intact. It replicates and counts
	// for commits as usual. Recovery also ends once the durable log is at
	// least as up to date as the lost one (it then holds what an intact log
	// would hold after the same appends). Until then a cluster whose other
	// voters all lack the lost entries has no leader: no member can tell
	// whether those entries committed. Status().RecoverTo says when recovery is over
	// (0); the server then forgets the persisted values.
	RecoverTo, RecoverTerm uint64
	// Incarnation identifies this replica among all replicas that ever ran
	// under its ServerID: a random nonzero number drawn when the replica
	// was created, kept for its life, and never reused (the server derives
	// it from its UID). The leader binds each member to the incarnation it
	// hears from (Membership.Incarnations). A replica that restarts without
	// its data is a new incarnation: the others drop its votes and its
	// acknowledgements, and it neither votes nor stands while the
	// configuration binds its name to the old one, until it is removed and
	// added again. 0 (tests of the
	// core alone) opts out: such a member sends no identity and is never
	// bound.
	Incarnation uint64
	// Seed seeds the election jitter. Two members should use different
	// seeds; the same seed replays the same jitter.
	Seed uint64
	// Logger receives structured debug logs; nil discards them.
	Logger *slog.Logger
	// Sabotage breaks Raft on purpose. Only the simulation's self-tests set
	// it, to prove each invariant check can fail; the zero value is Raft.
	Sabotage Sabotage
}

// Sabotage lists deliberate bugs. Each field disables one safety or
// liveness mechanism so that a test can watch the simulation catch the
// consequence. Never set in production: the zero value is correct Raft.
type Sabotage struct {
	// ForgetVote persists the term but not the vote.
	ForgetVote bool
	// HalfQuorumElections lets a candidate win with votes from half of the
	// voters, rounded down, instead of a majority.
	HalfQuorumElections bool
	// SkipUpToDateCheck grants votes without comparing logs.
	SkipUpToDateCheck bool
	// CountUndurable makes the leader count its own entries and followers
	// acknowledge entries before the local log reports them durable.
	CountUndurable bool
	// SkipPrevCheck makes followers accept AppendEntries without checking
	// that the previous entry matches.
	SkipPrevCheck bool
	// CommitRegress lets a follower take a lower commit index from a stale
	// AppendEntries.
	CommitRegress bool
	// ApplyUncommitted hands every entry of the log to the machine, not only
	// the committed ones.
	ApplyUncommitted bool
	// ReadWithoutQuorum answers consistent queries at once, without the
	// round of messages that proves the leader is still leader.
	ReadWithoutQuorum bool
	// NoResend stops leaders from re-sending to followers that went quiet.
	NoResend bool
	// ApplyUnsupportedVersion lets a member apply entries past a machine
	// version bump its code does not support.
	ApplyUnsupportedVersion bool
	// InstallStaleSnapshot makes a follower install every snapshot it
	// receives, even one at or below its commit index.
	InstallStaleSnapshot bool
	// InstallWithoutReset makes a follower that installs a snapshot keep
	// its old view of the log instead of resetting it to the snapshot.
	InstallWithoutReset bool
	// VoteWhileRecovering makes a member that lost log entries (RecoverTo)
	// vote by the log it has left and campaign as if it had the lost
	// entries.
	VoteWhileRecovering bool
	// IgnoreIncarnations makes members count a replica's messages whatever
	// incarnation it sends, and a replica vote and stand whatever
	// incarnation the configuration binds its name to.
	IgnoreIncarnations bool
}

// withDefaults returns c with zero-valued optional fields set.
func (c Config) withDefaults() Config {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.MaxAppendBytes == 0 {
		c.MaxAppendBytes = DefaultMaxAppendBytes
	}
	if c.ElectionTimeoutMs == 0 {
		c.ElectionTimeoutMs = DefaultElectionTimeoutMs
	}
	if c.LeaderLostTimeoutMs == 0 {
		c.LeaderLostTimeoutMs = c.ElectionTimeoutMs
	}
	if c.MaxElectionBackoff == 0 {
		c.MaxElectionBackoff = DefaultMaxElectionBackoff
	}
	if c.TickMs == 0 {
		c.TickMs = DefaultTickMs
	}
	if c.CheckQuorumMs == 0 {
		c.CheckQuorumMs = DefaultCheckQuorumMs
	}
	if c.SnapshotRetryMs == 0 {
		c.SnapshotRetryMs = DefaultSnapshotRetryMs
	}
	return c
}

// Validate reports the first field out of range, wrapped in
// ErrInvalidConfig, with the offending values in the message. It checks c
// as given: call it on a Config after filling the fields you rely on (New
// fills defaults before validating).
func (c Config) Validate() error {
	switch {
	case c.ID.Name == "" || c.ID.Node == "":
		return fmt.Errorf("%w: ID %q must have a name and a node", ErrInvalidConfig, c.ID.String())
	case c.MaxInFlight < 1:
		return fmt.Errorf("%w: MaxInFlight is %d, must be at least 1", ErrInvalidConfig, c.MaxInFlight)
	case c.MaxAppendBytes < 1:
		return fmt.Errorf("%w: MaxAppendBytes is %d, must be at least 1", ErrInvalidConfig, c.MaxAppendBytes)
	case c.ElectionTimeoutMs < 1:
		return fmt.Errorf("%w: ElectionTimeoutMs is %d, must be at least 1", ErrInvalidConfig, c.ElectionTimeoutMs)
	case c.LeaderLostTimeoutMs < 1 || c.LeaderLostTimeoutMs > c.ElectionTimeoutMs:
		return fmt.Errorf("%w: LeaderLostTimeoutMs is %d, must be in [1, ElectionTimeoutMs %d]", ErrInvalidConfig, c.LeaderLostTimeoutMs, c.ElectionTimeoutMs)
	case c.MaxElectionBackoff < 0 || c.MaxElectionBackoff > 16:
		return fmt.Errorf("%w: MaxElectionBackoff is %d, must be in [0, 16]", ErrInvalidConfig, c.MaxElectionBackoff)
	case c.TickMs < 1:
		return fmt.Errorf("%w: TickMs is %d, must be at least 1", ErrInvalidConfig, c.TickMs)
	case c.CheckQuorumMs < 2*c.TickMs:
		return fmt.Errorf("%w: CheckQuorumMs is %d, must be at least twice TickMs (%d)", ErrInvalidConfig, c.CheckQuorumMs, c.TickMs)
	case c.SnapshotRetryMs < c.TickMs:
		return fmt.Errorf("%w: SnapshotRetryMs is %d, must be at least TickMs (%d)", ErrInvalidConfig, c.SnapshotRetryMs, c.TickMs)
	case c.Snapshot.Index == 0 && c.Snapshot.Term != 0:
		return fmt.Errorf("%w: Snapshot has term %d at index 0", ErrInvalidConfig, c.Snapshot.Term)
	}
	if err := c.InitialMembers.Validate(); err != nil {
		return fmt.Errorf("%w: InitialMembers: %w", ErrInvalidConfig, err)
	}
	if err := c.Snapshot.Members.Validate(); err != nil {
		return fmt.Errorf("%w: Snapshot.Members: %w", ErrInvalidConfig, err)
	}
	return nil
}

// snapshotRetryTicks is SnapshotRetryMs in ticks (at least one).
func (c Config) snapshotRetryTicks() int {
	return int((c.SnapshotRetryMs + c.TickMs - 1) / c.TickMs)
}

// checkQuorumTicks is the check-quorum window in ticks.
func (c Config) checkQuorumTicks() int {
	return int((c.CheckQuorumMs + c.TickMs - 1) / c.TickMs)
}
