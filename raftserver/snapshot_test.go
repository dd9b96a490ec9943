package raftserver

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// snapPolicy snapshots every 100 entries, without a minimum interval or a
// log ratio.
var snapPolicy = SnapshotPolicy{Entries: 100, MinInterval: time.Millisecond, LogRatio: -1}

func TestSnapshotPolicy(t *testing.T) {
	p := SnapshotPolicy{}.withDefaults()
	require.Equal(t, SnapshotPolicy{Entries: 4096, Bytes: 64 << 20, MinInterval: time.Second, LogRatio: 0.5}, p)
	require.False(t, p.due(4095, 1000, 0))
	require.True(t, p.due(4096, 1000, 0), "entries")
	require.True(t, p.due(10, 64<<20, 0), "bytes")
	// A large state is not rewritten for a few commands.
	require.False(t, p.due(5000, 1<<20, 100<<20))
	require.True(t, p.due(5000, 50<<20, 100<<20))
	p.LogRatio = -1
	require.True(t, p.due(5000, 1<<20, 100<<20), "ratio off")
}

// startSnapCluster is startFixedCluster with frequent snapshots; restarts
// (c.restart) keep the policy.
func startSnapCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return startClusterOf(t, n, "kv", func(cfg *SystemConfig) { cfg.Snapshots = snapPolicy })
}

// status returns member i's status, asked through a live system.
func (c *cluster) status(i int) *ServerStatus {
	for _, s := range c.systems {
		if s == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := s.Overview(ctx, c.members[i])
		cancel()
		if err == nil {
			return st
		}
	}
	return nil
}

// waitStatus waits until member i's status satisfies ok.
func (c *cluster) waitStatus(i int, what string, ok func(*ServerStatus) bool) *ServerStatus {
	c.t.Helper()
	var st *ServerStatus
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		if st = c.status(i); st != nil && ok(st) {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("member %d: %s: not reached; last status %+v", i, what, st)
	return nil
}

// localGet reads key on member i only.
func (c *cluster) localGet(i int, key string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r, _, err := c.systems[i].LocalQuery(ctx, c.members[i], []byte("get "+key))
	return string(r), err
}

// snapshotFiles lists member i's snapshot files with the given suffix.
func (c *cluster) snapshotFiles(i int, suffix string) []string {
	st := c.status(i)
	require.NotNil(c.t, st)
	ents, err := os.ReadDir(filepath.Join(c.dirs[i], "snapshots", st.UID))
	require.NoError(c.t, err)
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), suffix) {
			out = append(out, filepath.Join(c.dirs[i], "snapshots", st.UID, e.Name()))
		}
	}
	return out
}

// rotByte flips the bits of mask in the middle byte of the file at path,
// as a disk that rots would.
func rotByte(t *testing.T, path string, mask byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/2] ^= mask
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// stopAndListSnapshots stops system i and lists its member's snapshot
// files then (a stop may write one).
func (c *cluster) stopAndListSnapshots(i int) []string {
	st := c.status(i)
	require.NotNil(c.t, st)
	require.NoError(c.t, c.systems[i].Stop())
	c.systems[i] = nil
	files, err := filepath.Glob(filepath.Join(c.dirs[i], "snapshots", st.UID, "*.snap"))
	require.NoError(c.t, err)
	return files
}

func TestSnapshotsCompactTheLogAndRestartsUseThem(t *testing.T) {
	c := startSnapCluster(t, 3)
	sess := c.systems[0].NewSession()
	first, _, err := sess.ProcessCommand(c.ctx(), c.members[0], []byte("set s first"))
	require.NoError(t, err)
	acked := c.load(c.systems[0], "k", 1500, 16)
	require.Len(t, acked, 1500)
	for i := range c.members {
		st := c.waitStatus(i, "snapshot and compaction", func(st *ServerStatus) bool {
			return st.SnapshotIndex >= 1000 && st.FirstIndex == st.SnapshotIndex+1
		})
		// A newer snapshot may be between its rename and the pruning.
		require.Eventually(t, func() bool { return len(c.snapshotFiles(i, ".snap")) == 1 },
			waitFor, 10*time.Millisecond, "older snapshots are pruned: %+v", st)
	}

	// A full restart starts from the snapshots and replays the rest.
	for i, s := range c.systems {
		require.NoError(t, s.Stop())
		c.systems[i] = nil
	}
	for i := range c.systems {
		c.restart(i)
	}
	for i := range c.members {
		st := c.waitStatus(i, "restarted from a snapshot", func(st *ServerStatus) bool {
			return st.SnapshotIndex >= 1000 && st.LastApplied >= st.SnapshotIndex
		})
		require.Greater(t, st.FirstIndex, uint64(1000))
	}
	c.check(c.systems[1], acked)

	// The session table came back with the machine: a retry of an applied
	// command gets its first reply and is not applied again.
	again, _, err := c.systems[0].processCommand(c.ctx(), c.members[0],
		&commandReq{Data: []byte("set s second"), Session: true, Client: sess.ID(), Seq: 1})
	require.NoError(t, err)
	require.Equal(t, string(first), string(again))
	v, _, err := c.systems[0].ConsistentQuery(c.ctx(), c.members[0], []byte("get s"))
	require.NoError(t, err)
	require.Equal(t, "first", string(v))
}

func TestFollowerFarBehindCatchesUpBySnapshot(t *testing.T) {
	c := startSnapCluster(t, 3)
	c.load(c.systems[0], "a", 200, 8)
	before := c.waitStatus(2, "caught up", func(st *ServerStatus) bool { return st.LastApplied >= 200 })
	require.NoError(t, c.systems[2].Stop())
	c.systems[2] = nil

	acked := c.load(c.systems[0], "b", 2000, 16)
	ldr := c.waitStatus(0, "leader compacted past the follower", func(st *ServerStatus) bool {
		return st.FirstIndex > before.LastIndex+1
	})
	c.restart(2)
	st := c.waitStatus(2, "installed the leader's snapshot", func(st *ServerStatus) bool {
		return st.SnapshotIndex >= ldr.FirstIndex-1 && st.LastApplied >= ldr.Commit
	})
	require.Greater(t, st.SnapshotIndex, before.LastIndex, "only a snapshot covers what the leader dropped")
	// The metrics saw the transfer: sent and timed by the leader's node,
	// installed and timed by the follower's.
	fm := c.metricsOf(2)
	require.Positive(t, fm.SnapshotsInstalled)
	require.Positive(t, fm.SnapshotBytesInstalled)
	require.Equal(t, fm.SnapshotsInstalled, fm.SnapshotInstallTime.Count)
	require.Eventually(t, func() bool {
		var sent, timed, bytes uint64
		for i := range 2 {
			m := c.metricsOf(i)
			sent, timed, bytes = sent+m.SnapshotsSent, timed+m.SnapshotSendTime.Count, bytes+m.SnapshotBytesSent
		}
		return sent >= 1 && timed == sent && bytes >= fm.SnapshotBytesInstalled
	}, waitFor, 10*time.Millisecond, "no member counted the snapshot it sent")
	var taken uint64
	for i := range 2 {
		taken += c.metricsOf(i).SnapshotsTaken
	}
	require.Positive(t, taken)
	require.Positive(t, c.systems[0].Metrics().Snapshots.SnapshotsWritten)
	for k, v := range acked {
		got, err := c.localGet(2, k)
		require.NoError(t, err)
		require.Equal(t, v, got, "key %s on the follower", k)
	}
	// Replication goes on from the log after the snapshot.
	more := c.load(c.systems[0], "c", 50, 4)
	c.waitStatus(2, "applies after the install", func(s *ServerStatus) bool { return s.LastApplied >= ldr.Commit+50 })
	for k, v := range more {
		got, err := c.localGet(2, k)
		require.NoError(t, err)
		require.Equal(t, v, got)
	}
}

func TestCorruptSnapshotIsDetectedAndSurvived(t *testing.T) {
	c := startSnapCluster(t, 3)
	acked := c.load(c.systems[0], "a", 600, 8)
	c.waitStatus(2, "snapshot and compaction", func(st *ServerStatus) bool {
		return st.SnapshotIndex >= 300 && st.FirstIndex == st.SnapshotIndex+1
	})
	files := c.stopAndListSnapshots(2)
	require.Len(t, files, 1)

	// Rot one byte in the middle of the file.
	rotByte(t, files[0], 0x40)

	more := c.load(c.systems[0], "b", 300, 8)
	logs := &syncBuffer{}
	c.mod = func(cfg *SystemConfig) {
		cfg.Snapshots = snapPolicy
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	c.restart(2)
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "the log no longer reaches back to a usable snapshot")
	},
		waitFor, 10*time.Millisecond, "the log it continued is dropped")
	// (The .corrupt file it was renamed to goes with the next snapshot.)
	require.Contains(t, logs.String(), "snapshot failed verification; not used")
	st := c.waitStatus(2, "recovered", func(st *ServerStatus) bool {
		return st.RecoverTo == 0 && st.LastApplied >= 900
	})
	require.NotZero(t, st.SnapshotIndex, "it got a snapshot again")
	for _, set := range []map[string]string{acked, more} {
		for k, v := range set {
			got, err := c.localGet(2, k)
			require.NoError(t, err)
			require.Equal(t, v, got, "key %s", k)
		}
	}
}

func TestPoisonCommandAfterASnapshotRebuildsFromIt(t *testing.T) {
	c := startSnapCluster(t, 3)
	acked := c.load(c.systems[0], "a", 300, 8)
	for i := range c.members {
		c.waitStatus(i, "snapshot", func(st *ServerStatus) bool { return st.SnapshotIndex >= 200 })
	}
	_, _, err := c.systems[0].ProcessCommand(c.ctx(), c.members[0], []byte("panic"))
	require.ErrorIs(t, err, ErrMachine)
	more := c.load(c.systems[0], "b", 50, 4)
	for k, v := range more {
		acked[k] = v
	}
	c.check(c.systems[0], acked)
	for i := range c.members {
		for k, v := range acked {
			var got string
			require.Eventually(t, func() bool {
				got, err = c.localGet(i, k)
				return err == nil && got == v
			}, waitFor, 10*time.Millisecond, "member %d key %s: %q", i, k, got)
		}
	}
}

// syncBuffer is a bytes.Buffer for logs written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestOrderlyStopSnapshotsALongLog(t *testing.T) {
	for _, skip := range []bool{false, true} {
		t.Run(fmt.Sprint("skip=", skip), func(t *testing.T) {
			c := startClusterOf(t, 1, "kv", func(cfg *SystemConfig) {
				// One regular snapshot, then none for an hour.
				cfg.Snapshots = SnapshotPolicy{Entries: 100, MinInterval: time.Hour, LogRatio: -1, SkipOnStop: skip}
			})
			s := c.systems[0]
			acked := c.load(s, "k", 500, 4)
			first := c.waitStatus(0, "first snapshot", func(st *ServerStatus) bool { return st.SnapshotIndex >= 100 })
			require.Less(t, first.SnapshotIndex, uint64(400))
			last := c.status(0).LastApplied

			require.NoError(t, s.Stop())
			c.systems[0] = nil
			c.restart(0)
			st := c.waitStatus(0, "restarted", func(st *ServerStatus) bool { return st.LastApplied >= last })
			if skip {
				require.Equal(t, first.SnapshotIndex, st.SnapshotIndex, "the log after the snapshot is replayed")
			} else {
				require.GreaterOrEqual(t, st.SnapshotIndex, last, "the stop snapshotted what was applied")
			}
			c.check(c.systems[0], acked)
		})
	}
}

// An idle member snapshots at its last entry and compacts its whole log;
// if that snapshot rots, nothing on disk holds the entries any more, yet
// the member must remember how far it had been.
func TestCorruptSnapshotOfAnEmptyLogIsSurvived(t *testing.T) {
	logs := &syncBuffer{}
	c := startClusterOf(t, 3, "kv", func(cfg *SystemConfig) {
		// Every entry makes a snapshot due, so the interval alone paces
		// them, and the one its timer takes after the load ends covers the
		// last entry, however the load was spread over the intervals.
		cfg.Snapshots = SnapshotPolicy{Entries: 1, MinInterval: 200 * time.Millisecond, LogRatio: -1, SkipOnStop: true}
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	acked := c.load(c.systems[0], "a", 400, 8)
	st := c.waitStatus(2, "log compacted away", func(st *ServerStatus) bool {
		return st.LastIndex >= 400 && st.SnapshotIndex == st.LastIndex && st.FirstIndex == st.LastIndex+1
	})
	files := c.stopAndListSnapshots(2)
	require.Len(t, files, 1)
	rotByte(t, files[0], 0x08)

	more := c.load(c.systems[0], "b", 100, 4)
	c.restart(2)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), fmt.Sprintf("lost_to=%d", st.LastIndex)) },
		waitFor, 10*time.Millisecond, "the member knows what it lost")
	c.waitStatus(2, "recovered", func(s *ServerStatus) bool { return s.RecoverTo == 0 && s.LastApplied >= st.LastIndex+100 })
	for _, set := range []map[string]string{acked, more} {
		for k, v := range set {
			got, err := c.localGet(2, k)
			require.NoError(t, err)
			require.Equal(t, v, got, "key %s", k)
		}
	}
}
