package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/raftserver"
)

// TestCredentials: nodes given a run's credentials commit commands through
// each other, a node without them is refused, and remove deletes the files.
func TestCredentials(t *testing.T) {
	for _, mode := range []string{authSecret, authTLS} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			creds, err := makeCredentials(mode, dir, []string{"client", "n0"})
			require.NoError(t, err)
			start := func(id string, c *credentials) *raftserver.System {
				cfg := systemConfig(filepath.Join(dir, id), "127.0.0.1:0")
				require.NoError(t, c.apply(&cfg, id))
				s, err := raftserver.StartSystem(cfg)
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Stop() })
				return s
			}
			client, node := start("client", creds), start("n0", creds)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			member := raftserver.ServerID{Name: "bench", Node: node.Name()}
			_, _, err = client.StartCluster(ctx, "bench", raftserver.MachineSpec{Kind: "bench"}, []raftserver.ServerID{member})
			require.NoError(t, err)
			_, _, err = client.ProcessCommand(ctx, member, []byte("x"))
			require.NoError(t, err)

			stranger := start("stranger", nil)
			short, cancelShort := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancelShort()
			_, _, err = stranger.ProcessCommand(short, member, []byte("x"))
			require.Error(t, err)
			require.NotZero(t, node.Node().Stats().RefusedConnections)

			creds.remove()
			_, err = os.Stat(creds.dir)
			require.ErrorIs(t, err, os.ErrNotExist)
		})
	}
}

func TestCredentialsPlain(t *testing.T) {
	creds, err := makeCredentials(authPlain, t.TempDir(), []string{"n0"})
	require.NoError(t, err)
	require.Nil(t, creds.nodeArgs("n0"))
	cfg := systemConfig(t.TempDir(), "127.0.0.1:0")
	require.NoError(t, creds.apply(&cfg, "n0"))
	require.Nil(t, cfg.Node.TLS)
	require.Nil(t, cfg.Node.ClusterSecret)
	_, err = makeCredentials("none", t.TempDir(), nil)
	require.Error(t, err)
}
