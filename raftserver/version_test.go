package raftserver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// vkvMachine is kvMachine in versions: from version 1 on, "set" replies
// are prefixed "v1:", and the migration records where it happened.
type vkvMachine struct {
	kvMachine
	code uint64 // the highest version this build supports
}

func newVKV(code uint64) MachineFactory {
	return func([]byte) (Machine, error) {
		return &vkvMachine{kvMachine: kvMachine{data: map[string]string{}}, code: code}, nil
	}
}

func (m *vkvMachine) Version() uint64 { return m.code }

func (m *vkvMachine) MigrateVersion(ctx *ApplyContext, from uint64) {
	m.data["migrated"] = fmt.Sprintf("%d->%d@%d", from, ctx.MachineVersion, ctx.Index)
}

func (m *vkvMachine) Apply(ctx *ApplyContext, cmd []byte) []byte {
	r := m.kvMachine.Apply(ctx, cmd)
	if ctx.MachineVersion >= 1 {
		return append([]byte("v1:"), r...)
	}
	return r
}

func TestRollingUpgradeUnderLoad(t *testing.T) {
	var mu sync.Mutex
	code := map[string]uint64{} // data dir -> code version
	c := startClusterOf(t, 3, "vkv", func(cfg *SystemConfig) {
		mu.Lock()
		defer mu.Unlock()
		cfg.Machines = map[string]MachineFactory{"vkv": newVKV(code[cfg.DataDir])}
		cfg.Snapshots = snapPolicy
	})

	// Load through the whole upgrade, from a client of its own.
	client, err := StartSystem(SystemConfig{DataDir: t.TempDir(), Address: "127.0.0.1:0"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Stop() })
	var stop atomic.Bool
	acked := map[string]string{}
	var v1Replies atomic.Int64
	var wg sync.WaitGroup
	defer func() { stop.Store(true); wg.Wait() }()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := c.members[w%3]
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				reply, leader, err := client.ProcessCommand(ctx, via, []byte("set "+key+" x"))
				cancel()
				if err != nil {
					via = c.members[(c.index(via)+1)%3]
					continue
				}
				via = leader
				if strings.HasPrefix(string(reply), "v1:") {
					v1Replies.Add(1)
				}
				mu.Lock()
				acked[key] = "x"
				mu.Unlock()
			}
		}()
	}
	upgrade := func(i int) {
		require.NoError(t, c.systems[i].Stop())
		c.systems[i] = nil
		mu.Lock()
		code[c.dirs[i]] = 1
		mu.Unlock()
		time.Sleep(200 * time.Millisecond) // commands go on meanwhile
		c.restart(i)
	}

	// One member on new code is no quorum: the version stays.
	upgrade(0)
	c.waitStatus(0, "back", func(st *ServerStatus) bool { return st.LastApplied > 0 && !st.Leader.IsZero() })
	time.Sleep(300 * time.Millisecond)
	for i := range c.members {
		require.Zero(t, c.status(i).MachineVersion, "member %d", i)
	}
	require.Zero(t, v1Replies.Load())

	// Two are: the leader commits the bump, and both switch there.
	upgrade(1)
	for i := range 2 {
		c.waitStatus(i, "version 1", func(st *ServerStatus) bool { return st.MachineVersion == 1 })
	}
	migrated, err := c.localGet(0, "migrated")
	require.NoError(t, err)
	var bump uint64
	_, err = fmt.Sscanf(migrated, "0->1@%d", &bump)
	require.NoError(t, err, "migration record %q", migrated)
	// The member on old code keeps replicating but applies nothing past
	// the bump.
	old := c.waitStatus(2, "held back before the bump", func(st *ServerStatus) bool {
		return st.LastIndex > bump && st.Commit > bump
	})
	require.Equal(t, bump-1, old.LastApplied, "old code stops just before the bump")
	require.Zero(t, old.MachineVersion)
	require.NotEqual(t, "leader", old.Role, "old code never leads after the bump")
	require.Eventually(t, func() bool { return v1Replies.Load() > 0 }, waitFor, 10*time.Millisecond,
		"commands are applied with the new logic")

	// The last upgrade: it catches up, switching at the same index.
	upgrade(2)
	st := c.waitStatus(2, "caught up on new code", func(st *ServerStatus) bool {
		return st.MachineVersion == 1 && st.LastApplied > bump
	})
	require.EqualValues(t, 1, st.MachineVersion)
	got, err := c.localGet(2, "migrated")
	require.NoError(t, err)
	require.Equal(t, migrated, got, "every member switched at the same index")

	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, acked)
	c.check(c.systems[0], acked)
}
