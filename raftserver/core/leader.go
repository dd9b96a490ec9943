package core

import "slices"

// leaderState is what a member keeps only while it leads. It is replaced
// wholesale on becoming leader and dropped on stepping down.
type leaderState struct {
	progress map[ServerID]*progress
	peers    []ServerID // sorted keys of progress, for deterministic sends

	// termStart is the index of this term's noop entry. Until it commits,
	// the leader does not know the cluster's commit index: consistent
	// queries and membership changes wait for it.
	termStart uint64

	// tokens are client correlations of appended, uncommitted entries, in
	// index order.
	tokens []IndexedToken

	reads    readState
	transfer *transferState

	cqTicks  int // ticks into the current check-quorum window
	matchBuf []uint64
}

func (r *Raft) becomeLeader() {
	r.logger.Info("became leader", "term", r.term)
	r.role = RoleLeader
	r.step = stepLeader
	r.lead = r.id
	r.votes = nil
	r.electionAttempts = 0
	r.ldr = leaderState{progress: map[ServerID]*progress{}}
	r.ldr.syncPeers(r, r.members.current)
	noop := Entry{Index: r.log.lastIndex() + 1, Term: r.term, Type: EntryNoop}
	r.ldr.termStart = noop.Index
	r.appendOwn([]Entry{noop}, nil)
}

// syncPeers makes progress track exactly the members of m other than self.
// New peers start probing at the end of the leader's log.
func (ls *leaderState) syncPeers(r *Raft, m Membership) {
	ls.peers = m.peers(r.id)
	for _, id := range ls.peers {
		if ls.progress[id] == nil {
			ls.progress[id] = &progress{next: r.log.lastIndex() + 1, probing: true}
		}
	}
	for id := range ls.progress {
		if !slices.Contains(ls.peers, id) {
			delete(ls.progress, id)
		}
	}
}

// appendOwn appends entries created by this leader and streams them to the
// followers. The Append action and the Sends go out in the same batch so
// the local write and the replication overlap.
func (r *Raft) appendOwn(ents []Entry, token any) {
	if err := r.log.append(ents); err != nil {
		r.fail(err)
		return
	}
	r.emit(Append{Entries: ents})
	if token != nil {
		r.ldr.tokens = append(r.ldr.tokens, IndexedToken{Index: ents[len(ents)-1].Index, Token: token})
	}
	r.noteConfigs(ents)
	for _, id := range r.ldr.peers {
		r.sendAppend(id)
	}
	r.maybeCommit()
}

func (r *Raft) handleCommands(cmds []Command) {
	if len(cmds) == 0 {
		return
	}
	if r.role != RoleLeader || r.ldr.transfer != nil {
		for _, c := range cmds {
			if r.role != RoleLeader {
				r.rejectNotLeader(c.Token)
			} else {
				r.emit(Reply{Token: c.Token, Err: ErrTransferInProgress, Leader: r.id})
			}
		}
		return
	}
	next := r.log.lastIndex() + 1
	ents := make([]Entry, len(cmds))
	for i, c := range cmds {
		ents[i] = Entry{Index: next + uint64(i), Term: r.term, Type: EntryNormal, Data: c.Data}
		if c.Token != nil {
			r.ldr.tokens = append(r.ldr.tokens, IndexedToken{Index: ents[i].Index, Token: c.Token})
		}
	}
	r.appendOwn(ents, nil)
}

// rejectNotLeader answers a request that only a leader can serve.
func (r *Raft) rejectNotLeader(token any) {
	if r.liveLeader() && r.lead != r.id {
		r.emit(Reply{Token: token, Err: ErrNotLeader, Leader: r.lead})
		return
	}
	r.emit(Reply{Token: token, Err: ErrNoLeader})
}

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

// takeTokens removes and returns the tokens of entries up to commit.
func (ls *leaderState) takeTokens(commit uint64) []IndexedToken {
	n := 0
	for n < len(ls.tokens) && ls.tokens[n].Index <= commit {
		n++
	}
	if n == 0 {
		return nil
	}
	out := slices.Clone(ls.tokens[:n])
	ls.tokens = append(ls.tokens[:0], ls.tokens[n:]...)
	return out
}

// stepDown answers everything a leader holds before it stops leading.
func (ls *leaderState) stepDown(r *Raft, higherTerm bool) {
	r.logger.Info("stepping down", "term", r.term, "higher_term_seen", higherTerm)
	for _, t := range ls.tokens {
		r.emit(Reply{Token: t.Token, Err: ErrLeadershipLost})
	}
	ls.reads.rejectAll(r)
	if !higherTerm {
		// Followers still believe in us and nothing else would tell them.
		for _, id := range ls.peers {
			r.send(id, &NotLeader{Term: r.term})
		}
	}
	if tr := ls.transfer; tr != nil {
		var err error
		if !higherTerm {
			err = ErrTransferFailed
		}
		r.emit(Reply{Token: tr.token, Err: err})
	}
	*ls = leaderState{}
}

// nodeUp probes the followers on node at once instead of waiting for the
// re-send backoff.
func (ls *leaderState) nodeUp(r *Raft, node string) {
	for _, id := range ls.peers {
		if id.Node != node {
			continue
		}
		pr := ls.progress[id]
		pr.resendWait, pr.resendBackoff = 0, 0
		pr.rejectProbed = false
		if pr.match < r.log.lastIndex() {
			pr.becomeProbe(pr.match + 1)
			r.sendAppend(id)
		}
	}
}

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

// leaderTick re-sends to followers that went quiet, spreads the commit
// index, runs check-quorum and times out a transfer.
func (r *Raft) leaderTick() {
	last := r.log.lastIndex()
	for _, id := range r.ldr.peers {
		pr := r.ldr.progress[id]
		switch {
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
