package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/kv"
	"github.com/rago-raft/rago/raftserver"
)

// recentKeysShown is how many of a member's latest keys its status lists.
const recentKeysShown = 5

// epochPoll is how often the watcher looks whether this node's member saw
// a new leader or term since the last probe, to probe again at once.
const epochPoll = 50 * time.Millisecond

// watcher probes every member of the cluster once per ProbeInterval,
// through rago (Overview and a local query of each member's machine, both
// of which travel to the member's node), and keeps the last result for
// GET /cluster and for the early no-quorum answer. A member that does not
// answer within the interval counts as unreachable: a killed node is seen
// at once (its connection breaks), a frozen one after one interval. It
// also probes as soon as this node's member sees a new leader or a new
// term: an election changes what the view should say (a node that starts
// first probes its peers before they run, and is elected a moment later).
type watcher struct {
	n *Node

	mu   sync.Mutex
	view api.Cluster
	at   time.Time // when view was built; zero before the first probe
	// started is when the probe behind view started, and epoch what this
	// node's member knew of the leadership then.
	started time.Time
	epoch   epoch
	// reprobing is closed when the probe made for requests that found the
	// view too old to refuse on ends; nil when none runs.
	reprobing chan struct{}
	// members is the last membership known, used when this node's own
	// member cannot say (it is stopping, or was removed).
	members  []member
	lastSeen map[string]time.Time
	away     map[string]bool
	rejoined map[string]time.Time
	// lastStatus is each member's last answer, shown (as of LastSeen)
	// while it does not answer.
	lastStatus map[string]api.Status
}

type member struct {
	id    raftserver.ServerID
	voter bool
}

func newWatcher(n *Node) *watcher {
	w := &watcher{n: n, lastSeen: map[string]time.Time{}, away: map[string]bool{}, rejoined: map[string]time.Time{}, lastStatus: map[string]api.Status{}}
	for _, p := range n.cfg.Peers {
		w.members = append(w.members, member{id: raftserver.ServerID{Name: p.ID, Node: p.Raft}, voter: true})
	}
	w.view = api.Cluster{ObservedBy: n.cfg.ID, Members: []api.MemberView{}}
	return w
}

// epoch is what this node's member knows of its cluster's leadership: the
// leader it follows (itself when it leads) and the term. It changes with
// every election the member takes part in or hears of, and a view of the
// cluster probed before that may no longer hold.
type epoch struct {
	known  bool
	leader raftserver.ServerID
	term   uint64
}

// epoch reads this node's leaderboard, which its member updates on every
// change of role, leader or term; it sends no message.
func (n *Node) epoch() epoch {
	e, ok := n.sys.Leaderboard().Get(ClusterName)
	return epoch{known: ok, leader: e.Leader, term: e.Term}
}

func (w *watcher) run(ctx context.Context) {
	tick := time.NewTicker(w.n.cfg.ProbeInterval)
	defer tick.Stop()
	poll := time.NewTicker(min(epochPoll, w.n.cfg.ProbeInterval))
	defer poll.Stop()
	for {
		w.probe(ctx)
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				break wait
			case <-poll.C:
				if w.outdated() {
					break wait
				}
			}
		}
	}
}

// outdated reports whether this node's member saw a new leader or term
// since the probe behind the view started.
func (w *watcher) outdated() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch != w.n.epoch()
}

// snapshot returns the last view, with its age filled in.
func (w *watcher) snapshot() api.Cluster {
	w.mu.Lock()
	defer w.mu.Unlock()
	v := w.view
	v.Members = slices.Clone(v.Members)
	if !w.at.IsZero() {
		v.AgeSeconds = time.Since(w.at).Seconds()
	}
	return v
}

// noQuorum reports whether a request that needs a quorum (a write, a
// linearizable read) is to be refused at once, and with which numbers. It
// refuses only on positive, current evidence that nothing can commit
// through this node: a probe that reached fewer voters than a quorum, none
// of which leads but this node itself, that started after the last change
// of leader or term this node's member knows of, and that finished less
// than one and a half probe intervals ago (the watcher finishes one every
// interval). A view that says so but is older is checked by a new probe
// first; when even that one is overtaken by an election, or does not
// finish in time, the request goes ahead and Raft decides. A refusal saves
// the client a wait for its timeout and an unknown outcome; a wrong one
// refuses a write that a working leader could commit.
func (w *watcher) noQuorum(ctx context.Context) (reachable, quorum int, refuse bool) {
	for probed := false; ; probed = true {
		v, current := w.evidence()
		switch {
		case !lacksQuorum(v, w.n.cfg.ID):
			return 0, 0, false
		case current:
			return v.Reachable, v.Quorum, true
		case probed:
			return 0, 0, false
		}
		w.reprobe(ctx)
	}
}

// evidence returns the last view and whether it is current: probed since
// the last change of leader or term, and recently.
func (w *watcher) evidence() (api.Cluster, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	interval := w.n.cfg.ProbeInterval
	current := !w.at.IsZero() && w.epoch == w.n.epoch() && time.Since(w.at) < interval+interval/2
	return w.view, current
}

// lacksQuorum reports whether view v shows that nothing can commit through
// node self: it reached fewer voters than a quorum, and none of them leads
// but self. A node that reaches another member that leads forwards to it,
// and whether that leader reaches a quorum is not in this node's view.
func lacksQuorum(v api.Cluster, self string) bool {
	if v.Quorum == 0 || v.Reachable >= v.Quorum {
		return false
	}
	return v.Leader == "" || v.Leader == self
}

// reprobe probes the members now, for the requests that found the view too
// old to refuse on; requests that come while it runs wait for the same
// probe. It returns when the probe ends or ctx does.
func (w *watcher) reprobe(ctx context.Context) {
	w.mu.Lock()
	done := w.reprobing
	if done != nil {
		w.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
		}
		return
	}
	done = make(chan struct{})
	w.reprobing = done
	w.mu.Unlock()
	// The probe is for every waiting request, so it does not end with
	// this one's context; it is bounded by the probe timeout.
	w.probe(w.n.stopCtx)
	w.mu.Lock()
	w.reprobing = nil
	w.mu.Unlock()
	close(done)
}

// probe asks every member for its status and stores the view. It runs
// once per interval, and also for GET /cluster?fresh=true, so two may run
// at once; the one that started last wins.
func (w *watcher) probe(ctx context.Context) {
	n := w.n
	started := time.Now()
	// Read before anything is probed: a change of leader or term during
	// the probe leaves the view outdated, and the watcher probes again.
	ep := n.epoch()
	timeout := n.cfg.ProbeInterval * 9 / 10
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	members := w.currentMembers(pctx)
	dir := n.directory(pctx)
	views := make([]api.MemberView, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := n.memberStatus(pctx, m.id, dir)
			views[i] = api.MemberView{Status: st, Reachable: err == nil}
			switch {
			case errors.Is(err, raftserver.ErrTimeout):
				views[i].Error = fmt.Sprintf("no answer within %v", timeout)
			case err != nil:
				views[i].Error = err.Error()
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // stopping: the view would show everyone unreachable
	}

	now := time.Now()
	v := api.Cluster{ObservedBy: n.cfg.ID, Members: views}
	// The leader is the reachable member that says it leads, in the
	// highest term (an old leader that has not heard of the new term yet
	// may still say it leads).
	var leaderCommit uint64
	var leaderTerm uint64
	voters := 0
	for i := range views {
		m := &views[i]
		if members[i].voter {
			voters++
			if m.Reachable {
				v.Reachable++
			}
		}
		if m.Reachable && m.Role == "leader" && m.Term >= leaderTerm {
			v.Leader, v.LeaderHTTP, leaderCommit, leaderTerm = m.ID, m.HTTP, m.CommitIndex, m.Term
		}
	}
	v.Voters = voters
	if voters > 0 {
		v.Quorum = voters/2 + 1
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if started.Before(w.started) {
		return
	}
	for i := range views {
		m := &views[i]
		if m.Reachable {
			// Only a member seen before it went away has rejoined; one
			// that was not up yet when this node started has just joined.
			if _, seen := w.lastSeen[m.ID]; seen && w.away[m.ID] {
				w.rejoined[m.ID] = now
			}
			w.lastSeen[m.ID] = now
			w.lastStatus[m.ID] = m.Status
			if leaderCommit > m.LastApplied {
				m.Behind = leaderCommit - m.LastApplied
			}
		} else if last, ok := w.lastStatus[m.ID]; ok {
			// What it said last, not zeros: it is still in the
			// configuration, and its term and indexes were those.
			last.Error = m.Error
			m.Status = last
		}
		m.Member = true // it is in the configuration, answering or not
		w.away[m.ID] = !m.Reachable
		if t, ok := w.lastSeen[m.ID]; ok {
			m.LastSeen = t.UTC().Format(time.RFC3339)
		}
		// A member that came back is shown as rejoined for a minute, so
		// that the page can say it is catching up (or has caught up).
		if t, ok := w.rejoined[m.ID]; ok && m.Reachable && now.Sub(t) < time.Minute {
			s := now.Sub(t).Seconds()
			m.RejoinedSeconds = &s
		}
	}
	w.view, w.at, w.started, w.epoch = v, now, started, ep
}

// currentMembers asks this node's member for the configuration, falling
// back to the last one known.
func (w *watcher) currentMembers(ctx context.Context) []member {
	st, err := w.n.sys.Overview(ctx, w.n.self)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil && len(st.Voters) > 0 {
		ms := make([]member, 0, len(st.Voters)+len(st.NonVoters))
		for _, id := range st.Voters {
			ms = append(ms, member{id: id, voter: true})
		}
		for _, id := range st.NonVoters {
			ms = append(ms, member{id: id})
		}
		slices.SortFunc(ms, func(a, b member) int {
			if a.id.Name < b.id.Name {
				return -1
			}
			if a.id.Name > b.id.Name {
				return 1
			}
			return 0
		})
		w.members = ms
	}
	return slices.Clone(w.members)
}

// directory reads the node directory from this node's machine, as it is;
// it changes rarely, and a stale HTTP address only hides a link.
func (n *Node) directory(ctx context.Context) map[string]kv.NodeInfo {
	out := map[string]kv.NodeInfo{}
	nodes, err := n.nodes(ctx, false)
	if err != nil {
		return out
	}
	for _, x := range nodes {
		out[x.ID] = x
	}
	return out
}

// memberStatus asks member for its status and its machine's stats. It
// fails when the member does not answer.
func (n *Node) memberStatus(ctx context.Context, id raftserver.ServerID, dir map[string]kv.NodeInfo) (api.Status, error) {
	st := api.Status{ID: id.Name, Raft: id.Node, HTTP: dir[id.Name].HTTP, Members: []api.Node{}, RecentKeys: []string{}}
	ov, err := n.sys.Overview(ctx, id)
	if err != nil {
		return st, fmt.Errorf("no status from %s: %w", id, err)
	}
	st.Member = true
	st.Role, st.Term = ov.Role, ov.Term
	st.Leader, st.LeaderHTTP = ov.Leader.Name, dir[ov.Leader.Name].HTTP
	st.CommitIndex, st.LastApplied = ov.Commit, ov.LastApplied
	st.FirstIndex, st.LastIndex, st.SnapshotIndex = ov.FirstIndex, ov.LastIndex, ov.SnapshotIndex
	for _, v := range ov.Voters {
		st.Members = append(st.Members, api.Node{ID: v.Name, Raft: v.Node, HTTP: dir[v.Name].HTTP, Voter: true, Bound: ov.Incarnations[v] != 0})
	}
	for _, v := range ov.NonVoters {
		st.Members = append(st.Members, api.Node{ID: v.Name, Raft: v.Node, HTTP: dir[v.Name].HTTP, Bound: ov.Incarnations[v] != 0})
	}
	st.Stale = ov.Stale
	for _, s := range ov.Strangers {
		st.Strangers = append(st.Strangers, s.Name)
	}
	q, _ := json.Marshal(kv.Query{Op: kv.QueryStats, Limit: recentKeysShown})
	b, _, err := n.sys.LocalQuery(ctx, id, q)
	if err != nil {
		return st, fmt.Errorf("no stats from %s: %w", id, err)
	}
	var a kv.Answer
	if err := json.Unmarshal(b, &a); err != nil || a.Stats == nil {
		return st, fmt.Errorf("stats from %s do not decode: %v", id, err)
	}
	st.Keys = a.Stats.Keys
	for _, c := range a.Stats.Recent {
		if !slices.Contains(st.RecentKeys, c.Key) {
			st.RecentKeys = append(st.RecentKeys, c.Key)
		}
	}
	return st, nil
}
