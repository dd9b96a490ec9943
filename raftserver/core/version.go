package core

import (
	"fmt"
	"math"
)

// versionAt is an EntryMachineVersion entry of the log.
type versionAt struct {
	index   uint64
	version uint64
}

func (v versionAt) logIndex() uint64 { return v.index }

// versionLog tracks the machine version bumps in the log, as membershipLog
// tracks config entries. The effective version is that of the latest bump in
// the log, committed or not (it decides elections: see Raft.mayCampaign);
// a truncation falls back to the previous one.
//
// Versions strictly increase along any log: a leader appends a bump only
// above the version its own log has, and every log is a prefix of some
// leader's log plus that leader's entries.
//
// Invariants: bumps is sorted by index; it holds every bump above the
// member's applied index, the latest one at or below it, and nothing older,
// so both the fallback after a truncation (never below the commit index)
// and the first bump this member may not apply are always at hand.
type versionLog struct {
	base      uint64 // version below every entry of bumps: the snapshot's, or 0
	baseIndex uint64 // index base holds from: the snapshot's
	bumps     []versionAt
}

// current is the effective version: the latest bump's, or base.
func (vl *versionLog) current() uint64 {
	if n := len(vl.bumps); n > 0 {
		return vl.bumps[n-1].version
	}
	return vl.base
}

// index is the log index of the latest bump, baseIndex if none.
func (vl *versionLog) index() uint64 {
	if n := len(vl.bumps); n > 0 {
		return vl.bumps[n-1].index
	}
	return vl.baseIndex
}

func (vl *versionLog) appended(index, v uint64) {
	vl.bumps = append(vl.bumps, versionAt{index: index, version: v})
}

// truncated drops the bumps at or after index from.
func (vl *versionLog) truncated(from uint64) {
	n := len(vl.bumps)
	for n > 0 && vl.bumps[n-1].index >= from {
		n--
	}
	vl.bumps = vl.bumps[:n]
}

// applied forgets the bumps made obsolete by a later one at or below the
// applied index.
func (vl *versionLog) applied(applied uint64) {
	vl.bumps = dropSuperseded(vl.bumps, applied)
}

// reset makes the versions those of a snapshot: version v from index on.
func (vl *versionLog) reset(index, v uint64) {
	*vl = versionLog{base: v, baseIndex: index, bumps: vl.bumps[:0]}
}

// applyLimit is the highest index a member whose code supports version
// supported may apply, given that it applied up to applied: just below the
// first bump above applied that it does not support, applied itself if the
// version it holds already is above it, and no limit otherwise.
func (vl *versionLog) applyLimit(applied, supported uint64) uint64 {
	held := vl.base
	for _, b := range vl.bumps {
		if b.index <= applied {
			held = b.version
			continue
		}
		if b.version > supported {
			return b.index - 1
		}
	}
	if held > supported {
		return applied
	}
	return math.MaxUint64
}

// noteEntries records the config and machine version entries among ents,
// just appended.
func (r *Raft) noteEntries(ents []Entry) {
	for i := range ents {
		switch ents[i].Type {
		case EntryConfig:
			m, err := DecodeMembership(ents[i].Data)
			if err != nil {
				// Entries come from a leader that encoded them; a bad one means
				// corruption we cannot repair here.
				r.fail(fmt.Errorf("config entry %d: %w", ents[i].Index, err))
				return
			}
			r.members.appended(ents[i].Index, m)
			if r.role == RoleLeader {
				r.ldr.syncPeers(r, m, ents[i].Index)
			}
		case EntryMachineVersion:
			v, err := DecodeMachineVersion(ents[i].Data)
			if err != nil {
				r.fail(fmt.Errorf("machine version entry %d: %w", ents[i].Index, err))
				return
			}
			r.versions.appended(ents[i].Index, v)
		}
	}
}

// mayCampaign reports whether this member may stand for election: it must
// be a voter, and its code must support the machine version its log has
// reached. A member running old code never leads a cluster whose version
// it cannot apply (it could not answer any command); voters refuse it too
// (see voteVersionOK), so it cannot win even with a log that lacks the bump.
func (r *Raft) mayCampaign() bool {
	// At MaxTerm there is no next term to campaign in, and at MaxIndex no
	// room for a new leader's noop (see MaxTerm).
	return r.term < MaxTerm && r.log.lastIndex() < MaxIndex && r.mayStand() && r.versions.current() <= r.cfg.MachineVersion &&
		(r.recoverTo == 0 || r.cfg.Sabotage.VoteWhileRecovering)
}

// voteVersionOK reports whether a candidate whose code supports version v
// may get this member's (pre-)vote: not if this member's log has raised the
// cluster's version above v.
func (r *Raft) voteVersionOK(v uint64) bool {
	return v >= r.versions.current()
}

// maybeBumpVersion appends an EntryMachineVersion entry when a quorum of
// voters (this leader counted with its own version) runs code that supports
// a higher version than the effective one. The target is the highest
// version such a quorum supports, capped at the leader's own. Like a
// membership change, a bump waits until the leader has committed an entry
// of its term and until the previous bump committed, so at most one bump in
// any log is uncommitted (the restart scan relies on it).
//
// A leader whose own code is older than what such a quorum supports hands
// leadership to an up-to-date voter that supports it (a leader transfer),
// so a rolling upgrade completes whichever member it restarts last.
func (r *Raft) maybeBumpVersion() {
	if r.role != RoleLeader || r.ldr.transfer != nil || r.commit < r.ldr.termStart || r.versions.index() > r.commit {
		return
	}
	vs := r.ldr.matchBuf[:0]
	for _, v := range r.members.current.Voters {
		switch pr := r.ldr.progress[v]; {
		case v == r.cfg.ID:
			vs = append(vs, r.cfg.MachineVersion)
		case pr != nil && pr.versionKnown:
			vs = append(vs, pr.version)
		default:
			vs = append(vs, 0)
		}
	}
	r.ldr.matchBuf = vs
	// The same maths as the commit index: the highest value a majority has
	// at or above it.
	supported := committedIndex(vs)
	if supported > r.cfg.MachineVersion {
		r.handOffForVersion(supported)
		return
	}
	cur := r.versions.current()
	target := min(supported, r.cfg.MachineVersion)
	if target <= cur {
		return
	}
	r.logger.Info("raising the machine version", "from", cur, "to", target, "term", r.term)
	e := Entry{Index: r.log.lastIndex() + 1, Term: r.term, Type: EntryMachineVersion, Data: EncodeMachineVersion(target)}
	r.appendOwn([]Entry{e}, nil)
}

// handOffForVersion starts a leader transfer to the voter that supports
// version v and holds the most of our log.
func (r *Raft) handOffForVersion(v uint64) {
	var to ServerID
	var best uint64
	for _, id := range r.ldr.peers {
		pr := r.ldr.progress[id]
		if r.members.current.IsVoter(id) && pr.versionKnown && pr.version >= v && (to.IsZero() || pr.match > best) {
			to, best = id, pr.match
		}
	}
	if to.IsZero() {
		return
	}
	r.logger.Info("handing leadership to newer code", "to", to.String(), "version", v, "own", r.cfg.MachineVersion)
	r.handleTransfer(TransferLeadership{To: to})
}
