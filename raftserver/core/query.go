package core

// readState holds a leader's consistent queries.
//
// A query that arrives before the leader committed an entry of its term
// waits in waiting (the leader cannot know the commit index yet). Then it
// is stamped with the commit index at that moment and a new heartbeat
// sequence number; once a quorum of voters acknowledged a heartbeat with a
// sequence at least that high, the leader was still leader after the query
// arrived, and the query may run at its stamped index.
type readState struct {
	seq     uint64 // last heartbeat sequence number used in this term
	waiting []any
	pend    []pendingRead // in seq order
}

type pendingRead struct {
	token any
	index uint64
	seq   uint64
}

func (rs *readState) pending() bool { return len(rs.waiting) > 0 || len(rs.pend) > 0 }

func (rs *readState) rejectAll(r *Raft) {
	for _, t := range rs.waiting {
		r.emit(Reply{Token: t, Err: ErrNoLeader})
	}
	for _, p := range rs.pend {
		r.emit(Reply{Token: p.token, Err: ErrNoLeader})
	}
	*rs = readState{}
}

func (r *Raft) handleQuery(q Query) {
	switch q.Kind {
	case QueryLocal:
		r.emit(RunQuery{Token: q.Token})
		return
	case QueryLeader:
		if r.role != RoleLeader {
			r.rejectNotLeader(q.Token)
			return
		}
		r.emit(RunQuery{Token: q.Token, ReadIndex: r.commit})
		return
	}
	if r.role != RoleLeader {
		r.rejectNotLeader(q.Token)
		return
	}
	if r.cfg.Sabotage.ReadWithoutQuorum {
		r.emit(RunQuery{Token: q.Token, ReadIndex: r.commit})
		return
	}
	r.ldr.reads.waiting = append(r.ldr.reads.waiting, q.Token)
	if r.commit >= r.ldr.termStart {
		r.startWaitingReads()
	}
}

// startWaitingReads stamps the waiting queries with the current commit
// index and one new heartbeat round, which it sends to the voters.
func (r *Raft) startWaitingReads() {
	rs := &r.ldr.reads
	if len(rs.waiting) == 0 {
		return
	}
	rs.seq++
	for _, t := range rs.waiting {
		rs.pend = append(rs.pend, pendingRead{token: t, index: r.commit, seq: rs.seq})
	}
	rs.waiting = rs.waiting[:0]
	hb := &Heartbeat{Term: r.term, Seq: rs.seq, Commit: r.commit}
	for _, id := range r.ldr.peers {
		if r.members.current.IsVoter(id) {
			r.send(id, hb)
		}
	}
	r.checkReads()
}

// checkReads runs the queries whose heartbeat round a quorum acknowledged.
func (r *Raft) checkReads() {
	rs := &r.ldr.reads
	voters := r.members.current.Voters
	q := quorumSize(len(voters))
	n := 0
	for n < len(rs.pend) {
		seq := rs.pend[n].seq
		acks := 0
		for _, v := range voters {
			if v == r.cfg.ID {
				acks++
			} else if pr := r.ldr.progress[v]; pr != nil && pr.ackedSeq >= seq {
				acks++
			}
		}
		if acks < q {
			break
		}
		r.emit(RunQuery{Token: rs.pend[n].token, ReadIndex: rs.pend[n].index})
		n++
	}
	if n > 0 {
		rs.pend = append(rs.pend[:0], rs.pend[n:]...)
	}
}
