package core

import "fmt"

// configAt is a config entry of the log.
type configAt struct {
	index   uint64
	members Membership
}

// membershipLog tracks the configuration in effect: the latest config entry
// in the log, committed or not (single-server changes take effect when
// appended), falling back to the initial members.
//
// Invariants: configs is sorted by index; configs holds at most the latest
// committed config entry plus those after it, so a truncation can always
// fall back to the right one; current is the last element's members (or
// initial when configs is empty).
type membershipLog struct {
	initial Membership
	configs []configAt
	current Membership
	// voter caches current.IsVoter(self) for the config at voterFor-1.
	voter    bool
	voterFor uint64
}

// index is the log index of the config in effect, 0 for the initial one.
func (ml *membershipLog) index() uint64 {
	if n := len(ml.configs); n > 0 {
		return ml.configs[n-1].index
	}
	return 0
}

func (ml *membershipLog) appended(index uint64, m Membership) {
	ml.configs = append(ml.configs, configAt{index: index, members: m})
	ml.current = m
	ml.voterFor = 0
}

// truncated drops the config entries at or after index from.
func (ml *membershipLog) truncated(from uint64) {
	n := len(ml.configs)
	for n > 0 && ml.configs[n-1].index >= from {
		n--
	}
	ml.configs = ml.configs[:n]
	ml.current = ml.initial
	if n > 0 {
		ml.current = ml.configs[n-1].members
	}
	ml.voterFor = 0
}

// committed forgets config entries made obsolete by a later committed one.
func (ml *membershipLog) committed(commit uint64) {
	keep := 0
	for i := range ml.configs {
		if ml.configs[i].index <= commit {
			keep = i
		}
	}
	if keep > 0 {
		ml.configs = append(ml.configs[:0], ml.configs[keep:]...)
	}
}

// loadMembership finds the last two config entries of a restarted log by
// scanning it backwards. Two, because at most one config entry in any log
// is uncommitted (a leader proposes a change only after the previous one
// committed), so the second-to-last is the fallback if the last one is
// truncated. The scan reads the whole log when it holds fewer than two
// config entries; a snapshot (later) bounds it.
func loadMembership(reader LogReader, initial Membership) (membershipLog, error) {
	ml := membershipLog{initial: initial, current: initial}
	const chunk = 256
	first, last := reader.FirstIndex(), reader.LastIndex()
	var found []configAt
	for hi := last + 1; hi > first && len(found) < 2; {
		lo := first
		if hi-first > chunk {
			lo = hi - chunk
		}
		ents, err := readAll(reader, lo, hi)
		if err != nil {
			return ml, err
		}
		for i := len(ents) - 1; i >= 0 && len(found) < 2; i-- {
			if ents[i].Type != EntryConfig {
				continue
			}
			m, err := DecodeMembership(ents[i].Data)
			if err != nil {
				return ml, fmt.Errorf("%w: config entry %d: %w", ErrInvalidState, ents[i].Index, err)
			}
			found = append(found, configAt{index: ents[i].Index, members: m})
		}
		hi = lo
	}
	for i := len(found) - 1; i >= 0; i-- {
		ml.appended(found[i].index, found[i].members)
	}
	return ml, nil
}

// readAll reads [lo, hi) through the reader, however many calls it takes.
func readAll(reader LogReader, lo, hi uint64) ([]Entry, error) {
	var out []Entry
	for lo < hi {
		ents, err := reader.Entries(lo, hi, DefaultMaxAppendBytes)
		if err != nil {
			return nil, fmt.Errorf("%w: entries [%d, %d): %w", ErrStorage, lo, hi, err)
		}
		if len(ents) == 0 {
			return nil, fmt.Errorf("%w: reader returned no entries for [%d, %d)", ErrStorage, lo, hi)
		}
		out = append(out, ents...)
		lo += uint64(len(ents))
	}
	return out, nil
}

// noteConfigs records the config entries among ents, just appended.
func (r *Raft) noteConfigs(ents []Entry) {
	for i := range ents {
		if ents[i].Type != EntryConfig {
			continue
		}
		m, err := DecodeMembership(ents[i].Data)
		if err != nil {
			// Entries come from a leader that encoded them; a bad one means
			// corruption we cannot repair here.
			r.fail(fmt.Errorf("config entry %d: %w", ents[i].Index, err))
			return
		}
		r.members.appended(ents[i].Index, m)
		if r.role == RoleLeader {
			r.ldr.syncPeers(r, m)
		}
	}
}

// followMembership acts on committed membership: a leader removed by a
// committed config steps down; a follower forgets a leader that a
// committed config removed (that leader will not come back to tell it).
func (r *Raft) followMembership() {
	if r.members.index() > r.commit {
		return
	}
	r.members.committed(r.commit)
	cur := r.members.current
	switch {
	case r.role == RoleLeader && !cur.Contains(r.id):
		r.logger.Info("stepping down: removed from the cluster", "term", r.term)
		r.becomeFollower(r.term, ServerID{})
	case r.role == RoleFollower && !r.lead.IsZero() && !cur.Contains(r.lead):
		r.lead = ServerID{}
	}
}
