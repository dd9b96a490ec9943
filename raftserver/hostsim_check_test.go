package raftserver

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/internal/kvmodel"
	"github.com/rago-raft/rago/raftserver/core"
)

// The host simulation runs the servers' real hosts (server: the Raft core,
// machine host, effect runner, snapshot bookkeeping and transfers, replies
// and queries) in one goroutine, over a simulated network, clock and disks:
// a log that loses unsynced writes in a crash, a snapshot store on an
// in-memory file system that is crash-cloned, a snapshot writer. Faults:
// crashes, partitions, one-way links, lost, duplicated and late messages,
// false failure-detector suspicions, membership changes, leadership
// transfers, rolling upgrades of the machine's code, and snapshots found
// corrupt at restart. Clients write and read through the same requests
// and redirect rule as System's API, some with sessions, and some commands
// make the machine panic. A seed decides everything: a failing seed
// replays exactly.
//
// Checked: at most one leader per term; a vote is durable before it is
// sent and one per member and term; a member's commit index never goes
// back; every member applies the same command at each index, under a
// machine version its code supports; the history of acknowledged
// operations is linearizable (porcupine); after healing, every member of
// the configuration converges on the leader's log and state.

// hsRun simulates one seed: faults, then healing and convergence, then the
// final checks.
func hsRun(opts hsOptions) hsResult {
	w := newHSWorld(opts)
	for w.violation == nil && w.events < opts.FaultEvents && w.step() {
	}
	if w.violation == nil {
		w.heal()
		healedAt := w.events
		for w.violation == nil {
			if (w.events-healedAt)%16 == 0 && w.converged() {
				break
			}
			if w.events-healedAt >= opts.LivenessEvents {
				w.violate("no convergence within %d events after healing: %s", opts.LivenessEvents, w.describe())
				break
			}
			if !w.step() {
				w.violate("event queue ran dry: %s", w.describe())
			}
		}
	}
	if w.violation == nil {
		w.checkHistory()
	}
	w.stats.Events = w.events
	return hsResult{Seed: opts.Seed, Violation: w.violation, TraceHash: w.trace.Sum64(), Stats: w.stats}
}

// heal ends the faults: links come back, every member gets the target
// code, crashed members restart.
func (w *hsWorld) heal() {
	w.healed = true
	w.tracef("heal")
	w.blocked = [hsMaxMembers][hsMaxMembers]bool{}
	w.deliverLateDowns()
	for _, m := range w.members {
		if !m.stopped && m.version < w.targetVersion {
			w.upgrade(m, w.targetVersion)
		}
	}
	for _, m := range w.members {
		if !m.up && !m.stopped {
			w.schedule(1+w.rng.Int64N(50), hsRestart{m: m.idx})
		}
	}
}

// converged reports whether a leader has committed and applied its whole
// log (at the target machine version), every member of its configuration
// holds and applied the same, with the same machine state, and no client
// waits.
func (w *hsWorld) converged() bool {
	for _, c := range w.clients {
		if c.cur != nil {
			return false
		}
	}
	for _, l := range w.members {
		if !l.up || l.host.raft.Role() != core.RoleLeader {
			continue
		}
		st := l.host.raft.Status()
		if st.Commit != st.LastIndex || st.LastTerm != st.Term || l.host.applied != st.Commit || st.MachineVersion != w.targetVersion {
			return false
		}
		want := machineDigest(l.host.mh.machine)
		for _, id := range append(st.Members.Voters, st.Members.NonVoters...) {
			m := w.members[w.byName[id.Name]]
			if !m.up {
				return false
			}
			ms := m.host.raft.Status()
			if ms.LastIndex != st.LastIndex || ms.Commit != st.Commit || ms.Term != st.Term || m.host.applied != st.Commit {
				return false
			}
			if machineDigest(m.host.mh.machine) != want {
				return false
			}
		}
		return true
	}
	return false
}

func machineDigest(m Machine) string { return kvDigest(userMachine(m).(*simKV).data) }

func kvDigest(data map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(&b, "%s=%s;", k, data[k])
	}
	return b.String()
}

func (w *hsWorld) describe() string {
	var b strings.Builder
	for _, m := range w.members {
		if !m.up {
			fmt.Fprintf(&b, " [%s down stopped=%v]", m.id.Name, m.stopped)
			continue
		}
		st := m.host.raft.Status()
		fmt.Fprintf(&b, " [%s %s term=%d lead=%s commit=%d applied=%d last=%d stable=%d snap=%d version=%d/%d recover=%d members=%v]",
			m.id.Name, st.Role, st.Term, st.Leader.Name, st.Commit, m.host.applied, st.LastIndex, st.StableIndex,
			st.SnapshotIndex, st.MachineVersion, m.version, st.RecoverTo, st.Members.Voters)
	}
	return b.String()
}

// checkVote: a vote granted is durable first, and a member grants one
// vote per term, across restarts.
func (w *hsWorld) checkVote(from *hsMember, to ServerID, msg actor.Message) {
	pm, ok := msg.(*peerMsg)
	if !ok {
		return
	}
	v, ok := pm.Msg.(*core.VoteReply)
	if !ok || !v.Granted {
		return
	}
	if st := from.state; st.term != v.Term || st.vote != to {
		w.violate("member %s grants its term-%d vote to %s, but its durable state says term %d vote %s", from.id, v.Term, to, st.term, st.vote)
		return
	}
	// One vote per replica and term: a replica that lost its disk is a new
	// one, which votes again (the others drop its votes).
	k := [2]uint64{uint64(from.idx)<<16 | uint64(from.gen), v.Term}
	if prev, ok := w.votes[k]; ok && prev != to {
		w.violate("member %s votes for %s in term %d after voting for %s", from.id, to, v.Term, prev)
		return
	}
	w.votes[k] = to
}

// checkHistory checks the acknowledged operations for linearizability;
// puts of unknown outcome may have happened at any time after their call.
func (w *hsWorld) checkHistory() {
	hist := append([]porcupine.Operation(nil), w.history...)
	for _, o := range w.unknown {
		hist = append(hist, porcupine.Operation{ClientId: o.client, Input: kvmodel.Input{Put: true, Key: o.key, Value: o.value},
			Call: o.call, Output: kvmodel.Output{}, Return: 1 << 62})
	}
	res, _ := porcupine.CheckOperationsVerbose(kvmodel.Model, hist, 10*time.Second)
	if res == porcupine.Illegal {
		w.violate("history of %d operations is not linearizable", len(hist))
	}
}
