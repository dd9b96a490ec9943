package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
)

// A backup taken through a follower (which redirects to the leader) holds
// every acknowledged write; a new cluster restored from it serves them,
// takes a node that joins, and a damaged backup is refused.
func TestBackupAndRestore(t *testing.T) {
	c := startCluster(t, 3)
	ctx := ctxFor(t)
	cl := c.client(c.nodes...)
	for i := range 20 {
		_, err := cl.Put(ctx, fmt.Sprintf("k%02d", i), []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	file := filepath.Join(t.TempDir(), "kv.backup")
	var out, errOut bytes.Buffer
	code := run([]string{"backup", "--out", file, "--addr", c.followers()[0].url()}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	require.Contains(t, out.String(), "written to "+file)
	_, err := cl.Put(ctx, "later", []byte("not in the backup"))
	require.NoError(t, err)

	// A new cluster: a node restored from the backup, then one that joins.
	d := newTestCluster(t, 2)
	r, j := d.nodes[0], d.nodes[1]
	d.startArgs(r, append([]string{"restore", "--from", file, "--id", r.id, "--raft", r.raft, "--http", r.http, "--data", r.data, "--log-level", "debug"}, d.auth()...))
	d.startArgs(j, append([]string{"join", "--id", j.id, "--raft", j.raft, "--http", j.http, "--data", j.data, "--via", r.url(), "--log-level", "debug"}, d.auth()...))
	d.waitHealthy()
	rcl := d.client(d.nodes...)
	got, err := rcl.Get(ctx, "k07", "")
	require.NoError(t, err)
	require.Equal(t, "7", got.Value)
	_, err = rcl.Get(ctx, "later", "")
	var ae *api.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, api.CodeKeyNotFound, ae.Code, "written after the backup")
	local := d.client(j)
	got, err = local.Get(ctx, "k19", "local")
	require.NoError(t, err)
	require.Equal(t, "19", got.Value, "the joined node holds the data")
	res, err := rcl.Put(ctx, "new", []byte("after the restore"))
	require.NoError(t, err)
	require.Greater(t, res.Revision, got.Revision, "revisions go on growing")
	view, err := d.cluster(r)
	require.NoError(t, err)
	require.Len(t, view.Members, 2, "the old cluster's nodes are gone from the directory")

	// A damaged backup starts nothing.
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	b[len(b)/2] ^= 1
	bad := filepath.Join(t.TempDir(), "bad.backup")
	require.NoError(t, os.WriteFile(bad, b, 0o644))
	errOut.Reset()
	code = run(append([]string{"restore", "--from", bad, "--id", "n1", "--raft", freePort(t), "--http", freePort(t), "--data", t.TempDir(), "--log-level", "error"}, d.auth()...), &out, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "invalid backup")
	require.Contains(t, errOut.String(), "checksum")

	// A backup that cannot be taken leaves no file.
	errOut.Reset()
	missing := filepath.Join(t.TempDir(), "x.backup")
	code = run([]string{"backup", "--out", missing, "--addr", "http://" + freePort(t), "--timeout", "1s"}, &out, &errOut)
	require.Equal(t, 1, code)
	require.Contains(t, errOut.String(), "no node answers")
	require.NoFileExists(t, missing)
	require.NoFileExists(t, missing+".partial")
}
