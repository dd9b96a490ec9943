package core

import (
	"fmt"
	"slices"
)

func (r *Raft) handleAddMember(ev AddMember) {
	cur := r.members.current
	if err := (Membership{Voters: []ServerID{ev.Member}}).Validate(); err != nil {
		r.emit(Reply{Token: ev.Token, Err: fmt.Errorf("%w: %w", ErrUnknownMember, err), Leader: r.lead})
		return
	}
	next := cur.Clone()
	switch {
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
	r.proposeMembership(next, ev.Token)
}

func (r *Raft) handleRemoveMember(ev RemoveMember) {
	cur := r.members.current
	if !cur.Contains(ev.Member) {
		r.rejectChange(ev.Token, ErrUnknownMember)
		return
	}
	next := cur.Clone()
	drop := func(id ServerID) bool { return id == ev.Member }
	next.Voters = slices.DeleteFunc(next.Voters, drop)
	next.NonVoters = slices.DeleteFunc(next.NonVoters, drop)
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
	r.emit(Reply{Token: token, Err: err, Leader: r.id})
}

// proposeMembership appends a config entry, which takes effect at once.
// Single-server changes are safe only one at a time and only after the
// leader committed an entry of its own term (otherwise a change from an
// earlier term may still be uncommitted in some log).
func (r *Raft) proposeMembership(next Membership, token any) {
	switch {
	case r.role != RoleLeader:
		r.rejectNotLeader(token)
	case r.ldr.transfer != nil:
		r.emit(Reply{Token: token, Err: ErrTransferInProgress, Leader: r.id})
	case r.commit < r.ldr.termStart || r.members.index() > r.commit:
		r.emit(Reply{Token: token, Err: ErrMembershipChangePending, Leader: r.id})
	default:
		r.logger.Info("membership change proposed", "members", next.String(), "term", r.term)
		e := Entry{Index: r.log.lastIndex() + 1, Term: r.term, Type: EntryConfig, Data: next.AppendBinary(nil)}
		r.appendOwn([]Entry{e}, token)
	}
}
