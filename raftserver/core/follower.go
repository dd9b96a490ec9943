package core

func stepFollower(r *Raft, from ServerID, m Message) {
	switch m := m.(type) {
	case *AppendEntries:
		r.adoptLeader(from)
		r.handleAppend(from, m)
	case *InstallSnapshot:
		r.adoptLeader(from)
		r.handleInstallSnapshot(from, m)
	case *Heartbeat:
		r.adoptLeader(from)
		if c := min(m.Commit, r.matchedTo); c > r.commit {
			r.commit = c
		}
		r.send(from, &HeartbeatReply{Term: r.term, Seq: m.Seq, Commit: r.commit, MachineVersion: r.cfg.MachineVersion})
	case *NotLeader:
		if from == r.lead {
			r.logger.Info("leader says it stepped down", "leader", from.String(), "term", r.term)
			r.lead = ServerID{}
			r.electionAttempts = 0
			r.rearmShort = true
		}
	case *TimeoutNow:
		r.adoptLeader(from)
		if r.mayCampaign() {
			r.logger.Info("leader transfer: campaigning at once", "term", r.term+1)
			r.becomeCandidate(true)
		}
	}
}

// adoptLeader records from as the leader of the current term.
func (r *Raft) adoptLeader(from ServerID) {
	if r.lead != from {
		r.lead = from
		r.electionAttempts = 0
	}
}

// handleAppend is a follower's side of replication: check the previous
// entry, drop a conflicting suffix, append what is new, and reply only
// about entries that are durable.
func (r *Raft) handleAppend(from ServerID, m *AppendEntries) {
	prev, prevTerm, ents := m.PrevIndex, m.PrevTerm, m.Entries
	// Entries up to our commit index are committed, hence identical in every
	// leader's log: skip them (a delayed duplicate may reach far back).
	if prev < r.commit {
		skip := min(r.commit-prev, uint64(len(ents)))
		ents = ents[skip:]
		prev += skip
		if skip > 0 {
			prevTerm = m.Entries[skip-1].Term
		}
		if prev < r.commit {
			// Everything this message carries is committed here already.
			r.noteMatched(m.PrevIndex + uint64(len(m.Entries)))
			r.replyAppend(from, false)
			return
		}
	}
	if prev > r.log.lastIndex() {
		r.rejectAppend(from, prev, prevTerm)
		return
	}
	if !r.cfg.Sabotage.SkipPrevCheck {
		ok, err := r.log.matchTerm(prev, prevTerm)
		if err != nil {
			r.fail(err)
			return
		}
		if !ok {
			r.rejectAppend(from, prev, prevTerm)
			return
		}
	}
	// Find the first entry we do not already have.
	i := 0
	for ; i < len(ents); i++ {
		e := &ents[i]
		if e.Index > r.log.lastIndex() {
			break
		}
		t, err := r.log.term(e.Index)
		if err != nil {
			r.fail(err)
			return
		}
		if t != e.Term {
			break
		}
	}
	ents = ents[i:]
	wrote := false
	if len(ents) > 0 {
		if ents[0].Index <= r.log.lastIndex() {
			// A conflicting suffix. Overwrite only when no write is in
			// flight, so a Written report can never be mistaken for the
			// write that replaced it; park the message until then.
			if r.log.inFlight() {
				r.deferred = m
				return
			}
			r.members.truncated(ents[0].Index)
			r.versions.truncated(ents[0].Index)
		}
		if err := r.log.append(ents); err != nil {
			r.fail(err)
			return
		}
		r.noteEntries(ents)
		r.emit(Append{Entries: ents})
		wrote = true
	}
	r.noteMatched(m.PrevIndex + uint64(len(m.Entries)))
	c := min(m.Commit, r.matchedTo)
	if r.cfg.Sabotage.CommitRegress {
		if c != r.commit && c > 0 {
			r.commit = c
		}
	} else if c > r.commit {
		r.commit = c
	}
	// New entries are acknowledged when Written reports them durable;
	// otherwise answer now, so probes and duplicates get a reply.
	r.replyAppend(from, wrote && !r.cfg.Sabotage.CountUndurable)
}

func (r *Raft) noteMatched(i uint64) {
	if i > r.matchedTo {
		r.matchedTo = i
	}
}

// replyAppend sends a success reply about the durable, matching prefix.
// With onlyIfNew it stays silent unless that prefix grew since the last
// reply.
func (r *Raft) replyAppend(to ServerID, onlyIfNew bool) {
	last := min(r.log.stable, r.matchedTo)
	if r.cfg.Sabotage.CountUndurable {
		last = r.matchedTo
	}
	if onlyIfNew && last <= r.ackedTo {
		return
	}
	t, err := r.log.term(last)
	if err != nil {
		r.fail(err)
		return
	}
	r.ackedTo = max(r.ackedTo, last)
	r.send(to, &AppendReply{Term: r.term, Success: true, LastIndex: last, LastTerm: t,
		NextIndex: r.matchedTo + 1, Commit: r.commit, MachineVersion: r.cfg.MachineVersion})
}

// rejectAppend answers an AppendEntries whose previous entry does not
// match, with a hint that lets the leader skip a whole term per round trip.
func (r *Raft) rejectAppend(to ServerID, prev, prevTerm uint64) {
	reply := &AppendReply{Term: r.term, RejectedPrev: prev, Commit: r.commit, MachineVersion: r.cfg.MachineVersion}
	if prev > r.log.lastIndex() {
		// We lack entries: resume right after our last one.
		reply.LastIndex, reply.LastTerm = r.log.lastIndex(), r.log.lastTerm()
	} else {
		hi, ht, err := r.log.conflictHint(prev, prevTerm)
		if err != nil {
			r.fail(err)
			return
		}
		reply.LastIndex, reply.LastTerm = hi, ht
	}
	reply.NextIndex = reply.LastIndex + 1
	r.send(to, reply)
}

// handleWritten records local durability. A leader counts itself; a
// follower acknowledges the newly durable matching prefix.
func (r *Raft) handleWritten(ev Written) {
	if !r.log.stableTo(ev.Term, ev.To) {
		return
	}
	switch r.role {
	case RoleLeader:
		r.maybeCommit()
	case RoleFollower:
		if !r.lead.IsZero() {
			r.replyAppend(r.lead, true)
		}
		if m := r.deferredSnap; m != nil && !r.log.inFlight() {
			r.deferredSnap = nil
			if m.Term == r.term && !r.lead.IsZero() {
				r.handleInstallSnapshot(r.lead, m)
			}
		}
		if m := r.deferred; m != nil && !r.log.inFlight() {
			r.deferred = nil
			if m.Term == r.term && !r.lead.IsZero() {
				r.handleAppend(r.lead, m)
			}
		}
	}
}
