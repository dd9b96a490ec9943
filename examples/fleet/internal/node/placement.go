package node

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rago-raft/rago/examples/internal/web"
	"github.com/rago-raft/rago/fleet"
)

// Placement is GET /placement: every node and every group as one node
// sees them, for the page and for tests.
type Placement struct {
	// Node is the id of the node that answered; Generated when (Unix ms),
	// and TookMs how long gathering it took.
	Node         string `json:"node"`
	Generated    int64  `json:"generated_ms"`
	TookMs       int64  `json:"took_ms"`
	BooksVersion uint64 `json:"books_version"`
	Shards       int    `json:"shards"`
	// Nodes are the books' nodes, sorted by name (their Raft address).
	Nodes []NodeView `json:"nodes"`
	// Groups are the books' groups, sorted by name.
	Groups []GroupView `json:"groups"`
	// Converged counts the groups whose members are exactly their
	// placement, led by its first node; Leaderless those whose leader did
	// not answer.
	Converged  int `json:"converged"`
	Leaderless int `json:"leaderless"`
	// Moves are the changes every reachable node's reconciler has in
	// flight.
	Moves []MoveView `json:"moves"`
}

// NodeView is one node of the books, with what the directory and the
// node's own /status add.
type NodeView struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	HTTP     string `json:"http,omitempty"`
	Zone     string `json:"zone"`
	State    string `json:"state"`
	LastSeen int64  `json:"last_seen_ms"`
	// Members counts the voters of groups on the node; Leaders the groups
	// it leads.
	Members int `json:"members"`
	Leaders int `json:"leaders"`
	// Reachable: the node answered /status just now; Reconciler is what
	// it said its reconciler does.
	Reachable  bool            `json:"reachable"`
	Ready      bool            `json:"ready"`
	Reconciler *ReconcilerView `json:"reconciler,omitempty"`
}

// GroupView is one group: where placement wants it, and what its leader
// reports.
type GroupView struct {
	Name      string   `json:"name"`
	Placement []string `json:"placement"`
	Leader    string   `json:"leader,omitempty"`
	Voters    []string `json:"voters"`
	NonVoters []string `json:"non_voters"`
	Converged bool     `json:"converged"`
}

// reportFresh is how long a report serves: the page of every node polls
// it, and a report asks every group's leader for its status.
const reportFresh = time.Second

// reportCache keeps the last report, and makes concurrent requests share
// one gathering.
type reportCache struct {
	gather sync.Mutex // held while one request gathers
	mu     sync.Mutex
	last   *Placement
	at     time.Time
}

func (c *reportCache) get() *Placement {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last != nil && time.Since(c.at) < reportFresh {
		return c.last
	}
	return nil
}

func (n *Node) handlePlacement(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	p, err := n.placement(ctx)
	if err != nil {
		n.fail(w, n.fleetError(err, false))
		return
	}
	web.AllowCrossOriginReads(w)
	web.WriteJSON(w, http.StatusOK, p)
}

// placement returns a report at most reportFresh old.
func (n *Node) placement(ctx context.Context) (*Placement, error) {
	if p := n.report.get(); p != nil {
		return p, nil
	}
	n.report.gather.Lock()
	defer n.report.gather.Unlock()
	if p := n.report.get(); p != nil {
		return p, nil // gathered while this request waited
	}
	p, err := n.gather(ctx)
	if err != nil {
		return nil, err
	}
	n.report.mu.Lock()
	n.report.last, n.report.at = p, time.Now()
	n.report.mu.Unlock()
	return p, nil
}

func (n *Node) gather(ctx context.Context) (*Placement, error) {
	start := time.Now()
	b, err := n.agent.Books(ctx)
	if err != nil {
		return nil, err
	}
	var (
		wg       sync.WaitGroup
		rep      fleet.Report
		statuses = map[string]*Status{}
		smu      sync.Mutex
	)
	wg.Go(func() { rep = fleet.Inspect(ctx, n.sys, b) })
	// The directory gives the other nodes' HTTP addresses; a node it
	// does not list (not registered yet, or the directory has no leader)
	// shows without its reconciler.
	dir, _ := n.directory(ctx)
	for name, e := range dir {
		if name == n.sys.Name() || b.Nodes[name] == nil {
			continue
		}
		wg.Go(func() {
			if st, err := n.peerStatus(ctx, e.HTTP); err == nil && st.Raft == name {
				smu.Lock()
				statuses[name] = st
				smu.Unlock()
			}
		})
	}
	me := n.status(ctx)
	wg.Wait()
	statuses[n.sys.Name()] = &me

	p := &Placement{Node: n.cfg.ID, BooksVersion: b.Version, Shards: n.cfg.Shards,
		Converged: rep.Converged, Leaderless: rep.Leaderless, Moves: []MoveView{}}
	leaders := map[string]int{}
	for _, g := range rep.Groups {
		p.Groups = append(p.Groups, GroupView{Name: g.Name, Placement: nonNil(g.Placement), Leader: g.Leader,
			Voters: nonNil(g.Voters), NonVoters: nonNil(g.NonVoters), Converged: g.Converged})
		if g.Leader != "" {
			leaders[g.Leader]++
		}
	}
	for _, name := range slices.Sorted(maps.Keys(b.Nodes)) {
		info := b.Nodes[name]
		v := NodeView{Name: name, Zone: info.Zone, State: string(info.State), LastSeen: info.LastSeen,
			Members: rep.MembersPerNode[name], Leaders: leaders[name], ID: dir[name].ID, HTTP: dir[name].HTTP}
		if st := statuses[name]; st != nil {
			v.Reachable, v.Ready, v.ID, v.HTTP = true, st.Ready, st.ID, st.HTTP
			rv := st.Reconciler
			v.Reconciler = &rv
			p.Moves = append(p.Moves, rv.InFlight...)
		}
		if v.ID == "" {
			v.ID = name
		}
		p.Nodes = append(p.Nodes, v)
	}
	p.Generated, p.TookMs = time.Now().UnixMilli(), time.Since(start).Milliseconds()
	return p, nil
}

// peerStatus gets another node's GET /status.
func (n *Node) peerStatus(ctx context.Context, base string) (*Status, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.peers.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
