package raftserver

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestValidateNamesEveryBadValue(t *testing.T) {
	err := SystemConfig{
		Address:     "no-port",
		MaxSessions: -1,
		Machines:    map[string]MachineFactory{"kv": nil},
		Raft:        RaftConfig{TickInterval: -time.Second, MaxElectionBackoff: 17, ElectionTimeout: time.Microsecond},
	}.Validate()
	require.ErrorIs(t, err, ErrInvalidConfig)
	for _, want := range []string{"DataDir", `Address "no-port"`, "MaxSessions", `machine kind "kv"`,
		"Raft.TickInterval", "Raft.MaxElectionBackoff", "Raft.ElectionTimeout"} {
		require.Contains(t, err.Error(), want)
	}
	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined))
	require.Len(t, joined.Unwrap(), 7, "one error per bad value")

	// Relations are checked against the defaults of the fields left zero.
	ok := SystemConfig{DataDir: "d", Address: "127.0.0.1:0"}
	require.NoError(t, ok.Validate())
	for name, raft := range map[string]RaftConfig{
		"Raft.CheckQuorumWindow": {TickInterval: 600 * time.Millisecond},
		"Raft.LeaderLostTimeout": {ElectionTimeout: 50 * time.Millisecond, LeaderLostTimeout: 80 * time.Millisecond},
		"Raft.SnapshotRetry":     {SnapshotRetry: 50 * time.Millisecond},
	} {
		c := ok
		c.Raft = raft
		err := c.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		require.Contains(t, err.Error(), name)
	}
	for _, addr := range []string{":7000", "h:70000", "h:x"} {
		c := ok
		c.Address = addr
		require.ErrorIs(t, c.Validate(), ErrInvalidConfig, addr)
	}
}

func TestConfigReportsTheSettingsInEffect(t *testing.T) {
	s := startSystem(t, t.TempDir())
	defer func() { require.NoError(t, s.Stop()) }()
	c := s.Config()
	require.Equal(t, s.Name(), c.Address, "the port chosen for :0")
	require.Equal(t, 300*time.Millisecond, c.Raft.ElectionTimeout)
	require.Equal(t, 60*time.Millisecond, c.Raft.LeaderLostTimeout)
	require.Equal(t, 100*time.Millisecond, c.Raft.TickInterval)
	require.Equal(t, time.Second, c.Raft.CheckQuorumWindow)
	require.Equal(t, 10000, c.MaxSessions)
	c.Machines["other"] = newKV
	require.NotContains(t, s.Config().Machines, "other", "Config hands out a copy")

	// A short election timeout bounds the leader-lost delay's default.
	cc := RaftConfig{ElectionTimeout: 40 * time.Millisecond}.core()
	require.EqualValues(t, 40, cc.ElectionTimeoutMs)
	require.EqualValues(t, 40, cc.LeaderLostTimeoutMs)
}
