package raftserver

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/failuredetector"
	"github.com/rago-raft/rago/raftserver/core"
)

func (w *hsWorld) chaosDelay() int64 { return 1 + w.rng.Int64N(120) }

// chaos picks one fault by weight and applies it.
func (w *hsWorld) chaos() {
	upgrade := 1.5
	if w.targetVersion == 0 {
		upgrade = 0
	}
	weights := []float64{3, 2, 1, 4, 1, 1.5, 1, upgrade}
	total := 0.0
	for _, x := range weights {
		total += x
	}
	x := w.rng.Float64() * total
	pick := 0
	for pick < len(weights)-1 && x >= weights[pick] {
		x -= weights[pick]
		pick++
	}
	n := len(w.members)
	switch pick {
	case 0:
		if m := w.randomMember(func(m *hsMember) bool { return m.up }); m != nil {
			w.stats.Crashes++
			w.crash(m, false)
		}
	case 1:
		w.stats.Partitions++
		side := make([]bool, n)
		for i := range side {
			side[i] = w.rng.IntN(2) == 0
		}
		for i := range n {
			for j := range n {
				w.blocked[i][j] = side[i] != side[j]
			}
		}
		w.tracef("partition %v", side)
		w.deliverLateDowns()
	case 2:
		if i, j := w.rng.IntN(n), w.rng.IntN(n); i != j {
			w.blocked[i][j] = true
			w.tracef("oneway %d->%d", i, j)
		}
	case 3:
		w.blocked = [hsMaxMembers][hsMaxMembers]bool{}
		w.tracef("heal links")
		w.deliverLateDowns()
	case 4:
		// A false suspicion; the next detector sweep takes it back.
		a := w.randomMember(func(m *hsMember) bool { return m.up })
		b := w.randomMember(func(m *hsMember) bool { return a != nil && m != a && a.watching[m.id.Node] })
		if a != nil && b != nil && !a.told[b.id.Node] {
			a.told[b.id.Node] = true
			w.tracef("false suspicion %s of %s", a.id.Name, b.id.Node)
			a.host.handle(failuredetector.Suspected{Node: b.id.Node})
			w.afterInput(a)
		}
	case 5:
		w.changeMembership()
	case 6:
		w.transfer()
	case 7:
		if m := w.randomMember(func(m *hsMember) bool { return !m.stopped && m.version < w.targetVersion }); m != nil {
			w.upgrade(m, m.version+1)
		}
	}
}

func (w *hsWorld) randomMember(ok func(*hsMember) bool) *hsMember {
	var cands []*hsMember
	for _, m := range w.members {
		if ok(m) {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[w.rng.IntN(len(cands))]
}

func (w *hsWorld) leader() *hsMember {
	return w.randomMember(func(m *hsMember) bool { return m.up && m.host.raft.Role() == core.RoleLeader })
}

// admin sends an operator's membership request to m, as System's
// AddMember, RemoveMember and TransferLeadership do; nobody waits for
// the answer.
func (w *hsWorld) admin(m *hsMember, op uint8, member ServerID) {
	w.adminAs(m, op, member, 0)
}

// adminAs is admin for an added member bound to incarnation inc.
func (w *hsWorld) adminAs(m *hsMember, op uint8, member ServerID, inc uint64) {
	w.nextAdmin++
	m.host.memberRequest(&memberReq{Op: op, Member: member, Incarnation: inc}, actor.ReplyTo{Node: "admin", ID: w.nextAdmin})
	w.afterInput(m)
}

// changeMembership asks a leader to add a new member (voter or not),
// promote a non-voter, or remove a member (keeping three voters).
func (w *hsWorld) changeMembership() {
	l := w.leader()
	if l == nil {
		return
	}
	cur := l.host.raft.Status().Members
	w.stats.Changes++
	switch x := w.rng.IntN(3); {
	case x == 0 && len(w.members) < hsMaxMembers:
		// The joiner starts empty and waits for the leader.
		m := w.addMember(nil, w.releasedVersion())
		w.tracef("add %s", m.id.Name)
		op := opAddNonVoter
		if w.rng.IntN(3) > 0 {
			op = opAddMember
		}
		w.admin(l, op, m.id)
	case x == 1 && len(cur.NonVoters) > 0:
		id := cur.NonVoters[w.rng.IntN(len(cur.NonVoters))]
		w.tracef("promote %s", id.Name)
		w.admin(l, opAddMember, id)
	case x == 2:
		all := append(append([]ServerID(nil), cur.Voters...), cur.NonVoters...)
		id := all[w.rng.IntN(len(all))]
		if cur.IsVoter(id) && len(cur.Voters) <= 3 {
			return
		}
		w.tracef("remove %s", id.Name)
		w.admin(l, opRemoveMember, id)
	}
}

func (w *hsWorld) transfer() {
	l := w.leader()
	if l == nil {
		return
	}
	voters := l.host.raft.Status().Members.Voters
	to := voters[w.rng.IntN(len(voters))]
	w.stats.Transfers++
	w.tracef("transfer to %s", to.Name)
	w.admin(l, opTransfer, to)
}

// releasedVersion is the newest code any member runs: what a new member
// starts with.
func (w *hsWorld) releasedVersion() uint64 {
	var v uint64
	for _, m := range w.members {
		v = max(v, m.version)
	}
	return v
}

// upgrade restarts m with code that supports version v, as an operator
// rolling out new code does: stop it, then start it again.
func (w *hsWorld) upgrade(m *hsMember, v uint64) {
	w.tracef("upgrade %s to %d", m.id.Name, v)
	w.stats.Upgrades++
	m.version = v
	if m.up {
		w.stopGracefully(m, actor.Shutdown, false)
	}
}

// restart starts a crashed member again. During the faults, a member that
// holds a snapshot may find it corrupt (one member at a time: two members
// that lose acknowledged entries at once may have lost a committed one for
// good, which no protocol can get back).
//
// Or its disk is lost: it restarts empty, as a new incarnation under its
// old ID with the initial members, as an operator who replaced the disk
// and ran the same command would start it. Only while no other member is
// impaired, and only once every other member's log binds every member to
// its current incarnation: a member that never learnt m's binding cannot
// tell the new replica from the old one, and one that holds an outdated
// binding of another member refuses that member's candidacy, which with m
// gone may leave no quorum (see docs/raftserver.md, "Incarnations").
func (w *hsWorld) restart(m *hsMember) {
	impaired := w.healed || !w.noneImpaired()
	switch {
	case !impaired && w.rng.Float64() < w.opts.DiskLoss && w.boundEverywhere(m):
		w.loseDisk(m)
	case !impaired && w.rng.Float64() < w.opts.SnapshotLoss && w.corruptSnapshot(m):
		w.stats.SnapshotsLost++
		w.tracef("snapshot of %s corrupt", m.id.Name)
	}
	w.start(m)
}

// noneImpaired reports whether no member is recovering lost entries or
// waits to rejoin after losing its disk.
func (w *hsWorld) noneImpaired() bool {
	for _, m := range w.members {
		if m.state.lostIdx != 0 || m.wiped {
			return false
		}
	}
	return true
}

// boundEverywhere reports whether every other member is up, and its
// durable log binds m to m's incarnation (as m's last configuration did)
// and every other bound member to its current one; and whether the voters
// other than m make a quorum of every configuration a member holds. Without
// them (m one of two voters), losing m's disk loses the cluster: only a
// leader can rejoin m, and none can be elected without m's old replica.
func (w *hsWorld) boundEverywhere(m *hsMember) bool {
	if !m.bound {
		return false
	}
	for _, o := range w.members {
		if o == m || o.stopped {
			continue
		}
		if !o.up {
			return false
		}
		st := o.host.raft.Status()
		if st.MembersIndex > st.StableIndex || st.Members.Incarnation(m.id) == 0 {
			return false
		}
		if v := st.Members.Voters; st.Members.IsVoter(m.id) && len(v)-1 < len(v)/2+1 {
			return false
		}
		for id, inc := range st.Members.Incarnations {
			if incarnationOf(w.members[w.byName[id.Name]].uid) != inc {
				return false
			}
		}
	}
	return true
}

// loseDisk empties m's storage and gives it a new UID, as a replica
// created again on a new disk has.
func (w *hsWorld) loseDisk(m *hsMember) {
	m.gen++
	m.uid = fmt.Sprintf("s%d-uid-%d", m.idx+1, m.gen)
	m.log, m.state, m.fs = &simLog{}, &simState{}, vfs.NewCrashableMem()
	if err := makeDataDirs(m.fs, "/data", "snapshots"); err != nil {
		w.violate("member %s: %v", m.id, err)
	}
	m.wiped = true
	w.stats.DisksLost++
	w.tracef("disk of %s lost: new uid %s", m.id.Name, m.uid)
}

// rejoin replaces a member that lost its disk as System.Rejoin does, one
// step per call: remove it while the configuration binds its old
// incarnation, add it back as a non-voter bound to the new one, promote it
// once it holds the leader's committed log.
func (w *hsWorld) rejoin() {
	l := w.leader()
	if l == nil {
		return
	}
	lst := l.host.raft.Status()
	cur := lst.Members
	for _, m := range w.members {
		if !m.wiped {
			continue
		}
		inc := incarnationOf(m.uid)
		switch bound := cur.Incarnation(m.id); {
		case !cur.Contains(m.id):
			w.tracef("rejoin: add %s as a non-voter", m.id.Name)
			w.adminAs(l, opAddNonVoter, m.id, inc)
		case bound != inc && bound != 0:
			w.tracef("rejoin: remove %s", m.id.Name)
			w.admin(l, opRemoveMember, m.id)
		case cur.IsNonVoter(m.id):
			if m.up && m.host.raft.Status().StableIndex >= lst.Commit {
				w.tracef("rejoin: promote %s", m.id.Name)
				w.adminAs(l, opAddMember, m.id, inc)
			}
		case lst.MembersIndex <= lst.Commit:
			w.tracef("rejoin: %s is a voter again", m.id.Name)
			m.wiped = false
			w.stats.Rejoins++
		}
		return
	}
}
