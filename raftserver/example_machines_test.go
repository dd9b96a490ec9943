package raftserver_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/rago-raft/rago/raftserver"
	"github.com/rago-raft/rago/snapshot"
)

// adder adds the numbers it is sent. Its whole state is one number, so
// a snapshot is a copy of it; it releases the log after every command.
type adder struct {
	sum     uint64
	version uint64 // the code's highest version (Versioned)
}

func (c *adder) Apply(ctx *raftserver.ApplyContext, cmd []byte) []byte {
	n, err := parseUint(cmd)
	if err != nil {
		ctx.Reject(err)
		return nil
	}
	if ctx.MachineVersion >= 1 {
		n *= 2 // version 1 counts double
	}
	c.sum += n
	// Everything up to here is in the state: a snapshot may replace the
	// log up to this index.
	ctx.ReleaseCursor(ctx.Index)
	return binary.AppendUvarint(nil, c.sum)
}

func (c *adder) Query([]byte) ([]byte, error) { return fmt.Appendf(nil, "%d", c.sum), nil }

// Snapshot and Restore make adder a Snapshotter.
func (c *adder) Snapshot() (snapshot.Source, error) {
	return snapshot.BytesSource(binary.AppendUvarint(nil, c.sum)), nil
}

func (c *adder) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	sum, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return fmt.Errorf("adder snapshot of %d bytes does not decode", len(b))
	}
	c.sum = sum
	return nil
}

// Version and MigrateVersion make adder Versioned.
func (c *adder) Version() uint64 { return c.version }

func (c *adder) MigrateVersion(*raftserver.ApplyContext, uint64) {} // the state's form is the same

func parseUint(b []byte) (uint64, error) {
	var n uint64
	if _, err := fmt.Sscan(string(b), &n); err != nil {
		return 0, fmt.Errorf("want a number, got %q", b)
	}
	return n, nil
}

// A machine that implements Snapshotter is snapshotted as its log grows
// (SnapshotPolicy), and the log before the snapshot goes: restarts replay
// only what follows, and a member that lags far behind gets the snapshot.
func ExampleSnapshotter() {
	systems, stop := nodesWith(3, func(cfg *raftserver.SystemConfig) {
		cfg.Machines = map[string]raftserver.MachineFactory{"adder": func([]byte) (raftserver.Machine, error) { return &adder{}, nil }}
		cfg.Snapshots = raftserver.SnapshotPolicy{Entries: 100, MinInterval: time.Millisecond}
	})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("sum", systems)
	if _, _, err := systems[0].StartCluster(ctx, "sum", raftserver.MachineSpec{Kind: "adder"}, members); err != nil {
		log.Fatal(err)
	}
	for range 300 {
		if _, _, err := systems[0].ProcessCommand(ctx, members[0], []byte("1")); err != nil {
			log.Fatal(err)
		}
	}
	leader, err := systems[0].WaitForLeader(ctx, members[0])
	if err != nil {
		log.Fatal(err)
	}
	// Snapshots are written in the background: wait for one.
	var st *raftserver.ServerStatus
	for st == nil || st.SnapshotIndex == 0 {
		time.Sleep(10 * time.Millisecond)
		if st, err = systems[0].Overview(ctx, leader); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("log starts after the snapshot:", st.FirstIndex > 1 && st.FirstIndex <= st.SnapshotIndex+1)
	v, _, err := systems[0].ConsistentQuery(ctx, leader, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sum:", string(v))
	// Output:
	// log starts after the snapshot: true
	// sum: 300
}

// A machine that implements Versioned changes its logic in step across
// the cluster: the leader raises the cluster's version once a quorum of
// voters runs code that supports it, and every member switches at that
// log index (ApplyContext.MachineVersion). Here every node runs version 1.
func ExampleVersioned() {
	systems, stop := nodesWith(3, func(cfg *raftserver.SystemConfig) {
		cfg.Machines = map[string]raftserver.MachineFactory{"adder": func([]byte) (raftserver.Machine, error) { return &adder{version: 1}, nil }}
	})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("sum", systems)
	if _, _, err := systems[0].StartCluster(ctx, "sum", raftserver.MachineSpec{Kind: "adder"}, members); err != nil {
		log.Fatal(err)
	}
	leader, err := systems[0].WaitForLeader(ctx, members[0])
	if err != nil {
		log.Fatal(err)
	}
	// The bump is an entry of its own, appended once the leader knows
	// what its voters support: wait until it is in effect.
	var st *raftserver.ServerStatus
	for st == nil || st.MachineVersion < 1 {
		time.Sleep(10 * time.Millisecond)
		if st, err = systems[0].Overview(ctx, leader); err != nil {
			log.Fatal(err)
		}
	}
	reply, _, err := systems[0].ProcessCommand(ctx, leader, []byte("5"))
	if err != nil {
		log.Fatal(err)
	}
	sum, _ := binary.Uvarint(reply)
	fmt.Println("version:", st.MachineVersion, "sum:", sum)
	// Output:
	// version: 1 sum: 10
}

// Back up a cluster's state to a file, check the file, and start a new
// cluster from it. The backup is taken through the leader, on its node.
func ExampleSystem_Backup() {
	systems, stop := nodesWith(3, func(cfg *raftserver.SystemConfig) {
		cfg.Machines = map[string]raftserver.MachineFactory{"adder": func([]byte) (raftserver.Machine, error) { return &adder{}, nil }}
	})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("sum", systems)
	if _, _, err := systems[0].StartCluster(ctx, "sum", raftserver.MachineSpec{Kind: "adder"}, members); err != nil {
		log.Fatal(err)
	}
	for _, n := range []string{"20", "22"} {
		if _, _, err := systems[0].ProcessCommand(ctx, members[0], []byte(n)); err != nil {
			log.Fatal(err)
		}
	}
	leader, err := systems[0].WaitForLeader(ctx, members[0])
	if err != nil {
		log.Fatal(err)
	}
	var onLeader *raftserver.System
	for _, s := range systems {
		if s.Name() == leader.Node {
			onLeader = s
		}
	}
	f, err := os.CreateTemp("", "sum-*.backup")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := onLeader.Backup(ctx, leader, f); err != nil {
		log.Fatal(err)
	}

	// Later, maybe elsewhere: verify the file, then restore it.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		log.Fatal(err)
	}
	info, err := raftserver.ReadBackupInfo(f)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("a backup of %q (%s machine)\n", info.Cluster, info.Machine)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		log.Fatal(err)
	}
	restored := membersOn("sum-copy", systems)
	if _, _, err := systems[0].RestoreCluster(ctx, "sum-copy", raftserver.MachineSpec{Kind: "adder"}, restored, f); err != nil {
		log.Fatal(err)
	}
	v, _, err := systems[0].ConsistentQuery(ctx, restored[2], nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("restored sum:", string(v))
	// Output:
	// a backup of "sum" (adder machine)
	// restored sum: 42
}
