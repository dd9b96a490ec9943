package core

// Event is everything that can happen to a member: the input of Step. The
// set is closed: the types below are all there is.
type Event interface{ isEvent() }

// Started must be the first event a new Raft sees. It arms the election
// timer (a member restarts knowing no leader), reports the role, and
// announces NotLeader to the peers (a restarted ex-leader must not stay
// followed). The only voter of its cluster elects itself at once.
type Started struct{}

// Receive: a message from peer From arrived.
type Receive struct {
	From ServerID
	// Incarnation is the sender's Config.Incarnation, which the transport
	// carries beside every message (0: the sender has none).
	Incarnation uint64
	Msg         Message
}

// Written: the local log reports the entries up to index To durable, To
// having term Term (Ra's "written" event; the WAL's Written{Term, From, To}
// maps onto it). A Written for entries that were since overwritten, or that
// are already known durable, is ignored, so stale and duplicated reports are
// harmless. The core never overwrites entries whose write is still in
// flight, so a Term match at To identifies the write unambiguously.
type Written struct {
	Term uint64
	To   uint64
}

// Command: a client command. Token is the server's opaque correlation: it
// comes back in exactly one Apply (via Apply.Tokens) or Reply action, and
// never enters durable state.
//
// Framed, if not nil, is EntryNormal's byte followed by Data, of which Data
// is the tail (see Entry.Framed): the entry takes it over.
type Command struct {
	Data   []byte
	Framed []byte
	Token  any
}

// Commands: several client commands at once, e.g. everything the server
// found in its mailbox. They are appended in order as one Append and
// replicated in the same AppendEntries; each token is answered as for
// Command.
type Commands struct {
	Batch []Command
}

// QueryKind selects the consistency of a Query.
type QueryKind uint8

const (
	// QueryConsistent is linearizable: the leader confirms with one round of
	// messages to a quorum, after the query arrived, that it is still
	// leader, then answers at a commit index at least as high as at arrival.
	QueryConsistent QueryKind = iota + 1
	// QueryLeader runs on the member that believes it is leader, at its
	// commit index, without confirmation (may be stale during a partition).
	QueryLeader
	// QueryLocal runs on any member at whatever it has applied.
	QueryLocal
)

// Query: a read-only query. Token comes back in one RunQuery or Reply.
type Query struct {
	Kind  QueryKind
	Token any
}

// ElectionTimeout: the timer armed by the last SetElectionTimer fired.
type ElectionTimeout struct{}

// Campaign: an operator asks this member to stand for election now, without
// waiting for its timer (a cluster whose members all restarted with no
// leader, or a test). A follower that knows a live leader, a member already
// in an election round or leading, and a member that may not stand (not a
// voter, recovering lost entries, or on code too old for the cluster's
// machine version) ignore it.
type Campaign struct{}

// LeaderDown: the actor of Leader died (the server monitors the leader it
// was told about by RoleChanged). A follower of Leader forgets it and arms
// a short election timer.
type LeaderDown struct {
	Leader ServerID
}

// NodeSuspected: the failure detector suspects Node. A follower whose leader
// lives there forgets the leader and arms an election timer. A leader that
// can no longer reach a quorum of its voters (see PeerDown) steps down: it
// could commit nothing, and it stops reporting itself leader.
type NodeSuspected struct {
	Node string
}

// PeerDown: the process of Peer is gone (a leader's server monitors its
// peers' processes). Until Peer is heard from again it does not count as
// reachable: a leader whose voters are not reachable in a quorum (gone,
// on suspected nodes, and not heard from in the current check-quorum
// window) steps down.
type PeerDown struct {
	Peer ServerID
}

// NodeUp: the failure detector sees Node again. A member with no leader
// retries its election promptly; a leader probes followers on Node at once.
type NodeUp struct {
	Node string
}

// Tick: the ticker asked for by StartTicker fired.
type Tick struct{}

// AddMember asks the leader to add Member (as a voter if Voter, else as a
// non-voter), or to promote an existing non-voter when Voter is set. Token
// comes back in the Apply that commits the change, or in a Reply.
type AddMember struct {
	Member ServerID
	Voter  bool
	// Incarnation, if nonzero, binds the new member to that incarnation of
	// its replica at once; otherwise the leader binds it to the first
	// incarnation it hears from. A promotion keeps the binding it has, and
	// is refused if Incarnation names another one.
	Incarnation uint64
	Token       any
}

// RemoveMember asks the leader to remove Member. Token comes back in the
// Apply that commits the change, or in a Reply.
type RemoveMember struct {
	Member ServerID
	Token  any
}

// TransferLeadership asks the leader to hand leadership to To: bring it up
// to date, then tell it to start an election at once. Token comes back in a
// Reply: nil error once this leader stepped down for the target's election,
// ErrTransferFailed if that did not happen within CheckQuorumMs.
type TransferLeadership struct {
	To    ServerID
	Token any
}

// SnapshotTaken: the server made a snapshot of the machine durable (written,
// synced, renamed into place). Snapshot.Index must be at most what the core
// has handed out in Apply actions, and Snapshot.Term the term of the entry
// there; Members and MachineVersion are those in effect at Index, as the
// server tracked them while applying (see Snapshot). A snapshot at or below
// the member's current one is ignored, as is one that breaks these rules
// (logged).
//
// The core makes it the snapshot it sends to followers that lag behind the
// log, and asks for the log below it to be dropped with a Compact action
// once the entries up to Index are durable in the log. The server never
// drops log entries on its own.
type SnapshotTaken struct {
	Snapshot Snapshot
}

// Stopping: the server is about to stop this member (shutdown, removal,
// deletion or a failure), and will not step it again. Every client token
// the core holds is answered now: a leader steps down as if it had lost
// leadership (uncommitted commands: ErrLeadershipLost; queries and queued
// membership changes: ErrNoLeader; a transfer: ErrTransferFailed) and
// tells its followers, which then elect a new leader without waiting for
// a timeout. The batch holds only Reply and Send actions, and no durable
// state changes. Stopping works on a Raft broken by ErrStorage too.
type Stopping struct{}

func (Started) isEvent()            {}
func (Stopping) isEvent()           {}
func (SnapshotTaken) isEvent()      {}
func (Receive) isEvent()            {}
func (Written) isEvent()            {}
func (Command) isEvent()            {}
func (Commands) isEvent()           {}
func (Query) isEvent()              {}
func (ElectionTimeout) isEvent()    {}
func (Campaign) isEvent()           {}
func (LeaderDown) isEvent()         {}
func (NodeSuspected) isEvent()      {}
func (NodeUp) isEvent()             {}
func (PeerDown) isEvent()           {}
func (Tick) isEvent()               {}
func (AddMember) isEvent()          {}
func (RemoveMember) isEvent()       {}
func (TransferLeadership) isEvent() {}
