package core

import "errors"

// sendAppend sends the follower what it lacks, as far as its state allows:
// one message while probing, a pipeline bounded by MaxInFlight otherwise,
// nothing during a snapshot transfer. A follower that needs entries the log
// no longer holds is switched to a snapshot transfer. A leaving follower
// is sent nothing past the entry that removed it, and no snapshot: if it
// needs one, the leader stops telling it.
func (r *Raft) sendAppend(to ServerID) {
	pr := r.ldr.progress[to]
	if pr == nil || pr.snapIndex > 0 {
		return
	}
	last := r.log.lastIndex()
	if pr.leaveAt > 0 {
		last = min(last, pr.leaveAt)
	}
	// Each message carries at least one entry, so this loop runs at most
	// MaxInFlight times.
	for {
		if pr.probing && pr.paused {
			return
		}
		hi := last + 1
		if !pr.probing {
			if pr.next > last || pr.next > pr.match+r.cfg.MaxInFlight {
				return
			}
			hi = min(hi, pr.match+r.cfg.MaxInFlight+1)
		}
		prev := pr.next - 1
		prevTerm, err := r.log.term(prev)
		if errors.Is(err, ErrCompacted) {
			r.needsSnapshot(to, pr)
			return
		}
		if err != nil {
			r.fail(err)
			return
		}
		ents, err := r.log.slice(pr.next, hi, r.cfg.MaxAppendBytes)
		if errors.Is(err, ErrCompacted) {
			r.needsSnapshot(to, pr)
			return
		}
		if err != nil {
			r.fail(err)
			return
		}
		r.send(to, &AppendEntries{Term: r.term, PrevIndex: prev, PrevTerm: prevTerm, Commit: r.commit, Entries: ents})
		if n := len(ents); n > 0 {
			pr.next = ents[n-1].Index + 1
		}
		if pr.probing {
			pr.paused = true
			pr.probePrev = prev
			return
		}
	}
}

// needsSnapshot starts a snapshot transfer to a follower that needs
// entries the log no longer holds; a leaving one is forgotten instead.
func (r *Raft) needsSnapshot(to ServerID, pr *progress) {
	if pr.leaveAt > 0 {
		// Debug: a removed member that restarted repeats this at each of
		// its rounds of votes (see leaveLate).
		r.logger.Debug("a removed member lacks entries the log no longer holds: not telling it of its removal", "member", to.String())
		r.ldr.forgetLeaving(to)
		return
	}
	r.sendSnapshot(to, pr)
}

// sendCommit tells a follower the commit index, anchored at its match
// index (known to be in its log), so it cannot be rejected. If the log no
// longer holds the match index, the anchor is the snapshot: a follower
// that lacks it rejects, and the rejection starts its repair.
func (r *Raft) sendCommit(to ServerID) {
	pr := r.ldr.progress[to]
	anchor := max(pr.match, r.log.floor())
	prevTerm, err := r.log.term(anchor)
	if err != nil {
		r.fail(err)
		return
	}
	r.send(to, &AppendEntries{Term: r.term, PrevIndex: anchor, PrevTerm: prevTerm, Commit: r.commit})
}

func stepLeader(r *Raft, from ServerID, m Message) {
	switch m := m.(type) {
	case *AppendReply:
		r.handleAppendReply(from, m)
	case *HeartbeatReply:
		if pr := r.ldr.progress[from]; pr != nil {
			pr.heard()
			pr.version, pr.versionKnown = m.MachineVersion, true
			pr.commitHeard(m.Commit)
			pr.ackedSeq = max(pr.ackedSeq, m.Seq)
			r.checkReads()
		}
	case *NotLeader:
		// A follower restarted (or lost track of us): show it we lead. It
		// may run other code now; a transfer to it starts afresh.
		if pr := r.ldr.progress[from]; pr != nil {
			pr.commitAcked = 0
			pr.versionKnown = false
			if m.Lost {
				// It no longer holds what it acknowledged: counting less
				// for it is always safe, and its answers to the probe
				// tell where it stands.
				pr.match = 0
				pr.endSnapshot()
			}
			pr.becomeProbe(r.restartProbe(pr))
			r.sendAppend(from)
		}
	case *AppendEntries, *Heartbeat, *InstallSnapshot:
		r.logger.Error("second leader in one term", "term", r.term, "other", from.String())
	}
}

func (r *Raft) handleAppendReply(from ServerID, m *AppendReply) {
	pr := r.ldr.progress[from]
	if pr == nil {
		return
	}
	pr.heard()
	pr.commitHeard(m.Commit)
	pr.version, pr.versionKnown = m.MachineVersion, true
	if pr.leaveAt > 0 && pr.commitAcked >= pr.leaveAt {
		// It committed its removal, so it applies it and stops.
		r.ldr.forgetLeaving(from)
		return
	}
	if m.Success {
		if m.LastIndex > pr.match && m.LastIndex <= r.log.lastIndex() {
			// A success in our term is about entries that match our log;
			// the term check is a guard. At or below the snapshot, our log
			// may no longer hold them, and they are committed anyway.
			ok := m.LastIndex <= r.log.snapIndex
			if !ok {
				var err error
				ok, err = r.log.matchTerm(m.LastIndex, m.LastTerm)
				if err != nil {
					r.fail(err)
					return
				}
			}
			if ok {
				pr.match = m.LastIndex
				r.maybeCommit()
			}
		}
		if pr.snapIndex > 0 {
			if r.unblockSnapshot(from, pr) {
				return
			}
			if pr.match < pr.snapIndex {
				// Not installed yet (or a reply from before the transfer).
				return
			}
			// The follower holds what the snapshot covers: replicate the rest.
			pr.endSnapshot()
			pr.snapAttempts = 0
			pr.becomeReplicate()
			pr.next = max(pr.next, min(m.NextIndex, r.log.lastIndex()+1))
			r.sendAppend(from)
			r.ldr.maybeSendTimeoutNow(r, from)
			return
		}
		if pr.probing {
			pr.becomeReplicate()
			// Resume after what the follower already holds. A stale, too
			// high NextIndex only costs a gap rejection and a probe.
			pr.next = max(pr.next, min(m.NextIndex, r.log.lastIndex()+1))
		}
		pr.next = max(pr.next, pr.match+1)
		r.sendAppend(from)
		r.ldr.maybeSendTimeoutNow(r, from)
		return
	}
	// A rejection. One at or below the known match is stale (a later
	// success overtook it); while probing, only the probe's own answer
	// counts; during a snapshot transfer, none does (the follower lacks the
	// entries until it installs).
	if pr.snapIndex > 0 {
		r.unblockSnapshot(from, pr)
		return
	}
	if m.RejectedPrev <= pr.match || (pr.probing && pr.paused && m.RejectedPrev != pr.probePrev) {
		return
	}
	if !pr.probing {
		if pr.rejectProbed {
			return
		}
		pr.rejectProbed = true
	}
	k, _, err := r.log.conflictHint(m.LastIndex, m.LastTerm)
	if err != nil {
		r.fail(err)
		return
	}
	next := min(k+1, m.RejectedPrev)
	if m.NextIndex > 0 {
		next = min(next, m.NextIndex)
	}
	pr.becomeProbe(next)
	r.sendAppend(from)
}

// restartProbe is where to probe a follower that restarted or lost track
// of this leader, when nothing says where its log ends: after what it
// acknowledged, or, if it acknowledged nothing in this term (as after an
// election), with the last entry only. Probing from index 1 would send
// the whole log (up to MaxAppendBytes of it, read back from storage on
// both sides) each time a member restarts, although it usually lacks at
// most the new leader's first entry; a rejection's hint finds its end
// in one more round trip when it lacks more.
func (r *Raft) restartProbe(pr *progress) uint64 {
	if pr.match > 0 {
		return pr.match + 1
	}
	// (Not below the snapshot: the probe's PrevIndex must have a term.)
	return max(r.log.lastIndex(), r.log.floor()+1)
}

// unblockSnapshot starts the transfer held back because the follower's code
// could not use the snapshot, once a reply says it now can.
func (r *Raft) unblockSnapshot(from ServerID, pr *progress) bool {
	if pr.snapSent || pr.version < r.snapshot.MachineVersion {
		return false
	}
	pr.becomeProbe(pr.match + 1)
	r.sendAppend(from)
	return true
}

// maybeCommit advances the commit index to the highest index a majority of
// voters hold durable, if that entry is of the current term (earlier terms'
// entries commit with it, never by counting: Raft's Figure 8).
func (r *Raft) maybeCommit() {
	if r.role != RoleLeader {
		return
	}
	matches := r.ldr.matchBuf[:0]
	for _, v := range r.members.current.Voters {
		switch {
		case v == r.cfg.ID && r.cfg.Sabotage.CountUndurable:
			matches = append(matches, r.log.lastIndex())
		case v == r.cfg.ID:
			matches = append(matches, r.log.stable)
		default:
			if pr := r.ldr.progress[v]; pr != nil {
				matches = append(matches, pr.match)
			} else {
				matches = append(matches, 0)
			}
		}
	}
	r.ldr.matchBuf = matches
	q := committedIndex(matches)
	if q <= r.commit {
		return
	}
	t, err := r.log.term(q)
	if err != nil {
		r.fail(err)
		return
	}
	if t != r.term {
		return
	}
	r.commit = q
	if r.commit >= r.ldr.termStart {
		r.startWaitingReads()
	}
}
