package core

import "slices"

// Incarnations (Config.Incarnation, Membership.Incarnations) tell a replica
// from a new one under the same name. Raft's safety rests on each voter
// keeping what it acknowledged; a replica whose disk was replaced restarts
// with an empty log, and if it voted as the old one it could elect a leader
// that lacks committed entries. Binding each member to the incarnation the
// leader heard from, in the configuration itself, lets every member refuse
// such a replica's votes and acknowledgements, and lets the replica know it
// must not vote or stand.

// checkIncarnation reports whether message m from a member sent with
// incarnation inc may be handled. Votes, requests for votes and
// acknowledgements of appends are dropped when the configuration binds the
// sender to another incarnation: those are what count a member as the
// voter whose log it stands for. A leader's messages are not: a member
// whose configuration is older than the leader's may bind the leader to an
// incarnation it has since replaced (the leader lost its disk, rejoined and
// was elected), and it learns the newer binding only from those messages;
// and only a member that passed the election's checks leads. A leader
// notes the incarnation of a member not bound yet, for bindIncarnations,
// and every member the members heard from under another one, for Status.
func (r *Raft) checkIncarnation(from ServerID, inc uint64, m Message) bool {
	switch m.(type) {
	case *PreVoteRequest, *PreVoteReply, *VoteRequest, *VoteReply, *AppendReply, *HeartbeatReply:
	default:
		return true
	}
	cur := r.members.current
	switch want := cur.Incarnation(from); {
	case r.cfg.Sabotage.IgnoreIncarnations:
		return true
	case want == 0:
		delete(r.strangers, from)
		if inc != 0 && r.role == RoleLeader && cur.Contains(from) {
			if r.ldr.heard == nil {
				r.ldr.heard = map[ServerID]uint64{}
			}
			r.ldr.heard[from] = inc
		}
		return true
	case inc == want:
		delete(r.strangers, from)
		return true
	default:
		if r.strangers[from] != inc {
			r.logger.Warn("vote or acknowledgement from another incarnation of a member dropped: it lost its data or was created again, and must be removed and added again",
				"from", from.String(), "incarnation", inc, "bound", want)
			if r.strangers == nil {
				r.strangers = map[ServerID]uint64{}
			}
			r.strangers[from] = inc
		}
		return false
	}
}

// staleIncarnation reports whether the configuration binds this member's
// name to another incarnation than its own: it is a new replica under an
// old name and must neither vote nor stand.
func (r *Raft) staleIncarnation() bool {
	bound := r.members.current.Incarnation(r.cfg.ID)
	return bound != 0 && bound != r.cfg.Incarnation && !r.cfg.Sabotage.IgnoreIncarnations
}

// bindIncarnations has a leader bind the members it heard from that the
// configuration does not bind yet, itself included, in one config entry,
// when it may change the configuration and no requested change waits.
//
// It runs after every event, so it returns at once in the common case:
// nothing heard that is not bound, and itself bound.
func (r *Raft) bindIncarnations() {
	if r.role != RoleLeader {
		return
	}
	cur := r.members.current
	selfUnbound := r.cfg.Incarnation != 0 && cur.Incarnation(r.cfg.ID) == 0 && cur.Contains(r.cfg.ID)
	if !selfUnbound && len(r.ldr.heard) == 0 || len(r.ldr.changes) > 0 || !r.changePermitted() {
		return
	}
	// Collect the bindings first and clone cur once for all of them (bind
	// clones it for each).
	type binding struct {
		id  ServerID
		inc uint64
	}
	var binds []binding
	if selfUnbound {
		binds = append(binds, binding{r.cfg.ID, r.cfg.Incarnation})
	}
	for _, id := range cur.peers(r.cfg.ID) {
		if inc := r.ldr.heard[id]; inc != 0 && cur.Contains(id) && cur.Incarnation(id) == 0 {
			binds = append(binds, binding{id, inc})
		}
	}
	r.ldr.heard = nil
	if len(binds) == 0 {
		return
	}
	next := cur.Clone()
	if next.Incarnations == nil {
		next.Incarnations = make(map[ServerID]uint64, len(binds))
	}
	for _, b := range binds {
		next.Incarnations[b.id] = b.inc
	}
	r.proposeMembership(next, nil)
}

// strangerList returns r.strangers sorted by ID, nil if none.
func (r *Raft) strangerList() []Stranger {
	if len(r.strangers) == 0 {
		return nil
	}
	out := make([]Stranger, 0, len(r.strangers))
	for id, inc := range r.strangers {
		if want := r.members.current.Incarnation(id); want != 0 && want != inc {
			out = append(out, Stranger{ID: id, Incarnation: inc})
		} else {
			delete(r.strangers, id) // removed, or bound to it since
		}
	}
	slices.SortFunc(out, func(a, b Stranger) int { return compareIDs(a.ID, b.ID) })
	return out
}
