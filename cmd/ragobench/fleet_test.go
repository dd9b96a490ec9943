package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMovedMembers(t *testing.T) {
	before := map[string][]string{
		"a": {"n0", "n1", "n2"},
		"b": {"n0", "n1", "n3"},
		"c": {"n1", "n2", "n3"},
	}
	after := map[string][]string{
		"a": {"n0", "n1", "n2"}, // stayed, even if its leader moved
		"b": {"n0", "n4", "n3"}, // n1 -> n4
		"c": {"n4", "n0", "n2"}, // n1 -> n4, n3 -> n0
	}
	require.Equal(t, 3, movedMembers(before, after))
	require.Zero(t, movedMembers(before, before))
	// A group the first look did not see counts all its members.
	require.Equal(t, 3, movedMembers(map[string][]string{}, map[string][]string{"d": {"n0", "n1", "n2"}}))
}

func TestIdealMoves(t *testing.T) {
	require.Equal(t, 180, idealMoves(300, 3, 4, 5, 0)) // the new node's fair share
	require.Equal(t, 600, idealMoves(1000, 3, 4, 5, 0))
	require.Equal(t, 100, idealMoves(100, 3, 4, 6, 0))   // two new nodes: 2 x 300/6
	require.Equal(t, 43, idealMoves(100, 3, 6, 7, 0))    // 300/7 = 42.9, rounded
	require.Equal(t, 158, idealMoves(300, 3, 5, 4, 158)) // removing: what the removed nodes held
}

func TestPairsRoundTrip(t *testing.T) {
	in := map[string][]byte{"w0.1": []byte("g0001=w0.1"), "": nil, "k": []byte("")}
	b := encodePairs(in)
	out, err := decodePairs(b)
	require.NoError(t, err)
	require.Len(t, out, len(in))
	for k, v := range in {
		require.Equal(t, string(v), string(out[k]))
	}
	for i := range len(b) {
		_, err := decodePairs(b[:i])
		require.Error(t, err, "truncated at %d", i)
	}
}
