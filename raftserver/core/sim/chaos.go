package sim

import (
	"github.com/rago-raft/rago/raftserver/core"
)

type adminOp struct{ kind string }

func (w *World) chaosDelay() int64 {
	p := w.opts.Faults.ChaosPeriodMs
	return 1 + w.rng.Int64N(2*p)
}

// chaos picks one fault by weight and applies it.
func (w *World) chaos() {
	f := w.opts.Faults
	upgrade := f.Upgrade
	if w.targetVersion == 0 {
		upgrade = 0
	}
	weights := []float64{f.Crash, f.Partition, f.OneWay, f.Heal, f.Suspect, f.Membership, f.Transfer, upgrade}
	total := 0.0
	for _, x := range weights {
		total += x
	}
	if total == 0 {
		return
	}
	x := w.rng.Float64() * total
	pick := 0
	for pick < len(weights)-1 && x >= weights[pick] {
		x -= weights[pick]
		pick++
	}
	switch pick {
	case 0:
		if m := w.randomMember(func(m *member) bool { return m.up }); m != nil {
			w.traceEvent("crash", m.idx, nil)
			w.stats.Crashes++
			w.crash(m, false)
		}
	case 1:
		w.stats.Partitions++
		var side [maxMembers]bool
		for i := range w.members {
			side[i] = w.rng.IntN(2) == 0
		}
		for i := range w.members {
			for j := range w.members {
				if side[i] != side[j] {
					w.blocked[i][j] = true
				}
			}
		}
		w.traceEvent("partition", 0, nil)
	case 2:
		a, b := w.rng.IntN(len(w.members)), w.rng.IntN(len(w.members))
		if a != b {
			w.blocked[a][b] = true
			w.traceEvent("oneway", a, []byte{byte(b)})
		}
	case 3:
		w.blocked = [maxMembers][maxMembers]bool{}
		w.traceEvent("heal", 0, nil)
	case 4:
		a := w.randomMember(func(m *member) bool { return m.up })
		b := w.randomMember(func(m *member) bool { return a != nil && m != a })
		if a != nil && b != nil {
			// A false suspicion; the next detector sweep takes it back.
			a.fdTold[b.idx] = true
			w.fdNotify(a, b, core.NodeSuspected{Node: b.id.Node})
		}
	case 5:
		w.changeMembership()
	case 6:
		w.transfer()
	case 7:
		if m := w.randomMember(func(m *member) bool { return !m.stopped && m.version < w.targetVersion }); m != nil {
			w.upgrade(m, m.version+1)
		}
	}
}

// upgrade restarts m with code that supports version v, as an operator
// rolling out new code does: stop it, then start it again.
func (w *World) upgrade(m *member, v uint64) {
	w.traceEvent("upgrade", m.idx, []byte{byte(v)})
	w.stats.Upgrades++
	m.version = v
	if m.up {
		w.stopGracefully(m, false)
	}
}

// releasedVersion is the newest code any member runs: what a new member
// starts with.
func (w *World) releasedVersion() uint64 {
	var v uint64
	for _, m := range w.members {
		v = max(v, m.version)
	}
	return v
}

func (w *World) randomMember(ok func(*member) bool) *member {
	var cands []*member
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

func (w *World) leader() *member {
	return w.randomMember(func(m *member) bool { return m.up && m.raft.Role() == core.RoleLeader })
}

// changeMembership asks a leader to add a new member (voter or not),
// promote a non-voter, or remove a member.
func (w *World) changeMembership() {
	l := w.leader()
	if l == nil {
		return
	}
	cur := l.raft.Status().Members
	w.stats.Changes++
	switch x := w.rng.IntN(3); {
	case x == 0 && len(w.members) < maxMembers:
		// The joiner starts empty and waits for the leader.
		m := w.addMember(core.Membership{}, w.releasedVersion())
		w.traceEvent("add", m.idx, nil)
		w.stepMember(l, core.AddMember{Member: m.id, Voter: w.rng.IntN(3) > 0, Token: &adminOp{"add"}})
	case x == 1 && len(cur.NonVoters) > 0:
		id := cur.NonVoters[w.rng.IntN(len(cur.NonVoters))]
		w.traceEvent("promote", w.byID[id], nil)
		w.stepMember(l, core.AddMember{Member: id, Voter: true, Token: &adminOp{"promote"}})
	case x == 2:
		all := append(append([]core.ServerID(nil), cur.Voters...), cur.NonVoters...)
		id := all[w.rng.IntN(len(all))]
		if cur.IsVoter(id) && len(cur.Voters) <= 3 {
			return
		}
		w.traceEvent("remove", w.byID[id], nil)
		w.stepMember(l, core.RemoveMember{Member: id, Token: &adminOp{"remove"}})
	}
}

func (w *World) transfer() {
	l := w.leader()
	if l == nil {
		return
	}
	voters := l.raft.Status().Members.Voters
	to := voters[w.rng.IntN(len(voters))]
	w.stats.Transfers++
	w.traceEvent("transfer", w.byID[to], nil)
	w.stepMember(l, core.TransferLeadership{To: to, Token: &adminOp{"transfer"}})
}
