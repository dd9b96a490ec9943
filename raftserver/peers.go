package raftserver

import (
	"github.com/rago-raft/rago/raftserver/core"
)

// syncWatches has the failure detector watch the nodes of the cluster's
// other members, and no others: suspicions of the leader's node start an
// election, and a member coming back lets a leaderless member retry at
// once. The detector heartbeats once per pair of nodes however many
// servers watch.
func (s *server) syncWatches() {
	members := s.current
	want := map[string]bool{}
	for _, list := range [][]ServerID{members.Voters, members.NonVoters} {
		for _, id := range list {
			if id.Node != s.self.Node {
				want[id.Node] = true
			}
		}
	}
	var drop []string
	for node := range s.watching.All() {
		if !want[node] {
			drop = append(drop, node)
		}
	}
	for _, node := range drop {
		s.node.unwatchNode(s.env.self(), node)
		s.watching.Delete(node)
	}
	for node := range want {
		if !s.watching.Has(node) {
			if err := s.node.watchNode(s.env.self(), node); err == nil {
				s.watching.Set(node, struct{}{})
			}
		}
	}
}

// syncPeerMonitors has a leader monitor the processes of its cluster's
// other members, and a non-leader none. A Down is evidence the core cannot
// get from silence (core.PeerDown): a leader whose voters are gone in a
// quorum steps down at once instead of holding its callers, while slow
// voters, whose processes live, never depose it. A peer whose Down fired
// is watched again once it is heard from (it restarted).
func (s *server) syncPeerMonitors() {
	// In members' order, so that a host's calls to its environment do not
	// depend on map order (a simulation replays them).
	var want map[ServerID]bool
	var order []ServerID
	if s.role == core.RoleLeader {
		members := s.current
		want = make(map[ServerID]bool, len(members.Voters)+len(members.NonVoters))
		for _, list := range [][]ServerID{members.Voters, members.NonVoters} {
			for _, id := range list {
				if id != s.self && !s.peersGone[id] {
					want[id] = true
					order = append(order, id)
				}
			}
		}
	} else {
		clear(s.peersGone)
	}
	var drop []ServerID
	for id := range s.peerMonOf.All() {
		if !want[id] {
			drop = append(drop, id)
		}
	}
	for _, id := range drop {
		ref, _ := s.peerMonOf.Delete(id)
		s.env.demonitor(ref)
		s.peerMons.Delete(ref)
	}
	for _, id := range order {
		if s.peerMonOf.Has(id) {
			continue
		}
		ref := s.env.monitor(Ref(id))
		s.peerMonOf.Set(id, ref)
		s.peerMons.Set(ref, id)
	}
}

// roleChanged publishes the leader on the leaderboard and monitors the
// leader's process, whose Down triggers an election here.
func (s *server) roleChanged(a core.RoleChanged) {
	s.node.recordLeader(s.cfg.Cluster, a.Leader, s.current.Voters, a.Term)
	s.met.roleChanged(a.Role, a.Term, a.Leader)
	s.met.countElections(s.raft.Counters())
	s.publishLag()
	if a.Role != s.role {
		s.role = a.Role
		if a.Role != core.RoleLeader {
			s.stopTransfers()
		}
		s.leadershipChanged(a.Role)
		s.syncWatches()
		s.syncPeerMonitors()
	}
	want := a.Leader
	if want == s.self {
		want = ServerID{}
	}
	if want == s.monitoring {
		return
	}
	if !s.monitoring.IsZero() {
		s.env.demonitor(s.leaderMon)
	}
	s.monitoring = want
	if !want.IsZero() {
		s.leaderMon = s.env.monitor(Ref(want))
	}
	if a.Role == core.RoleLeader {
		s.logger.Info("became leader", "term", a.Term)
	}
}

func (s *server) status() *ServerStatus {
	st := s.raft.Status()
	return &ServerStatus{
		ID:          s.self,
		UID:         s.uid,
		Cluster:     s.cfg.Cluster,
		MachineKind: s.cfg.Machine.Kind,
		Role:        st.Role.String(),
		Term:        st.Term,
		Leader:      st.Leader,
		Commit:      st.Commit,
		LastApplied: s.applied,
		FirstIndex:  st.FirstIndex,
		LastIndex:   st.LastIndex,
		LastTerm:    st.LastTerm,
		Voters:      st.Members.Voters,
		NonVoters:   st.Members.NonVoters,
		Machine:     s.machineOverview(),

		SnapshotIndex:  st.SnapshotIndex,
		MachineVersion: s.mh.version,
		RecoverTo:      st.RecoverTo,
		StableIndex:    st.StableIndex,
		Progress:       st.Progress,
		Stale:          st.Stale,
		Strangers:      strangerIDs(st.Strangers),
		Incarnation:    st.Incarnation,
		Incarnations:   st.Members.Incarnations,

		RefusedPeerMessages: s.refusedPeer,
	}
}

func strangerIDs(ss []core.Stranger) []ServerID {
	if len(ss) == 0 {
		return nil
	}
	ids := make([]ServerID, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

func (s *server) machineOverview() (out map[string]string) {
	o, ok := capability[Overviewer](s.mh.machine)
	if !ok {
		return nil
	}
	s.effects.safely("overview", func() { out = o.Overview() })
	return out
}
