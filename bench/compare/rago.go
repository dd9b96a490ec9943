package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/rago-raft/rago/raftserver"
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

// countingMachine is the trivial state machine: it counts commands.
type countingMachine struct{ n *atomic.Uint64 }

func (m countingMachine) Apply(_ *raftserver.ApplyContext, _ []byte) []byte {
	m.n.Add(1)
	return nil
}

func startRago(dir string) (cluster, error) {
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
				"count": func([]byte) (raftserver.Machine, error) { return countingMachine{counter}, nil },
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
