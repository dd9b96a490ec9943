package core

// receive checks a message's term once, then hands it to the role's step
// function. Terms: a higher term makes us a follower of that term (with a
// few exceptions below); a lower term marks the message stale.
func (r *Raft) receive(from ServerID, inc uint64, m Message) {
	if err := checkBounds(m); err != nil {
		// DecodeMessage refuses these; a message handed to Step without
		// decoding is checked here, before its term can be adopted.
		r.logger.Warn("message out of range dropped", "from", from.String(), "err", err)
		return
	}
	if !r.checkIncarnation(from, inc, m) {
		return
	}
	if len(r.gone) > 0 {
		delete(r.gone, from) // it is back (a restart, or a flapping monitor)
	}
	t := m.MessageTerm()
	switch {
	case t > r.term:
		switch m := m.(type) {
		case *PreVoteRequest:
			// Asking is not campaigning: nobody changes term for a pre-vote.
		case *PreVoteReply:
			if !m.Granted {
				// A voter is in a later term than we are: join it.
				r.becomeFollower(t, ServerID{})
				return
			}
			// A grant echoes the term we asked about; no term change.
		case *VoteRequest:
			// Leader stickiness: while we follow a live leader, a plain
			// election (not a transfer) is ignored and does not raise our
			// term. Its candidate passed pre-vote with a majority that had
			// lost its leader; it can win without us.
			if !m.Transfer && r.liveLeader() && from != r.lead {
				r.logger.Debug("vote request ignored: live leader", "from", from.String(), "term", t)
				return
			}
			r.becomeFollower(t, ServerID{})
		case *AppendEntries, *Heartbeat, *TimeoutNow, *InstallSnapshot:
			r.becomeFollower(t, from)
		default:
			r.becomeFollower(t, ServerID{})
		}
	case t < r.term:
		switch m.(type) {
		case *AppendEntries, *Heartbeat, *InstallSnapshot:
			// A deposed leader: tell it our term so it steps down. (The
			// server drops a stale snapshot: no RestoreSnapshot names it.)
			r.send(from, &AppendReply{Term: r.term, MachineVersion: r.cfg.MachineVersion})
		case *PreVoteRequest:
			r.send(from, &PreVoteReply{Term: r.term})
		}
		return
	}
	// Requests handled the same in every role.
	switch m := m.(type) {
	case *PreVoteRequest:
		r.handlePreVoteRequest(from, m)
		return
	case *VoteRequest:
		r.handleVoteRequest(from, m)
		return
	case *AppendReply, *HeartbeatReply:
		if r.role != RoleLeader {
			// The sender believes we lead this term; we do not (any more).
			r.send(from, &NotLeader{Term: r.term})
			return
		}
	}
	switch r.role {
	case RoleLeader:
		stepLeader(r, from, m)
	case RoleCandidate:
		stepCandidate(r, from, m)
	case RolePreVote:
		stepPreVote(r, from, m)
	default:
		stepFollower(r, from, m)
	}
}

func (r *Raft) handlePreVoteRequest(from ServerID, m *PreVoteRequest) {
	// Grant only a term above ours, to an up-to-date log, and only while we
	// have no live leader (or the asker is that leader, which stepped down).
	// "Live" is defined by events, not heartbeats: a leader stays live
	// until LeaderDown or NodeSuspected says otherwise.
	grant := m.Term > r.term && !r.staleIncarnation() &&
		r.voteLogOK(m.LastIndex, m.LastTerm) &&
		r.voteVersionOK(m.MachineVersion) &&
		(!r.liveLeader() || from == r.lead)
	if grant {
		r.send(from, &PreVoteReply{Term: m.Term, Granted: true})
		// Give the asker its round before standing ourselves: a round of
		// our own now, or a timer that fires while its vote request is on
		// the way, would split the vote (each member votes for itself in
		// the same term). When round trips are as slow as the timeouts (a
		// loaded machine), such splits repeated for a minute. The timer
		// restarts, and a round of ours in flight is dropped (its late
		// grants no longer count); we stand again if the asker does not
		// win in time.
		switch r.role {
		case RolePreVote, RoleCandidate:
			r.becomeFollower(r.term, ServerID{})
			r.rearmTimer = true
		case RoleFollower:
			r.rearmTimer = true
		}
		return
	}
	r.send(from, &PreVoteReply{Term: r.term})
	switch {
	case r.role == RoleLeader:
		// A member that lost track of us (restarted, or missed our
		// messages): show it we lead, with what it lacks and our commit.
		// A removed member that the leader parked (it did not answer while
		// it was told of its removal) is told again.
		if pr := r.ldr.progress[from]; pr != nil {
			r.ldr.unpark(pr)
			// Its request says where its log ends: probe there (where our
			// logs may still agree, see conflictHint), not from our match
			// index, which is 0 after an election and would send it the
			// whole log again at each of its rounds.
			k, _, err := r.log.conflictHint(m.LastIndex, m.LastTerm)
			if err != nil {
				r.fail(err)
				return
			}
			pr.commitAcked = 0
			pr.becomeProbe(k + 1)
			r.sendAppend(from)
		}
	case r.role == RoleFollower && r.liveLeader() && from != r.lead:
		// We refuse because we believe in our leader; make it prove itself.
		// A leader answers as to any reply; one that stepped down answers
		// NotLeader, and we stop blocking elections.
		r.replyAppend(r.lead, false)
	}
}

func (r *Raft) handleVoteRequest(from ServerID, m *VoteRequest) {
	canVote := (r.vote == from || (r.vote.IsZero() && r.lead.IsZero())) && !r.staleIncarnation()
	if canVote && r.voteLogOK(m.LastIndex, m.LastTerm) && r.voteVersionOK(m.MachineVersion) {
		r.vote = from
		r.electionAttempts = 0
		// The vote is persisted by finish before this reply is sent
		// (PersistState comes first in the batch).
		r.send(from, &VoteReply{Term: r.term, Granted: true})
		r.rearmTimer = true
		return
	}
	r.send(from, &VoteReply{Term: r.term})
}

// voteLogOK is Raft's election restriction: the candidate's log must be at
// least as up to date as ours, and, while we recover lost entries, as the
// log we lost (its last entry still stands for what we acknowledged).
//
// A grant to a candidate that passes only our shortened log cannot be
// counted as half a vote either (counted toward the quorum but not as
// vouching for the log): the quorum that committed what we lost may be one
// of another configuration than the candidate's, and with single-server
// changes only full quorums of neighbouring configurations are sure to
// overlap.
func (r *Raft) voteLogOK(lastIndex, lastTerm uint64) bool {
	if r.cfg.Sabotage.SkipUpToDateCheck {
		return true
	}
	if r.recoverTo > 0 && !r.cfg.Sabotage.VoteWhileRecovering &&
		(lastTerm < r.recoverTerm || lastTerm == r.recoverTerm && lastIndex < r.recoverTo) {
		return false
	}
	return r.log.isUpToDate(lastIndex, lastTerm)
}

func (r *Raft) handleElectionTimeout() {
	r.timerArmed = false
	switch r.role {
	case RoleLeader:
	case RoleFollower:
		switch {
		case r.liveLeader():
			if r.recoverTo > 0 {
				// The leader may think we hold what we lost: make it
				// probe us (as after a restart) until we have it back.
				r.electionAttempts++
				r.send(r.lead, &NotLeader{Term: r.term, Lost: true})
			} else if r.commit < r.log.lastIndex() {
				// Our commit index lags: remind the leader (it re-sends it).
				r.electionAttempts++
				r.replyAppend(r.lead, false)
			}
		case !r.mayStand() || r.recoverTo > 0:
			r.electionAttempts++
			r.announce()
		case !r.mayCampaign():
			// Our code cannot run the cluster's machine version, or the
			// term or log is at its bound (MaxTerm): leave the election
			// to others (no timer is armed again).
		default:
			r.becomePreVote()
		}
	case RolePreVote, RoleCandidate:
		// The round did not conclude: back off and ask again, without
		// raising the term (pre-vote first), so a lone survivor idles.
		r.electionAttempts++
		r.becomePreVote()
	}
}

func (r *Raft) handleCampaign() {
	if r.role != RoleFollower || r.liveLeader() || !r.mayStand() || r.recoverTo > 0 || !r.mayCampaign() {
		return
	}
	r.logger.Info("campaigning on request", "term", r.term)
	r.becomePreVote()
}

func (r *Raft) handleLeaderDown(leader ServerID) {
	if leader.IsZero() || leader != r.lead || r.role == RoleLeader {
		return
	}
	r.deadLead = leader
	r.electionAttempts = 0
	r.rearmShort = true
}

func (r *Raft) handleNodeSuspected(node string) {
	if r.suspected == nil {
		r.suspected = map[string]bool{}
	}
	r.suspected[node] = true
	switch {
	case r.role == RoleFollower && r.lead.Node == node && !r.lead.IsZero():
		r.electionAttempts = 0
		r.rearmShort = true
	}
	// A leader checks its quorum in finish.
}

func (r *Raft) handlePeerDown(peer ServerID) {
	if peer != r.cfg.ID && r.members.current.Contains(peer) {
		if r.gone == nil {
			r.gone = map[ServerID]bool{}
		}
		r.gone[peer] = true // a leader checks its quorum in finish
	}
}

// stepDownIfUnreachable steps a leader down when the voters it can reach
// (see quorumReachable) make no quorum: it could commit nothing, and it must not
// go on reporting itself leader (Leader(), LeaderQuery, Overview) or keep
// its callers waiting. An idle leader sends nothing, so this is how it
// learns it is cut off: from its node's failure detector and from the
// monitors of its peers' processes.
func (r *Raft) stepDownIfUnreachable() {
	if r.role != RoleLeader || r.quorumReachable() {
		return
	}
	var suspected, gone int
	for _, v := range r.members.current.Voters {
		if v != r.cfg.ID && r.suspected[v.Node] {
			suspected++
		} else if v != r.cfg.ID && r.gone[v] {
			gone++
		}
	}
	r.logger.Info("stepping down: no quorum of voters is reachable", "term", r.term,
		"voters", len(r.members.current.Voters), "suspected", suspected, "gone", gone)
	r.counters.QuorumStepDowns++
	r.becomeFollower(r.term, ServerID{})
}

// quorumReachable reports whether the voters this leader can still count
// on make a quorum. A voter whose process was reported gone does not count
// until it is heard from again. Another counts if it was heard from in the
// current or the previous check-quorum window (answers outweigh a
// suspicion), or if its node is not suspected by the failure detector.
//
// Silence alone is not proof of loss. A leader whose followers are slow
// (a busy machine, a long fsync, a scheduler that starves the process)
// keeps leading: deposing it would only start elections that need the
// same slow round trips, and each one adds work to a system already
// behind, which is how a fixed timeout turns overload into a livelock.
// The failure detector adapts to the heartbeats it sees and excuses its
// own starvation; process monitors report a stopped or crashed member at
// once.
func (r *Raft) quorumReachable() bool {
	if len(r.suspected) == 0 && len(r.gone) == 0 {
		return true
	}
	// A window runs only while the leader ticks (it will, having work);
	// an idle leader's marks are left from its last window.
	windowed := r.role == RoleLeader && r.hasWork()
	voters := r.members.current.Voters
	up := 0
	for _, v := range voters {
		switch {
		case v == r.cfg.ID:
			up++
		case r.gone[v]:
			// Its Down came after anything it sent: what was heard in
			// the window was its last word.
		case windowed && r.ldr.progress[v] != nil && (r.ldr.progress[v].active || r.ldr.progress[v].activeBefore):
			up++
		case !r.suspected[v.Node]:
			up++
		}
	}
	return up >= quorumSize(len(voters))
}

func (r *Raft) handleNodeUp(node string) {
	delete(r.suspected, node)
	switch r.role {
	case RoleLeader:
		r.ldr.nodeUp(r, node)
	default:
		if r.liveLeader() || !r.mayCampaign() {
			return
		}
		for _, v := range r.members.current.Voters {
			if v.Node == node && v != r.cfg.ID {
				// A voter came back: retry soon, at the base timeout.
				r.electionAttempts = 0
				r.rearmShort = true
				return
			}
		}
	}
}

// becomeFollower moves to term (which must be >= the current one) as a
// follower of lead (zero if unknown).
func (r *Raft) becomeFollower(term uint64, lead ServerID) {
	if r.role == RoleLeader {
		r.ldr.stepDown(r, term > r.term)
	}
	if term > r.term {
		r.term = term
		r.vote = ServerID{}
		r.ownVotes = nil
		r.resetMatched()
		r.deadLead = ServerID{}
	}
	r.role = RoleFollower
	r.lead = lead
	r.votes = nil
	if !lead.IsZero() {
		r.electionAttempts = 0
	}
}

func (r *Raft) becomePreVote() {
	if r.term >= MaxTerm || r.log.lastIndex() >= MaxIndex {
		// A candidate that reached a bound has no next round (a pre-vote
		// at MaxTerm+1 is refused everywhere): it stops standing.
		r.becomeFollower(r.term, ServerID{})
		return
	}
	r.counters.PreVotes++
	r.role = RolePreVote
	r.lead = ServerID{}
	r.votes = map[ServerID]bool{r.cfg.ID: true}
	r.rearmTimer = true
	if tallyVotes(r.members.current.Voters, r.votes) == voteWon {
		r.becomeCandidate(false)
		return
	}
	req := &PreVoteRequest{Term: r.term + 1, LastIndex: r.log.lastIndex(), LastTerm: r.log.lastTerm(),
		MachineVersion: r.cfg.MachineVersion}
	for _, v := range r.sortedVoters() {
		if v != r.cfg.ID {
			r.send(v, req)
		}
	}
}

func (r *Raft) becomeCandidate(transfer bool) {
	if r.term >= MaxTerm {
		// Unreachable through mayCampaign; kept so that no path can
		// raise the term past the bound.
		return
	}
	r.counters.Elections++
	r.term++
	r.vote = r.cfg.ID
	r.resetMatched()
	r.deadLead = ServerID{}
	r.role = RoleCandidate
	r.lead = ServerID{}
	r.votes = map[ServerID]bool{r.cfg.ID: true}
	r.ownVotes = r.votes
	r.rearmTimer = true
	if r.electionOutcome() == voteWon {
		r.becomeLeader()
		return
	}
	req := &VoteRequest{Term: r.term, LastIndex: r.log.lastIndex(), LastTerm: r.log.lastTerm(), Transfer: transfer,
		MachineVersion: r.cfg.MachineVersion}
	for _, v := range r.sortedVoters() {
		if v != r.cfg.ID {
			r.send(v, req)
		}
	}
}

// electionOutcome tallies the votes of a candidate.
func (r *Raft) electionOutcome() voteResult {
	voters := r.members.current.Voters
	if r.cfg.Sabotage.HalfQuorumElections && countGranted(r.votes) >= len(voters)/2 {
		return voteWon
	}
	return tallyVotes(voters, r.votes)
}

func (r *Raft) sortedVoters() []ServerID {
	return Membership{Voters: r.members.current.Voters}.peers(ServerID{})
}

func stepPreVote(r *Raft, from ServerID, m Message) {
	switch m := m.(type) {
	case *PreVoteReply:
		if m.Term != r.term+1 && !(m.Term == r.term && !m.Granted) {
			return
		}
		r.votes[from] = m.Granted
		switch tallyVotes(r.members.current.Voters, r.votes) {
		case voteWon:
			r.becomeCandidate(false)
		case voteLost:
			// Cannot win now; wait as a follower for the timer (backed off)
			// or a leader's message.
			r.electionAttempts++
			r.becomeFollower(r.term, ServerID{})
			r.rearmTimer = true
		}
	case *VoteReply:
		// A late answer to the candidacy this member gave up when its
		// timer fired. It still holds its own vote in this term, and each
		// voter grants one vote per term, so a quorum of grants makes it
		// this term's only leader. On a loaded machine round trips outlast
		// the timer; without this, such rounds would never conclude.
		if m.Term != r.term || r.vote != r.cfg.ID || r.ownVotes == nil {
			return
		}
		r.ownVotes[from] = m.Granted
		if tallyVotes(r.members.current.Voters, r.ownVotes) == voteWon {
			r.votes = r.ownVotes
			r.becomeLeader()
		}
	case *AppendEntries, *Heartbeat, *InstallSnapshot:
		// A leader of our term exists.
		r.becomeFollower(r.term, from)
		stepFollower(r, from, m)
	}
}

func stepCandidate(r *Raft, from ServerID, m Message) {
	switch m := m.(type) {
	case *VoteReply:
		r.votes[from] = m.Granted
		switch r.electionOutcome() {
		case voteWon:
			r.becomeLeader()
		case voteLost:
			r.electionAttempts++
			r.becomeFollower(r.term, ServerID{})
			r.rearmTimer = true
		}
	case *AppendEntries, *Heartbeat, *InstallSnapshot:
		r.becomeFollower(r.term, from)
		stepFollower(r, from, m)
	}
}

// resetMatched forgets what was known to match the previous term's leader.
// Entries up to the snapshot are committed, so they match every leader.
func (r *Raft) resetMatched() {
	r.matchedTo, r.ackedTo = r.log.snapIndex, 0
	r.deferred, r.deferredSnap = nil, nil
}
