package raftserver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type addCmd struct{ N int }

// sumMachine adds numbers and rejects negative ones.
type sumMachine struct{ total int }

func (m *sumMachine) Apply(ctx *ApplyContext, c addCmd) int {
	if c.N < 0 {
		ctx.Reject(errors.New("negative numbers are not added"))
		return 0
	}
	m.total += c.N
	return m.total
}

// TestTypedRepliesAreWhatTheMachineReturned: the reply bytes of a typed
// machine decode with its reply codec, synchronous or pipelined, and a
// command that does not decode or that the machine rejects ends in an
// error, never in a reply.
func TestTypedRepliesAreWhatTheMachineReturned(t *testing.T) {
	cfg := testSystemConfig(t, t.TempDir())
	cfg.Machines["sum"] = func([]byte) (Machine, error) {
		return NewTypedMachine[addCmd, int](&sumMachine{}, JSON[addCmd]{}, JSON[int]{}), nil
	}
	s, err := StartSystem(cfg)
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Stop()) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	member := ServerID{Name: "sum", Node: s.Name()}
	_, _, err = s.StartCluster(ctx, "sum", MachineSpec{Kind: "sum"}, []ServerID{member})
	require.NoError(t, err)

	reply, _, err := s.ProcessCommand(ctx, member, []byte(`{"N":2}`))
	require.NoError(t, err)
	got, err := JSON[int]{}.Decode(reply)
	require.NoError(t, err, "reply %q", reply)
	require.Equal(t, 2, got)

	reply, _, err = s.ProcessCommand(ctx, member, []byte("not json"))
	require.ErrorIs(t, err, ErrMachine)
	require.ErrorContains(t, err, "does not decode")
	require.Nil(t, reply)

	client := TypedClient[addCmd, int]{System: s, Cmds: JSON[addCmd]{}, Replies: JSON[int]{}}
	_, _, err = client.Process(ctx, member, addCmd{N: -1})
	require.ErrorIs(t, err, ErrMachine)
	require.ErrorContains(t, err, "negative numbers are not added")
	total, _, err := client.Process(ctx, member, addCmd{N: 3})
	require.NoError(t, err)
	require.Equal(t, 5, total, "the rejected command changed nothing")

	// Query functions get the typed machine itself.
	total, _, err = QueryMachine(ctx, s, member, QueryConsistent, func(m *sumMachine) (int, error) { return m.total, nil })
	require.NoError(t, err)
	require.Equal(t, 5, total)
	_, _, err = QueryMachine(ctx, s, member, QueryLocal, func(m *kvMachine) (int, error) { return 0, nil })
	require.ErrorIs(t, err, ErrMachine)
	_, _, err = s.QueryFunc(ctx, member, QueryKind(0), func(any) (any, error) { return nil, nil })
	require.ErrorIs(t, err, ErrInvalidConfig)

	ib, err := s.Node().NewInbox()
	require.NoError(t, err)
	defer ib.Close()
	require.NoError(t, s.PipelineCommand(member, []byte(`{"N":4}`), 1, ib.Ref()))
	require.NoError(t, s.PipelineCommand(member, []byte(`{"N":-4}`), 2, ib.Ref()))
	for answered := 0; answered < 2; {
		m, err := ib.ReceiveTimeout(waitFor)
		require.NoError(t, err)
		switch m := m.(type) {
		case *Applied:
			require.Len(t, m.Results, 1)
			require.EqualValues(t, 1, m.Results[0].Correlation)
			got, err := JSON[int]{}.Decode(m.Results[0].Reply)
			require.NoError(t, err)
			require.Equal(t, 9, got)
		case *Rejected:
			require.EqualValues(t, 2, m.Correlation)
			require.ErrorIs(t, m.Err, ErrMachine)
		default:
			t.Fatalf("got %T", m)
		}
		answered++
	}

	// The typed pipeline: decoded replies, and the machine's rejection as
	// an error.
	tp, err := client.Pipeline(member, PipelineOptions{})
	require.NoError(t, err)
	defer tp.Close()
	ok, err := tp.Submit(ctx, addCmd{N: 1})
	require.NoError(t, err)
	bad, err := tp.Submit(ctx, addCmd{N: -1})
	require.NoError(t, err)
	for range 2 {
		r := <-tp.Results()
		switch r.Seq {
		case ok:
			require.NoError(t, r.Err)
			require.Equal(t, 10, r.Reply)
		case bad:
			require.ErrorIs(t, r.Err, ErrMachine)
			require.ErrorContains(t, r.Err, "negative numbers are not added")
		default:
			t.Fatalf("result of %d", r.Seq)
		}
	}
	tp.Close()
	_, open := <-tp.Results()
	require.False(t, open)
}

// TestCommandBuffersMayBeReused: a caller that reuses its command buffer
// right after PipelineCommand returns does not change the command the
// local server appends. Each command sets one key to its number and
// replies with the number before it, which a changed command would break.
func TestCommandBuffersMayBeReused(t *testing.T) {
	c := startCluster(t, 1)
	s := c.systems[0]
	_, leader, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set warm up"))
	require.NoError(t, err)
	ib, err := s.Node().NewInbox()
	require.NoError(t, err)
	defer ib.Close()
	buf := []byte("set k 000")
	const count = 300
	for i := range count {
		require.NoError(t, s.PipelineCommand(leader, buf, uint64(i), ib.Ref()))
		copy(buf[len("set k "):], fmt.Sprintf("%03d", i+1)) // the next command, in place
	}
	for answered := 0; answered < count; {
		m, err := ib.ReceiveTimeout(waitFor)
		require.NoError(t, err)
		ap, ok := m.(*Applied)
		require.True(t, ok, "got %T %+v", m, m)
		for _, r := range ap.Results {
			want := ""
			if r.Correlation > 0 {
				want = fmt.Sprintf("%03d", r.Correlation-1)
			}
			require.Equal(t, want, string(r.Reply), "command %d", r.Correlation)
			answered++
		}
	}
}

// TestLocalQueryNamesTheServerThatAnswered: a local query runs on the
// member asked, follower or leader, and says so.
func TestLocalQueryNamesTheServerThatAnswered(t *testing.T) {
	c := startCluster(t, 3)
	_, _, err := c.systems[0].ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	for i, m := range c.members {
		deadline := time.Now().Add(waitFor)
		for {
			got, who, err := c.systems[i].LocalQuery(c.ctx(), m, []byte("get a"))
			require.NoError(t, err)
			require.Equal(t, m, who)
			if string(got) == "1" {
				break
			}
			require.True(t, time.Now().Before(deadline), "%s never applied the command", m)
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestWaitForLeader: after a restart of every node, WaitForLeader returns
// the leader the cluster elects, asked through any member.
func TestWaitForLeader(t *testing.T) {
	c := startCluster(t, 3)
	_, _, err := c.systems[0].ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	for _, s := range c.systems {
		require.NoError(t, s.Stop())
	}
	for i := range c.systems {
		c.restart(i)
	}
	for i, m := range c.members {
		leader, err := c.systems[i].WaitForLeader(c.ctx(), m)
		require.NoError(t, err)
		require.Contains(t, c.members, leader)
		got, _, err := c.systems[i].ConsistentQuery(c.ctx(), leader, []byte("get a"))
		require.NoError(t, err)
		require.Equal(t, "1", string(got))
	}

	short, cancel := context.WithTimeout(c.ctx(), 200*time.Millisecond)
	defer cancel()
	_, err = c.systems[0].WaitForLeader(short, ServerID{Name: "nobody", Node: c.systems[0].Name()})
	require.ErrorIs(t, err, ErrNoSuchServer)

	// A member waiting to be added to a cluster knows no leader: asked
	// until the deadline, it says so, even when the deadline comes while
	// it is asked again (on a loaded machine an answer can take longer
	// than the pause between questions).
	lonely := ServerID{Name: "lonely", Node: c.systems[0].Name()}
	require.NoError(t, c.systems[0].StartServer(c.ctx(), ServerConfig{ID: lonely, Cluster: "lonely", Machine: MachineSpec{Kind: "kv"}}))
	st, err := c.systems[0].Overview(c.ctx(), lonely)
	require.NoError(t, err)
	require.True(t, st.Leader.IsZero())
	short, cancel = context.WithTimeout(c.ctx(), time.Second)
	defer cancel()
	_, err = c.systems[0].WaitForLeader(short, lonely)
	require.ErrorIs(t, err, ErrNoLeader)
}

// TestOverviewShowsFollowerProgress asks a leader for its status through
// another node: the answer crosses the wire and names, for each follower,
// the index known durable there and the replication state.
func TestOverviewShowsFollowerProgress(t *testing.T) {
	c := startFixedCluster(t, 3)
	ctx := c.ctx()
	_, leader, err := c.systems[0].ProcessCommand(ctx, c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	li := c.index(leader)
	via := c.systems[(li+1)%3]
	var st *ServerStatus
	require.Eventually(t, func() bool {
		st, err = via.Overview(ctx, leader)
		if err != nil || len(st.Progress) != 2 {
			return false
		}
		for _, p := range st.Progress {
			if p.Match < st.Commit || p.State != "replicate" {
				return false
			}
		}
		return st.StableIndex == st.LastIndex
	}, waitFor, 20*time.Millisecond, "leader status %+v, err %v", st, err)
	var ids []ServerID
	for _, p := range st.Progress {
		ids = append(ids, p.ID)
		require.Greater(t, p.Next, p.Match)
	}
	require.ElementsMatch(t, ids, []ServerID{c.members[(li+1)%3], c.members[(li+2)%3]})

	follower, err := c.systems[li].Overview(ctx, c.members[(li+1)%3])
	require.NoError(t, err)
	require.Nil(t, follower.Progress, "only a leader reports progress")
	require.Positive(t, follower.StableIndex)
}
