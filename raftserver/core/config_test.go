package core

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func validConfig() Config {
	return Config{ID: ServerID{"a", "n1"}, InitialMembers: Membership{Voters: []ServerID{{"a", "n1"}}}}.withDefaults()
}

func TestConfigDefaultsValidate(t *testing.T) {
	c := validConfig()
	require.NoError(t, c.Validate())
	require.EqualValues(t, DefaultMaxInFlight, c.MaxInFlight)
	require.EqualValues(t, DefaultCheckQuorumMs, c.CheckQuorumMs)
	require.Equal(t, 10, c.checkQuorumTicks())
}

func TestConfigValidateNamesTheBadValues(t *testing.T) {
	cases := []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.ID = ServerID{Name: "a"} }, `ID "a@" must have a name and a node`},
		{func(c *Config) { c.MaxInFlight = 0 }, "MaxInFlight is 0"},
		{func(c *Config) { c.MaxAppendBytes = -1 }, "MaxAppendBytes is -1"},
		{func(c *Config) { c.ElectionTimeoutMs = -5 }, "ElectionTimeoutMs is -5"},
		{func(c *Config) { c.MaxElectionBackoff = 40 }, "MaxElectionBackoff is 40"},
		{func(c *Config) { c.TickMs = 0 }, "TickMs is 0"},
		{func(c *Config) { c.TickMs, c.CheckQuorumMs = 100, 150 }, "CheckQuorumMs is 150, must be at least twice TickMs (100)"},
		{func(c *Config) { c.InitialMembers.NonVoters = []ServerID{{"a", "n1"}} }, "member a@n1 listed twice"},
		{func(c *Config) { c.SnapshotRetryMs = 50 }, "SnapshotRetryMs is 50, must be at least TickMs (100)"},
		{func(c *Config) { c.Snapshot = Snapshot{Term: 2} }, "Snapshot has term 2 at index 0"},
		{func(c *Config) { c.Snapshot = Snapshot{Index: 3, Term: 1, Members: Membership{Voters: []ServerID{{}}}} }, "Snapshot.Members"},
	}
	for _, tc := range cases {
		c := validConfig()
		tc.mutate(&c)
		err := c.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestNewRejectsInconsistentState(t *testing.T) {
	log := newMemLog(Entry{Index: 1, Term: 3, Type: EntryNoop})
	_, err := New(validConfig(), HardState{Term: 2}, log)
	require.ErrorIs(t, err, ErrInvalidState)
	_, err = New(validConfig(), HardState{Term: 3}, nil)
	require.ErrorIs(t, err, ErrInvalidState)
	_, err = New(Config{}, HardState{}, log)
	require.ErrorIs(t, err, ErrInvalidConfig)
	r, err := New(validConfig(), HardState{Term: 3}, log)
	require.NoError(t, err)
	require.EqualValues(t, 1, r.LastIndex())
}

func TestNewRestoresMembershipFromTheLog(t *testing.T) {
	m1 := Membership{Voters: []ServerID{{"a", "n1"}, {"b", "n2"}}}
	m2 := Membership{Voters: []ServerID{{"a", "n1"}, {"b", "n2"}, {"c", "n3"}}}
	var ents []Entry
	for i := uint64(1); i <= 600; i++ {
		e := Entry{Index: i, Term: 1, Type: EntryNormal}
		switch i {
		case 3:
			e.Type, e.Data = EntryConfig, m1.AppendBinary(nil)
		case 500:
			e.Type, e.Data = EntryConfig, m2.AppendBinary(nil)
		}
		ents = append(ents, e)
	}
	r, err := New(validConfig(), HardState{Term: 1}, newMemLog(ents...))
	require.NoError(t, err)
	st := r.Status()
	require.Equal(t, m2, st.Members)
	require.EqualValues(t, 500, st.MembersIndex)
	// If the last config is truncated, the one before it applies again.
	r.members.truncated(500)
	require.Equal(t, m1, r.members.current)
	r.members.truncated(3)
	require.Equal(t, validConfig().InitialMembers, r.members.current)
}

func TestKnownMembersAreEveryConfigurationHeld(t *testing.T) {
	a, b, c, d := ServerID{"a", "n1"}, ServerID{"b", "n2"}, ServerID{"c", "n3"}, ServerID{"d", "n4"}
	cfg := validConfig()
	cfg.InitialMembers = Membership{Voters: []ServerID{a, b, c}}
	// The last two configurations are in the log: c replaced by d, the
	// newest with d as a non-voter.
	ents := []Entry{
		{Index: 1, Term: 1, Type: EntryConfig, Data: Membership{Voters: []ServerID{a, b, d}}.AppendBinary(nil)},
		{Index: 2, Term: 1, Type: EntryConfig, Data: Membership{Voters: []ServerID{a, b}, NonVoters: []ServerID{d}}.AppendBinary(nil)},
	}
	r, err := New(cfg, HardState{Term: 1}, newMemLog(ents...))
	require.NoError(t, err)
	seen := map[ServerID]int{}
	r.KnownMembers(func(id ServerID) { seen[id]++ })
	require.Equal(t, map[ServerID]int{a: 4, b: 4, c: 1, d: 3}, seen)
}
