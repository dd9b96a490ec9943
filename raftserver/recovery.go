package raftserver

import (
	"errors"
	"fmt"

	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

// start builds the core from durable state: the newest snapshot that
// verifies (the machine is restored from it), the WAL and segments for the
// log after it, the meta store for term and vote.
func (s *server) start() error {
	s.met.processStarted()
	l, err := s.openLog(s.env.self())
	if err != nil {
		return fmt.Errorf("%w: open the log of %s: %w", ErrStorage, s.uid, err)
	}
	s.log = l
	term, voted, applied, err := s.state.load()
	if err != nil {
		return fmt.Errorf("%w: meta of %s: %w", ErrStorage, s.uid, err)
	}
	s.appliedSaved = applied
	if err := s.mh.fresh(); err != nil {
		return err
	}
	s.raftTerm = term
	desc, err := s.loadSnapshot()
	if err != nil {
		return err
	}
	if err := s.reconcileLog(desc); err != nil {
		return err
	}
	lost, lostTerm, err := s.state.lost()
	if err != nil {
		return fmt.Errorf("%w: meta of %s: %w", ErrStorage, s.uid, err)
	}
	s.lost = lost
	s.applied = desc.Index
	s.mh.effectsFloor = max(applied, desc.Index)
	if s.snap.receiver, err = snapshot.NewReceiver(s.snaps.store, s.uid, snapshot.ReceiverConfig{Logger: s.logger}); err != nil {
		return fmt.Errorf("%w: snapshot receiver of %s: %w", ErrStorage, s.uid, err)
	}
	rc := s.conf.raft
	rc.ID = s.self
	rc.InitialMembers = core.Membership{Voters: s.cfg.InitialMembers}
	rc.MachineVersion = s.mh.supportedVersion()
	rc.Snapshot = desc
	rc.RecoverTo, rc.RecoverTerm = lost, lostTerm
	rc.Incarnation = s.incarnation
	rc.Seed = s.conf.seed()
	rc.Logger = s.logger
	r, err := core.New(rc, core.HardState{Term: term, VotedFor: voted}, l)
	if err != nil {
		return err
	}
	s.raft = r
	s.step(core.Started{})
	return nil
}

// loadSnapshot restores the machine from the newest snapshot that
// verifies, if any. Corrupt ones are set aside by the store and reported;
// they are never used.
func (s *server) loadSnapshot() (core.Snapshot, error) {
	info, corrupt, err := s.snaps.store.Latest(s.uid)
	for _, c := range corrupt {
		s.logger.Error("snapshot failed verification; not used", "file", c.File, "offset", c.Offset, "reason", c.Reason)
	}
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
		return core.Snapshot{}, nil
	case err != nil:
		return core.Snapshot{}, fmt.Errorf("%w: snapshots of %s: %w", ErrStorage, s.uid, err)
	}
	m, desc, sessions, err := s.restoreMachine(info)
	if err != nil {
		return core.Snapshot{}, err
	}
	s.mh.reset(m, desc, sessions)
	s.snap.info, s.snap.desc = info, desc
	s.snap.at = s.env.now()
	return desc, nil
}

// reconcileLog makes the log continue the snapshot desc. A log that ends
// below it or disagrees with it at its index (a crash cut an install short)
// is reset to it. A log that starts after it (compacted through a newer
// snapshot that no longer verifies) is lost: it is reset too. Whenever the
// server lost entries it held (the log's, or those of a snapshot set aside
// as corrupt that the log does not reach), the last of them is recorded
// durably first, so that the member recovers safely (see
// core.Config.RecoverTo).
func (s *server) reconcileLog(desc core.Snapshot) error {
	l := s.log
	first, last := l.FirstIndex(), l.LastIndex()
	ok, err := l.continues(desc.Index, desc.Term)
	if err != nil {
		return err
	}
	var lost core.Entry
	if !ok && first > desc.Index+1 && last >= first {
		t, err := l.Term(last)
		if err != nil {
			return fmt.Errorf("%w: last entry of %s: %w", ErrStorage, s.uid, err)
		}
		lost = core.Entry{Index: last, Term: t}
	}
	aside, err := s.snaps.store.SetAside(s.uid)
	if err != nil {
		return fmt.Errorf("%w: snapshots of %s: %w", ErrStorage, s.uid, err)
	}
	for _, c := range aside {
		if c.Index > desc.Index && c.Index > last && c.Index > lost.Index {
			lost = core.Entry{Index: c.Index, Term: c.Term}
		}
	}
	// The segments remember how far the log was compacted. Compacted past
	// the snapshot, with nothing else to tell what went (a snapshot file
	// removed by hand), the entry's term is unknown: the current term is
	// a safe stand-in, since the member then votes only for logs at least
	// that recent.
	floor, err := l.floor()
	if err != nil {
		return fmt.Errorf("%w: log floor of %s: %w", ErrStorage, s.uid, err)
	}
	if floor > desc.Index && floor > last && floor > lost.Index {
		lost = core.Entry{Index: floor, Term: s.raftTerm}
	}
	if lost.Index > 0 {
		s.logger.Error("the log no longer reaches back to a usable snapshot: recovering lost entries from the leader",
			"snapshot", desc.Index, "log_first", first, "log_last", last, "lost_to", lost.Index)
		if err := s.state.setLost(lost.Index, lost.Term); err != nil {
			return fmt.Errorf("%w: record lost log of %s: %w", ErrStorage, s.uid, err)
		}
	}
	// After a loss the next write restarts the log, so that the segments'
	// floor comes back down to the snapshot with it.
	if !ok || lost.Index > 0 {
		if err := l.reset(desc.Index, desc.Term); err != nil {
			return err
		}
	}
	l.setSnapshot(desc.Index, desc.Term)
	return nil
}
