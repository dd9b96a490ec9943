package core

// progress is the leader's view of one follower (voter or non-voter).
//
// Invariants: match < next; in replicate state next-1-match <= MaxInFlight
// (the pipelining window); in probe state at most one AppendEntries is
// outstanding (paused is set after sending it); during a snapshot transfer
// (snapIndex > 0) the follower is probing and paused, next is
// snapIndex+1, and no AppendEntries but the tick's small check is sent.
type progress struct {
	match uint64 // highest index known durable on the follower and matching
	next  uint64 // next index to send

	// probing: the follower's position is unknown, so send one message and
	// wait for its reply (or for a tick) before sending more.
	probing   bool
	paused    bool
	probePrev uint64 // PrevIndex of the outstanding probe
	// rejectProbed: a rejection already sent this follower back to probing
	// since the last tick. Further rejections in the same tick are taken
	// for echoes of the same reordered window, so a burst of them costs one
	// probe, not one window each.
	rejectProbed bool

	// commitAcked is the follower's commit index as its latest reply said.
	commitAcked uint64

	heardSinceTick bool // any message from the follower since the last Tick
	active         bool // any message from the follower in this check-quorum window
	activeBefore   bool // any in the window before
	ackedSeq       uint64

	// Re-send backoff for a follower that stays silent: wait resendWait more
	// ticks, doubling resendBackoff (bounded) each time it stays silent.
	resendWait    int
	resendBackoff int
	// The same for check-quorum heartbeats (checkQuorumTick).
	hbWait    int
	hbBackoff int
	// The same for re-sends of the commit index to a follower whose
	// replies have not shown it yet; reset when one does (commitHeard).
	// Replies that predate the re-sends do not reset it: on a congested
	// link they arrive by the dozen, and a reset per reply would send
	// the commit index again every tick.
	commitWait    int
	commitBackoff int

	// version is the machine version the follower's code supports, as its
	// latest reply in this term said (versionKnown).
	version      uint64
	versionKnown bool

	// A snapshot transfer: the snapshot at snapIndex (term snapTerm) was
	// sent (snapSent; false while the follower's code cannot use it), and
	// is sent again after snapWait more ticks unless the follower confirms
	// it. snapAttempts counts transfers since the last confirmed one, for
	// the backoff.
	snapIndex    uint64
	snapTerm     uint64
	snapWait     int
	snapAttempts int
	snapSent     bool

	// leaveAt, if not 0, is the index of the configuration entry that
	// removed this follower (see leaderState.leavingPeers): it is sent the log
	// up to there and the commit index, never more. leaveTicks counts the
	// leader's ticks since, up to maxLeavingTicks; then it is parked.
	leaveAt     uint64
	leaveTicks  int
	leaveParked bool
}

// maxResendBackoffTicks bounds the ticks between re-sends to a silent
// follower, so a down member costs at most one small message per this many
// ticks while the leader ticks at all.
const maxResendBackoffTicks = 32

// maxLeavingTicks bounds how long a leader keeps telling a removed follower
// of its removal (about six re-sends with the backoff above). A follower
// that did not hear of it by then (down, or cut off) is parked, and told
// again if it comes back and asks for votes while this leader leads.
const maxLeavingTicks = 100

// becomeProbe also ends a snapshot transfer in progress: the callers probe
// because the follower restarted, came back or must be asked again, and
// a transfer it needs after all starts afresh.
func (pr *progress) becomeProbe(next uint64) {
	pr.endSnapshot()
	pr.probing = true
	pr.paused = false
	pr.next = max(next, pr.match+1)
}

// endSnapshot leaves the snapshot transfer state, if in it.
func (pr *progress) endSnapshot() {
	pr.snapIndex, pr.snapTerm, pr.snapWait, pr.snapSent = 0, 0, 0, false
}

func (pr *progress) becomeReplicate() {
	pr.probing = false
	pr.paused = false
	pr.next = max(pr.next, pr.match+1)
}

// commitHeard records the commit index a follower's reply carried.
func (pr *progress) commitHeard(commit uint64) {
	if commit > pr.commitAcked {
		pr.commitWait, pr.commitBackoff = 0, 0
	}
	pr.commitAcked = commit
}

// heard records that the follower sent us something in this term.
func (pr *progress) heard() {
	pr.heardSinceTick = true
	pr.active = true
	pr.resendWait = 0
	pr.resendBackoff = 0
	pr.hbWait = 0
	pr.hbBackoff = 0
}
