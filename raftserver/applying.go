package raftserver

import (
	"errors"
	"maps"
	"slices"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver/core"
)

// appliedSaveEvery is how many applied entries may pass before the last
// applied index is written to the meta store (unsynced); see docs.
const appliedSaveEvery = 1024

// apply applies the committed entries From..To, answers their tokens and,
// on the leader, carries out the effects the machine recorded.
func (s *server) apply(a core.Apply) error {
	toks := a.Tokens
	committedAt := s.env.now()
	// Each command's apply time runs from the end of the entry before it
	// (or the batch's start): one clock reading per command, not two; the
	// clock is a measurable share of a small command's cost.
	last := committedAt
	// Replies wait until the batch's effects were carried out: a caller
	// that has its reply knows the leader issued the effects.
	var answers []answer
	for lo := a.From; lo <= a.To; {
		ents, err := s.raft.Entries(lo, a.To+1, entryReadBytes)
		if err != nil {
			return err
		}
		for _, e := range ents {
			before := s.mh.members
			reply, err := s.mh.apply(e, true)
			if errors.Is(err, ErrStorage) {
				return err
			}
			if e.Type == core.EntryNormal {
				now := s.env.now()
				s.met.applied.Add(1)
				s.met.applyLatency.Observe(now.Sub(last))
				last = now
				if errors.Is(err, ErrMachine) {
					s.met.poison.Add(1)
				}
			}
			if e.Type == core.EntryConfig {
				s.shareMembers()
				s.configApplied(e.Index, before)
			}
			s.applied = e.Index
			s.counted(e)
			for len(toks) > 0 && toks[0].Index <= e.Index {
				if toks[0].Index == e.Index {
					s.met.commandAnswered(toks[0].Token, committedAt, true)
					answers = append(answers, answer{tok: toks[0].Token, reply: reply, err: err})
				}
				toks = toks[1:]
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	s.met.commit.Store(s.raft.Commit())
	s.met.appliedIndex.Store(s.applied)
	s.met.sessions.Store(int64(s.mh.sessions.len()))
	s.carryOutEffects()
	for _, a := range answers {
		s.reply(a.tok, a.reply, a.err)
	}
	s.runReadyQueries()
	s.pushLogs()
	if s.applied-s.appliedSaved >= appliedSaveEvery {
		s.saveApplied()
	}
	return nil
}

// configApplied records a committed membership change in the directory,
// so a restarted node knows the members. A server that the latest
// configuration removed stops once that configuration is committed; it
// keeps its data until deleted. Removed means it was in the configuration
// before (before; empty: the initial members) as this very replica: a
// member that joins applies the older configurations without it as it
// catches up, and a replica created again after losing its disk applies
// the removal of its former incarnation on its way to the configuration
// that adds it back.
func (s *server) configApplied(index uint64, before core.Membership) {
	st := s.raft.Status()
	if len(before.Voters) == 0 {
		before = s.initial
	}
	if index == st.MembersIndex && !st.Members.Contains(s.self) && s.memberOf(before) {
		s.logger.Info("removed from the cluster; stopping", "index", index)
		s.env.exit(actor.Normal)
	}
	if err := s.state.saveMembers(st.Members.Voters); err != nil {
		s.logger.Warn("could not record the new members", "err", err)
	}
	s.node.recordLeader(s.cfg.Cluster, st.Leader, st.Members.Voters, st.Term)
}

// shareMembers has the machine host keep the configuration the core
// reported (current) instead of its own decoding of the same config entry
// when the two are equal, as they are once the cluster is steady: one copy
// of the configuration, incarnation map included, instead of two for each
// of the node's servers. Neither side changes a configuration in place.
func (s *server) shareMembers() {
	if sameMembers(s.mh.members, s.current) {
		s.mh.members = s.current
	}
}

// sameMembers reports whether a and b name the same voters and non-voters,
// in the same order, bound to the same incarnations.
func sameMembers(a, b core.Membership) bool {
	return slices.Equal(a.Voters, b.Voters) && slices.Equal(a.NonVoters, b.NonVoters) && maps.Equal(a.Incarnations, b.Incarnations) &&
		(a.Voters == nil) == (b.Voters == nil) && (a.NonVoters == nil) == (b.NonVoters == nil) && (a.Incarnations == nil) == (b.Incarnations == nil)
}

// memberOf reports whether m names this replica: its server ID, bound to
// its incarnation or to none.
func (s *server) memberOf(m core.Membership) bool {
	inc := m.Incarnation(s.self)
	return m.Contains(s.self) && (inc == 0 || inc == s.incarnation)
}

func (s *server) saveApplied() {
	if s.applied == s.appliedSaved {
		return
	}
	if err := s.state.saveApplied(s.applied); err != nil {
		s.logger.Warn("could not save the last applied index", "err", err)
		return
	}
	s.appliedSaved = s.applied
}
