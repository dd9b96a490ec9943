package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/raftserver"
)

// BooksCluster is the name of the bookkeeping cluster and of its members.
// Group names may not start with "fleet.".
const BooksCluster = "fleet.books"

// Config configures a node's fleet agent. Zero optional fields take the
// defaults their comments give.
type Config struct {
	// System is the node's rago system. Its SystemConfig.Machines must
	// include the books' kind (see Machines) and every kind the fleet's
	// groups run. Required.
	System *raftserver.System
	// Zone is this node's failure domain (a rack, a data centre), used to
	// spread each group's members.
	Zone string
	// Seeds are the nodes that host the books, the same list on every
	// node of the fleet (3 or 5 of them). A seed starts its books member
	// itself when the agent starts; see docs/fleet.md for why no lock is
	// needed. Required.
	Seeds []string
	// Interval is how often the reconciler surveys the groups it owns
	// (sooner after a change completes). Default 1s.
	Interval time.Duration
	// MaxChanges bounds the changes this node's reconciler runs at once,
	// over all its groups, so that losing a node does not set off a storm
	// of membership changes and snapshot transfers. Default 8.
	MaxChanges int
	// SeenInterval is how often the node reports itself to the books.
	// Default 2s.
	SeenInterval time.Duration
	// PurgeAfter: an active node not seen for this long is marked gone and
	// its members are replaced elsewhere. Default 60s.
	PurgeAfter time.Duration
	// CatchUpSlack is how many entries behind the leader's commit index a
	// non-voter may be when it is promoted. Default 64.
	CatchUpSlack uint64
	// CallTimeout bounds each call a survey or a change makes. Default 5s.
	CallTimeout time.Duration
	// Logger receives the agent's logs; nil uses the node's.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = time.Second
	}
	if c.MaxChanges <= 0 {
		c.MaxChanges = 8
	}
	if c.SeenInterval <= 0 {
		c.SeenInterval = 2 * time.Second
	}
	if c.PurgeAfter <= 0 {
		c.PurgeAfter = time.Minute
	}
	if c.CatchUpSlack == 0 {
		c.CatchUpSlack = 64
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 5 * time.Second
	}
	if c.Logger == nil && c.System != nil {
		c.Logger = c.System.Node().Logger()
	}
	return c
}

// ErrInvalidConfig: the agent's Config is incomplete.
var ErrInvalidConfig = errors.New("fleet: invalid config")

// Agent is a node's part of the fleet: it hosts the books if the node is a
// seed, reports the node to the books, and runs the reconciler of the
// groups whose desired leader is this node.
type Agent struct {
	cfg     Config
	sys     *raftserver.System
	me      string
	log     *slog.Logger
	session *raftserver.Session
	ref     actor.Ref

	// books is the latest copy read, replaced as a whole, never modified:
	// any goroutine may read it.
	books atomic.Pointer[Books]
	// booksVia is the books member the last read went through: asked
	// first next time, so that a seed that is down costs one read its
	// share of time, not every read.
	booksVia atomic.Pointer[raftserver.ServerID]
	status   atomic.Pointer[Status]

	stopOnce sync.Once
	stopped  chan struct{}
}

// Start starts this node's agent: the books member if the node is a seed,
// and the reconciler process. It does not activate the node (Activate).
func Start(cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if cfg.System == nil || len(cfg.Seeds) == 0 {
		return nil, fmt.Errorf("%w: a System and Seeds are required", ErrInvalidConfig)
	}
	a := &Agent{
		cfg:     cfg,
		sys:     cfg.System,
		me:      cfg.System.Name(),
		log:     cfg.Logger.With("fleet", cfg.System.Name()),
		session: cfg.System.NewSession(),
		stopped: make(chan struct{}),
	}
	a.status.Store(&Status{Node: a.me})
	if slices.Contains(cfg.Seeds, a.me) {
		if err := a.startBooksMember(); err != nil {
			return nil, err
		}
	}
	ref, err := a.sys.Node().Spawn(&reconciler{a: a, inflight: map[string]Change{}, failing: map[string]retryAt{}}, actor.HighPriority())
	if err != nil {
		return nil, fmt.Errorf("fleet: start the reconciler: %w", err)
	}
	a.ref = ref
	_ = a.sys.Node().Send(ref, roundTick{})
	_ = a.sys.Node().Send(ref, seenTick{})
	return a, nil
}

// startBooksMember starts this seed's books member, exactly once: the
// node's manager refuses a second server of the name (and restarts the
// recorded one after a node restart), and every seed starts its own member
// with the same initial members, so the seeds form one cluster by
// election, whichever starts first. A seed whose disk was lost comes back
// as a new replica that the cluster does not count until the reconciler on
// the books' leader re-admits it (Rejoin).
func (a *Agent) startBooksMember() error {
	members := make([]raftserver.ServerID, len(a.cfg.Seeds))
	for i, s := range a.cfg.Seeds {
		members[i] = raftserver.ServerID{Name: BooksCluster, Node: s}
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.CallTimeout)
	defer cancel()
	err := a.sys.StartServer(ctx, raftserver.ServerConfig{
		ID: a.booksID(a.me), Cluster: BooksCluster,
		Machine:        raftserver.MachineSpec{Kind: BooksKind},
		InitialMembers: members,
	})
	if err != nil && !errors.Is(err, raftserver.ErrClusterExists) {
		return fmt.Errorf("fleet: start the books member: %w", err)
	}
	return nil
}

func (a *Agent) booksID(node string) raftserver.ServerID {
	return raftserver.ServerID{Name: BooksCluster, Node: node}
}

// booksVias lists the books members to go through: this node's first.
func (a *Agent) booksVias() []raftserver.ServerID {
	out := make([]raftserver.ServerID, 0, len(a.cfg.Seeds))
	if slices.Contains(a.cfg.Seeds, a.me) {
		out = append(out, a.booksID(a.me))
	}
	if via := a.booksVia.Load(); via != nil && !slices.Contains(out, *via) {
		out = append(out, *via)
	}
	if leader, _, err := a.sys.Leader(BooksCluster); err == nil && leader.Node != a.me {
		out = append(out, leader)
	}
	for _, s := range a.cfg.Seeds {
		if id := a.booksID(s); !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// Stop stops the reconciler. The node's servers, books member included,
// stay: they are the System's.
func (a *Agent) Stop() {
	a.stopOnce.Do(func() {
		close(a.stopped)
		_ = a.sys.Node().Exit(a.ref, actor.Normal)
	})
}

// command sends a command to the books, exactly once (a session).
func (a *Agent) command(ctx context.Context, c bookCmd) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	reply, _, err := a.session.ProcessCommandAny(ctx, a.booksVias(), data)
	if err != nil {
		return fmt.Errorf("fleet: %s: %w", c.Op, err)
	}
	var r bookReply
	if err := json.Unmarshal(reply, &r); err != nil {
		return fmt.Errorf("fleet: %s: the books' reply: %w", c.Op, err)
	}
	return r.err()
}

// Activate marks this node active, in its zone: placement starts to use
// it, and the groups it should host move members to it. Call it when the
// node joins the fleet (again).
func (a *Agent) Activate(ctx context.Context) error {
	err := a.command(ctx, bookCmd{Op: opActivate, Node: a.me, Zone: a.cfg.Zone, At: time.Now().UnixMilli()})
	if err == nil {
		a.kick()
	}
	return err
}

// Deactivate marks node (this one or another) deactivating: placement
// skips it, and the reconcilers move its members to other nodes before
// they remove them; its agent then deletes the replicas. Stop it for good
// once Inspect's Report.MembersPerNode counts none on it.
func (a *Agent) Deactivate(ctx context.Context, node string) error {
	return a.command(ctx, bookCmd{Op: opDeactivate, Node: node})
}

// GroupSpec describes a group to add.
type GroupSpec struct {
	// Name names the group, its cluster and its servers: 1-128 bytes of
	// letters, digits, '-', '_' and '.', not starting with "fleet.".
	Name string
	// Machine is the kind (registered on every node) and configuration of
	// the group's machine.
	Machine raftserver.MachineSpec
	// Replicas is the group's member count, 1 to 9; default 3.
	Replicas int
}

// AddGroup adds a group to the books. Its founder (its desired leader
// now) creates its first member, and the reconcilers grow it to its
// placement; WaitGroup waits for that.
func (a *Agent) AddGroup(ctx context.Context, spec GroupSpec) error {
	if spec.Replicas == 0 {
		spec.Replicas = 3
	}
	if len(spec.Name) >= 6 && spec.Name[:6] == "fleet." {
		return fmt.Errorf("%w: %q: names starting with \"fleet.\" are reserved", ErrInvalidGroup, spec.Name)
	}
	m := spec.Machine
	return a.command(ctx, bookCmd{Op: opAddGroup, Group: spec.Name, Machine: &m, Replicas: spec.Replicas})
}

// RemoveGroup removes a group from the books; every node then deletes its
// members and their data. The name cannot be used again.
func (a *Agent) RemoveGroup(ctx context.Context, name string) error {
	return a.command(ctx, bookCmd{Op: opRemoveGroup, Group: name})
}

// Books reads the books from their leader, or, if this node cannot reach
// it, from a books member's own copy. Either may be a little behind (a
// leader that was just deposed answers with what it had): not a
// linearizable read.
func (a *Agent) Books(ctx context.Context) (*Books, error) {
	return a.readBooks(ctx, 0)
}

// CachedBooks returns the books as the reconciler last read them (nil
// before the first read). The value is shared: do not modify it.
func (a *Agent) CachedBooks() *Books { return a.books.Load() }

// readBooks reads the books if their version is above since (else
// returns the cached copy).
func (a *Agent) readBooks(ctx context.Context, since uint64) (*Books, error) {
	q, _ := json.Marshal(booksQuery{Since: since})
	var errs []error
	vias := a.booksVias()
	// First through the books' leader, by way of each member in turn; if
	// none leads to it (it is cut off from this node, or an election is
	// under way), then from any member's own copy, which may be a little
	// behind: the reconciler acts on it safely (every step is a valid
	// change checked by the group's leader) and corrects itself when the
	// leader is back. The leader gets half the time.
	leaderCtx, cancel := ctx, context.CancelFunc(func() {})
	if dl, ok := ctx.Deadline(); ok {
		leaderCtx, cancel = context.WithTimeout(ctx, time.Until(dl)/2)
	}
	defer cancel()
	for _, kind := range []raftserver.QueryKind{raftserver.QueryLeader, raftserver.QueryLocal} {
		qctx := ctx
		if kind == raftserver.QueryLeader {
			qctx = leaderCtx
		}
		for i, via := range vias {
			if qctx.Err() != nil {
				break
			}
			reply, err := a.queryShare(qctx, kind, via, q, len(vias)-i)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			var ans booksAnswer
			if err := json.Unmarshal(reply, &ans); err != nil {
				return nil, fmt.Errorf("fleet: the books' answer: %w", err)
			}
			a.booksVia.Store(&via)
			if ans.Unchanged {
				if b := a.books.Load(); b != nil {
					return b, nil
				}
				return a.readBooks(ctx, 0)
			}
			if ans.Books == nil {
				return nil, errors.New("fleet: the books answered with nothing")
			}
			if cur := a.books.Load(); cur == nil || ans.Books.Index >= cur.Index {
				a.books.Store(ans.Books)
			}
			return ans.Books, nil
		}
	}
	return nil, fmt.Errorf("fleet: read the books: %w", errors.Join(errs...))
}

// queryShare asks via for the books (kind: through the leader, or its
// own copy) with 1/left of the time ctx has left, so that a member whose
// node is down (a query to it waits for the node until its deadline)
// leaves time for the others.
func (a *Agent) queryShare(ctx context.Context, kind raftserver.QueryKind, via raftserver.ServerID, q []byte, left int) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok && left > 1 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(left))
		defer cancel()
	}
	var reply []byte
	var err error
	if kind == raftserver.QueryLocal {
		reply, _, err = a.sys.LocalQuery(ctx, via, q)
	} else {
		reply, _, err = a.sys.LeaderQuery(ctx, via, q)
	}
	return reply, err
}

// Status is what a node's reconciler is doing.
type Status struct {
	Node string
	// BooksVersion is the version of the books the last survey used.
	BooksVersion uint64
	// Owned: groups whose desired leader is this node; Converged: those
	// of them that are where placement wants them, led from here.
	Owned, Converged int
	// InFlight are the changes under way.
	InFlight []Change
	// Done and Failed count the changes completed and failed since the
	// agent started.
	Done, Failed uint64
	// LastError is the latest failure of a survey or a change.
	LastError string
	// Surveyed is when the last survey ended.
	Surveyed time.Time
}

// Status returns what the reconciler is doing, as of its last survey.
func (a *Agent) Status() Status {
	st := *a.status.Load()
	st.InFlight = slices.Clone(st.InFlight)
	return st
}

// kick asks the reconciler for a survey soon.
func (a *Agent) kick() { _ = a.sys.Node().Send(a.ref, roundTick{}) }

// Client returns a client that routes commands by group name.
func (a *Agent) Client() *Client { return &Client{a: a, session: a.sys.NewSession()} }
