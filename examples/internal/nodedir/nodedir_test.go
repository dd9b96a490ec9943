package nodedir

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckAddress(t *testing.T) {
	require.NoError(t, CheckAddress("127.0.0.1:7001"))
	require.NoError(t, CheckAddress("node-a.example:7001"))
	for _, bad := range []string{"", "7001", "127.0.0.1", ":7001", "127.0.0.1:0", "127.0.0.1:"} {
		require.Error(t, CheckAddress(bad), bad)
	}
}

// TestClaim checks that a new directory is claimed, that the same node
// claims it again, and that another node (another id or address) is told
// whose data it is, without the file changing.
func TestClaim(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	require.NoError(t, Claim(dir, "n1", "127.0.0.1:7001"))
	require.NoError(t, Claim(dir, "n1", "127.0.0.1:7001"))
	before, err := os.ReadFile(filepath.Join(dir, File))
	require.NoError(t, err)

	for _, other := range [][2]string{{"n2", "127.0.0.1:7001"}, {"n1", "127.0.0.1:7002"}} {
		err := Claim(dir, other[0], other[1])
		var o *OtherNodeError
		require.True(t, errors.As(err, &o), "%v", err)
		require.Equal(t, OtherNodeError{Dir: dir, ID: "n1", Raft: "127.0.0.1:7001"}, *o)
		require.Contains(t, err.Error(), "belongs to node n1 at 127.0.0.1:7001")
	}
	after, err := os.ReadFile(filepath.Join(dir, File))
	require.NoError(t, err)
	require.Equal(t, before, after)
	_, err = os.Stat(filepath.Join(dir, File+".tmp"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestClaimRefusesAnUnreadableFile checks that a damaged identity file
// stops the node with the file's name, instead of being replaced by a
// claim that could hand another node's data to this one.
func TestClaimRefusesAnUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, File), []byte("{not json"), 0o644))
	err := Claim(dir, "n1", "127.0.0.1:7001")
	require.ErrorContains(t, err, filepath.Join(dir, File))
	var o *OtherNodeError
	require.False(t, errors.As(err, &o))
}
