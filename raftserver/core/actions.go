package core

// Action is something the core asks the server to do. Step returns a batch
// of actions that the server executes in order, under these rules:
//
//   - PersistState, when present, is the first action of its batch and must
//     be durable before ANY later action of the batch is executed (a vote
//     reply, a vote request or an append of a new term follows it).
//   - Append is asynchronous: hand the entries to the log and go on; the
//     log's durability comes back later as a Written event. The leader's own
//     Append and the Sends carrying the same entries to followers come in
//     one batch so that writing and replicating overlap. Appends must reach
//     the log in the order they were issued.
//   - Send is asynchronous and may be lost; the core repairs losses.
//   - Apply, Reply and RunQuery may be executed in batch order right away.
//     Apply ranges are contiguous and increasing across batches.
//   - Timer and ticker actions replace whatever was armed before.
//   - RestoreSnapshot must be complete before any later action of its batch
//     (the reply that follows it says the snapshot is installed).
//   - Compact and SendSnapshot are asynchronous.
//
// The slice returned by Step is reused by the next Step: execute or copy it
// first. The set of action types is closed.
type Action interface{ isAction() }

// PersistState: make State durable (synced) before executing any later
// action of this batch.
type PersistState struct {
	State HardState
}

// Append: write Entries to the local log, starting at Entries[0].Index.
// If that index is at or below the log's last index, the log's suffix from
// there is replaced (a follower dropping a conflicting suffix); the core
// issues such an overwrite only after every earlier Append is durable.
// Completion is reported by a Written event.
type Append struct {
	Entries []Entry
}

// Send: deliver Msg to peer To. Lossy delivery is fine.
type Send struct {
	To  ServerID
	Msg Message
}

// Apply: entries From..To (inclusive) are committed; apply them to the
// machine in order. Read them with Raft.Entries (the newest may not be in
// the log's storage yet). Tokens are the client commands and membership
// changes among them that this member accepted as leader: reply to each
// once its entry is applied. An EntryMachineVersion entry switches the
// machine to its version at that index; the core never names one whose
// version is above Config.MachineVersion (it stops just before it).
type Apply struct {
	From, To uint64
	Tokens   []IndexedToken
}

// IndexedToken is a client token and the index of its entry.
type IndexedToken struct {
	Index uint64
	Token any
}

// Reply: answer Token now. Err nil means success (only a leader transfer
// succeeds this way); otherwise one of the errors in errors.go. Leader names
// the known leader for ErrNotLeader.
type Reply struct {
	Token  any
	Err    error
	Leader ServerID
}

// RunQuery: run the query of Token against the machine once it has applied
// at least ReadIndex (ReadIndex 0: run it now, on whatever is applied).
type RunQuery struct {
	Token     any
	ReadIndex uint64
}

// SetElectionTimer: deliver ElectionTimeout after Ms milliseconds,
// replacing any election timer armed before. A cancelled or replaced timer
// must not fire.
type SetElectionTimer struct {
	Ms int64
}

// CancelElectionTimer: cancel the election timer, if armed.
type CancelElectionTimer struct{}

// StartTicker: deliver Tick every Ms milliseconds until StopTicker. Only a
// leader with work in flight asks for it.
type StartTicker struct {
	Ms int64
}

// StopTicker: stop delivering Tick.
type StopTicker struct{}

// RoleChanged: this member's role, term or known leader changed. The server
// updates its leaderboard and monitors Leader's actor (a follower sends
// LeaderDown when it dies).
type RoleChanged struct {
	Role   Role
	Term   uint64
	Leader ServerID
}

// MembersChanged: the configuration in effect changed (a config entry was
// appended, one was truncated away, a snapshot was installed), or this is
// the first step. Members is the server's to keep, but shares its slices
// and map with the core's copy: neither may change them. (The core never
// changes a configuration in place; a change makes a new one. Not cloning
// it here saves every server a copy of its configuration.) The server
// follows the members it watches and monitors from it; the core's own
// decisions already use the new configuration.
type MembersChanged struct {
	Members Membership
}

// Compact: the entries up to and including Through are covered by the
// member's durable snapshot at Through (the last one SnapshotTaken or
// RestoreSnapshot named) and are durable in the log. Drop them from the log
// whenever convenient (now or later, in one go or in pieces). While and after
// dropping, the LogReader's FirstIndex is at most Through+1 and
// Term(Through) keeps answering (the snapshot's term); a read below
// FirstIndex fails with ErrCompacted. The core asks for nothing else to be
// dropped: the server never truncates the log's head on its own.
type Compact struct {
	Through uint64
}

// SendSnapshot: stream the member's snapshot that Msg.Snapshot names (the
// last one SnapshotTaken recorded) to follower To, which lags behind the
// log's first index. When To's server holds the whole snapshot durably
// (staged: it is not To's snapshot yet), it steps
// Receive{From: this member, Msg: Msg}; nothing else of the transfer
// concerns the core. A transfer may fail silently: the core sends the
// snapshot again after Config.SnapshotRetryMs (doubling per attempt) or
// when the follower restarts or its node comes back. A SendSnapshot to a
// follower still receiving an earlier one replaces that transfer.
type SendSnapshot struct {
	To  ServerID
	Msg *InstallSnapshot
}

// RestoreSnapshot: install the staged snapshot named by Snapshot (Index and
// Term), which is the one received last: the core installs only the latest
// received snapshot, and only once no Append of this member is in flight.
// Before executing any later action: make it the member's durable snapshot,
// reset the log to hold no entry (FirstIndex Index+1, LastIndex Index,
// Term(Index) == Snapshot.Term) and restore the machine from it, with the
// version Snapshot.MachineVersion. Apply actions continue at Index+1.
//
// A received snapshot that no RestoreSnapshot names (it was stale, or the
// member has the entries already) may be deleted once another one is
// received or the member restarts; the core may also name it in a later
// batch, once its in-flight writes are durable.
type RestoreSnapshot struct {
	Snapshot Snapshot
}

func (PersistState) isAction()        {}
func (Compact) isAction()             {}
func (SendSnapshot) isAction()        {}
func (RestoreSnapshot) isAction()     {}
func (Append) isAction()              {}
func (Send) isAction()                {}
func (Apply) isAction()               {}
func (Reply) isAction()               {}
func (RunQuery) isAction()            {}
func (SetElectionTimer) isAction()    {}
func (CancelElectionTimer) isAction() {}
func (StartTicker) isAction()         {}
func (StopTicker) isAction()          {}
func (RoleChanged) isAction()         {}
func (MembersChanged) isAction()      {}
