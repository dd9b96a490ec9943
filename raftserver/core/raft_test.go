package core

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestElectionReplicationAndIdleSilence(t *testing.T) {
	c := newTestCluster(t, 3)
	for _, sid := range c.ids {
		require.NotZero(t, c.node(sid).timerMs, "a member without a leader arms its election timer")
	}
	c.elect(id(1))
	require.EqualValues(t, 1, c.node(id(1)).r.Commit(), "the noop commits")
	c.tick(id(1), 5) // followers learn the commit index
	for _, sid := range c.ids {
		st := c.node(sid).r.Status()
		require.EqualValues(t, 1, st.Term, "pre-vote keeps the term; one election raises it once")
		require.Equal(t, id(1), st.Leader)
		require.EqualValues(t, 1, st.Commit)
	}
	tok := c.propose(id(1), "x=1")
	c.settle()
	require.True(t, c.node(id(1)).hasToken(tok))
	c.tick(id(1), 5) // spreads the commit index, then stops asking for ticks
	before := c.sent
	for _, sid := range c.ids {
		nd := c.node(sid)
		require.EqualValues(t, 2, nd.applied, sid)
		require.False(t, nd.ticker, "%s still ticks", sid)
		if nd.timerMs != 0 {
			// A follower's commit watchdog is cancelled lazily: when it
			// fires in sync, it does nothing and is not re-armed.
			acts := c.step(sid, ElectionTimeout{})
			require.Empty(t, acts, "%s acted on an idle timer", sid)
		}
	}
	// An idle cluster whose followers are in sync sends nothing at all.
	c.settle()
	require.Equal(t, before, c.sent)
}

func TestFollowerAcknowledgesOnlyDurableEntries(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.propose(id(1), "a")
	// Deliver the AppendEntries to s2 only.
	var ae envelope
	for _, e := range c.inbox {
		if e.to == id(2) {
			ae = e
		}
	}
	c.inbox = nil
	acts := c.step(id(2), Receive{From: ae.from, Msg: ae.msg})
	require.Empty(t, sends(acts), "no reply before the entry is durable")
	acts = c.step(id(2), Written{Term: 1, To: 2})
	out := sends(acts)
	require.Len(t, out, 1)
	reply := out[0].Msg.(*AppendReply)
	require.True(t, reply.Success)
	require.EqualValues(t, 2, reply.LastIndex)
}

func TestLeaderCountsItselfOnlyWhenDurable(t *testing.T) {
	c := newTestCluster(t, 1)
	c.step(id(1), ElectionTimeout{})
	require.Equal(t, RoleLeader, c.node(id(1)).r.Role())
	require.EqualValues(t, 0, c.node(id(1)).r.Commit(), "the noop is not durable yet")
	c.flush(id(1))
	require.EqualValues(t, 1, c.node(id(1)).r.Commit())
	tok := c.propose(id(1), "a")
	require.False(t, c.node(id(1)).hasToken(tok))
	c.flush(id(1))
	require.True(t, c.node(id(1)).hasToken(tok))
}

func TestNonLeadersRedirect(t *testing.T) {
	c := newTestCluster(t, 3)
	c.propose(id(2), "early")
	require.ErrorIs(t, c.node(id(2)).lastReply().Err, ErrNoLeader)
	c.elect(id(1))
	c.propose(id(2), "late")
	r := c.node(id(2)).lastReply()
	require.ErrorIs(t, r.Err, ErrNotLeader)
	require.Equal(t, id(1), r.Leader)
	c.step(id(3), Query{Kind: QueryLeader, Token: "q"})
	require.ErrorIs(t, c.node(id(3)).lastReply().Err, ErrNotLeader)
	c.step(id(3), Query{Kind: QueryLocal, Token: "q"})
	require.Equal(t, []RunQuery{{Token: "q"}}, c.node(id(3)).queries)
}

func TestPreVoteKeepsAMinorityFromDisruptingTheLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.isolate(id(3))
	// s3 suspects the leader's node and keeps campaigning alone.
	c.step(id(3), NodeSuspected{Node: id(1).Node})
	for i := 0; i < 10; i++ {
		c.step(id(3), ElectionTimeout{})
		c.settle()
	}
	require.EqualValues(t, 1, c.node(id(3)).r.Term(), "pre-vote must not raise the term")
	c.heal()
	// s2 still follows a live leader, so it refuses s3's pre-vote.
	c.step(id(3), ElectionTimeout{})
	c.settle()
	require.Equal(t, RoleLeader, c.node(id(1)).r.Role())
	require.EqualValues(t, 1, c.node(id(1)).r.Term())
	// The leader answered s3's pre-vote by showing itself: s3 follows it.
	require.Equal(t, id(1), c.node(id(3)).r.Leader())
}

func TestLeaderDownTriggersAPromptElection(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.node(id(1)).down = true
	for _, sid := range []ServerID{id(2), id(3)} {
		c.step(sid, LeaderDown{Leader: id(1)})
		require.NotZero(t, c.node(sid).timerMs)
		require.Less(t, c.node(sid).timerMs, int64(200), "a short timer: base plus jitter")
	}
	c.elect(id(2))
	require.EqualValues(t, 2, c.node(id(2)).r.Term())
	require.Equal(t, id(2), c.node(id(3)).r.Leader())
}

func TestNoLivelockWhenTwoOfThreeAreDown(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.node(id(1)).down = true
	c.node(id(3)).down = true
	c.step(id(2), LeaderDown{Leader: id(1)})
	for i := 0; i < 30; i++ {
		c.step(id(2), ElectionTimeout{})
		c.settle()
	}
	nd := c.node(id(2))
	require.EqualValues(t, 1, nd.r.Term(), "the survivor never raises its term")
	require.NotEqual(t, RoleLeader, nd.r.Role())
	// The timer backs off to 16 times the base (plus jitter as wide) and
	// stays there.
	last := nd.timers[len(nd.timers)-1]
	require.GreaterOrEqual(t, last, int64(1600))
	require.Less(t, last, int64(3200))

	// s3 comes back: the survivor retries at once at the base timeout and wins.
	c.restart(id(3))
	c.step(id(2), NodeUp{Node: id(3).Node})
	require.Less(t, nd.timerMs, int64(200))
	c.elect(id(2))
	require.EqualValues(t, 2, nd.r.Term())
}

func TestDivergedFollowerIsRepairedInFewRoundTrips(t *testing.T) {
	// s1: 1..4 term 1, 5..40 term 3.  s2: 1..4 term 1, 5..90 term 2.
	mk := func(parts ...[]Entry) *memLog {
		var all []Entry
		for _, p := range parts {
			all = append(all, p...)
		}
		return newMemLog(all...)
	}
	c := &testCluster{t: t, nodes: map[ServerID]*testNode{}, cut: map[[2]ServerID]bool{}}
	c.members = Membership{Voters: []ServerID{id(1), id(2), id(3)}}
	c.add(id(1), c.members, HardState{Term: 3}, mk(ents(1, 1, 4), ents(5, 3, 36)))
	c.add(id(2), c.members, HardState{Term: 3}, mk(ents(1, 1, 4), ents(5, 2, 86)))
	c.add(id(3), c.members, HardState{Term: 3}, mk(ents(1, 1, 4), ents(5, 3, 36)))
	c.node(id(3)).down = true
	c.elect(id(1))
	// Count s2's rejections while repairing.
	rejections := 0
	c.step(id(1), Command{Data: []byte("z"), Token: "z"})
	for i := 0; len(c.inbox) > 0 || len(c.node(id(1)).pending)+len(c.node(id(2)).pending) > 0; i++ {
		require.Less(t, i, 1000)
		if len(c.inbox) == 0 {
			c.flush(id(1))
			c.flush(id(2))
			continue
		}
		e := c.inbox[0]
		c.inbox = c.inbox[1:]
		if r, ok := e.msg.(*AppendReply); ok && !r.Success && e.from == id(2) {
			rejections++
		}
		c.step(e.to, Receive{From: e.from, Msg: e.msg})
	}
	require.LessOrEqual(t, rejections, 2, "repair skips whole terms, not one entry per round trip")
	require.Equal(t, c.node(id(1)).log.ents, c.node(id(2)).log.ents)
	require.True(t, c.node(id(1)).hasToken("z"))
}

func TestOverwriteWaitsForInFlightWrites(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	// s1 appends entries that only s2 receives, and s2 does not flush them.
	c.isolate(id(3))
	c.propose(id(1), "doomed-1")
	c.propose(id(1), "doomed-2")
	c.deliver()
	require.Len(t, c.node(id(2)).pending, 2)
	// A leader of term 2 whose log lacks them (as if s3 had won with a
	// voter that never saw them) sends a conflicting entry for index 2.
	conflicting := &AppendEntries{Term: 2, PrevIndex: 1, PrevTerm: 1, Commit: 1,
		Entries: []Entry{{Index: 2, Term: 2, Type: EntryNormal, Data: []byte("other")}}}
	acts := c.step(id(2), Receive{From: id(3), Msg: conflicting})
	for _, a := range acts {
		_, isAppend := a.(Append)
		require.False(t, isAppend, "no overwrite while earlier writes are in flight")
	}
	// Once the earlier writes are durable, the parked message is applied.
	nd := c.node(id(2))
	p := nd.pending
	nd.pending = nil
	var appended []Append
	for _, e := range p {
		for _, a := range c.step(id(2), Written{Term: e.Term, To: e.Index}) {
			if ap, ok := a.(Append); ok {
				appended = append(appended, ap)
			}
		}
	}
	require.Len(t, appended, 1)
	require.EqualValues(t, 2, appended[0].Entries[0].Index)
	require.Equal(t, "other", string(nd.log.ents[1].Data))
	require.Len(t, nd.log.ents, 2)
}

func TestCheckQuorumStepsDownAPartitionedLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.isolate(id(1))
	tok := c.propose(id(1), "lost")
	nd := c.node(id(1))
	require.True(t, nd.ticker, "work in flight: the leader asks for ticks")
	c.tick(id(1), 20) // two silent windows: slow, not gone
	require.Equal(t, RoleLeader, nd.r.Role())
	// Its detector suspects one node: s3 may still answer.
	c.step(id(1), NodeSuspected{Node: id(2).Node})
	require.Equal(t, RoleLeader, nd.r.Role())
	// And the other: no quorum can answer, it steps down at once.
	c.step(id(1), NodeSuspected{Node: id(3).Node})
	require.Equal(t, RoleFollower, nd.r.Role())
	require.Equal(t, Reply{Token: tok, Err: ErrLeadershipLost}, nd.lastReply())
	require.False(t, nd.ticker)
	c.propose(id(1), "after")
	require.ErrorIs(t, nd.lastReply().Err, ErrNoLeader, "clients get an answer, not a hang")
	require.Equal(t, Counters{PreVotes: 1, Elections: 1, ElectionsWon: 1, QuorumStepDowns: 1}, nd.r.Counters())
	require.Equal(t, Counters{}, c.node(id(2)).r.Counters(), "a follower that only voted counts nothing")
}

// A quorum that answers slowly is not a lost quorum: without evidence from
// the failure detector or process monitors, a leader with work in flight
// keeps leading through silent windows, and commits once answers come.
func TestSlowVotersDoNotDeposeTheLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	nd := c.node(id(1))
	term := nd.r.Term()
	c.isolate(id(1))
	tok := c.propose(id(1), "slow")
	sentBefore := c.sent
	c.tick(id(1), 40) // four check-quorum windows
	require.Equal(t, RoleLeader, nd.r.Role())
	require.Equal(t, term, nd.r.Term())
	require.True(t, nd.ticker)
	require.Greater(t, c.sent, sentBefore, "it keeps asking the silent voters")
	// Less and less often: a heartbeat to each voter on every tick would
	// be 80 messages, adding load to voters that are slow already.
	require.Less(t, c.sent-sentBefore, 40)
	require.Empty(t, nd.replies)

	c.heal()
	c.tick(id(1), 2*maxResendBackoffTicks)
	require.Equal(t, RoleLeader, nd.r.Role())
	require.Equal(t, term, nd.r.Term())
	require.Contains(t, nd.tokens, IndexedToken{Index: 2, Token: tok})
}

// A suspicion is overruled by answers: a voter heard from in the current
// check-quorum window counts, whatever the detector says (its heartbeats
// may be late while the member answers). Once the leader is idle, no window
// runs and suspicions alone decide.
func TestVotersHeardInTheWindowOverruleSuspicion(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	nd := c.node(id(1))
	x := c.propose(id(1), "x")
	c.deliver()
	c.flush(id(1))
	c.flush(id(2)) // s2 answers; s3 has not yet
	c.deliver()
	require.True(t, nd.hasToken(x), "committed by s1 and s2")
	y := c.propose(id(1), "y")
	c.step(id(1), NodeSuspected{Node: id(2).Node})
	c.step(id(1), NodeSuspected{Node: id(3).Node})
	require.Equal(t, RoleLeader, nd.r.Role(), "s2 answered in this window")
	c.settle()
	require.True(t, nd.hasToken(y), "%+v %+v", nd.replies, nd.tokens)
	require.Equal(t, RoleFollower, nd.r.Role(), "idle, with both nodes suspected")
}

// Process monitors are evidence too: a leader whose voters' processes are
// gone in a quorum steps down at once, idle or not; a gone peer that
// speaks again counts again.
func TestGoneVotersDeposeTheLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	nd := c.node(id(1))
	c.step(id(1), PeerDown{Peer: id(2)})
	require.Equal(t, RoleLeader, nd.r.Role(), "s3 still counts")
	// s2 is back (a restarted member announces itself).
	c.step(id(1), Receive{From: id(2), Msg: &NotLeader{Term: nd.r.Term()}})
	c.settle()
	c.step(id(1), PeerDown{Peer: id(3)})
	require.Equal(t, RoleLeader, nd.r.Role(), "s2 counts again")
	c.step(id(1), PeerDown{Peer: id(9)}) // not a member: ignored
	require.Equal(t, RoleLeader, nd.r.Role())
	c.step(id(1), PeerDown{Peer: id(2)})
	require.Equal(t, RoleFollower, nd.r.Role())
	c.propose(id(1), "after")
	require.ErrorIs(t, nd.lastReply().Err, ErrNoLeader)
}

func TestIdleLeaderDoesNotStepDown(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.tick(id(1), 5)
	c.isolate(id(1))
	require.False(t, c.node(id(1)).ticker)
	require.Equal(t, RoleLeader, c.node(id(1)).r.Role())
}

func TestConsistentQueryConfirmsLeadershipFirst(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	nd := c.node(id(1))
	acts := c.step(id(1), Query{Kind: QueryConsistent, Token: "q1"})
	require.Empty(t, nd.queries, "not before a quorum confirmed")
	hb := 0
	for _, s := range sends(acts) {
		if _, ok := s.Msg.(*Heartbeat); ok {
			hb++
		}
	}
	require.Equal(t, 2, hb)
	c.settle()
	require.Equal(t, []RunQuery{{Token: "q1", ReadIndex: 1}}, nd.queries)

	// Partitioned, a consistent query never runs; once its detector tells,
	// the leader steps down and answers.
	c.isolate(id(1))
	c.step(id(1), Query{Kind: QueryConsistent, Token: "q2"})
	c.tick(id(1), 20)
	require.Len(t, nd.queries, 1)
	require.Empty(t, nd.replies, "slow is not gone: it waits")
	c.cutOff(id(1))
	require.Len(t, nd.queries, 1)
	require.Equal(t, Reply{Token: "q2", Err: ErrNoLeader}, nd.lastReply())
}

func TestQueryBeforeFirstCommitWaitsForIt(t *testing.T) {
	c := newTestCluster(t, 3)
	c.step(id(1), ElectionTimeout{})
	c.deliver() // votes arrive; the noop is not durable anywhere yet
	require.Equal(t, RoleLeader, c.node(id(1)).r.Role())
	c.step(id(1), Query{Kind: QueryConsistent, Token: "q"})
	c.deliver()
	require.Empty(t, c.node(id(1)).queries)
	c.settle()
	require.Equal(t, []RunQuery{{Token: "q", ReadIndex: 1}}, c.node(id(1)).queries)
}

func TestMembershipChangesWaitTheirTurn(t *testing.T) {
	c := newTestCluster(t, 3)
	c.step(id(1), ElectionTimeout{})
	c.deliver() // votes arrive; the noop is not durable anywhere yet
	require.Equal(t, RoleLeader, c.node(id(1)).r.Role())
	joiner := c.add(id(4), Membership{}, HardState{}, newMemLog())
	require.Zero(t, joiner.timerMs, "a joiner outside any config does not campaign")

	// Before the term's first commit, and while one change is uncommitted,
	// changes wait in order instead of being refused; each is checked
	// against the configuration when its turn comes.
	c.step(id(1), AddMember{Member: id(4), Voter: false, Token: "add4"})
	c.step(id(1), AddMember{Member: id(4), Voter: true, Token: "promote"})
	c.step(id(1), AddMember{Member: id(2), Voter: true, Token: "dup"})
	require.Empty(t, c.node(id(1)).replies, "nothing refused")
	c.settle()
	ld := c.node(id(1))
	require.True(t, ld.hasToken("add4"))
	require.True(t, ld.hasToken("promote"))
	require.Less(t, ld.tokens[len(ld.tokens)-2].Index, ld.tokens[len(ld.tokens)-1].Index, "add4 commits before promote")
	require.Equal(t, []Reply{{Token: "dup", Err: ErrMemberExists, Leader: id(1)}}, ld.replies)
	require.Equal(t, ld.log.ents, joiner.log.ents, "the new member caught up")
	require.True(t, c.node(id(2)).r.Status().Members.IsVoter(id(4)))
	require.True(t, joiner.r.Status().Members.IsVoter(id(4)))

	c.step(id(1), RemoveMember{Member: id(9), Token: "nobody"})
	require.ErrorIs(t, c.node(id(1)).lastReply().Err, ErrUnknownMember)
	c.step(id(1), AddMember{Member: id(2), Voter: true, Token: "dup"})
	require.ErrorIs(t, c.node(id(1)).lastReply().Err, ErrMemberExists)

	// Removing the leader: it leads until the change commits, then steps
	// down, and the rest elect a new leader.
	c.step(id(1), RemoveMember{Member: id(1), Token: "rm1"})
	c.settle()
	require.True(t, c.node(id(1)).hasToken("rm1"))
	removed := c.node(id(1))
	require.Equal(t, RoleFollower, removed.r.Role())
	// A removed member never campaigns; its timer only repeats NotLeader.
	acts := c.step(id(1), ElectionTimeout{})
	require.Equal(t, RoleFollower, removed.r.Role())
	for _, s := range sends(acts) {
		require.IsType(t, &NotLeader{}, s.Msg)
	}
	removed.down = true
	c.elect(id(2))
	tok := c.propose(id(2), "after removal")
	c.settle()
	require.True(t, c.node(id(2)).hasToken(tok))
}

// TestRemovedFollowerHearsOfItsRemoval: a leader stops replicating to a
// member as soon as it appends a configuration without it, so the removed
// follower would never get that entry, nor apply it and stop. The leader
// sends it the log up to the entry and the commit index, nothing more, and
// then forgets it; a follower that cannot be reached is given up after a
// bounded number of ticks, after which the idle leader sends nothing.
func TestRemovedFollowerHearsOfItsRemoval(t *testing.T) {
	c := newTestCluster(t, 4)
	c.elect(id(1))
	c.settle()
	ld := c.node(id(1))

	// A command right behind the removal: it must not reach the removed
	// member, whose last configuration must be the one that removed it
	// (a later one would keep it from taking the removal for its own).
	c.step(id(1), RemoveMember{Member: id(3), Token: "rm3"})
	at := ld.r.Status().MembersIndex
	tok := c.propose(id(1), "after")
	c.settle()
	require.True(t, ld.hasToken("rm3"))
	removed := c.node(id(3))
	require.False(t, removed.r.Status().Members.Contains(id(3)), "the removal did not reach the removed member")
	require.Equal(t, at, removed.r.Status().MembersIndex)
	require.Equal(t, at, removed.r.LastIndex(), "it was sent past its removal")
	// The commit index follows at the next tick, or with the next message.
	c.tick(id(1), 3)
	require.True(t, ld.hasToken(tok))
	require.Equal(t, at, removed.applied, "it did not apply its removal")
	require.Equal(t, at, removed.r.LastIndex())
	require.Len(t, ld.r.ldr.progress, 2, "the leader still tracks the removed member")

	// A member that is cut off when it is removed is told until the leader
	// gives up; then the leader goes quiet.
	c.isolate(id(4))
	c.step(id(1), RemoveMember{Member: id(4), Token: "rm4"})
	c.settle()
	require.True(t, ld.hasToken("rm4"), "the change commits without the member it removes")
	require.Equal(t, []ServerID{id(4)}, ld.r.ldr.leavingPeers())
	c.tick(id(1), maxLeavingTicks+1)
	require.Empty(t, ld.r.ldr.leavingPeers(), "the leader never gave up")
	require.False(t, ld.ticker, "the leader still ticks for a member it gave up")
	sent := c.sent
	c.step(id(1), Tick{})
	c.settle()
	require.Equal(t, sent, c.sent, "an idle leader sent something")

	// Back, it asks for votes (its leader's node was suspected meanwhile):
	// the leader tells it then, and it stops asking. It is sent nothing
	// written after its removal: neither the command nor the member added
	// since.
	late := c.node(id(4))
	at = ld.r.Status().MembersIndex
	require.Less(t, late.r.LastIndex(), at)
	c.add(id(5), Membership{}, HardState{}, newMemLog())
	c.step(id(1), AddMember{Member: id(5), Voter: false, Token: "add5"})
	c.propose(id(1), "after it left")
	c.settle()
	c.tick(id(1), 3)
	require.True(t, ld.hasToken("add5"))
	require.Greater(t, ld.r.LastIndex(), at+1)
	c.heal()
	c.step(id(4), NodeSuspected{Node: id(1).Node})
	c.step(id(4), ElectionTimeout{})
	c.settle()
	c.tick(id(1), 5)
	require.Equal(t, at, late.r.Status().MembersIndex, "the late member was not told")
	require.Equal(t, at, late.r.LastIndex(), "the late member was sent what came after its removal")
	require.Equal(t, at, late.applied, "the late member did not apply its removal")
	require.Empty(t, ld.r.ldr.leavingPeers())
	acts := c.step(id(4), ElectionTimeout{})
	for _, s := range sends(acts) {
		_, asks := s.Msg.(*PreVoteRequest)
		require.False(t, asks, "a member that knows it was removed asks for votes")
	}
}

// TestRemovedFollowerAddedBackIsAPeerAgain: a member added back before it
// heard of its removal is a peer again, sent everything.
func TestRemovedFollowerAddedBackIsAPeerAgain(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.settle()
	ld := c.node(id(1))
	c.isolate(id(3))
	c.step(id(1), RemoveMember{Member: id(3), Token: "rm3"})
	c.settle()
	require.True(t, ld.hasToken("rm3"))
	require.Equal(t, []ServerID{id(3)}, ld.r.ldr.leavingPeers())
	c.step(id(1), AddMember{Member: id(3), Voter: true, Token: "add3"})
	c.settle()
	require.Empty(t, ld.r.ldr.leavingPeers())
	c.heal()
	c.tick(id(1), 10)
	require.True(t, ld.hasToken("add3"))
	require.Equal(t, ld.r.LastIndex(), c.node(id(3)).r.LastIndex())
	require.True(t, c.node(id(3)).r.Status().Members.IsVoter(id(3)))
}

func TestQueuedMembershipChangesAreBoundedAndAnsweredOnStepDown(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.isolate(id(1))
	ld := c.node(id(1))
	// The first change is appended (it cannot commit); the next ones wait,
	// up to the bound; beyond it they are refused at once.
	for i := 10; i < 10+1+maxQueuedChanges+1; i++ {
		c.step(id(1), AddMember{Member: id(i), Voter: false, Token: i})
	}
	require.Len(t, ld.replies, 1)
	require.Equal(t, 10+1+maxQueuedChanges, ld.replies[0].Token)
	require.ErrorIs(t, ld.replies[0].Err, ErrMembershipChangePending)
	// The isolated leader steps down once its detector tells: the appended
	// change's outcome is unknown, the queued ones were never appended.
	c.tick(id(1), 20)
	require.Equal(t, RoleLeader, ld.r.Role())
	c.cutOff(id(1))
	require.Equal(t, RoleFollower, ld.r.Role())
	require.Len(t, ld.replies, 2+maxQueuedChanges)
	require.Equal(t, Reply{Token: 10, Err: ErrLeadershipLost}, ld.replies[1])
	for i, rep := range ld.replies[2:] {
		require.Equal(t, Reply{Token: 11 + i, Err: ErrNoLeader}, rep)
	}
}

func TestLeaderTransfer(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.step(id(1), TransferLeadership{To: id(9), Token: "bad"})
	require.ErrorIs(t, c.node(id(1)).lastReply().Err, ErrUnknownMember)

	c.isolate(id(3))
	c.propose(id(1), "s3 lags")
	c.settle()
	c.heal()
	c.step(id(1), TransferLeadership{To: id(3), Token: "xfer"})
	c.propose(id(1), "during")
	require.ErrorIs(t, c.node(id(1)).lastReply().Err, ErrTransferInProgress)
	c.settle()
	require.Equal(t, RoleLeader, c.node(id(3)).r.Role())
	require.EqualValues(t, 2, c.node(id(3)).r.Term())
	require.Contains(t, c.node(id(1)).replies, Reply{Token: "xfer"})
}

func TestLeaderTransferTimesOut(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.isolate(id(3))
	c.step(id(1), TransferLeadership{To: id(3), Token: "xfer"})
	c.tick(id(1), 10)
	require.Equal(t, Reply{Token: "xfer", Err: ErrTransferFailed, Leader: id(1)}, c.node(id(1)).lastReply())
	require.Equal(t, RoleLeader, c.node(id(1)).r.Role())
	c.propose(id(1), "accepted again")
	c.settle()
	require.True(t, c.node(id(1)).hasToken("cmd:accepted again"))
}

func TestRestartedFollowerCatchesUpWithAnIdleLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.propose(id(1), "a")
	c.settle()
	c.tick(id(1), 5)
	nd := c.restart(id(2))
	c.settle()
	c.tick(id(1), 5)
	require.Equal(t, id(1), nd.r.Leader(), "the restart announcement made the leader show itself")
	require.EqualValues(t, 2, nd.applied)
}

func TestRestartedLeaderIsForgottenByItsFollowers(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.settle()
	c.restart(id(1))
	c.settle()
	for _, sid := range []ServerID{id(2), id(3)} {
		require.True(t, c.node(sid).r.Leader().IsZero(), "%s still follows the restarted leader", sid)
	}
	c.elect(id(2))
}

func TestStorageFailureBreaksTheRaft(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.propose(id(1), "a")
	c.settle()
	c.tick(id(1), 5)
	nd := c.node(id(2))
	nd.log.err = errBoom
	// A delayed duplicate makes s2 compare a term it must read from storage.
	// A mismatching previous term makes s2 walk its log back for a hint.
	_, err := nd.r.Step(Receive{From: id(1), Msg: &AppendEntries{Term: 1, PrevIndex: 2, PrevTerm: 0, Commit: 2}})
	require.ErrorIs(t, err, ErrStorage)
	require.ErrorIs(t, err, errBoom)
	_, err = nd.r.Step(Tick{})
	require.ErrorIs(t, err, ErrStorage, "broken for good")
}

var errBoom = errorString("disk on fire")

type errorString string

func (e errorString) Error() string { return string(e) }

func TestCommandsBatchIsOneAppendAndOneMessagePerFollower(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	batch := Commands{Batch: []Command{{Data: []byte("a"), Token: "ta"}, {Data: []byte("b"), Token: "tb"}, {Data: []byte("c")}}}
	acts := c.step(id(1), batch)
	appends, msgs := 0, 0
	for _, a := range acts {
		switch a := a.(type) {
		case Append:
			appends++
			require.Len(t, a.Entries, 3)
			require.EqualValues(t, 2, a.Entries[0].Index)
		case Send:
			msgs++
			require.Len(t, a.Msg.(*AppendEntries).Entries, 3)
		}
	}
	require.Equal(t, 1, appends)
	require.Equal(t, 2, msgs)
	c.settle()
	nd := c.node(id(1))
	require.Equal(t, []IndexedToken{{Index: 2, Token: "ta"}, {Index: 3, Token: "tb"}}, nd.tokens)

	c.step(id(2), batch)
	follower := c.node(id(2))
	require.Len(t, follower.replies, 3, "a non-leader answers every command of a batch")
	for _, r := range follower.replies {
		require.ErrorIs(t, r.Err, ErrNotLeader)
	}
}

func TestStoppingAnswersWhatABrokenLeaderHolds(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.settle()
	c.isolate(id(1))
	tok := c.propose(id(1), "held")
	c.step(id(1), Query{Kind: QueryConsistent, Token: "q"})
	nd := c.node(id(1))
	nd.r.fail(errBoom)
	_, err := nd.r.Step(Tick{})
	require.ErrorIs(t, err, ErrStorage)
	acts, err := nd.r.Step(Stopping{})
	require.NoError(t, err, "a broken member still answers as it stops")
	var replies []Reply
	for _, a := range acts {
		switch a := a.(type) {
		case Reply:
			replies = append(replies, a)
		case Send:
			require.IsType(t, &NotLeader{}, a.Msg)
		default:
			t.Fatalf("Stopping emitted %T", a)
		}
	}
	require.Equal(t, []Reply{{Token: tok, Err: ErrLeadershipLost}, {Token: "q", Err: ErrNoLeader}}, replies)
	acts, err = c.node(id(2)).r.Step(Stopping{})
	require.NoError(t, err)
	require.Empty(t, acts, "a follower holds nothing")
}

// A candidate whose timer fires before its votes come back asks again with
// a pre-vote, but it still holds its own vote in its term: a quorum of
// grants that arrive late makes it that term's leader. On a loaded
// machine, where round trips outlast the timer, rounds would otherwise
// never conclude.
func TestLateVotesStillElectAfterTheCandidateTimedOut(t *testing.T) {
	c := newTestCluster(t, 3)
	c.isolate(id(3))
	c.step(id(1), ElectionTimeout{})
	// Deliver until s2's grant is on its way back, and hold it there.
	var late envelope
	for len(c.inbox) > 0 {
		e := c.inbox[0]
		c.inbox = c.inbox[1:]
		if v, ok := e.msg.(*VoteReply); ok && e.to == id(1) {
			require.True(t, v.Granted)
			late = e
			continue
		}
		if !c.cut[[2]ServerID{e.from, e.to}] {
			c.step(e.to, Receive{From: e.from, Msg: e.msg})
		}
	}
	require.NotNil(t, late.msg)
	s1 := c.node(id(1))
	require.Equal(t, RoleCandidate, s1.r.Role())
	require.EqualValues(t, 1, s1.r.Term())

	c.step(id(1), ElectionTimeout{}) // the round is given up: pre-vote again
	require.Equal(t, RolePreVote, s1.r.Role())
	c.step(id(1), Receive{From: late.from, Msg: late.msg})
	require.Equal(t, RoleLeader, s1.r.Role())
	require.EqualValues(t, 1, s1.r.Term(), "the term its votes were for")
	c.inbox = nil // its new pre-vote requests, now moot
	c.heal()
	c.settle()
	c.tick(id(1), 5) // s3 gets what it missed
	require.Equal(t, id(1), c.node(id(2)).r.Leader())
	require.Equal(t, id(1), c.node(id(3)).r.Leader())
}

// A new leader that does not hear from a follower sends its probe again,
// not the log from the first entry: with nothing acknowledged yet (match
// 0), resending "from match+1" sent up to MaxAppendBytes of entries the
// follower most likely holds, and made both sides read them from disk.
func TestAnUnansweredProbeIsSentAgainNotTheWholeLog(t *testing.T) {
	c, last := newLeaderUnheardBy5(t)
	resent := appendsTo(c.step(id(2), Tick{}), id(5))
	require.Len(t, resent, 1)
	require.Equal(t, last, resent[0].PrevIndex, "the probe again: after what s5 held at the election")
	require.Len(t, resent[0].Entries, 1, "the new leader's first entry only")

	c.heal()
	c.tick(id(2), 2*maxResendBackoffTicks)
	require.Equal(t, c.node(id(2)).r.log.lastIndex(), c.node(id(5)).r.log.lastIndex())
}

// newLeaderUnheardBy5 builds a cluster of 5 with 20 entries whose leader
// s1 is lost; s2 takes over, and s5 hears nothing from it. It returns the
// last index before s2's election.
func newLeaderUnheardBy5(t *testing.T) (*testCluster, uint64) {
	c := newTestCluster(t, 5)
	c.elect(id(1))
	for i := range 20 {
		c.propose(id(1), "cmd"+strconv.Itoa(i))
	}
	c.settle()
	last := c.node(id(2)).r.log.lastIndex()
	c.isolate(id(1))
	for i := 2; i <= 5; i++ {
		c.step(id(i), NodeSuspected{Node: id(1).Node})
	}
	c.cut[[2]ServerID{id(2), id(5)}] = true
	c.elect(id(2))
	return c, last
}

// appendsTo returns the AppendEntries among acts sent to to.
func appendsTo(acts []Action, to ServerID) []*AppendEntries {
	var out []*AppendEntries
	for _, s := range sends(acts) {
		if ae, ok := s.Msg.(*AppendEntries); ok && s.To == to {
			out = append(out, ae)
		}
	}
	return out
}

// TestARestartedFollowerIsProbedAtTheEndOfTheLog: a leader that has heard
// nothing from a follower in its term (match 0, as after an election)
// probes it with its last entry when the follower says it restarted, and
// where the follower's own log ends when it asks for a pre-vote; not with
// the whole log from index 1.
func TestARestartedFollowerIsProbedAtTheEndOfTheLog(t *testing.T) {
	c, _ := newLeaderUnheardBy5(t)
	c.inbox = nil
	last := c.node(id(2)).r.log.lastIndex()
	require.Zero(t, c.node(id(2)).r.ldr.progress[id(5)].match)

	probes := appendsTo(c.step(id(2), Receive{From: id(5), Msg: &NotLeader{Term: c.node(id(2)).r.term}}), id(5))
	require.Len(t, probes, 1)
	require.Equal(t, last-1, probes[0].PrevIndex, "a restart notice is answered with the last entry only")
	require.Len(t, probes[0].Entries, 1)

	s5 := c.node(id(5)).r
	probes = appendsTo(c.step(id(2), Receive{From: id(5), Msg: &PreVoteRequest{
		Term: s5.term + 1, LastIndex: s5.log.lastIndex(), LastTerm: s5.log.lastTerm()}}), id(5))
	require.Len(t, probes, 1)
	require.Equal(t, s5.log.lastIndex(), probes[0].PrevIndex, "a pre-vote is answered from where the asker's log ends")
	require.Len(t, probes[0].Entries, int(last-s5.log.lastIndex()))

	c.inbox = nil
	c.heal()
	c.isolate(id(1))
	c.tick(id(2), 2*maxResendBackoffTicks)
	require.Equal(t, last, c.node(id(5)).r.log.lastIndex())
}

// TestCommitResendsBackOff: a follower whose replies do not arrive is sent
// the commit index again less and less often, not at every tick.
func TestCommitResendsBackOff(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	c.propose(id(1), "a")
	c.settle()
	c.propose(id(1), "b")
	c.settle()
	// s3 holds every entry, but its replies so far predate the commit of
	// the last one; from now on they are lost.
	r := c.node(id(1)).r
	pr := r.ldr.progress[id(3)]
	require.Equal(t, r.log.lastIndex(), r.commit)
	require.Equal(t, r.commit, pr.match)
	require.Less(t, pr.commitAcked, r.commit)
	c.cut[[2]ServerID{id(3), id(1)}] = true

	commits := 0
	ticks := 200
	for range ticks {
		commits += len(appendsTo(c.step(id(1), Tick{}), id(3)))
		c.settle()
	}
	require.Positive(t, commits)
	require.LessOrEqual(t, commits, ticks/maxResendBackoffTicks+8, "re-sent with a backoff")

	// Once s3's answer shows the commit index, the backoff starts afresh.
	c.heal()
	c.tick(id(1), maxResendBackoffTicks+1)
	require.Equal(t, r.commit, pr.commitAcked)
	require.Zero(t, pr.commitBackoff)
}

// TestCommandsKeepTheirFrame checks that a command's frame (Command.Framed)
// reaches the entry the leader appends, so that storage can keep it.
func TestCommandsKeepTheirFrame(t *testing.T) {
	c := newTestCluster(t, 3)
	c.elect(id(1))
	buf := []byte{byte(EntryNormal), 'x', 'y'}
	c.step(id(1), Command{Data: buf[1:], Framed: buf, Token: "framed"})
	ents := c.node(id(1)).log.ents
	e := ents[len(ents)-1]
	require.Equal(t, "xy", string(e.Data))
	require.True(t, e.FramedOK())
	require.Same(t, &buf[0], &e.Framed[0])
}
