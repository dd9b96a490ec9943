package core

// Status is a read-only snapshot of a member, for overviews and tests.
type Status struct {
	ID     ServerID
	Role   Role
	Term   uint64
	Vote   ServerID
	Leader ServerID
	// Commit is the highest index known committed; Applied the highest
	// index handed out in an Apply action.
	Commit  uint64
	Applied uint64
	// FirstIndex..LastIndex is the log's range; entries up to StableIndex
	// are known durable.
	FirstIndex  uint64
	LastIndex   uint64
	LastTerm    uint64
	StableIndex uint64
	// Members is the configuration in effect (the latest in the log), and
	// MembersIndex the index of its entry (the snapshot's index when the
	// configuration comes from the snapshot; 0: the initial members).
	Members      Membership
	MembersIndex uint64
	// SnapshotIndex and SnapshotTerm describe the member's latest snapshot
	// (0 if none).
	SnapshotIndex uint64
	SnapshotTerm  uint64
	// MachineVersion is the cluster's effective machine version as this
	// member's log has it (the latest EntryMachineVersion entry, committed or
	// not, else the snapshot's). SupportedVersion is Config.MachineVersion.
	// A member whose code does not support the version stops applying just
	// before the bump: Applied then stays below Commit.
	MachineVersion   uint64
	SupportedVersion uint64
	// RecoverTo is nonzero while the member recovers log entries it lost
	// (see Config.RecoverTo): it does not campaign meanwhile.
	RecoverTo uint64
	// Incarnation is Config.Incarnation. Stale: the configuration binds
	// this member's name to another incarnation (Membership.Incarnations),
	// so it neither votes nor stands until removed and added again.
	Incarnation uint64
	Stale       bool
	// Strangers are the members heard from under another incarnation than
	// the one the configuration binds them to, with the incarnation heard,
	// sorted by ID: replicas that lost their data or were created again,
	// whose messages are dropped. Remove and add them again.
	Strangers []Stranger
	// Progress is a leader's view of each follower (nil unless leader),
	// sorted by ID: what it knows to be durable there and what it sends
	// next. A follower that stays behind, or a State that never leaves
	// "probe", is where replication is stuck.
	Progress []Progress
}

// Stranger is a member heard from under another incarnation than the
// bound one (Status.Strangers).
type Stranger struct {
	ID          ServerID
	Incarnation uint64
}

// Progress is a leader's view of one follower.
type Progress struct {
	ID ServerID
	// Match is the highest index known durable on the follower and
	// matching the leader's log; Next the next index to send.
	Match, Next uint64
	// State is "replicate" (entries are pipelined), "probe" (the
	// follower's position is being found, one message at a time) or
	// "snapshot" (a snapshot is being sent).
	State string
	// Paused: a probe is outstanding, and nothing more is sent until it
	// is answered or a tick asks again.
	Paused bool
	// CommitAcked is the commit index the follower's latest reply had.
	CommitAcked uint64
}

// Status returns the member's current status. Members is a copy.
func (r *Raft) Status() Status {
	return Status{
		ID:           r.cfg.ID,
		Role:         r.role,
		Term:         r.term,
		Vote:         r.vote,
		Leader:       r.lead,
		Commit:       r.commit,
		Applied:      r.applied,
		FirstIndex:   r.log.firstIndex(),
		LastIndex:    r.log.lastIndex(),
		LastTerm:     r.log.lastTerm(),
		StableIndex:  r.log.stable,
		Members:      r.members.current.Clone(),
		MembersIndex: r.members.index(),

		SnapshotIndex:    r.snapshot.Index,
		SnapshotTerm:     r.snapshot.Term,
		MachineVersion:   r.versions.current(),
		SupportedVersion: r.cfg.MachineVersion,
		RecoverTo:        r.recoverTo,
		Incarnation:      r.cfg.Incarnation,
		Stale:            r.staleIncarnation(),
		Strangers:        r.strangerList(),
		Progress:         r.progressStatus(),
	}
}

// Progress returns Status().Progress without copying the whole Status.
func (r *Raft) Progress() []Progress { return r.progressStatus() }

func (r *Raft) progressStatus() []Progress {
	if r.role != RoleLeader {
		return nil
	}
	out := make([]Progress, 0, len(r.ldr.peers))
	for _, id := range r.ldr.peers {
		pr := r.ldr.progress[id]
		state := "replicate"
		switch {
		case pr.snapIndex > 0:
			state = "snapshot"
		case pr.probing:
			state = "probe"
		}
		out = append(out, Progress{ID: id, Match: pr.match, Next: pr.next, State: state, Paused: pr.paused, CommitAcked: pr.commitAcked})
	}
	return out
}

// Counters count the member's elections since it was created (they start
// at zero with each Raft value: a restarted server counts afresh).
type Counters struct {
	// PreVotes: pre-vote rounds started (the member suspected its leader
	// lost, or had none, and asked whether it could win).
	PreVotes uint64
	// Elections: elections started as a candidate (a won pre-vote, a
	// leadership transfer or a Campaign).
	Elections uint64
	// ElectionsWon: times the member became leader.
	ElectionsWon uint64
	// QuorumStepDowns: times a leader stepped down because no quorum of
	// voters was reachable (check quorum), not for a higher term.
	QuorumStepDowns uint64
}

// Counters returns the member's election counters.
func (r *Raft) Counters() Counters { return r.counters }

// RecoverTo returns Status().RecoverTo without copying the whole Status.
func (r *Raft) RecoverTo() uint64 { return r.recoverTo }

// Role returns the member's role without copying the whole Status.
func (r *Raft) Role() Role { return r.role }

// Term returns the member's current term.
func (r *Raft) Term() uint64 { return r.term }

// Leader returns the leader this member knows for its term, or zero.
func (r *Raft) Leader() ServerID { return r.lead }

// Commit returns the member's commit index.
func (r *Raft) Commit() uint64 { return r.commit }

// Applied returns the highest index handed out in an Apply action (or the
// snapshot's index, after an install or at start).
func (r *Raft) Applied() uint64 { return r.applied }

// LastIndex returns the index of the last entry in the member's log.
func (r *Raft) LastIndex() uint64 { return r.log.lastIndex() }
