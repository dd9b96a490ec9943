package raftserver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/wal"
)

const waitFor = 20 * time.Second

func testSystemConfig(t testing.TB, dir string) SystemConfig {
	return SystemConfig{
		DataDir:         dir,
		Address:         "127.0.0.1:0",
		Machines:        map[string]MachineFactory{"kv": newKV, "fx": newFX},
		MachineTick:     20 * time.Millisecond,
		WALSync:         wal.SyncData,
		ShutdownTimeout: 5 * time.Second,
	}
}

func startSystem(t testing.TB, dir string) *System {
	t.Helper()
	s, err := StartSystem(testSystemConfig(t, dir))
	require.NoError(t, err)
	return s
}

// cluster is three systems in one process with a cluster "kv" of one member
// on each.
type cluster struct {
	t       testing.TB
	systems []*System
	dirs    []string
	members []ServerID
	// mod, if set, adjusts every system's configuration (restarts too).
	mod func(*SystemConfig)
}

// config is the configuration of a system of c on dir and addr.
func (c *cluster) config(dir, addr string) SystemConfig {
	cfg := testSystemConfig(c.t, dir)
	cfg.Address = addr
	if c.mod != nil {
		c.mod(&cfg)
	}
	return cfg
}

func startCluster(t testing.TB, n int) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for i := range n {
		dir := t.TempDir()
		s := startSystem(t, dir)
		c.systems = append(c.systems, s)
		c.dirs = append(c.dirs, dir)
		c.members = append(c.members, ServerID{Name: fmt.Sprint("kv", i+1), Node: s.Name()})
	}
	t.Cleanup(func() {
		for _, s := range c.systems {
			if s != nil {
				_ = s.Stop()
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	started, notStarted, err := c.systems[0].StartCluster(ctx, "kv", MachineSpec{Kind: "kv"}, c.members)
	require.NoError(t, err)
	require.Len(t, started, n)
	require.Empty(t, notStarted)
	return c
}

func (c *cluster) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	c.t.Cleanup(cancel)
	return ctx
}

func TestFormClusterAndProcessCommands(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	reply, leader, err := s.ProcessCommand(c.ctx(), c.members[1], []byte("set a 1"))
	require.NoError(t, err)
	require.Empty(t, reply)
	require.Contains(t, c.members, leader)

	reply, _, err = s.ProcessCommand(c.ctx(), c.members[2], []byte("set a 2"))
	require.NoError(t, err)
	require.Equal(t, "1", string(reply))

	got, _, err := s.ConsistentQuery(c.ctx(), c.members[0], []byte("get a"))
	require.NoError(t, err)
	require.Equal(t, "2", string(got))

	st, err := s.Overview(c.ctx(), leader)
	require.NoError(t, err)
	require.Equal(t, "leader", st.Role)
	require.ElementsMatch(t, c.members, st.Voters)
	l, members, ok := s.Leaderboard().Lookup("kv")
	require.True(t, ok)
	require.Equal(t, leader, l)
	require.ElementsMatch(t, c.members, members)
}

// LocalServers must tell "no servers" from "no answer": a node deciding
// whether to start its member would otherwise start a second one.
func TestLocalServersTellsNoAnswerFromNoServers(t *testing.T) {
	c := startCluster(t, 1)
	s := c.systems[0]
	servers, err := s.LocalServers(c.ctx())
	require.NoError(t, err)
	require.Len(t, servers, 1)
	require.Equal(t, c.members[0], servers[0].ID)

	done, cancel := context.WithCancel(context.Background())
	cancel()
	servers, err = s.LocalServers(done)
	require.ErrorIs(t, err, ErrTimeout)
	require.Nil(t, servers)

	require.NoError(t, s.Stop())
	servers, err = s.LocalServers(c.ctx())
	require.ErrorIs(t, err, ErrShuttingDown)
	require.Nil(t, servers)
}

func TestPipelineCommands(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, leader, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set warm up"))
	require.NoError(t, err)
	ib, err := s.Node().NewInbox()
	require.NoError(t, err)
	const count = 2000
	for i := range count {
		require.NoError(t, s.PipelineCommand(leader, []byte(fmt.Sprintf("set k%d %d", i, i)), uint64(i), ib.Ref()))
	}
	seen := map[uint64]bool{}
	next := uint64(0)
	for len(seen) < count {
		m, err := ib.ReceiveTimeout(waitFor)
		require.NoError(t, err)
		ap, ok := m.(*Applied)
		require.True(t, ok, "got %T %+v", m, m)
		for _, r := range ap.Results {
			require.Equal(t, next, r.Correlation, "applied in order")
			next++
			seen[r.Correlation] = true
		}
	}
	got, _, err := s.ConsistentQuery(c.ctx(), leader, []byte("len"))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(count+1), string(got))
}

func TestRejectedWhenNotLeader(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, leader, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set a 1"))
	require.NoError(t, err)
	var follower ServerID
	for _, m := range c.members {
		if m != leader {
			follower = m
		}
	}
	ib, err := s.Node().NewInbox()
	require.NoError(t, err)
	require.NoError(t, s.PipelineCommand(follower, []byte("set b 1"), 7, ib.Ref()))
	m, err := ib.ReceiveTimeout(waitFor)
	require.NoError(t, err)
	rej, ok := m.(*Rejected)
	require.True(t, ok, "%T", m)
	require.Equal(t, uint64(7), rej.Correlation)
	require.ErrorIs(t, rej.Err, ErrNotLeader)
	require.Equal(t, leader, rej.Leader)
}

func TestMachinePanicIsAnErrorReply(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("panic"))
	require.ErrorIs(t, err, ErrMachine)
	reply, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("set after panic"))
	require.NoError(t, err)
	require.Empty(t, reply)
}

func TestErrors(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	_, _, err := s.ProcessCommand(c.ctx(), ServerID{Name: "nope", Node: s.Name()}, []byte("x"))
	require.ErrorIs(t, err, ErrNoSuchServer)
	_, _, err = s.StartCluster(c.ctx(), "kv", MachineSpec{Kind: "kv"}, c.members)
	require.ErrorIs(t, err, ErrClusterExists)
	_, _, err = s.StartCluster(c.ctx(), "other", MachineSpec{Kind: "unknown"}, []ServerID{{Name: "o1", Node: s.Name()}})
	require.ErrorIs(t, err, ErrUnknownMachine)
	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = s.StartServer(short, ServerConfig{ID: ServerID{Name: "x", Node: "127.0.0.1:1"}, Cluster: "c", Machine: MachineSpec{Kind: "kv"}})
	require.True(t, errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnreachable), "got %v", err)
	_, err = StartSystem(SystemConfig{})
	require.ErrorIs(t, err, ErrInvalidConfig)
	_ = actor.Ref{}
}
