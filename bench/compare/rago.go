package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/raftserver"
	"github.com/rago-raft/rago/snapshot"
)

// ragoCluster is 3 rago nodes in this process, each a System with its own
// data directory (its WAL fdatasyncs, wal.SyncData, the default) and its
// own TCP listener on loopback: replication goes over rago's transport as
// between machines. Callers call the leader's System, so a command does
// not cross the network on its way in, as with the peers' Apply and
// Propose on their leader.
type ragoCluster struct {
	systems []*raftserver.System
	leader  raftserver.ServerID
	via     *raftserver.System // the leader's System
	count   *atomic.Uint64
}

// countingMachine is the trivial state machine: it counts commands. It
// keeps its whole log, which etcd's harness does too as far as the disk
// goes (it compacts only its MemoryStorage and writes no snapshot).
type countingMachine struct{ n *atomic.Uint64 }

func (m countingMachine) Apply(_ *raftserver.ApplyContext, _ []byte) []byte {
	m.n.Add(1)
	return nil
}

// snapshottingCounter is countingMachine as a machine that lets its log
// go: its state never refers back to the log, so every command releases
// it, and the server snapshots at its default policy (every 4096 entries,
// at most once a second) and truncates the log, as hashicorp's harness
// snapshots with its defaults. System "rago-snapshots".
type snapshottingCounter struct{ countingMachine }

func (m snapshottingCounter) Apply(ctx *raftserver.ApplyContext, cmd []byte) []byte {
	ctx.ReleaseCursor(ctx.Index)
	return m.countingMachine.Apply(ctx, cmd)
}

// Snapshot writes the count.
func (m snapshottingCounter) Snapshot() (snapshot.Source, error) {
	return snapshot.BytesSource(binary.BigEndian.AppendUint64(nil, m.n.Load())), nil
}

// Restore reads the count back.
func (m snapshottingCounter) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(b) != 8 {
		return fmt.Errorf("counting machine: a snapshot of %d bytes, not 8", len(b))
	}
	m.n.Store(binary.BigEndian.Uint64(b))
	return nil
}

func startRago(dir string) (cluster, error) { return startRagoWith(dir, false) }

func startRagoSnapshots(dir string) (cluster, error) { return startRagoWith(dir, true) }

// startRagoWith starts the cluster: of countingMachine, or with snapshots
// of snapshottingCounter.
func startRagoWith(dir string, snapshots bool) (cluster, error) {
	c := &ragoCluster{count: new(atomic.Uint64)}
	// Each member counts into its own counter; only the leader's is read.
	counters := map[string]*atomic.Uint64{}
	var members []raftserver.ServerID
	for i := range 3 {
		name := fmt.Sprint("n", i)
		counter := new(atomic.Uint64)
		s, err := raftserver.StartSystem(raftserver.SystemConfig{
			DataDir: filepath.Join(dir, name),
			Address: "127.0.0.1:0",
			Machines: map[string]raftserver.MachineFactory{
				"count": func([]byte) (raftserver.Machine, error) {
					if snapshots {
						return snapshottingCounter{countingMachine{counter}}, nil
					}
					return countingMachine{counter}, nil
				},
			},
		})
		if err != nil {
			_ = c.close()
			return nil, err
		}
		c.systems = append(c.systems, s)
		counters[s.Name()] = counter
		members = append(members, raftserver.ServerID{Name: "bench", Node: s.Name()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := c.systems[0].StartCluster(ctx, "bench", raftserver.MachineSpec{Kind: "count"}, members); err != nil {
		_ = c.close()
		return nil, err
	}
	leader, err := c.systems[0].WaitForLeader(ctx, members[0])
	if err != nil {
		_ = c.close()
		return nil, err
	}
	c.leader = leader
	for _, s := range c.systems {
		if s.Name() == leader.Node {
			c.via = s
		}
	}
	if c.via == nil {
		_ = c.close()
		return nil, fmt.Errorf("rago: leader %v is on none of the nodes", leader)
	}
	c.count = counters[leader.Node]
	return c, nil
}

func (c *ragoCluster) propose(ctx context.Context, cmd []byte) error {
	_, _, err := c.via.ProcessCommand(ctx, c.leader, cmd)
	return err
}

func (c *ragoCluster) applied() uint64 { return c.count.Load() }

func (c *ragoCluster) close() error {
	var first error
	for _, s := range c.systems {
		if err := s.Stop(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
