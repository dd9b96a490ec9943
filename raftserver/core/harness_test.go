package core

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// testCluster drives several Rafts by hand: messages wait in a FIFO until
// delivered, writes wait until flushed, timers fire only when a test says.
type testCluster struct {
	t       *testing.T
	nodes   map[ServerID]*testNode
	ids     []ServerID
	inbox   []envelope
	cut     map[[2]ServerID]bool // messages from [0] to [1] are lost
	sent    int                  // messages sent so far
	members Membership
}

type envelope struct {
	from, to ServerID
	inc      uint64 // the sender's incarnation when it sent
	msg      Message
}

type testNode struct {
	id   ServerID
	r    *Raft
	cfg  Config // as last started
	log  *memLog
	hard HardState
	snap Snapshot // durable snapshot
	// Snapshot actions seen.
	compacts  []uint64
	snapSends []SendSnapshot
	restores  []Snapshot
	pending   []Entry // last entry of each Append not yet reported Written
	timerMs   int64   // armed election timer, 0 if none
	timers    []int64 // every SetElectionTimer duration, in order
	ticker    bool
	applied   uint64
	tokens    []IndexedToken
	replies   []Reply
	queries   []RunQuery
	down      bool
}

func id(i int) ServerID { return ServerID{Name: fmt.Sprintf("s%d", i), Node: fmt.Sprintf("n%d", i)} }

func newTestCluster(t *testing.T, n int) *testCluster {
	c := &testCluster{t: t, nodes: map[ServerID]*testNode{}, cut: map[[2]ServerID]bool{}}
	for i := 1; i <= n; i++ {
		c.members.Voters = append(c.members.Voters, id(i))
	}
	for i := 1; i <= n; i++ {
		c.add(id(i), c.members, HardState{}, newMemLog())
	}
	return c
}

// testConfig is the config test members start with.
func testConfig(sid ServerID, initial Membership, seed int) Config {
	return Config{ID: sid, InitialMembers: initial, ElectionTimeoutMs: 100, TickMs: 10, CheckQuorumMs: 50,
		MaxInFlight: 8, SnapshotRetryMs: 100, Seed: uint64(seed)}
}

// add starts a member with the given durable state.
func (c *testCluster) add(sid ServerID, initial Membership, hs HardState, log *memLog) *testNode {
	return c.start(testConfig(sid, initial, len(c.ids)+1), hs, log)
}

// start starts a member with the given config (which carries its durable
// snapshot) and durable state.
func (c *testCluster) start(cfg Config, hs HardState, log *memLog) *testNode {
	sid := cfg.ID
	r, err := New(cfg, hs, log)
	require.NoError(c.t, err)
	nd := &testNode{id: sid, r: r, cfg: cfg, log: log, hard: hs, snap: cfg.Snapshot, applied: cfg.Snapshot.Index}
	if _, ok := c.nodes[sid]; !ok {
		c.ids = append(c.ids, sid)
	}
	c.nodes[sid] = nd
	c.step(sid, Started{})
	return nd
}

// restart replaces a member with a fresh Raft over its durable state
// (pending writes are lost), running code that supports machine version
// version.
func (c *testCluster) restart(sid ServerID, version ...uint64) *testNode {
	old := c.nodes[sid]
	cfg := old.cfg
	cfg.Snapshot = old.snap
	if len(version) > 0 {
		cfg.MachineVersion = version[0]
	}
	return c.start(cfg, old.hard, old.log.durable(old.r.log.stable))
}

func (c *testCluster) node(sid ServerID) *testNode { return c.nodes[sid] }

// step feeds ev to sid and executes the actions, checking the ordering
// rules on the way.
func (c *testCluster) step(sid ServerID, ev Event) []Action {
	nd := c.nodes[sid]
	if nd.down {
		return nil
	}
	acts, err := nd.r.Step(ev)
	require.NoError(c.t, err)
	acts = slices.Clone(acts)
	for i, a := range acts {
		switch a := a.(type) {
		case PersistState:
			require.Zero(c.t, i, "PersistState must come first")
			nd.hard = a.State
		case Append:
			nd.log.write(a.Entries)
			nd.pending = append(nd.pending, a.Entries[len(a.Entries)-1])
		case Send:
			if v, ok := a.Msg.(*VoteReply); ok && v.Granted {
				require.Equal(c.t, HardState{Term: v.Term, VotedFor: a.To}, nd.hard, "vote sent before it is durable")
			}
			c.sent++
			c.inbox = append(c.inbox, envelope{from: sid, to: a.To, inc: nd.cfg.Incarnation, msg: a.Msg})
		case Apply:
			require.Equal(c.t, nd.applied+1, a.From)
			nd.applied = a.To
			nd.tokens = append(nd.tokens, a.Tokens...)
		case Compact:
			require.LessOrEqual(c.t, a.Through, nd.snap.Index, "compacting what no snapshot covers")
			nd.log.compact(a.Through)
			nd.compacts = append(nd.compacts, a.Through)
		case SendSnapshot:
			require.Equal(c.t, nd.snap, a.Msg.Snapshot, "sending a snapshot the member does not hold")
			nd.snapSends = append(nd.snapSends, a)
			// The transfer's end: the receiver steps the message.
			c.sent++
			c.inbox = append(c.inbox, envelope{from: sid, to: a.To, inc: nd.cfg.Incarnation, msg: a.Msg})
		case RestoreSnapshot:
			require.Empty(c.t, nd.pending, "install with writes in flight")
			nd.snap = a.Snapshot
			nd.log.reset(a.Snapshot.Index, a.Snapshot.Term)
			nd.applied = a.Snapshot.Index
			nd.restores = append(nd.restores, a.Snapshot)
		case Reply:
			nd.replies = append(nd.replies, a)
		case RunQuery:
			nd.queries = append(nd.queries, a)
		case SetElectionTimer:
			nd.timerMs = a.Ms
			nd.timers = append(nd.timers, a.Ms)
		case CancelElectionTimer:
			nd.timerMs = 0
		case StartTicker:
			nd.ticker = true
		case StopTicker:
			nd.ticker = false
		}
	}
	return acts
}

// deliver delivers the messages in flight, and those they cause, until none
// is left. Lost messages (cut links, down members) vanish.
func (c *testCluster) deliver() {
	for i := 0; len(c.inbox) > 0; i++ {
		require.Less(c.t, i, 100000, "message storm")
		e := c.inbox[0]
		c.inbox = c.inbox[1:]
		if c.cut[[2]ServerID{e.from, e.to}] || c.nodes[e.to] == nil || c.nodes[e.to].down {
			continue
		}
		c.step(e.to, Receive{From: e.from, Incarnation: e.inc, Msg: e.msg})
	}
}

// flush reports every pending write of sid durable.
func (c *testCluster) flush(sid ServerID) {
	nd := c.nodes[sid]
	p := nd.pending
	nd.pending = nil
	for _, e := range p {
		c.step(sid, Written{Term: e.Term, To: e.Index})
	}
}

// settle delivers messages and flushes writes until nothing moves.
func (c *testCluster) settle() {
	for i := 0; ; i++ {
		require.Less(c.t, i, 1000, "no quiescence")
		c.deliver()
		moved := false
		for _, sid := range c.ids {
			if len(c.nodes[sid].pending) > 0 && !c.nodes[sid].down {
				c.flush(sid)
				moved = true
			}
		}
		if !moved && len(c.inbox) == 0 {
			return
		}
	}
}

// tick delivers n ticks to sid (only while its ticker runs), settling after each.
func (c *testCluster) tick(sid ServerID, n int) {
	for i := 0; i < n && c.nodes[sid].ticker; i++ {
		c.step(sid, Tick{})
		c.settle()
	}
}

// isolate cuts sid off from everyone, both ways.
func (c *testCluster) isolate(sid ServerID) {
	for _, o := range c.ids {
		if o != sid {
			c.cut[[2]ServerID{sid, o}] = true
			c.cut[[2]ServerID{o, sid}] = true
		}
	}
}

// cutOff isolates sid, and its failure detector says so: sid suspects
// every other node, as a partition shows it.
func (c *testCluster) cutOff(sid ServerID) {
	c.isolate(sid)
	for _, o := range c.ids {
		if o != sid {
			c.step(sid, NodeSuspected{Node: o.Node})
		}
	}
}

func (c *testCluster) heal() { c.cut = map[[2]ServerID]bool{} }

// snapshot has sid take a durable snapshot at its applied index, with the
// given members and machine version.
func (c *testCluster) snapshot(sid ServerID, members Membership, version uint64) {
	nd := c.nodes[sid]
	i := nd.applied
	t, err := nd.r.log.term(i)
	require.NoError(c.t, err)
	nd.snap = Snapshot{Index: i, Term: t, Members: members, MachineVersion: version}
	c.step(sid, SnapshotTaken{Snapshot: nd.snap})
}

// elect makes sid campaign and settles; it must win.
func (c *testCluster) elect(sid ServerID) {
	c.step(sid, ElectionTimeout{})
	c.settle()
	require.Equal(c.t, RoleLeader, c.nodes[sid].r.Role(), "%s did not win", sid)
}

// propose sends a command to sid and returns its token.
func (c *testCluster) propose(sid ServerID, data string) string {
	tok := "cmd:" + data
	c.step(sid, Command{Data: []byte(data), Token: tok})
	return tok
}

func (nd *testNode) hasToken(tok any) bool {
	for _, t := range nd.tokens {
		if t.Token == tok {
			return true
		}
	}
	return false
}

func (nd *testNode) lastReply() Reply {
	if len(nd.replies) == 0 {
		return Reply{}
	}
	return nd.replies[len(nd.replies)-1]
}

// sends returns the Send actions among acts.
func sends(acts []Action) []Send {
	var out []Send
	for _, a := range acts {
		if s, ok := a.(Send); ok {
			out = append(out, s)
		}
	}
	return out
}
