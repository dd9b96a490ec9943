package core

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// lagBehindSnapshot builds a 3-member cluster in which s1 leads, s3 was
// down while s1 committed a few entries, and s1 then took a snapshot and
// compacted its log. s3 restarts with its old log.
func lagBehindSnapshot(t *testing.T) *testCluster {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.node(id(3)).down = true
	for _, d := range []string{"a", "b", "c", "d"} {
		c.propose(id(1), d)
	}
	c.settle()
	c.tick(id(1), 2)
	require.EqualValues(t, 5, c.node(id(1)).applied)
	c.snapshot(id(1), Membership{}, 0)
	require.Equal(t, []uint64{5}, c.node(id(1)).compacts, "the leader's log is durable: compact at once")
	require.EqualValues(t, 6, c.node(id(1)).log.FirstIndex())
	c.node(id(3)).down = false
	return c
}

func TestLaggingFollowerGetsTheSnapshotOnce(t *testing.T) {
	c := lagBehindSnapshot(t)
	ldr := c.node(id(1))
	s3 := c.restart(id(3))
	c.deliver() // s3's announcement makes the leader probe it; s3 lacks 2..5
	require.Len(t, ldr.snapSends, 1)
	send := ldr.snapSends[0]
	require.Equal(t, id(3), send.To)
	require.EqualValues(t, 5, send.Msg.Snapshot.Index)
	require.EqualValues(t, 1, send.Msg.Term)
	require.Len(t, s3.restores, 1, "the follower installed it")
	require.EqualValues(t, 5, s3.applied)
	require.EqualValues(t, 5, s3.r.Commit())
	require.EqualValues(t, 6, s3.log.FirstIndex())

	// Replication continues after the snapshot, and applying at 6.
	tok := c.propose(id(1), "e")
	c.settle()
	c.tick(id(1), 3)
	require.True(t, ldr.hasToken(tok))
	require.EqualValues(t, 6, s3.applied)
	require.Equal(t, ldr.log.ents, s3.log.ents)
	st := s3.r.Status()
	require.EqualValues(t, 5, st.SnapshotIndex)
	require.EqualValues(t, 1, st.SnapshotTerm)
	require.Len(t, ldr.snapSends, 1, "no second transfer")
	require.False(t, ldr.ticker, "the leader goes quiet")
}

// deliverLosingTransfers delivers like deliver, but snapshot transfers are
// lost.
func (c *testCluster) deliverLosingTransfers() {
	for len(c.inbox) > 0 {
		e := c.inbox[0]
		c.inbox = c.inbox[1:]
		if _, ok := e.msg.(*InstallSnapshot); ok || c.cut[[2]ServerID{e.from, e.to}] {
			continue
		}
		c.step(e.to, Receive{From: e.from, Msg: e.msg})
	}
}

func TestSnapshotTransferIsNotRepeatedEveryTick(t *testing.T) {
	c := lagBehindSnapshot(t)
	ldr := c.node(id(1))
	c.restart(id(3))
	c.deliverLosingTransfers()
	require.Len(t, ldr.snapSends, 1)
	c.cut[[2]ServerID{id(1), id(3)}] = true
	// SnapshotRetryMs is 100 ms, 10 ticks: meanwhile only small checks go
	// out, no second transfer.
	for i := 0; i < 9; i++ {
		c.step(id(1), Tick{})
		c.deliver()
	}
	require.Len(t, ldr.snapSends, 1)
	// Time is up: the leader checks the follower is there (a probe), then
	// sends the snapshot again.
	c.heal()
	c.tick(id(1), 3)
	require.Len(t, ldr.snapSends, 2)
	require.Len(t, c.node(id(3)).restores, 1)
	require.EqualValues(t, 5, c.node(id(3)).applied)
}

func TestRestartedFollowerGetsAFreshTransfer(t *testing.T) {
	c := lagBehindSnapshot(t)
	ldr := c.node(id(1))
	c.restart(id(3))
	c.deliverLosingTransfers()
	require.Len(t, ldr.snapSends, 1)
	// s3 restarts mid-transfer: it announces itself and gets a new one.
	c.restart(id(3))
	c.deliver()
	require.Len(t, ldr.snapSends, 2)
	require.Len(t, c.node(id(3)).restores, 1)
}

func TestStaleSnapshotIsNotInstalled(t *testing.T) {
	c := lagBehindSnapshot(t)
	s3 := c.restart(id(3))
	c.settle()
	require.Len(t, s3.restores, 1)
	c.propose(id(1), "e")
	c.settle()
	c.tick(id(1), 3)
	// A duplicate of the transfer arrives late.
	dup := c.node(id(1)).snapSends[0].Msg
	acts := c.step(id(3), Receive{From: id(1), Msg: dup})
	for _, a := range acts {
		require.NotEqual(t, "core.RestoreSnapshot", typeName(a), "a snapshot behind the commit index must not roll the machine back")
	}
	out := sends(acts)
	require.Len(t, out, 1)
	require.True(t, out[0].Msg.(*AppendReply).Success)
	require.EqualValues(t, 6, s3.applied)
}

func TestFollowerHoldingTheSnapshotEntryKeepsItsLog(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.propose(id(1), "a")
	c.settle()
	// s2 holds entries 1..2 but has not heard the commit index yet.
	msg := &InstallSnapshot{Term: 1, Snapshot: Snapshot{Index: 2, Term: 1}}
	nd := c.node(id(2))
	require.EqualValues(t, 1, nd.r.Commit())
	acts := c.step(id(2), Receive{From: id(1), Msg: msg})
	require.Empty(t, nd.restores)
	require.EqualValues(t, 2, nd.r.Commit(), "the snapshot's entry is committed")
	require.EqualValues(t, 2, nd.applied)
	require.EqualValues(t, 2, sends(acts)[0].Msg.(*AppendReply).LastIndex)
}

func TestInstallWaitsForInFlightWrites(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.isolate(id(1))
	// s2 receives entries it does not flush.
	c.propose(id(1), "x")
	ae := &AppendEntries{Term: 1, PrevIndex: 1, PrevTerm: 1, Commit: 1,
		Entries: []Entry{{Index: 2, Term: 1, Type: EntryNormal, Data: []byte("x")}, {Index: 3, Term: 1, Type: EntryNormal}}}
	c.step(id(2), Receive{From: id(1), Msg: ae})
	nd := c.node(id(2))
	require.Len(t, nd.pending, 1)
	// A snapshot at 5 (the leader went on, in this sketch) must wait.
	c.step(id(2), Receive{From: id(1), Msg: &InstallSnapshot{Term: 1, Snapshot: Snapshot{Index: 5, Term: 1}}})
	require.Empty(t, nd.restores, "no install while a write is in flight")
	c.flush(id(2))
	require.Len(t, nd.restores, 1, "installed once the write is durable")
	require.EqualValues(t, 5, nd.r.LastIndex())
	require.EqualValues(t, 5, nd.applied)
}

func TestSnapshotOfANonDurablePrefixCompactsOnceDurable(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.propose(id(1), "a")
	c.flush(id(1))
	c.deliver()
	c.flush(id(1))
	c.flush(id(3))
	c.deliver()
	// s2 learns that 2 is committed while its own write of 2 is in flight.
	nd := c.node(id(2))
	c.step(id(2), Receive{From: id(1), Msg: &Heartbeat{Term: 1, Seq: 9, Commit: 2}})
	require.EqualValues(t, 2, nd.applied)
	require.EqualValues(t, 1, nd.r.Status().StableIndex)
	c.snapshot(id(2), Membership{}, 0)
	require.Empty(t, nd.compacts, "entry 2 is not durable in the log yet")
	c.flush(id(2))
	require.Equal(t, []uint64{2}, nd.compacts)
}

func TestFollowerAcceptsAppendsBelowItsSnapshot(t *testing.T) {
	c := lagBehindSnapshot(t)
	s3 := c.restart(id(3))
	c.settle()
	require.EqualValues(t, 6, s3.log.FirstIndex())
	// A delayed duplicate from before the snapshot: prev 1, entries 2..6.
	ents := c.node(id(1)).log.ents
	old := &AppendEntries{Term: 1, PrevIndex: 1, PrevTerm: 1, Commit: 5, Entries: []Entry{
		{Index: 2, Term: 1, Type: EntryNormal, Data: []byte("a")}, {Index: 3, Term: 1, Type: EntryNormal, Data: []byte("b")},
		{Index: 4, Term: 1, Type: EntryNormal, Data: []byte("c")}, {Index: 5, Term: 1, Type: EntryNormal, Data: []byte("d")}}}
	require.Empty(t, ents, "the leader's log starts after the snapshot")
	acts := c.step(id(3), Receive{From: id(1), Msg: old})
	out := sends(acts)
	require.Len(t, out, 1)
	reply := out[0].Msg.(*AppendReply)
	require.True(t, reply.Success, "entries below the snapshot are committed and match")
	require.EqualValues(t, 5, reply.LastIndex)
}

func TestRestartFromASnapshot(t *testing.T) {
	members := Membership{Voters: []ServerID{id(1), id(2), id(3)}}
	cfg := testConfig(id(1), Membership{Voters: []ServerID{id(1)}}, 1)
	cfg.Snapshot = Snapshot{Index: 10, Term: 2, Members: members, MachineVersion: 0}
	log := &memLog{base: 10, baseTerm: 2, ents: ents(11, 3, 2)}
	r, err := New(cfg, HardState{Term: 3}, log)
	require.NoError(t, err)
	st := r.Status()
	require.EqualValues(t, 10, st.Commit)
	require.EqualValues(t, 10, st.Applied)
	require.EqualValues(t, 10, st.SnapshotIndex)
	require.Equal(t, members, st.Members, "the config comes from the snapshot")
	require.EqualValues(t, 10, st.MembersIndex)
	// The log still holds entries the snapshot covers: the core asks for
	// them to go at the first step.
	log2 := &memLog{ents: append(ents(1, 2, 10), ents(11, 3, 2)...)}
	r, err = New(cfg, HardState{Term: 3}, log2)
	require.NoError(t, err)
	acts, err := r.Step(Started{})
	require.NoError(t, err)
	require.Contains(t, acts, Action(Compact{Through: 10}))

	// A snapshot without voters stands for the initial members.
	cfg.Snapshot.Members = Membership{}
	r, err = New(cfg, HardState{Term: 3}, log)
	require.NoError(t, err)
	require.Equal(t, cfg.InitialMembers, r.Status().Members)

	bad := map[string]*memLog{
		"log ends below the snapshot":  {base: 4, baseTerm: 2, ents: ents(5, 2, 3)},
		"log starts after it":          {base: 11, baseTerm: 3, ents: ents(12, 3, 1)},
		"log disagrees on its term":    {ents: ents(1, 1, 12)},
		"snapshot term above the term": nil,
	}
	for name, l := range bad {
		hs := HardState{Term: 3}
		if l == nil {
			l, hs = log, HardState{Term: 1}
		}
		_, err := New(cfg, hs, l)
		require.ErrorIs(t, err, ErrInvalidState, name)
	}
}

func TestSnapshotTakenBreakingTheRulesIsIgnored(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	nd := c.node(id(1))
	for _, s := range []Snapshot{
		{Index: 5, Term: 1}, // beyond applied
		{Index: 1, Term: 7}, // wrong term
		{Index: 0, Term: 0}, // not newer
		{Index: 1, Term: 1, Members: Membership{Voters: []ServerID{id(1), id(1)}}},
	} {
		c.step(id(1), SnapshotTaken{Snapshot: s})
		require.Zero(t, nd.r.Status().SnapshotIndex, "%+v", s)
	}
	require.Empty(t, nd.compacts)
}

func typeName(a Action) string {
	switch a.(type) {
	case RestoreSnapshot:
		return "core.RestoreSnapshot"
	default:
		return "other"
	}
}
