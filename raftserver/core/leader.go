package core

import (
	"fmt"
	"slices"
)

// leaderState is what a member keeps only while it leads. It is replaced
// wholesale on becoming leader and dropped on stepping down.
type leaderState struct {
	progress map[ServerID]*progress
	// peers are the members of the configuration but self, sorted, for
	// deterministic sends. progress also tracks the leaving followers
	// (see leavingPeers).
	peers []ServerID

	// termStart is the index of this term's noop entry. Until it commits,
	// the leader does not know the cluster's commit index: consistent
	// queries and membership changes wait for it.
	termStart uint64

	// tokens are client correlations of appended, uncommitted entries, in
	// index order.
	tokens []IndexedToken

	reads    readState
	transfer *transferState
	// changes are membership changes (AddMember, RemoveMember) waiting
	// for the previous one, or the term's first entry, to commit; oldest
	// first, at most maxQueuedChanges.
	changes []Event
	// heard is the incarnation each member not yet bound was heard from:
	// bindIncarnations binds them.
	heard map[ServerID]uint64

	cqTicks int // ticks into the current check-quorum window
	// justElected: the voters' grants still count as heard when the
	// first window starts.
	justElected bool
	// leaving counts the leaving followers not parked (see leavingPeers);
	// an int32, so that it fits beside justElected and the Raft struct,
	// of which a node holds thousands, does not grow.
	leaving  int32
	matchBuf []uint64
}

func (r *Raft) becomeLeader() {
	r.logger.Info("became leader", "term", r.term)
	r.counters.ElectionsWon++
	r.role = RoleLeader
	r.lead = r.cfg.ID
	r.electionAttempts = 0
	r.ldr = leaderState{progress: map[ServerID]*progress{}, justElected: true}
	r.ldr.syncPeers(r, r.members.current, 0)
	for v, granted := range r.votes {
		// Its voters were just heard from, whatever a detector's stale
		// suspicion says.
		if pr := r.ldr.progress[v]; pr != nil && granted {
			pr.active = true
		}
	}
	r.votes, r.ownVotes = nil, nil
	noop := Entry{Index: r.log.lastIndex() + 1, Term: r.term, Type: EntryNoop}
	r.ldr.termStart = noop.Index
	r.appendOwn([]Entry{noop}, nil)
}

// syncPeers makes the peers exactly the members of m other than self, m
// being the configuration that the entry at index at (0: none, as at an
// election) brought into effect. New peers start probing at the end of the
// leader's log. A follower that m removes is leaving: it stays tracked
// until it has been told its removal (see leavingPeers), unless a snapshot
// transfer to it is under way (it lacks too much to be told this way).
func (ls *leaderState) syncPeers(r *Raft, m Membership, at uint64) {
	old := ls.peers
	ls.peers = m.peers(r.cfg.ID)
	for _, id := range ls.peers {
		// A member added back before it heard of its removal starts afresh
		// too: it may be another replica by now (one that lost its disk and
		// was removed for it), and what the leader knew of the old one
		// would hold it up.
		if pr := ls.progress[id]; pr == nil || pr.leaveAt > 0 {
			if pr != nil {
				ls.forgetLeaving(id)
			}
			ls.progress[id] = &progress{next: r.log.lastIndex() + 1, probing: true}
		}
	}
	for _, id := range old {
		if slices.Contains(ls.peers, id) {
			continue
		}
		if pr := ls.progress[id]; at > 0 && pr.snapIndex == 0 {
			pr.leaveAt = at
			ls.leaving++
		} else {
			delete(ls.progress, id)
		}
	}
}

// leavingPeers returns the followers that a configuration appended in this
// term removed and that the leader still tells of it, sorted, or nil. The
// leader sends each the log up to the entry that removed it
// (progress.leaveAt) and the commit index, so that it applies its removal
// and stops; otherwise it would never hear of it, since the leader stops
// sending to a member as soon as a configuration without it is appended.
// After maxLeavingTicks the leader parks one it did not reach: it keeps
// its progress, sends it nothing more and does not tick for it, and takes
// it up again if it asks for votes (back from a restart or a partition).
// Only the entries up to its own removal are ever sent to it: nothing
// written after it left. Leaving followers are none, but for a few ticks
// after a removal, so the list costs nothing the rest of the time.
func (ls *leaderState) leavingPeers() []ServerID {
	if ls.leaving == 0 {
		return nil
	}
	var out []ServerID
	for id, pr := range ls.progress {
		if pr.leaveAt > 0 && !pr.leaveParked {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, compareIDs)
	return out
}

// forgetLeaving stops tracking a leaving follower: it was told of its
// removal, or cannot be told without a snapshot, or is a peer again.
func (ls *leaderState) forgetLeaving(id ServerID) {
	if pr := ls.progress[id]; pr != nil && !pr.leaveParked {
		ls.leaving--
	}
	delete(ls.progress, id)
}

// park stops telling a leaving follower that did not answer, until it
// asks for votes (unpark).
func (ls *leaderState) park(pr *progress) {
	pr.leaveParked = true
	ls.leaving--
}

// unpark takes a parked leaving follower up again, for maxLeavingTicks.
func (ls *leaderState) unpark(pr *progress) {
	if pr.leaveParked {
		pr.leaveParked, pr.leaveTicks = false, 0
		ls.leaving++
	}
}

// appendOwn appends entries created by this leader and streams them to the
// followers. The Append action and the Sends go out in the same batch so
// the local write and the replication overlap.
func (r *Raft) appendOwn(ents []Entry, token any) {
	if last := ents[len(ents)-1].Index; last > MaxIndex {
		// The log is full (see MaxIndex): nothing is persisted past it.
		// Commands are refused earlier (handleCommands); this catches a
		// config change or version bump.
		r.logger.Error("log full: entry not appended", "index", last)
		if token != nil {
			r.emit(Reply{Token: token, Err: fmt.Errorf("%w: the log is at index %d", ErrOutOfRange, last-1), Leader: r.cfg.ID})
		}
		return
	}
	if err := r.log.append(ents); err != nil {
		r.fail(err)
		return
	}
	r.emit(Append{Entries: ents})
	if token != nil {
		r.ldr.tokens = append(r.ldr.tokens, IndexedToken{Index: ents[len(ents)-1].Index, Token: token})
	}
	r.noteEntries(ents)
	for _, id := range r.ldr.peers {
		r.sendAppend(id)
	}
	for _, id := range r.ldr.leavingPeers() {
		r.sendAppend(id) // the entry that removes it, when that was this one
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
				r.emit(Reply{Token: c.Token, Err: ErrTransferInProgress, Leader: r.cfg.ID})
			}
		}
		return
	}
	next := r.log.lastIndex() + 1
	if uint64(len(cmds)) > MaxIndex+1-next {
		// The log is full (see MaxIndex): refuse rather than wrap.
		for _, c := range cmds {
			r.emit(Reply{Token: c.Token, Err: fmt.Errorf("%w: the log is at index %d", ErrOutOfRange, next-1), Leader: r.cfg.ID})
		}
		return
	}
	ents := make([]Entry, len(cmds))
	for i, c := range cmds {
		ents[i] = Entry{Index: next + uint64(i), Term: r.term, Type: EntryNormal, Data: c.Data, Framed: c.Framed}
		if c.Token != nil {
			r.ldr.tokens = append(r.ldr.tokens, IndexedToken{Index: ents[i].Index, Token: c.Token})
		}
	}
	r.appendOwn(ents, nil)
}

// rejectNotLeader answers a request that only a leader can serve.
func (r *Raft) rejectNotLeader(token any) {
	if r.liveLeader() && r.lead != r.cfg.ID {
		r.emit(Reply{Token: token, Err: ErrNotLeader, Leader: r.lead})
		return
	}
	r.emit(Reply{Token: token, Err: ErrNoLeader})
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
	for _, ev := range ls.changes {
		// Never appended: safe to retry with the next leader.
		switch ev := ev.(type) {
		case AddMember:
			r.emit(Reply{Token: ev.Token, Err: ErrNoLeader})
		case RemoveMember:
			r.emit(Reply{Token: ev.Token, Err: ErrNoLeader})
		}
	}
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
	for _, id := range slices.Concat(ls.peers, ls.leavingPeers()) {
		if id.Node != node {
			continue
		}
		pr := ls.progress[id]
		pr.resendWait, pr.resendBackoff = 0, 0
		pr.rejectProbed = false
		if pr.match < r.log.lastIndex() {
			// A snapshot transfer to it, if any, may have died with the
			// link: becomeProbe starts it afresh if it is still needed.
			pr.becomeProbe(pr.match + 1)
			r.sendAppend(id)
		}
	}
}
