package core

// sendAppend sends the follower what it lacks, as far as its state allows:
// one message while probing, a pipeline bounded by MaxInFlight otherwise.
func (r *Raft) sendAppend(to ServerID) {
	pr := r.ldr.progress[to]
	if pr == nil {
		return
	}
	last := r.log.lastIndex()
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
		if err != nil {
			r.fail(err)
			return
		}
		ents, err := r.log.slice(pr.next, hi, r.cfg.MaxAppendBytes)
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

// sendCommit tells a follower the commit index, anchored at its match
// index (known to be in its log), so it cannot be rejected.
func (r *Raft) sendCommit(to ServerID) {
	pr := r.ldr.progress[to]
	prevTerm, err := r.log.term(pr.match)
	if err != nil {
		r.fail(err)
		return
	}
	r.send(to, &AppendEntries{Term: r.term, PrevIndex: pr.match, PrevTerm: prevTerm, Commit: r.commit})
}

func stepLeader(r *Raft, from ServerID, m Message) {
	switch m := m.(type) {
	case *AppendReply:
		r.handleAppendReply(from, m)
	case *HeartbeatReply:
		if pr := r.ldr.progress[from]; pr != nil {
			pr.heard()
			pr.commitAcked = m.Commit
			pr.ackedSeq = max(pr.ackedSeq, m.Seq)
			r.checkReads()
		}
	case *NotLeader:
		// A follower restarted (or lost track of us): show it we lead.
		if pr := r.ldr.progress[from]; pr != nil {
			pr.commitAcked = 0
			pr.becomeProbe(pr.match + 1)
			r.sendAppend(from)
		}
	case *AppendEntries, *Heartbeat:
		r.logger.Error("second leader in one term", "term", r.term, "other", from.String())
	}
}

func (r *Raft) handleAppendReply(from ServerID, m *AppendReply) {
	pr := r.ldr.progress[from]
	if pr == nil {
		return
	}
	pr.heard()
	pr.commitAcked = m.Commit
	if m.Success {
		if m.LastIndex > pr.match && m.LastIndex <= r.log.lastIndex() {
			ok, err := r.log.matchTerm(m.LastIndex, m.LastTerm)
			if err != nil {
				r.fail(err)
				return
			}
			if ok {
				pr.match = m.LastIndex
				r.maybeCommit()
			}
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
	// counts.
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
		case v == r.id && r.cfg.Sabotage.CountUndurable:
			matches = append(matches, r.log.lastIndex())
		case v == r.id:
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
