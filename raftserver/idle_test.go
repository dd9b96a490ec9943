package raftserver

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/raftserver/core"
)

// TestIdleServerStructsKeepTheirSize: a node may host thousands of idle
// servers, and these structs are allocated once for each. Up to 1528
// bytes the server is an allocation of 1536 (the runtime puts an 8-byte
// header before an object of more than 512 bytes that holds pointers); a
// field more pushes it into the next size, 1792. If that is worth it,
// change the figure here knowingly.
func TestIdleServerStructsKeepTheirSize(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(server{}), uintptr(1536-8), "server")
	require.LessOrEqual(t, unsafe.Sizeof(serverMetrics{}), uintptr(384), "serverMetrics")
}

// TestAppliedMembersShareTheCoresCopy: once the configuration the machine
// host applied equals the one the core reported, the host keeps the core's
// copy (one configuration per server, not two); a configuration that
// differs in anything, nil-ness included, is kept as decoded.
func TestAppliedMembersShareTheCoresCopy(t *testing.T) {
	a, b := ServerID{Name: "a", Node: "n1"}, ServerID{Name: "b", Node: "n2"}
	cur := core.Membership{Voters: []ServerID{a, b}, Incarnations: map[ServerID]uint64{a: 1, b: 2}}
	same := core.Membership{Voters: []ServerID{a, b}, Incarnations: map[ServerID]uint64{a: 1, b: 2}}
	for _, other := range []core.Membership{
		{Voters: []ServerID{b, a}, Incarnations: map[ServerID]uint64{a: 1, b: 2}},
		{Voters: []ServerID{a, b}, Incarnations: map[ServerID]uint64{a: 1, b: 3}},
		{Voters: []ServerID{a, b}, Incarnations: map[ServerID]uint64{a: 1}},
		{Voters: []ServerID{a, b}},
		{Voters: []ServerID{a}, NonVoters: []ServerID{b}, Incarnations: map[ServerID]uint64{a: 1, b: 2}},
		{Voters: []ServerID{a, b}, NonVoters: []ServerID{}, Incarnations: map[ServerID]uint64{a: 1, b: 2}},
	} {
		require.False(t, sameMembers(other, cur), "%+v", other)
		s := &server{current: cur}
		s.mh.members = other
		s.shareMembers()
		require.Equal(t, other, s.mh.members)
	}
	require.True(t, sameMembers(same, cur))
	s := &server{current: cur}
	s.mh.members = same
	s.shareMembers()
	s.mh.members.Incarnations[a] = 7 // only to see which map it holds
	require.EqualValues(t, 7, cur.Incarnations[a], "the host kept its own copy")
}
