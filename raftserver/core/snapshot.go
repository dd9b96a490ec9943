package core

import (
	"errors"
	"fmt"
)

// handleSnapshotTaken records a snapshot the server made durable. It
// becomes what the leader sends to lagging followers; finish asks for the
// log below it to be dropped once the entries it covers are durable.
func (r *Raft) handleSnapshotTaken(s Snapshot) {
	switch {
	case s.Index <= r.snapshot.Index:
		r.logger.Debug("snapshot ignored: not newer", "index", s.Index, "have", r.snapshot.Index)
		return
	case s.Index > r.applied:
		r.logger.Error("snapshot ignored: beyond the applied index", "index", s.Index, "applied", r.applied)
		return
	case s.Members.Validate() != nil:
		r.logger.Error("snapshot ignored: invalid members", "index", s.Index, "err", s.Members.Validate())
		return
	}
	t, err := r.log.term(s.Index)
	if err != nil {
		if errors.Is(err, ErrCompacted) {
			r.logger.Error("snapshot ignored: its index is compacted", "index", s.Index)
			return
		}
		r.fail(err)
		return
	}
	if t != s.Term {
		r.logger.Error("snapshot ignored: wrong term", "index", s.Index, "term", s.Term, "log_term", t)
		return
	}
	r.snapshot = s.Clone()
	r.log.snapshotTaken(s)
	// Entries up to a snapshot are committed: they match every leader.
	r.noteMatched(s.Index)
}

// handleInstallSnapshot is a follower's side of a snapshot transfer: the
// leader's snapshot has arrived (staged by the server). A follower that
// already holds the entries it covers keeps its log and says so; otherwise
// it installs the snapshot, once no write of its own is in flight (an
// install replaces the log, and a Written report of an older write must
// never be mistaken for one after it: see the ABA rule of Written).
func (r *Raft) handleInstallSnapshot(from ServerID, m *InstallSnapshot) {
	s := m.Snapshot
	// The latest received snapshot is the one the server keeps staged.
	r.deferredSnap = nil
	if !r.cfg.Sabotage.InstallStaleSnapshot {
		if s.Index <= r.commit {
			// Committed here already, hence identical in every leader's log.
			r.noteMatched(s.Index)
			r.replyAppend(from, false)
			return
		}
		ok, err := r.log.matchTerm(s.Index, s.Term)
		if err != nil {
			r.fail(err)
			return
		}
		if ok {
			// Our log holds the snapshot's last entry, so (log matching) all
			// it covers. It is committed (a snapshot covers only applied
			// entries), so our commit index may follow.
			r.noteMatched(s.Index)
			r.commit = max(r.commit, s.Index)
			r.replyAppend(from, false)
			return
		}
	}
	if s.MachineVersion > r.cfg.MachineVersion {
		// Our code could not run the machine it holds. The reply carries our
		// version, so the leader stops sending it until we are upgraded.
		r.logger.Warn("snapshot refused: its machine version is not supported", "index", s.Index,
			"version", s.MachineVersion, "supported", r.cfg.MachineVersion)
		r.replyAppend(from, false)
		return
	}
	if r.log.inFlight() {
		r.deferredSnap = m
		return
	}
	r.installSnapshot(s)
	r.replyAppend(from, false)
}

// installSnapshot makes s the member's snapshot and resets its log to hold
// nothing after it, as RestoreSnapshot tells the server to.
func (r *Raft) installSnapshot(s Snapshot) {
	r.logger.Info("installing snapshot", "index", s.Index, "term", s.Term, "term_now", r.term)
	s = s.Clone()
	members := s.Members
	if len(members.Voters) == 0 {
		// Taken before any config entry: the initial members.
		members = r.cfg.InitialMembers.Clone()
	}
	r.emit(RestoreSnapshot{Snapshot: s.Clone()})
	if !r.cfg.Sabotage.InstallWithoutReset {
		r.log.restore(s)
		r.members.reset(s.Index, members)
		r.versions.reset(s.Index, s.MachineVersion)
	} else {
		r.log.snapshotTaken(s)
	}
	r.snapshot = s
	r.compacted = s.Index
	r.commit = max(r.commit, s.Index)
	r.applied = s.Index
	r.noteMatched(s.Index)
}

// sendSnapshot switches follower to to a snapshot transfer: it needs
// entries the log no longer holds. At most one transfer per follower is in
// flight; it is repeated after SnapshotRetryMs (doubling) or when the
// follower restarts or comes back (see progress.snapIndex).
func (r *Raft) sendSnapshot(to ServerID, pr *progress) {
	s := r.snapshot
	if s.Index == 0 {
		r.fail(fmt.Errorf("entries from %d are compacted but the member has no snapshot", pr.next))
		return
	}
	if !pr.versionKnown {
		// We have not heard from it in this term. Do not start a transfer
		// to a member that may be down or run code that cannot use the
		// snapshot: ask where it stands first, anchored at the snapshot.
		pr.probing, pr.paused = true, true
		pr.next = s.Index + 1
		pr.probePrev = s.Index
		r.send(to, &AppendEntries{Term: r.term, PrevIndex: s.Index, PrevTerm: s.Term, Commit: r.commit})
		return
	}
	pr.snapIndex, pr.snapTerm = s.Index, s.Term
	pr.probing, pr.paused = true, true
	pr.next = s.Index + 1
	pr.snapWait = r.cfg.snapshotRetryTicks() << min(pr.snapAttempts, maxSnapshotBackoff)
	pr.snapAttempts++
	pr.snapSent = pr.version >= s.MachineVersion
	if !pr.snapSent {
		r.logger.Warn("snapshot not sent: the follower's code does not support its machine version",
			"to", to.String(), "version", s.MachineVersion, "supported", pr.version)
		return
	}
	r.logger.Info("sending snapshot", "to", to.String(), "index", s.Index, "term", r.term)
	r.emit(SendSnapshot{To: to, Msg: &InstallSnapshot{Term: r.term, Snapshot: s.Clone()}})
}

// snapshotTick runs on each leader tick for a follower in a snapshot
// transfer: it starts afresh once the retry time is up, and meanwhile asks
// a silent follower, cheaply, whether it has installed the snapshot (a lost
// reply then costs one small message, not a whole transfer) or, if its code
// could not use the snapshot, which code it runs now.
func (r *Raft) snapshotTick(id ServerID, pr *progress) {
	pr.snapWait--
	if pr.snapWait <= 0 {
		// Start afresh, but first make sure the follower is there and learn
		// which code it runs now (sendSnapshot probes when it does not know).
		pr.versionKnown = false
		pr.becomeProbe(pr.match + 1)
		r.sendAppend(id)
		return
	}
	if pr.heardSinceTick || r.cfg.Sabotage.NoResend {
		return
	}
	if pr.resendWait > 0 {
		pr.resendWait--
		return
	}
	r.send(id, &AppendEntries{Term: r.term, PrevIndex: pr.snapIndex, PrevTerm: pr.snapTerm, Commit: r.commit})
	pr.resendBackoff = min(max(1, 2*pr.resendBackoff), maxResendBackoffTicks)
	pr.resendWait = pr.resendBackoff - 1
}
