package core

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// versionEntries returns the EntryMachineVersion entries of a log.
func versionEntries(t *testing.T, l *memLog) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for _, e := range l.ents {
		if e.Type == EntryMachineVersion {
			v, err := DecodeMachineVersion(e.Data)
			require.NoError(t, err)
			out[e.Index] = v
		}
	}
	return out
}

// versionedCluster starts 3 members whose code supports versions vs.
func versionedCluster(t *testing.T, vs ...uint64) *testCluster {
	c := &testCluster{t: t, nodes: map[ServerID]*testNode{}, cut: map[[2]ServerID]bool{}}
	for i := range vs {
		c.members.Voters = append(c.members.Voters, id(i+1))
	}
	for i, v := range vs {
		cfg := testConfig(id(i+1), c.members, i+1)
		cfg.MachineVersion = v
		c.start(cfg, HardState{}, newMemLog())
	}
	return c
}

func TestVersionBumpWaitsForAQuorum(t *testing.T) {
	c := versionedCluster(t, 2, 1, 0)
	c.elect(id(1))
	c.tick(id(1), 3)
	// A quorum (s1, s2) supports 1; only s1 supports 2.
	require.Equal(t, map[uint64]uint64{2: 1}, versionEntries(t, c.node(id(1)).log))
	require.EqualValues(t, 1, c.node(id(1)).r.Status().MachineVersion)
	// s3 runs old code: it holds the bump but stops applying before it.
	s3 := c.node(id(3))
	require.EqualValues(t, 2, s3.r.Commit())
	require.EqualValues(t, 1, s3.applied)
	tok := c.propose(id(1), "x")
	c.settle()
	c.tick(id(1), 3)
	require.True(t, c.node(id(1)).hasToken(tok), "two upgraded members commit")
	require.EqualValues(t, 3, s3.r.LastIndex(), "old code keeps its log current")
	require.EqualValues(t, 3, s3.r.Commit())
	require.EqualValues(t, 1, s3.applied)

	// s3 is restarted with newer code: it applies again, and the cluster
	// moves to version 2, which now has a quorum.
	s3 = c.restart(id(3), 2)
	c.settle()
	c.tick(id(1), 5)
	require.Equal(t, map[uint64]uint64{2: 1, 4: 2}, versionEntries(t, s3.log))
	require.EqualValues(t, 4, s3.applied)
	require.EqualValues(t, 4, c.node(id(2)).r.Commit())
	require.EqualValues(t, 3, c.node(id(2)).applied, "s2 stops before version 2")
}

func TestNoBumpBeforeTheTermsFirstCommit(t *testing.T) {
	c := versionedCluster(t, 1, 1, 1)
	c.step(id(1), ElectionTimeout{})
	c.deliver()
	require.Equal(t, RoleLeader, c.node(id(1)).r.Role())
	require.Empty(t, versionEntries(t, c.node(id(1)).log), "versions unknown, noop uncommitted")
	c.settle()
	require.Equal(t, map[uint64]uint64{2: 1}, versionEntries(t, c.node(id(1)).log))
	// One bump only, even as more replies arrive.
	c.tick(id(1), 5)
	require.Len(t, versionEntries(t, c.node(id(1)).log), 1)
}

func TestOldCodeNeverLeadsAfterABump(t *testing.T) {
	c := versionedCluster(t, 1, 1, 0)
	c.elect(id(1))
	c.tick(id(1), 3)
	s3 := c.node(id(3))
	require.EqualValues(t, 1, s3.r.Status().MachineVersion)
	// The leader dies; s3 does not even try.
	c.node(id(1)).down = true
	c.step(id(3), LeaderDown{Leader: id(1)})
	require.Zero(t, s3.timerMs, "old code arms no election timer")
	c.step(id(3), ElectionTimeout{})
	require.Equal(t, RoleFollower, s3.r.Role())
	// Nor is it granted a vote when it asks (as a candidate whose log lacks
	// the bump would), by a voter that knows the leader is gone.
	c.step(id(2), LeaderDown{Leader: id(1)})
	acts := c.step(id(2), Receive{From: id(3), Msg: &PreVoteRequest{Term: 2, LastIndex: 9, LastTerm: 1, MachineVersion: 0}})
	require.False(t, sends(acts)[0].Msg.(*PreVoteReply).Granted)
	acts = c.step(id(2), Receive{From: id(3), Msg: &VoteRequest{Term: 2, LastIndex: 9, LastTerm: 1, MachineVersion: 0}})
	require.False(t, sends(acts)[0].Msg.(*VoteReply).Granted)
	// An upgraded member wins with s3's vote.
	c.elect(id(2))
	require.Equal(t, id(2), s3.r.Leader())
}

func TestSnapshotIsNotSentToCodeThatCannotRunIt(t *testing.T) {
	c := versionedCluster(t, 1, 1, 0)
	c.elect(id(1))
	c.node(id(3)).down = true
	c.propose(id(1), "a")
	c.settle()
	c.tick(id(1), 3)
	ldr := c.node(id(1))
	require.EqualValues(t, 1, ldr.r.Status().MachineVersion)
	c.snapshot(id(1), Membership{}, 1)
	c.node(id(3)).down = false
	s3 := c.restart(id(3))
	c.settle()
	require.Empty(t, ldr.snapSends, "s3's code does not support version 1")
	c.tick(id(1), 30)
	require.Empty(t, ldr.snapSends)
	// Upgraded, s3 gets it.
	s3 = c.restart(id(3), 1)
	c.settle()
	require.Len(t, ldr.snapSends, 1)
	require.Len(t, s3.restores, 1)
	require.EqualValues(t, 1, s3.r.Status().MachineVersion)
}

func TestMachineVersionCodec(t *testing.T) {
	for _, v := range []uint64{0, 1, 300, ^uint64(0)} {
		got, err := DecodeMachineVersion(EncodeMachineVersion(v))
		require.NoError(t, err)
		require.Equal(t, v, got)
	}
	for _, b := range [][]byte{nil, {0x80}, {1, 0}} {
		_, err := DecodeMachineVersion(b)
		require.ErrorIs(t, err, ErrMalformed)
	}
}

// FuzzDecodeMachineVersion: the version entry decoder never panics and
// accepts exactly the canonical encodings' values.
func FuzzDecodeMachineVersion(f *testing.F) {
	f.Add(EncodeMachineVersion(7))
	f.Add([]byte{0x80, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeMachineVersion(b)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			return
		}
		again, err := DecodeMachineVersion(EncodeMachineVersion(v))
		require.NoError(t, err)
		require.Equal(t, v, again)
	})
}

func TestFollowerRefusesASnapshotItsCodeCannotRun(t *testing.T) {
	c := versionedCluster(t, 1, 1, 0)
	c.elect(id(1))
	c.tick(id(1), 3)
	s3 := c.node(id(3))
	acts := c.step(id(3), Receive{From: id(1), Msg: &InstallSnapshot{Term: 1, Snapshot: Snapshot{Index: 9, Term: 1, MachineVersion: 1}}})
	require.Empty(t, s3.restores)
	reply := sends(acts)[0].Msg.(*AppendReply)
	require.EqualValues(t, 2, reply.LastIndex, "it answers with its position")
	require.EqualValues(t, 0, reply.MachineVersion, "and its version")
}

func TestHeldBackTransferStartsWhenTheFollowerReportsNewCode(t *testing.T) {
	c := versionedCluster(t, 1, 1, 0)
	c.elect(id(1))
	c.node(id(3)).down = true
	c.propose(id(1), "a")
	c.settle()
	c.tick(id(1), 3)
	ldr := c.node(id(1))
	c.snapshot(id(1), Membership{}, 1)
	c.node(id(3)).down = false
	c.restart(id(3))
	c.settle()
	require.Empty(t, ldr.snapSends, "held back: s3 runs version 0")
	// s3 gets new code, but its announcement is lost: the leader learns of
	// it from the answer to its next small check.
	c.cut[[2]ServerID{id(3), id(1)}] = true
	s3 := c.restart(id(3), 1)
	c.deliver()
	c.heal()
	c.tick(id(1), 3) // SnapshotRetryMs is 10 ticks
	require.Len(t, ldr.snapSends, 1, "sent before the retry time is up")
	require.Len(t, s3.restores, 1)
}

func TestDowngradedMemberAppliesNothingPastItsVersion(t *testing.T) {
	cfg := testConfig(id(1), Membership{Voters: []ServerID{id(1), id(2), id(3)}}, 1)
	cfg.Snapshot = Snapshot{Index: 4, Term: 1, MachineVersion: 2}
	cfg.MachineVersion = 1
	log := &memLog{base: 4, baseTerm: 1, ents: ents(5, 1, 3)}
	r, err := New(cfg, HardState{Term: 1}, log)
	require.NoError(t, err)
	acts, err := r.Step(Receive{From: id(2), Msg: &AppendEntries{Term: 1, PrevIndex: 7, PrevTerm: 1, Commit: 7}})
	require.NoError(t, err)
	for _, a := range acts {
		_, isApply := a.(Apply)
		require.False(t, isApply, "version 2 is in effect; the code supports 1")
	}
	require.EqualValues(t, 7, r.Commit())
	require.EqualValues(t, 4, r.Applied())
}

func TestLeaderOnOldCodeHandsOverToNewCode(t *testing.T) {
	c := versionedCluster(t, 0, 1, 1)
	c.step(id(1), ElectionTimeout{})
	c.settle()
	c.tick(id(1), 5)
	// s2 and s3 support version 1, a quorum; the leader does not: it hands
	// leadership to one of them, which raises the version.
	var leader *testNode
	for _, i := range []int{2, 3} {
		if c.node(id(i)).r.Role() == RoleLeader {
			leader = c.node(id(i))
		}
	}
	require.NotNil(t, leader, "an upgraded member leads")
	c.tick(leader.id, 5)
	require.EqualValues(t, 1, leader.r.Status().MachineVersion)
	require.Equal(t, RoleFollower, c.node(id(1)).r.Role())
	require.Less(t, c.node(id(1)).applied, leader.applied, "old code stops before the bump")
}
