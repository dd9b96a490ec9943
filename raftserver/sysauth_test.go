package raftserver

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRemoteDeleteIsRefusedUnlessAllowed: by default a node deletes its
// servers only for itself; other nodes may start and stop them, and get
// ErrNotPermitted for a delete. With AllowRemoteDelete they may delete
// them too. The nodes authenticate each other, so the requests come from
// authenticated nodes.
func TestRemoteDeleteIsRefusedUnlessAllowed(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	start := func(allow bool) *System {
		cfg := testSystemConfig(t, t.TempDir())
		cfg.Node.ClusterSecret = secret
		cfg.AllowRemoteDelete = allow
		s, err := StartSystem(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Stop() })
		return s
	}
	a, closed, open := start(false), start(false), start(true)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	onClosed := ServerID{Name: "solo", Node: closed.Name()}
	require.NoError(t, a.StartServer(ctx, ServerConfig{ID: onClosed, Cluster: "solo", Machine: MachineSpec{Kind: "kv"}, InitialMembers: []ServerID{onClosed}}))
	require.NoError(t, a.StopServer(ctx, onClosed))
	require.NoError(t, a.RestartServer(ctx, onClosed))
	err := a.ForceDeleteServer(ctx, onClosed)
	require.ErrorIs(t, err, ErrNotPermitted)
	require.ErrorContains(t, err, "AllowRemoteDelete")
	require.ErrorIs(t, a.DeleteCluster(ctx, []ServerID{onClosed}), ErrNotPermitted)
	require.EqualValues(t, 2, closed.Stats().RefusedSystemRequests)
	st, err := closed.LocalServer(ctx, onClosed.Name)
	require.NoError(t, err, "the server is still there")
	require.True(t, st.Running)
	require.NoError(t, closed.ForceDeleteServer(ctx, onClosed), "its own node deletes it")

	onOpen := ServerID{Name: "solo", Node: open.Name()}
	require.NoError(t, a.StartServer(ctx, ServerConfig{ID: onOpen, Cluster: "solo", Machine: MachineSpec{Kind: "kv"}, InitialMembers: []ServerID{onOpen}}))
	require.NoError(t, a.ForceDeleteServer(ctx, onOpen))
	_, err = open.LocalServer(ctx, onOpen.Name)
	require.ErrorIs(t, err, ErrNoSuchServer)
	require.Zero(t, open.Stats().RefusedSystemRequests)
}

// TestFailedStartClusterStopsWhatItCannotDelete: StartCluster undoes a
// cluster it could not form; a member on a node that refuses remote
// deletes is stopped instead, and StartOrRestartCluster can start it
// again.
func TestFailedStartClusterStopsWhatItCannotDelete(t *testing.T) {
	a, b := startSystem(t, t.TempDir()), startSystem(t, t.TempDir())
	t.Cleanup(func() { _ = a.Stop(); _ = b.Stop() })
	members := []ServerID{
		{Name: "m1", Node: b.Name()},
		{Name: "m2", Node: freeAddress(t)}, // no node there
		{Name: "m3", Node: freeAddress(t)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := a.StartCluster(ctx, "thin", MachineSpec{Kind: "kv"}, members)
	require.ErrorIs(t, err, ErrNotEnoughMembers)
	st, err := b.LocalServer(ctx, "m1")
	require.NoError(t, err)
	require.False(t, st.Running, "the member that could not be deleted is stopped")
}
