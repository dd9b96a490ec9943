package core

import "fmt"

// configAt is a config entry of the log.
type configAt struct {
	index   uint64
	members Membership
}

func (c configAt) logIndex() uint64 { return c.index }

// dropSuperseded drops the elements of xs (sorted by index) below the last
// one at or below upTo: from there on that one is in effect and can no
// longer be truncated away, so the older ones can never be needed again.
// It reuses xs's array.
func dropSuperseded[T interface{ logIndex() uint64 }](xs []T, upTo uint64) []T {
	keep := 0
	for i := range xs {
		if xs[i].logIndex() <= upTo {
			keep = i
		}
	}
	if keep > 0 {
		xs = append(xs[:0], xs[keep:]...)
	}
	return xs
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
	// initial is the config in effect below every entry of configs: the
	// snapshot's, or Config.InitialMembers.
	initial   Membership
	baseIndex uint64 // index initial holds from: the snapshot's, or 0
	configs   []configAt
	current   Membership
	// voter caches current.IsVoter(self) for the config at voterFor-1.
	voter    bool
	voterFor uint64
	// gen counts the changes of current, so that the core reports each
	// one (MembersChanged) without comparing configurations.
	gen uint64
}

// index is the log index of the config in effect: its entry's, or the
// snapshot's when the config comes from the snapshot (0 without one).
func (ml *membershipLog) index() uint64 {
	if n := len(ml.configs); n > 0 {
		return ml.configs[n-1].index
	}
	return ml.baseIndex
}

// reset makes the config that of a snapshot at index: m from there on.
func (ml *membershipLog) reset(index uint64, m Membership) {
	*ml = membershipLog{initial: m, baseIndex: index, current: m, configs: ml.configs[:0], gen: ml.gen + 1}
}

func (ml *membershipLog) appended(index uint64, m Membership) {
	ml.configs = append(ml.configs, configAt{index: index, members: m})
	ml.current = m
	ml.voterFor = 0
	ml.gen++
}

// truncated drops the config entries at or after index from.
func (ml *membershipLog) truncated(from uint64) {
	n := len(ml.configs)
	for n > 0 && ml.configs[n-1].index >= from {
		n--
	}
	if n == len(ml.configs) {
		return
	}
	ml.gen++
	ml.configs = ml.configs[:n]
	ml.current = ml.initial
	if n > 0 {
		ml.current = ml.configs[n-1].members
	}
	ml.voterFor = 0
}

// committed forgets config entries made obsolete by a later committed one.
func (ml *membershipLog) committed(commit uint64) {
	ml.configs = dropSuperseded(ml.configs, commit)
}

// loadLogMeta restores, for a restarted member, the configs and the machine
// version bumps of its log, by scanning the log backwards from its end down
// to the snapshot (entries at or below it are covered by the snapshot's
// members and version). It stops early once it has found:
//   - the last two config entries. Two, because at most one config entry in
//     any log is uncommitted (a leader proposes a change only after the
//     previous one committed), so the second-to-last is the fallback if the
//     last one is truncated;
//   - the bumps down to the first one this member's code supports (and at
//     least the last two, for the same reason as configs). Versions increase
//     along the log, so the bumps it does not support form the tail, and
//     the first of them is where it must stop applying.
//
// Without a snapshot, a log with fewer such entries is read to its start.
func loadLogMeta(reader LogReader, snap Snapshot, initial Membership, supported uint64) (membershipLog, versionLog, error) {
	base := initial
	if len(snap.Members.Voters) > 0 {
		base = snap.Members.Clone()
	}
	ml := membershipLog{initial: base, current: base, baseIndex: snap.Index}
	vl := versionLog{base: snap.MachineVersion, baseIndex: snap.Index}
	const chunk = 256
	first, last := max(reader.FirstIndex(), snap.Index+1), reader.LastIndex()
	var configs []configAt
	var bumps []versionAt
	done := func() bool {
		n := len(bumps)
		return len(configs) >= 2 && n >= 2 && bumps[n-1].version <= supported
	}
	for hi := last + 1; hi > first && !done(); {
		lo := first
		if hi-first > chunk {
			lo = hi - chunk
		}
		ents, err := readAll(reader, lo, hi)
		if err != nil {
			return ml, vl, err
		}
		for i := len(ents) - 1; i >= 0 && !done(); i-- {
			e := &ents[i]
			switch e.Type {
			case EntryConfig:
				if len(configs) >= 2 {
					continue
				}
				m, err := DecodeMembership(e.Data)
				if err != nil {
					return ml, vl, fmt.Errorf("%w: config entry %d: %w", ErrInvalidState, e.Index, err)
				}
				configs = append(configs, configAt{index: e.Index, members: m})
			case EntryMachineVersion:
				v, err := DecodeMachineVersion(e.Data)
				if err != nil {
					return ml, vl, fmt.Errorf("%w: machine version entry %d: %w", ErrInvalidState, e.Index, err)
				}
				bumps = append(bumps, versionAt{index: e.Index, version: v})
			}
		}
		hi = lo
	}
	for i := len(configs) - 1; i >= 0; i-- {
		ml.appended(configs[i].index, configs[i].members)
	}
	for i := len(bumps) - 1; i >= 0; i-- {
		vl.appended(bumps[i].index, bumps[i].version)
	}
	return ml, vl, nil
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

// previous returns the config in effect before the latest config entry,
// if that entry is above commit (uncommitted).
func (ml *membershipLog) previous(commit uint64) (Membership, bool) {
	n := len(ml.configs)
	switch {
	case n == 0 || ml.configs[n-1].index <= commit:
		return Membership{}, false
	case n == 1:
		return ml.initial, true
	}
	return ml.configs[n-2].members, true
}

// followMembership acts on committed membership: a leader removed by a
// committed config steps down; a follower forgets a leader that a
// committed config removed (that leader will not come back to tell it).
// A member that knows no configuration at all (one that joined and then
// lost its snapshot, and with it the members) cannot tell a removed leader
// from a live one: it follows whoever leads it, and so its announcements
// (Lost, while it recovers) reach someone. Nor can a member whose
// configuration is still its initial members (none from its log or a
// snapshot): a replica created again from them, after its disk was lost,
// is led by whoever leads now, possibly a member added since, and it would
// otherwise drop that leader after every event and never acknowledge what
// it writes.
func (r *Raft) followMembership() {
	if r.members.index() > r.commit {
		return
	}
	r.members.committed(r.commit)
	cur := r.members.current
	switch {
	case r.role == RoleLeader && !cur.Contains(r.cfg.ID):
		r.logger.Info("stepping down: removed from the cluster", "term", r.term)
		r.becomeFollower(r.term, ServerID{})
	case r.role == RoleFollower && !r.lead.IsZero() && !cur.Contains(r.lead) && !cur.empty() && r.members.index() > 0:
		r.lead = ServerID{}
	}
}

// KnownMembers calls fn for each member of every configuration this member
// holds: the one in effect, the others still in its log (the latest
// committed one and any after it) and the one below them (its snapshot's,
// or the initial members), in that order; a server in several is passed
// once per configuration. The server uses them to tell its cluster's
// servers from strangers: a member's log names everyone it may have to
// hear from, including a leader that is removing itself and whose last
// messages bring the commit of its removal.
func (r *Raft) KnownMembers(fn func(ServerID)) {
	each := func(m Membership) {
		for _, id := range m.Voters {
			fn(id)
		}
		for _, id := range m.NonVoters {
			fn(id)
		}
	}
	each(r.members.current)
	for _, c := range r.members.configs {
		each(c.members)
	}
	each(r.members.initial)
}
