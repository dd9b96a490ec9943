package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver"
)

// The reconciler is a process that owns the node's reconciliation state:
// the changes in flight and the pacing. Whatever blocks (reading the
// books, asking groups for their status, membership changes) runs in
// goroutines that report back to it by message, so the process itself
// never waits on another node.
type reconciler struct {
	a        *Agent
	inflight map[string]Change // by group: one change per group at a time
	// failing holds the groups whose last change failed, and when they
	// may be tried again: the pause doubles per failure in a row, so a
	// change that cannot succeed yet (its target is down) is not retried
	// every round.
	failing map[string]retryAt
	// surveying: a survey runs; again: another was asked for meanwhile.
	surveying, again bool
	timer            actor.TimerRef
	seenBusy         bool
	done, failed     uint64
	lastErr          string
	last             *survey
}

// retryAt is when a failing group's next change may start.
type retryAt struct {
	at     time.Time
	streak int
}

// maxRetryPause caps the pause after failed changes of a group.
const maxRetryPause = 30 * time.Second

type (
	roundTick  struct{}
	seenTick   struct{}
	surveyDone struct{ s *survey }
	changeDone struct {
		c   Change
		err error
	}
	seenDone struct{}
)

// survey is what one round saw.
type survey struct {
	books *Books
	// owned: born groups whose desired leader is this node, with their
	// leader's status (nil if none was found).
	owned map[string]*raftserver.ServerStatus
	// lost: per owned group, the wanted members whose replica lost its
	// data.
	lost map[string][]string
	// found: unborn groups this node is to found.
	found []string
	// forget: local replicas that belong nowhere.
	forget []string
	// record: groups whose voters differ from the books' hint.
	record map[string][]string
	// booksLeader: the status of the books' leader if it is on this node
	// and lists strangers (books members to re-admit).
	booksLeader *raftserver.ServerStatus
	err         error
	at          time.Time
}

func (r *reconciler) Receive(ctx *actor.Context, msg actor.Message) {
	switch m := msg.(type) {
	case roundTick:
		r.startSurvey(ctx)
	case surveyDone:
		r.surveying = false
		if m.s.err != nil {
			// Keep the last survey that saw something: a failed one
			// says nothing about what the node owns.
			r.lastErr = m.s.err.Error()
		} else {
			r.last = m.s
			for g := range r.failing {
				if m.s.books.Groups[g] == nil && g != BooksCluster {
					delete(r.failing, g) // removed meanwhile
				}
			}
			r.act(ctx, m.s)
		}
		r.publish()
		if r.again {
			r.again = false
			r.startSurvey(ctx)
		} else {
			r.schedule(ctx, r.a.cfg.Interval)
		}
	case changeDone:
		delete(r.inflight, m.c.Group)
		if m.err != nil {
			f := r.failing[m.c.Group]
			f.streak++
			f.at = time.Now().Add(min(r.a.cfg.Interval<<min(f.streak, 16), maxRetryPause))
			r.failing[m.c.Group] = f
			r.failed++
			r.lastErr = fmt.Sprintf("%s %s on %s: %v", m.c.Kind, m.c.Group, m.c.Node, m.err)
			r.a.log.Warn("fleet change failed", "group", m.c.Group, "change", m.c.Kind, "node", m.c.Node, "err", m.err)
		} else {
			delete(r.failing, m.c.Group)
			r.done++
			r.a.log.Debug("fleet change done", "group", m.c.Group, "change", m.c.Kind, "node", m.c.Node)
		}
		r.publish()
		// The next step of this group, and the next groups waiting for a
		// slot, come with the next survey: soon, not a whole interval on.
		r.schedule(ctx, min(r.a.cfg.Interval, 50*time.Millisecond))
	case seenTick:
		if !r.seenBusy {
			r.seenBusy = true
			go r.a.reportSeen(ctx.Self())
		}
		ctx.SendAfter(r.a.cfg.SeenInterval, seenTick{})
	case seenDone:
		r.seenBusy = false
	}
}

// schedule asks for a survey after d, replacing a later one.
func (r *reconciler) schedule(ctx *actor.Context, d time.Duration) {
	ctx.CancelTimer(r.timer)
	r.timer = ctx.SendAfter(d, roundTick{})
}

func (r *reconciler) startSurvey(ctx *actor.Context) {
	if r.surveying {
		r.again = true
		return
	}
	r.surveying = true
	self := ctx.Self()
	busy := make(map[string]bool, len(r.inflight))
	for g := range r.inflight {
		busy[g] = true
	}
	go func() {
		s := r.a.survey(busy)
		_ = r.a.sys.Node().Send(self, surveyDone{s})
	}()
}

// act starts the changes the survey calls for, within the node's budget.
func (r *reconciler) act(ctx *actor.Context, s *survey) {
	var todo []Change
	for _, g := range s.found {
		todo = append(todo, Change{Group: g, Kind: ChangeFound, Node: r.a.me})
	}
	if L := s.booksLeader; L != nil {
		for _, st := range L.Strangers {
			todo = append(todo, Change{Group: BooksCluster, Kind: ChangeRejoin, Node: st.Node, Leader: L.ID})
		}
	}
	for _, g := range slices.Sorted(mapKeys(s.owned)) {
		L := s.owned[g]
		if L == nil {
			continue
		}
		if c, ok := plan(g, s.books.Placement(g), L, s.lost[g], r.a.cfg.CatchUpSlack); ok {
			todo = append(todo, c)
		}
	}
	for _, g := range s.forget {
		todo = append(todo, Change{Group: g, Kind: ChangeForget, Node: r.a.me})
	}
	for _, g := range slices.Sorted(mapKeys(s.record)) {
		todo = append(todo, Change{Group: g, Kind: ChangeRecord, Node: r.a.me})
	}
	self := ctx.Self()
	now := time.Now()
	for _, c := range todo {
		if _, busy := r.inflight[c.Group]; busy {
			continue
		}
		if f, ok := r.failing[c.Group]; ok && now.Before(f.at) {
			continue
		}
		// Deleting local strays and noting members cost no membership
		// change: they have a budget of their own, so that a node with
		// hundreds of strays does not hold up healing, nor the reverse.
		local := c.Kind == ChangeForget || c.Kind == ChangeRecord
		if r.count(local) >= r.a.cfg.MaxChanges {
			continue
		}
		r.inflight[c.Group] = c
		voters := s.record[c.Group]
		go func() {
			err := r.a.run(c, voters)
			_ = r.a.sys.Node().Send(self, changeDone{c, err})
		}()
	}
}

// count returns the changes in flight that are local (forget, record),
// or the others.
func (r *reconciler) count(local bool) int {
	n := 0
	for _, c := range r.inflight {
		if (c.Kind == ChangeForget || c.Kind == ChangeRecord) == local {
			n++
		}
	}
	return n
}

func (r *reconciler) publish() {
	st := &Status{Node: r.a.me, Done: r.done, Failed: r.failed, LastError: r.lastErr}
	if s := r.last; s != nil {
		if s.books != nil {
			st.BooksVersion = s.books.Version
		}
		st.Surveyed = s.at
		st.Owned = len(s.owned)
		for g, L := range s.owned {
			if converged(s.books.Placement(g), L) {
				st.Converged++
			}
		}
	}
	for _, g := range slices.Sorted(mapKeys(r.inflight)) {
		st.InFlight = append(st.InFlight, r.inflight[g])
	}
	r.a.status.Store(st)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// surveyWorkers bounds the status calls a survey makes at once.
const surveyWorkers = 16

// survey reads the books and the state of the groups this node owns;
// busy groups (a change in flight) are skipped.
func (a *Agent) survey(busy map[string]bool) *survey {
	s := &survey{owned: map[string]*raftserver.ServerStatus{}, lost: map[string][]string{}, record: map[string][]string{}}
	defer func() { s.at = time.Now() }()
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.CallTimeout)
	defer cancel()
	since := uint64(0)
	if b := a.books.Load(); b != nil {
		since = b.Version
	}
	b, err := a.readBooks(ctx, since)
	if err != nil {
		s.err = err
		return s
	}
	s.books = b
	active := b.ActiveNodes()
	var owned []string
	for _, name := range b.GroupNames() {
		g := b.Groups[name]
		if busy[name] {
			continue
		}
		if !g.Born {
			if g.Founder == a.me {
				s.found = append(s.found, name)
			}
			continue
		}
		if place := Place(name, active, g.Replicas); len(place) > 0 && place[0] == a.me {
			owned = append(owned, name)
		}
	}
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range surveyWorkers {
		wg.Go(func() {
			for name := range work {
				gctx, cancel := context.WithTimeout(context.Background(), a.cfg.CallTimeout)
				L := a.findLeader(gctx, b, name)
				var lost []string
				if L != nil {
					lost = a.lostReplicas(gctx, b.Placement(name), L)
				}
				cancel()
				mu.Lock()
				s.owned[name] = L
				s.lost[name] = lost
				if L != nil && converged(b.Placement(name), L) && !sameNodes(b.Groups[name].Members, L.Voters) {
					s.record[name] = nodesOf(L.Voters)
				}
				mu.Unlock()
			}
		})
	}
	for _, name := range owned {
		work <- name
	}
	close(work)
	wg.Wait()
	s.forget = a.strays(b, busy)
	if leader, _, err := a.sys.Leader(BooksCluster); err == nil && leader.Node == a.me {
		if st, err := a.sys.Overview(ctx, leader); err == nil && len(st.Strangers) > 0 && !busy[BooksCluster] {
			s.booksLeader = st
		}
	}
	return s
}

// findLeader returns the status of group's leader, found through this
// node's member, the books' hint, placement and the founder; nil if none
// answers.
func (a *Agent) findLeader(ctx context.Context, b *Books, group string) *raftserver.ServerStatus {
	g := b.Groups[group]
	candidates := []string{a.me}
	for _, list := range [][]string{g.Members, b.Placement(group), {g.Founder}} {
		for _, n := range list {
			if !slices.Contains(candidates, n) {
				candidates = append(candidates, n)
			}
		}
	}
	return leaderAmong(ctx, a.sys, group, candidates)
}

// lostReplicas returns the wanted members of L's group that the leader
// cannot replicate to or that lag behind, and whose replica lost its data:
// missing from its node, or a new incarnation the configuration does not
// bind (a disk replaced, a node rebuilt). Members that keep up are not
// asked: this costs a call only for laggards.
func (a *Agent) lostReplicas(ctx context.Context, place []string, L *raftserver.ServerStatus) []string {
	var out []string
	for _, p := range L.Progress {
		// A replica that keeps up is fine; one the leader cannot reach
		// (probing, paused) or that falls behind may be gone.
		if !slices.Contains(place, p.ID.Node) || p.State == "replicate" && p.Match+a.cfg.CatchUpSlack >= L.Commit {
			continue
		}
		st, err := a.sys.Overview(ctx, p.ID)
		switch {
		case errors.Is(err, raftserver.ErrNoSuchServer):
			out = append(out, p.ID.Node)
		case err != nil:
		case st.Stale || L.Incarnations[p.ID] != 0 && st.Incarnation != L.Incarnations[p.ID]:
			out = append(out, p.ID.Node)
		}
	}
	return out
}

// boundIncarnation reports whether id's running replica is the
// incarnation the configuration at leader binds id to.
func (a *Agent) boundIncarnation(ctx context.Context, leader, id raftserver.ServerID) bool {
	L, err := a.sys.Overview(ctx, leader)
	if err != nil {
		return false
	}
	st, err := a.sys.Overview(ctx, id)
	return err == nil && !st.Stale && L.Incarnations[id] != 0 && st.Incarnation == L.Incarnations[id]
}

// strays lists this node's replicas of fleet groups that belong nowhere:
// of removed groups; of unborn groups founded elsewhere (a founder that
// lost its turn); and stopped ones (removed from their group) on a node
// placement no longer wants.
func (a *Agent) strays(b *Books, busy map[string]bool) []string {
	var out, check []string
	for _, sm := range a.sys.Metrics().Servers {
		name := sm.Cluster
		if sm.ID.Name != name || busy[name] {
			continue
		}
		if _, removed := b.Removed[name]; removed {
			out = append(out, name)
			continue
		}
		g := b.Groups[name]
		switch {
		case g == nil:
		case !g.Born && g.Founder != a.me:
			out = append(out, name)
		case !g.Born || slices.Contains(b.Placement(name), a.me):
		default:
			check = append(check, name) // off placement: removed yet?
		}
	}
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(surveyWorkers, len(check)) {
		wg.Go(func() {
			for name := range work {
				ctx, cancel := context.WithTimeout(context.Background(), a.cfg.CallTimeout)
				stray := a.offDuty(ctx, b, name)
				cancel()
				if stray {
					mu.Lock()
					out = append(out, name)
					mu.Unlock()
				}
			}
		})
	}
	for _, name := range check {
		work <- name
	}
	close(work)
	wg.Wait()
	return out
}

// offDuty reports whether this node's replica of group, off placement, is
// no longer of use: stopped (removed members stop once they learn of it),
// or no longer in the configuration of the group's leader.
func (a *Agent) offDuty(ctx context.Context, b *Books, group string) bool {
	if ls, err := a.sys.LocalServer(ctx, group); err == nil && !ls.Running {
		return true
	}
	return a.removed(ctx, b, group)
}

// removed reports whether this node's running replica of group was
// removed from the group: the group's leader, found among placement's
// members, leaves it out of its configuration. A removed follower stops
// once its leader has told it, but one the leader cannot tell (its log
// lacks what the leader's snapshot covers, or the leader changed) would
// run for ever, and until it stops this check is what spots it. The owner removes a member only
// once placement's members are all caught-up voters, so deleting it
// cannot cost the group a voter it needs, even if the removal is not
// committed yet.
func (a *Agent) removed(ctx context.Context, b *Books, group string) bool {
	self := raftserver.ServerID{Name: group, Node: a.me}
	L := leaderAmong(ctx, a.sys, group, b.Placement(group))
	return L != nil && L.ID != self && !slices.Contains(L.Voters, self) && !slices.Contains(L.NonVoters, self)
}

// run carries out one change. Every step is safe to repeat: a change that
// failed halfway is planned again from what the next survey sees.
func (a *Agent) run(c Change, voters []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*a.cfg.CallTimeout)
	defer cancel()
	id := raftserver.ServerID{Name: c.Group, Node: c.Node}
	switch c.Kind {
	case ChangeFound:
		return a.found(ctx, c.Group)
	case ChangeAdd:
		if err := a.ensureServer(ctx, c.Group, c.Node); err != nil {
			return err
		}
		_, err := a.sys.AddNonVoter(ctx, c.Leader, id)
		return ignoreMembership(err)
	case ChangePromote:
		_, err := a.sys.AddMember(ctx, c.Leader, id)
		return ignoreMembership(err)
	case ChangeRemove:
		_, err := a.sys.RemoveMember(ctx, c.Leader, id)
		return ignoreMembership(err)
	case ChangeTransfer:
		return a.sys.TransferLeadership(ctx, c.Leader, id)
	case ChangeRejoin:
		if c.Group == BooksCluster {
			id = a.booksID(c.Node)
		} else if err := a.ensureServer(ctx, c.Group, c.Node); err != nil {
			return err
		} else if a.boundIncarnation(ctx, c.Leader, id) {
			return nil // it was only stopped: restarted with its data, it is the member again
		}
		_, err := a.sys.Rejoin(ctx, c.Leader, id)
		return err
	case ChangeForget:
		err := a.sys.ForceDeleteServer(ctx, id)
		if errors.Is(err, raftserver.ErrNoSuchServer) {
			return nil
		}
		return err
	case ChangeRecord:
		return a.command(ctx, bookCmd{Op: opMembers, Group: c.Group, Members: voters})
	}
	return fmt.Errorf("fleet: unknown change %q", c.Kind)
}

// ignoreMembership treats "already so" answers to a membership change as
// done: a retried change finds its own earlier success.
func ignoreMembership(err error) error {
	if errors.Is(err, raftserver.ErrMembershipChange) {
		return nil
	}
	return err
}

// found creates group's first member here, alone, and records the birth.
// Only the founder the books name does this, and the books accept the
// birth only from it; a founder that lost its turn (it left and the group
// was given to another) finds its birth refused and its replica is
// deleted as a stray, so the group is created once.
func (a *Agent) found(ctx context.Context, group string) error {
	b := a.books.Load()
	g := b.Groups[group]
	if g == nil {
		return ErrNoSuchGroup
	}
	self := raftserver.ServerID{Name: group, Node: a.me}
	err := a.sys.StartServer(ctx, raftserver.ServerConfig{
		ID: self, Cluster: group, Machine: g.Machine,
		InitialMembers: []raftserver.ServerID{self},
	})
	if err != nil && !errors.Is(err, raftserver.ErrClusterExists) {
		return err
	}
	if _, err := a.sys.WaitForLeader(ctx, self); err != nil {
		return err
	}
	return a.command(ctx, bookCmd{Op: opBorn, Group: group, Node: a.me})
}

// ensureServer makes sure node runs a replica of group that waits to be
// added (or already is a member): it starts one, or restarts a stopped
// one.
func (a *Agent) ensureServer(ctx context.Context, group, node string) error {
	b := a.books.Load()
	g := b.Groups[group]
	if g == nil {
		return ErrNoSuchGroup
	}
	id := raftserver.ServerID{Name: group, Node: node}
	err := a.sys.StartServer(ctx, raftserver.ServerConfig{ID: id, Cluster: group, Machine: g.Machine})
	if !errors.Is(err, raftserver.ErrClusterExists) {
		return err
	}
	if _, err := a.sys.Overview(ctx, id); err == nil {
		return nil
	}
	return a.sys.RestartServer(ctx, id)
}

// reportSeen tells the books this node is alive, and, on the books'
// leader, marks gone the nodes not seen for PurgeAfter.
func (a *Agent) reportSeen(self actor.Ref) {
	defer func() { _ = a.sys.Node().Send(self, seenDone{}) }()
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.CallTimeout)
	defer cancel()
	now := time.Now()
	b := a.books.Load()
	if b == nil || b.Nodes[a.me] == nil {
		return // not in the fleet yet: Activate adds it
	}
	if err := a.command(ctx, bookCmd{Op: opSeen, Node: a.me, At: now.UnixMilli()}); err != nil {
		a.log.Debug("fleet: could not report to the books", "err", err)
	}
	leader, _, err := a.sys.Leader(BooksCluster)
	if err != nil || leader.Node != a.me {
		return
	}
	// The leader's own copy: LastSeen does not change the books' version,
	// so the cached copy may be old.
	fresh, err := a.localBooks(ctx, leader)
	if err != nil {
		return
	}
	horizon := now.Add(-a.cfg.PurgeAfter).UnixMilli()
	for _, name := range slices.Sorted(mapKeys(fresh.Nodes)) {
		n := fresh.Nodes[name]
		if n.State == NodeActive && n.LastSeen < horizon && name != a.me {
			a.log.Info("fleet: node not seen; marking it gone", "node", name, "last_seen", time.UnixMilli(n.LastSeen))
			if err := a.command(ctx, bookCmd{Op: opPurge, Node: name, At: horizon}); err != nil {
				a.log.Warn("fleet: could not mark a node gone", "node", name, "err", err)
			}
		}
	}
}

func (a *Agent) localBooks(ctx context.Context, id raftserver.ServerID) (*Books, error) {
	reply, _, err := a.sys.LocalQuery(ctx, id, []byte(`{"since":0}`))
	if err != nil {
		return nil, err
	}
	var ans booksAnswer
	if err := json.Unmarshal(reply, &ans); err != nil || ans.Books == nil {
		return nil, fmt.Errorf("fleet: the books' answer: %v", err)
	}
	return ans.Books, nil
}

func sameNodes(nodes []string, ids []raftserver.ServerID) bool {
	if len(nodes) != len(ids) {
		return false
	}
	for _, id := range ids {
		if !slices.Contains(nodes, id.Node) {
			return false
		}
	}
	return true
}

func nodesOf(ids []raftserver.ServerID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.Node
	}
	slices.Sort(out)
	return out
}
