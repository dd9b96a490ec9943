package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
)

// hashicorpCluster is 3 hashicorp/raft nodes in this process with
// raft.DefaultConfig(), each with raft-wal as its log and stable store
// (it fsyncs every append batch), a file snapshot store, and its own TCP
// transport on loopback. Callers call Apply on the leader, which returns
// once the command is committed and applied by the leader's FSM.
type hashicorpCluster struct {
	logger hclog.Logger
	nodes  []*raft.Raft
	wals   []*raftwal.WAL
	trans  []*raft.NetworkTransport
	fsms   []*countingFSM
	leader int
}

// countingFSM is the trivial state machine: it counts commands.
type countingFSM struct{ n atomic.Uint64 }

func (f *countingFSM) Apply(*raft.Log) any { f.n.Add(1); return nil }

func (f *countingFSM) Snapshot() (raft.FSMSnapshot, error) {
	return countSnapshot(f.n.Load()), nil
}

func (f *countingFSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	f.n.Store(binary.BigEndian.Uint64(b[:]))
	return nil
}

type countSnapshot uint64

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(binary.BigEndian.AppendUint64(nil, uint64(s))); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}

func startHashicorp(dir string) (cluster, error) {
	// Errors only: its info logging of every election is noise here.
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Error, Output: os.Stderr})
	c := &hashicorpCluster{logger: logger, leader: -1}
	var servers []raft.Server
	for i := range 3 {
		id := fmt.Sprint("n", i)
		nodeDir := filepath.Join(dir, id)
		if err := os.MkdirAll(filepath.Join(nodeDir, "wal"), 0o755); err != nil {
			return nil, err
		}
		w, err := raftwal.Open(filepath.Join(nodeDir, "wal"))
		if err != nil {
			_ = c.close()
			return nil, err
		}
		c.wals = append(c.wals, w)
		// 3 pooled connections and a 10 s I/O timeout: the values
		// hashicorp/raft's own documentation and Consul use.
		t, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, logger)
		if err != nil {
			_ = c.close()
			return nil, err
		}
		c.trans = append(c.trans, t)
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: t.LocalAddr()})
	}
	for i := range 3 {
		conf := raft.DefaultConfig()
		conf.LocalID = servers[i].ID
		conf.Logger = logger
		snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, string(servers[i].ID)), 2, logger)
		if err != nil {
			_ = c.close()
			return nil, err
		}
		fsm := &countingFSM{}
		r, err := raft.NewRaft(conf, fsm, c.wals[i], c.wals[i], snaps, c.trans[i])
		if err != nil {
			_ = c.close()
			return nil, err
		}
		c.nodes = append(c.nodes, r)
		c.fsms = append(c.fsms, fsm)
	}
	if err := c.nodes[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		_ = c.close()
		return nil, err
	}
	// With the default timeouts (1 s heartbeat and election) the first
	// election takes one to a few seconds.
	deadline := time.Now().Add(30 * time.Second)
	for c.leader < 0 {
		for i, r := range c.nodes {
			if r.State() == raft.Leader {
				c.leader = i
			}
		}
		if c.leader < 0 {
			if time.Now().After(deadline) {
				_ = c.close()
				return nil, errors.New("hashicorp: no leader after 30 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return c, nil
}

func (c *hashicorpCluster) propose(ctx context.Context, cmd []byte) error {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	return c.nodes[c.leader].Apply(cmd, timeout).Error()
}

func (c *hashicorpCluster) applied() uint64 {
	if c.leader < 0 {
		return 0
	}
	return c.fsms[c.leader].n.Load()
}

func (c *hashicorpCluster) close() error {
	// Shutting down logs errors about connections it closes itself.
	c.logger.SetLevel(hclog.Off)
	var errs []error
	for _, r := range c.nodes {
		errs = append(errs, r.Shutdown().Error())
	}
	for _, t := range c.trans {
		errs = append(errs, t.Close())
	}
	for _, w := range c.wals {
		errs = append(errs, w.Close())
	}
	return errors.Join(errs...)
}
