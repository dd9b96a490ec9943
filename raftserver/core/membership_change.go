package core

import (
	"fmt"
	"slices"
)

// maxQueuedChanges bounds the membership changes a leader holds while an
// earlier one is in progress; more are refused with
// ErrMembershipChangePending.
const maxQueuedChanges = 64

// queueChange holds a membership change (AddMember or RemoveMember) until
// the leader may propose it: single-server changes go one at a time, and
// only after the leader committed an entry of its own term. Callers
// routinely add members right after a cluster elected its first leader,
// so refusing them would only make every caller retry. It reports whether
// ev was queued (or refused because the queue is full); false means it may
// be handled now.
func (r *Raft) queueChange(ev Event, token any) bool {
	if r.role != RoleLeader || r.ldr.transfer != nil || r.changePermitted() && len(r.ldr.changes) == 0 {
		return false
	}
	if len(r.ldr.changes) >= maxQueuedChanges {
		r.emit(Reply{Token: token, Err: fmt.Errorf("%w: %d changes already wait", ErrMembershipChangePending, len(r.ldr.changes)), Leader: r.cfg.ID})
		return true
	}
	r.ldr.changes = append(r.ldr.changes, ev)
	return true
}

// changePermitted reports whether a leader may append a membership change
// now: it committed an entry of its term, and the last change committed.
func (r *Raft) changePermitted() bool {
	return r.commit >= r.ldr.termStart && r.members.index() <= r.commit
}

// proposeQueuedChanges proposes the changes that waited, oldest first,
// while the leader may: each is checked against the configuration in
// effect now (an add may have become a duplicate meanwhile).
func (r *Raft) proposeQueuedChanges() {
	for r.role == RoleLeader && r.ldr.transfer == nil && len(r.ldr.changes) > 0 && r.changePermitted() {
		ev := r.ldr.changes[0]
		r.ldr.changes[0] = nil
		r.ldr.changes = r.ldr.changes[1:]
		switch ev := ev.(type) {
		case AddMember:
			r.addMember(ev)
		case RemoveMember:
			r.removeMember(ev)
		}
	}
}

func (r *Raft) handleAddMember(ev AddMember) {
	if r.queueChange(ev, ev.Token) {
		return
	}
	r.addMember(ev)
}

func (r *Raft) handleRemoveMember(ev RemoveMember) {
	if r.queueChange(ev, ev.Token) {
		return
	}
	r.removeMember(ev)
}

func (r *Raft) addMember(ev AddMember) {
	cur := r.members.current
	if err := (Membership{Voters: []ServerID{ev.Member}}).Validate(); err != nil {
		r.emit(Reply{Token: ev.Token, Err: fmt.Errorf("%w: %w", ErrUnknownMember, err), Leader: r.lead})
		return
	}
	next := cur.Clone()
	switch bound := cur.Incarnation(ev.Member); {
	case cur.Contains(ev.Member) && ev.Incarnation != 0 && bound != 0 && bound != ev.Incarnation:
		r.rejectChange(ev.Token, fmt.Errorf("%w: %s is bound to incarnation %d, not %d", ErrOtherIncarnation, ev.Member, bound, ev.Incarnation))
		return
	case cur.IsVoter(ev.Member), cur.IsNonVoter(ev.Member) && !ev.Voter:
		r.rejectChange(ev.Token, ErrMemberExists)
		return
	case cur.IsNonVoter(ev.Member):
		// Promotion of a non-voter that (hopefully) caught up.
		next.NonVoters = slices.DeleteFunc(next.NonVoters, func(id ServerID) bool { return id == ev.Member })
		next.Voters = append(next.Voters, ev.Member)
	case ev.Voter:
		next.Voters = append(next.Voters, ev.Member)
	default:
		next.NonVoters = append(next.NonVoters, ev.Member)
	}
	if ev.Incarnation != 0 {
		next = next.bind(ev.Member, ev.Incarnation)
	}
	r.proposeMembership(next, ev.Token)
}

func (r *Raft) removeMember(ev RemoveMember) {
	cur := r.members.current
	if !cur.Contains(ev.Member) {
		r.rejectChange(ev.Token, ErrUnknownMember)
		return
	}
	next := cur.Clone()
	drop := func(id ServerID) bool { return id == ev.Member }
	next.Voters = slices.DeleteFunc(next.Voters, drop)
	next.NonVoters = slices.DeleteFunc(next.NonVoters, drop)
	delete(next.Incarnations, ev.Member) // a replica added again may be another one
	if len(next.Voters) == 0 {
		r.rejectChange(ev.Token, fmt.Errorf("%w: cannot remove the last voter %s", ErrUnknownMember, ev.Member))
		return
	}
	r.proposeMembership(next, ev.Token)
}

func (r *Raft) rejectChange(token any, err error) {
	if r.role != RoleLeader {
		r.rejectNotLeader(token)
		return
	}
	r.emit(Reply{Token: token, Err: err, Leader: r.cfg.ID})
}

// proposeMembership appends a config entry, which takes effect at once.
// Single-server changes are safe only one at a time and only after the
// leader committed an entry of its own term (otherwise a change from an
// earlier term may still be uncommitted in some log): queueChange holds
// the others back until then.
func (r *Raft) proposeMembership(next Membership, token any) {
	switch {
	case r.role != RoleLeader:
		r.rejectNotLeader(token)
	case r.ldr.transfer != nil:
		r.emit(Reply{Token: token, Err: ErrTransferInProgress, Leader: r.cfg.ID})
	case !r.changePermitted():
		r.emit(Reply{Token: token, Err: ErrMembershipChangePending, Leader: r.cfg.ID})
	default:
		r.logger.Info("membership change proposed", "members", next.String(), "term", r.term)
		e := Entry{Index: r.log.lastIndex() + 1, Term: r.term, Type: EntryConfig, Data: next.AppendBinary(nil)}
		r.appendOwn([]Entry{e}, token)
	}
}
