package core

import "slices"

// workInFlight reports whether clients wait on this leader: uncommitted
// entries, queries or a transfer. Only then does check-quorum apply.
func (r *Raft) workInFlight() bool {
	return r.commit < r.log.lastIndex() || r.ldr.reads.pending() || r.ldr.transfer != nil
}

// hasWork reports whether the leader needs ticks: work in flight, or a
// reachable follower that lags or has not heard the latest commit index.
func (r *Raft) hasWork() bool {
	if r.workInFlight() {
		return true
	}
	last := r.log.lastIndex()
	for _, id := range r.ldr.peers {
		pr := r.ldr.progress[id]
		if r.suspected[id.Node] {
			continue
		}
		if pr.match < last || pr.commitAcked < min(r.commit, pr.match) {
			return true
		}
	}
	return false
}

func (ls *leaderState) resetWindow() {
	ls.cqTicks = 0
	for _, pr := range ls.progress {
		pr.active = false
		pr.heardSinceTick = false
	}
}

// leaderTick re-sends to followers that went quiet, times snapshot
// transfers, spreads the commit index, runs check-quorum and times out a
// leader transfer.
func (r *Raft) leaderTick() {
	last := r.log.lastIndex()
	for _, id := range r.ldr.peers {
		pr := r.ldr.progress[id]
		switch {
		case pr.snapIndex > 0:
			r.snapshotTick(id, pr)
		case pr.match < last && !pr.heardSinceTick && !r.cfg.Sabotage.NoResend:
			if pr.resendWait > 0 {
				pr.resendWait--
				break
			}
			pr.becomeProbe(pr.match + 1)
			r.sendAppend(id)
			pr.resendBackoff = min(max(1, 2*pr.resendBackoff), maxResendBackoffTicks)
			pr.resendWait = pr.resendBackoff - 1
		case pr.commitAcked < min(r.commit, pr.match):
			r.sendCommit(id)
		}
		pr.heardSinceTick = false
		pr.rejectProbed = false
	}
	r.ldr.transferTick(r)
	if r.role == RoleLeader {
		r.checkQuorumTick()
	}
}

// checkQuorumTick steps down a leader that has work in flight but has not
// heard from a quorum of voters for a whole window. Voters it has not heard
// from in this window (or that owe a read confirmation) get a Heartbeat.
func (r *Raft) checkQuorumTick() {
	if !r.workInFlight() {
		r.ldr.resetWindow()
		return
	}
	seq := r.ldr.reads.seq
	voters := r.members.current.Voters
	for _, id := range r.ldr.peers {
		pr := r.ldr.progress[id]
		if !slices.Contains(voters, id) {
			continue
		}
		if !pr.active || (r.ldr.reads.pending() && pr.ackedSeq < seq) {
			r.send(id, &Heartbeat{Term: r.term, Seq: seq, Commit: r.commit})
		}
	}
	r.ldr.cqTicks++
	if r.ldr.cqTicks < r.cfg.checkQuorumTicks() {
		return
	}
	active := 0
	for _, v := range voters {
		if v == r.id {
			active++
		} else if pr := r.ldr.progress[v]; pr != nil && pr.active {
			active++
		}
	}
	if active < quorumSize(len(voters)) {
		r.logger.Info("check-quorum: no quorum heard, stepping down", "term", r.term, "heard", active)
		r.becomeFollower(r.term, ServerID{})
		return
	}
	r.ldr.resetWindow()
}
