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
			// The detector says when it is back (NodeUp probes it). A
			// peer reported gone is still ticked for: it may be back
			// without a word (a member on old code does not campaign).
			continue
		}
		if pr.match < last || pr.commitAcked < min(r.commit, pr.match) {
			return true
		}
	}
	for _, id := range r.ldr.leavingPeers() {
		pr := r.ldr.progress[id]
		if !r.suspected[id.Node] && (pr.match < pr.leaveAt || pr.commitAcked < min(r.commit, pr.leaveAt)) {
			return true
		}
	}
	return false
}

// forgetSuspicionsOfFormerNodes drops the suspicions of nodes where no
// member of the configuration runs any more. The server stops watching
// such a node, so no NodeUp would ever take the suspicion back; if a
// member there is added again, a stale suspicion would keep a leader from
// ticking for it (hasWork skips suspected peers), and entries it lost in
// flight would never be sent again.
func (r *Raft) forgetSuspicionsOfFormerNodes() {
	for node := range r.suspected {
		if !r.members.current.onNode(node) {
			delete(r.suspected, node)
		}
	}
}

// startWindow starts the first check-quorum window of a ticking spell.
// Marks left from an idle spell are stale, except a new leader's: its
// voters were just heard from.
func (ls *leaderState) startWindow() {
	ls.cqTicks = 0
	for _, pr := range ls.progress {
		pr.active = pr.active && ls.justElected
		pr.activeBefore = false
		pr.heardSinceTick = false
	}
	ls.justElected = false
}

// resetWindow ends a check-quorum window and starts the next.
func (ls *leaderState) resetWindow() {
	ls.cqTicks = 0
	for _, pr := range ls.progress {
		pr.activeBefore, pr.active = pr.active, false
		pr.heardSinceTick = false
	}
}

// leaderTick re-sends to followers that went quiet, times snapshot
// transfers, spreads the commit index, runs check-quorum and times out a
// leader transfer.
func (r *Raft) leaderTick() {
	last := r.log.lastIndex()
	for _, id := range r.ldr.peers {
		r.tickPeer(id, r.ldr.progress[id], last)
	}
	for _, id := range r.ldr.leavingPeers() {
		pr := r.ldr.progress[id]
		if pr == nil {
			continue // forgotten by a send in this loop
		}
		if pr.leaveTicks++; pr.leaveTicks > maxLeavingTicks {
			r.logger.Info("a removed member did not hear of its removal; it is told if it asks for votes", "member", id.String())
			r.ldr.park(pr)
			continue
		}
		r.tickPeer(id, pr, min(last, pr.leaveAt))
	}
	r.ldr.transferTick(r)
	if r.role == RoleLeader {
		r.checkQuorumTick()
	}
}

// tickPeer re-sends to a follower that went quiet, or the commit index to
// one that has not shown it, with backoff; last is the last index it is
// to get.
func (r *Raft) tickPeer(id ServerID, pr *progress, last uint64) {
	switch {
	case pr.snapIndex > 0:
		r.snapshotTick(id, pr)
	case pr.match < last && !pr.heardSinceTick && !r.cfg.Sabotage.NoResend:
		if pr.resendWait > 0 {
			pr.resendWait--
			break
		}
		// A probe that went unanswered is sent again as it was; in
		// replicate state, the entries after the acknowledged ones.
		// (Probing from match+1 with match still 0, as after an
		// election, sent the log from its first entry.)
		next := pr.match + 1
		if pr.probing && pr.paused {
			next = pr.probePrev + 1
		}
		pr.becomeProbe(next)
		r.sendAppend(id)
		pr.resendBackoff = min(max(1, 2*pr.resendBackoff), maxResendBackoffTicks)
		pr.resendWait = pr.resendBackoff - 1
	case pr.commitAcked < min(r.commit, pr.match):
		// Backed off like a re-send: on a congested link the replies
		// lag, and a commit index sent every tick would only add to
		// what delays them.
		if pr.commitWait > 0 {
			pr.commitWait--
			break
		}
		r.sendCommit(id)
		pr.commitBackoff = min(max(1, 2*pr.commitBackoff), maxResendBackoffTicks)
		pr.commitWait = pr.commitBackoff - 1
	}
	pr.heardSinceTick = false
	pr.rejectProbed = false
}

// checkQuorumTick runs the check-quorum window of a leader with work in
// flight: voters it has not heard from in this window (or that owe a read
// confirmation) get a Heartbeat, and at the window's end the marks of who
// was heard move on (see quorumReachable; finish steps the leader down
// when a quorum is out of reach). A voter that stays silent is asked less
// and less often (every 1, 2, 4... ticks, up to maxResendBackoffTicks): a
// slow voter is not deposed, and asking it every tick would only add to
// the load that slows it.
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
			if pr.hbWait > 0 {
				pr.hbWait--
				continue
			}
			r.send(id, &Heartbeat{Term: r.term, Seq: seq, Commit: r.commit})
			pr.hbBackoff = min(max(1, 2*pr.hbBackoff), maxResendBackoffTicks)
			pr.hbWait = pr.hbBackoff - 1
		}
	}
	r.ldr.cqTicks++
	if r.ldr.cqTicks < r.cfg.checkQuorumTicks() {
		return
	}
	r.ldr.resetWindow()
}
