package raftserver

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/raftserver/core"
	"github.com/rago-raft/rago/snapshot"
)

// systemOf returns the system of c that hosts id.
func (c *cluster) systemOf(id ServerID) *System {
	for _, s := range c.systems {
		if s != nil && s.Name() == id.Node {
			return s
		}
	}
	c.t.Fatalf("no system hosts %s", id)
	return nil
}

// backup takes a backup of c's cluster "kv" through its leader's node.
func (c *cluster) backup() ([]byte, BackupInfo) {
	c.t.Helper()
	leader, err := c.systems[0].WaitForLeader(c.ctx(), c.members[0])
	require.NoError(c.t, err)
	var buf bytes.Buffer
	info, err := c.systemOf(leader).Backup(c.ctx(), leader, &buf)
	require.NoError(c.t, err)
	return buf.Bytes(), info
}

func TestBackupAndRestoreRoundTrip(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	for i := range 50 {
		_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte(fmt.Sprintf("set k%d v%d", i, i)))
		require.NoError(t, err)
	}
	file, info := c.backup()
	require.Equal(t, "kv", info.Cluster)
	require.Equal(t, "kv", info.Machine)
	require.Positive(t, info.Index)
	require.Positive(t, info.Bytes)
	st, err := s.Overview(c.ctx(), c.members[0])
	require.NoError(t, err)
	require.Equal(t, st.LastApplied, info.Index, "the state of the last command acknowledged")

	read, err := ReadBackupInfo(bytes.NewReader(file))
	require.NoError(t, err)
	require.Equal(t, info.Index, read.Index)
	require.Equal(t, info.Bytes, read.Bytes)
	require.Equal(t, info.Created.UnixMilli(), read.Created.UnixMilli())

	// Writes after the backup are not in it.
	_, _, err = s.ProcessCommand(c.ctx(), c.members[0], []byte("set later x"))
	require.NoError(t, err)

	// A new cluster of three from it, started on the second node.
	var restored []ServerID
	for _, m := range c.members {
		restored = append(restored, ServerID{Name: "copy-" + m.Name, Node: m.Node})
	}
	started, notStarted, err := c.systems[1].RestoreCluster(c.ctx(), "copy", MachineSpec{Kind: "kv"}, restored, bytes.NewReader(file))
	require.NoError(t, err)
	require.Empty(t, notStarted)
	require.ElementsMatch(t, restored, started)
	voters, _, err := s.Members(c.ctx(), restored[0])
	require.NoError(t, err)
	require.ElementsMatch(t, restored, voters)
	for _, via := range restored {
		got, _, err := s.ConsistentQuery(c.ctx(), via, []byte("get k49"))
		require.NoError(t, err)
		require.Equal(t, "v49", string(got))
		got, _, err = s.ConsistentQuery(c.ctx(), via, []byte("get later"))
		require.NoError(t, err)
		require.Empty(t, string(got), "written after the backup")
		got, _, err = QueryMachine(c.ctx(), c.systemOf(via), via, QueryLocal, func(m *kvMachine) ([]byte, error) {
			return []byte(m.data["k7"]), nil
		})
		require.NoError(t, err)
		require.Equal(t, "v7", string(got), "every member holds the state, %s too", via)
	}
	// The log goes on after the backup's index.
	_, _, err = s.ProcessCommand(c.ctx(), restored[2], []byte("set after restore"))
	require.NoError(t, err)
	st, err = s.Overview(c.ctx(), restored[0])
	require.NoError(t, err)
	require.Greater(t, st.Commit, info.Index)
	// The original cluster is untouched.
	got, _, err := s.ConsistentQuery(c.ctx(), c.members[2], []byte("get later"))
	require.NoError(t, err)
	require.Equal(t, "x", string(got))

	// A restored cluster restarts from its own data.
	for i, sys := range c.systems {
		require.NoError(t, sys.Stop())
		c.restart(i)
	}
	got, _, err = c.systems[0].ConsistentQuery(c.ctx(), restored[0], []byte("get after"))
	require.NoError(t, err)
	require.Equal(t, "restore", string(got))
}

// A damaged, cut, foreign or mismatched backup is refused with
// ErrInvalidBackup, and nothing is created from it.
func TestRestoreRefusesBadBackups(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	for i := range 20 {
		_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte(fmt.Sprintf("set k%d %s", i, strings.Repeat("v", 100))))
		require.NoError(t, err)
	}
	file, _ := c.backup()
	target := []ServerID{{Name: "copy", Node: s.Name()}}
	restore := func(b []byte, kind string) error {
		_, _, err := s.RestoreCluster(c.ctx(), "copy", MachineSpec{Kind: kind}, target, bytes.NewReader(b))
		return err
	}
	flipped := bytes.Clone(file)
	flipped[len(flipped)/2] ^= 1
	// A server's own snapshot has the backup's format, and its members
	// where a backup has its marker.
	serverSnap := encodeTestSnapshot(t, encodeSnapMeta(core.Snapshot{Index: 5, Term: 1, Members: core.Membership{Voters: c.members}},
		newSessionTable(1, 1)), []byte(`{"Data":{}}`))
	for name, tc := range map[string]struct {
		file []byte
		kind string
		says string
	}{
		"a flipped bit":       {flipped, "kv", "checksum"},
		"cut short":           {file[:len(file)-10], "kv", "truncated"},
		"empty":               {nil, "kv", "truncated"},
		"not a backup":        {bytes.Repeat([]byte("not a backup at all. "), 10), "kv", "bad magic"},
		"another machine":     {file, "fx", `holds a "kv" machine`},
		"a server's snapshot": {serverSnap, "kv", "not a rago backup"},
	} {
		err := restore(tc.file, tc.kind)
		require.ErrorIs(t, err, ErrInvalidBackup, name)
		require.ErrorContains(t, err, tc.says, name)
	}
	servers, err := s.LocalServers(t.Context())
	require.NoError(t, err)
	for _, cfg := range servers {
		require.NotEqual(t, "copy", cfg.Cluster, "nothing was created")
	}
	// A machine that cannot read the state refuses it too.
	garbled := encodeTestSnapshot(t, encodeBackupMeta(BackupInfo{Cluster: "kv", Machine: "kv"}), []byte("{not json"))
	require.ErrorIs(t, restore(garbled, "kv"), ErrInvalidBackup)
	require.ErrorContains(t, restore(garbled, "kv"), "the machine cannot restore it")
	// The good one still restores under the same names.
	require.NoError(t, restore(file, "kv"))
	got, _, err := s.ConsistentQuery(c.ctx(), target[0], []byte("get k3"))
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("v", 100), string(got))

	_, _, err = s.RestoreCluster(c.ctx(), "elsewhere", MachineSpec{Kind: "kv"}, []ServerID{{Name: "x", Node: "127.0.0.1:1"}}, bytes.NewReader(file))
	require.ErrorIs(t, err, ErrInvalidConfig, "no member on this node")
}

// encodeTestSnapshot returns a snapshot stream at index 5 with meta and
// data.
func encodeTestSnapshot(t *testing.T, meta, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	e, err := snapshot.NewEncoder(&b, 5, 1, meta)
	require.NoError(t, err)
	_, err = e.Write(data)
	require.NoError(t, err)
	_, err = e.Close()
	require.NoError(t, err)
	return b.Bytes()
}

// Where the last command did not release the log, the backup is the
// newest snapshot; a server with none, a machine that cannot snapshot, and
// a leader on another node are refused with typed errors.
func TestBackupOfTheNewestSnapshot(t *testing.T) {
	c := startSnapCluster(t, 3)
	s := c.systems[0]
	_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte("hold early x"))
	require.NoError(t, err)
	leader, err := s.WaitForLeader(c.ctx(), c.members[0])
	require.NoError(t, err)
	_, err = c.systemOf(leader).Backup(c.ctx(), leader, &bytes.Buffer{})
	require.ErrorIs(t, err, ErrMachine)
	require.ErrorContains(t, err, "nothing to back up yet")

	for i := range 250 {
		_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte(fmt.Sprintf("set k%d v%d", i, i)))
		require.NoError(t, err)
	}
	_, _, err = s.ProcessCommand(c.ctx(), c.members[0], []byte("hold late x"))
	require.NoError(t, err)
	file, info := c.backup()
	st, err := s.Overview(c.ctx(), leader)
	require.NoError(t, err)
	require.Less(t, info.Index, st.LastApplied, "the last command kept the log")
	require.Positive(t, info.Index)

	target := ServerID{Name: "copy", Node: leader.Node}
	_, _, err = c.systemOf(leader).RestoreCluster(c.ctx(), "copy", MachineSpec{Kind: "kv"}, []ServerID{target}, bytes.NewReader(file))
	require.NoError(t, err)
	applied, _, err := QueryMachine(c.ctx(), c.systemOf(leader), target, QueryLocal, func(m *kvMachine) (uint64, error) { return m.applied, nil })
	require.NoError(t, err)
	require.Equal(t, info.Index, applied, "the state of the snapshot's index")

	// A follower on a node without the leader cannot back up.
	for _, m := range c.members {
		if m.Node == leader.Node {
			continue
		}
		_, err := c.systemOf(m).Backup(c.ctx(), m, &bytes.Buffer{})
		require.ErrorIs(t, err, ErrNotLocal)
		var nl *NotLeaderError
		require.ErrorAs(t, err, &nl)
		require.Equal(t, leader, nl.Leader)
	}

	fx := c.startFX()
	fxLeader, err := s.WaitForLeader(c.ctx(), fx[0])
	require.NoError(t, err)
	_, err = c.systemOf(fxLeader).Backup(c.ctx(), fxLeader, &bytes.Buffer{})
	require.ErrorIs(t, err, ErrMachine)
	require.ErrorContains(t, err, "no Snapshotter")
}

// A backup right after a leader change needs no new command: the new
// leader's no-op changes nothing, so the state of the last command, which
// released the log, still stands on its own.
func TestBackupRightAfterALeaderChange(t *testing.T) {
	c := startCluster(t, 3)
	s := c.systems[0]
	for i := range 5 {
		_, _, err := s.ProcessCommand(c.ctx(), c.members[0], []byte(fmt.Sprintf("set k%d v%d", i, i)))
		require.NoError(t, err)
	}
	old, err := s.WaitForLeader(c.ctx(), c.members[0])
	require.NoError(t, err)
	var to ServerID
	for _, m := range c.members {
		if m != old {
			to = m
			break
		}
	}
	require.NoError(t, s.TransferLeadership(c.ctx(), c.members[0], to))
	var leader ServerID
	require.Eventually(t, func() bool {
		leader, err = s.WaitForLeader(c.ctx(), c.members[0])
		return err == nil && leader != old
	}, 10*time.Second, 10*time.Millisecond)
	// The new leader's no-op is applied once it committed, which a
	// consistent query waits for.
	_, _, err = s.ConsistentQuery(c.ctx(), leader, []byte("get k4"))
	require.NoError(t, err)
	st, err := c.systemOf(leader).Overview(c.ctx(), leader)
	require.NoError(t, err)

	var buf bytes.Buffer
	info, err := c.systemOf(leader).Backup(c.ctx(), leader, &buf)
	require.NoError(t, err, "no command since the leader changed")
	require.Equal(t, st.LastApplied, info.Index, "the backup ends with the new leader's no-op")
	var restored []ServerID
	for _, m := range c.members {
		restored = append(restored, ServerID{Name: "copy-" + m.Name, Node: m.Node})
	}
	_, _, err = s.RestoreCluster(c.ctx(), "copy", MachineSpec{Kind: "kv"}, restored, &buf)
	require.NoError(t, err)
	got, _, err := s.ConsistentQuery(c.ctx(), restored[1], []byte("get k4"))
	require.NoError(t, err)
	require.Equal(t, "v4", string(got))
}
