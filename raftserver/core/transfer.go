package core

// transferState is a leader transfer in progress.
type transferState struct {
	to    ServerID
	token any
	ticks int
}

func (r *Raft) handleTransfer(ev TransferLeadership) {
	switch {
	case r.role != RoleLeader:
		r.rejectNotLeader(ev.Token)
	case ev.To == r.cfg.ID:
		r.emit(Reply{Token: ev.Token})
	case !r.members.current.IsVoter(ev.To):
		r.emit(Reply{Token: ev.Token, Err: ErrUnknownMember, Leader: r.cfg.ID})
	case r.ldr.transfer != nil:
		r.emit(Reply{Token: ev.Token, Err: ErrTransferInProgress, Leader: r.cfg.ID})
	default:
		r.logger.Info("leader transfer started", "to", ev.To.String(), "term", r.term)
		r.ldr.transfer = &transferState{to: ev.To, token: ev.Token}
		pr := r.ldr.progress[ev.To]
		if pr.match < r.log.lastIndex() && pr.snapIndex == 0 {
			// Bring the target up to date now, from what it surely has,
			// rather than at the next tick.
			pr.becomeProbe(pr.match + 1)
		}
		r.sendAppend(ev.To)
		r.ldr.maybeSendTimeoutNow(r, ev.To)
	}
}

// maybeSendTimeoutNow tells the transfer target to campaign once its log
// is up to date with ours.
func (ls *leaderState) maybeSendTimeoutNow(r *Raft, id ServerID) {
	tr := ls.transfer
	if tr == nil || tr.to != id {
		return
	}
	if pr := ls.progress[id]; pr != nil && pr.match == r.log.lastIndex() {
		r.send(id, &TimeoutNow{Term: r.term})
	}
}

// transferTick gives up on a transfer that did not complete within the
// check-quorum interval, and repeats TimeoutNow in case it was lost.
func (ls *leaderState) transferTick(r *Raft) {
	tr := ls.transfer
	if tr == nil {
		return
	}
	tr.ticks++
	if tr.ticks >= r.cfg.checkQuorumTicks() {
		r.logger.Info("leader transfer timed out", "to", tr.to.String(), "term", r.term)
		ls.transfer = nil
		r.emit(Reply{Token: tr.token, Err: ErrTransferFailed, Leader: r.cfg.ID})
		return
	}
	ls.maybeSendTimeoutNow(r, tr.to)
}
