package core

// Message is a Raft message between two members of one cluster. The set is
// closed: the types below are all there is. The sender is not part of the
// message; the server carries it next to the encoded bytes and hands it to
// Step in Receive.From.
type Message interface {
	// MessageTerm is the sender's term (for a pre-vote request, the term the
	// sender would campaign in).
	MessageTerm() uint64
	// AppendBinary appends the message's wire encoding, type tag first.
	// DecodeMessage reverses it.
	AppendBinary(b []byte) []byte
	kind() msgKind
}

// msgKind is the one-byte type tag of the wire encoding. Wire format: never
// renumber.
type msgKind uint8

const (
	kindAppendEntries   msgKind = 1
	kindAppendReply     msgKind = 2
	kindPreVoteRequest  msgKind = 3
	kindPreVoteReply    msgKind = 4
	kindVoteRequest     msgKind = 5
	kindVoteReply       msgKind = 6
	kindTimeoutNow      msgKind = 7
	kindHeartbeat       msgKind = 8
	kindHeartbeatReply  msgKind = 9
	kindNotLeader       msgKind = 10
	kindInstallSnapshot msgKind = 11
)

// AppendEntries carries entries PrevIndex+1 .. PrevIndex+len(Entries) from
// the leader of Term. The receiver accepts them only if its entry at
// PrevIndex has PrevTerm. An AppendEntries with no entries probes a
// follower's position or carries a new Commit.
type AppendEntries struct {
	Term      uint64
	PrevIndex uint64
	PrevTerm  uint64
	// Commit is the leader's commit index when it sent the message.
	Commit  uint64
	Entries []Entry
}

// AppendReply answers AppendEntries. Followers reply only about entries
// their own log reports durable.
type AppendReply struct {
	Term    uint64
	Success bool
	// LastIndex and LastTerm: on success, the last entry the follower has
	// durable AND knows to match the leader's log. On failure, a hint: the
	// last index at or below the rejected PrevIndex whose term is at most
	// the rejected PrevTerm, so the leader can skip whole terms at once.
	LastIndex uint64
	LastTerm  uint64
	// NextIndex is where the follower suggests the leader resumes. On
	// failure: LastIndex+1 of the hint. On success: one past the entries the
	// follower holds and knows to match, durable or not, so a leader coming
	// out of a probe does not re-send what is merely still being written.
	NextIndex uint64
	// RejectedPrev echoes the PrevIndex of the rejected AppendEntries so the
	// leader can ignore rejections that a later success made stale.
	RejectedPrev uint64
	// Commit is the follower's commit index, so the leader knows when every
	// follower has heard the latest one and it may go quiet.
	Commit uint64
	// MachineVersion is the highest machine version the follower's code
	// supports (Config.MachineVersion), for the leader's version bumps.
	MachineVersion uint64
}

// PreVoteRequest asks whether the receiver would vote for the sender in
// Term (the sender's current term + 1). Nobody changes term because of it.
type PreVoteRequest struct {
	Term      uint64
	LastIndex uint64
	LastTerm  uint64
	// MachineVersion is the highest machine version the sender's code
	// supports. A voter whose log has raised the cluster's version above it
	// refuses: old code must not lead.
	MachineVersion uint64
}

// PreVoteReply answers PreVoteRequest. A granted reply carries the
// requested term; a denied one carries the voter's own term.
type PreVoteReply struct {
	Term    uint64
	Granted bool
}

// VoteRequest asks for a vote in Term. Transfer marks the election a leader
// transfer asked for, which voters grant even while they follow a live
// leader.
type VoteRequest struct {
	Term      uint64
	LastIndex uint64
	LastTerm  uint64
	Transfer  bool
	// MachineVersion: as in PreVoteRequest.
	MachineVersion uint64
}

// VoteReply answers VoteRequest. Granted votes are durable before the reply
// is sent (see PersistState).
type VoteReply struct {
	Term    uint64
	Granted bool
}

// TimeoutNow tells a transfer target, whose log the leader has brought up
// to date, to start an election at once, skipping pre-vote.
type TimeoutNow struct {
	Term uint64
}

// Heartbeat is the leader's "am I still leader?" round, sent only for
// consistent queries and for check-quorum while work is in flight. Seq
// grows within a term. Commit lets a follower advance its commit index.
type Heartbeat struct {
	Term   uint64
	Seq    uint64
	Commit uint64
}

// HeartbeatReply acknowledges Heartbeat Seq in Term. Commit and
// MachineVersion are as in AppendReply.
type HeartbeatReply struct {
	Term           uint64
	Seq            uint64
	Commit         uint64
	MachineVersion uint64
}

// NotLeader tells a member that still follows the sender in Term that the
// sender no longer leads it (it stepped down without a higher term: check-
// quorum or its own removal). The receiver forgets its leader and, if it
// may, starts a pre-vote. Without per-cluster heartbeats nothing else would
// tell a follower that its live leader stopped leading.
type NotLeader struct {
	Term uint64
	// Lost: the sender is recovering log entries it lost (see
	// Config.RecoverTo). A leader forgets what it knew the sender holds
	// and finds out again.
	Lost bool
}

// InstallSnapshot tells a follower that the leader of Term sent it the
// snapshot that Snapshot describes. It never travels alone: the leader's
// server streams the snapshot's bytes (SendSnapshot), and the follower's
// server steps this message once it holds all of them durably. The follower
// installs the snapshot (RestoreSnapshot) unless it already holds the
// entries it covers, and answers with an AppendReply whose LastIndex is at
// least Snapshot.Index once it holds them.
type InstallSnapshot struct {
	Term     uint64
	Snapshot Snapshot
}

// MessageTerm implements Message.
func (m *AppendEntries) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *AppendReply) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *PreVoteRequest) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *PreVoteReply) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *VoteRequest) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *VoteReply) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *TimeoutNow) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *Heartbeat) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *HeartbeatReply) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *NotLeader) MessageTerm() uint64 { return m.Term }

// MessageTerm implements Message.
func (m *InstallSnapshot) MessageTerm() uint64 { return m.Term }

func (m *AppendEntries) kind() msgKind   { return kindAppendEntries }
func (m *AppendReply) kind() msgKind     { return kindAppendReply }
func (m *PreVoteRequest) kind() msgKind  { return kindPreVoteRequest }
func (m *PreVoteReply) kind() msgKind    { return kindPreVoteReply }
func (m *VoteRequest) kind() msgKind     { return kindVoteRequest }
func (m *VoteReply) kind() msgKind       { return kindVoteReply }
func (m *TimeoutNow) kind() msgKind      { return kindTimeoutNow }
func (m *Heartbeat) kind() msgKind       { return kindHeartbeat }
func (m *HeartbeatReply) kind() msgKind  { return kindHeartbeatReply }
func (m *NotLeader) kind() msgKind       { return kindNotLeader }
func (m *InstallSnapshot) kind() msgKind { return kindInstallSnapshot }
