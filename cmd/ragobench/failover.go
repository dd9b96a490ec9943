package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/rago-raft/rago/raftserver"
)

// runFailover measures, over rounds, the time from stopping the leader's
// node process with sig (SIGKILL or SIGSTOP) to the first command that
// commits on a new leader. A client in this process keeps sending one
// command at a time, to the members in turn, with short timeouts.
func runFailover(sig syscall.Signal, rounds int, dir string) error {
	client, err := raftserver.StartSystem(systemConfig(filepath.Join(dir, "client"), "127.0.0.1:0"))
	if err != nil {
		return err
	}
	defer client.Stop()
	type node struct {
		addr, dir string
		cmd       *exec.Cmd
	}
	nodes := make([]*node, 3)
	var members []raftserver.ServerID
	for i := range nodes {
		n := &node{dir: filepath.Join(dir, fmt.Sprint("n", i))}
		if n.cmd, n.addr, err = startNodeProcess("127.0.0.1:0", n.dir); err != nil {
			return err
		}
		nodes[i] = n
		members = append(members, raftserver.ServerID{Name: "bench", Node: n.addr})
	}
	defer func() {
		for _, n := range nodes {
			_ = n.cmd.Process.Signal(syscall.SIGKILL)
			_ = n.cmd.Wait()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, _, err := client.StartCluster(ctx, "bench", raftserver.MachineSpec{Kind: "bench"}, members); err != nil {
		return err
	}
	// commit sends one command through any member, trying them in turn,
	// and returns the leader that committed it.
	next := 0
	commit := func(deadline time.Time) (raftserver.ServerID, error) {
		for time.Now().Before(deadline) {
			via := members[next%len(members)]
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			_, leader, err := client.ProcessCommand(ctx, via, []byte("x"))
			cancel()
			if err == nil {
				next = slices.Index(members, leader)
				return leader, nil
			}
			next++
		}
		return raftserver.ServerID{}, errors.New("no commit before the deadline")
	}
	var took []time.Duration
	for r := range rounds {
		leader, err := commit(time.Now().Add(30 * time.Second))
		if err != nil {
			return err
		}
		victim := nodes[slices.Index(members, leader)]
		start := time.Now()
		if err := victim.cmd.Process.Signal(sig); err != nil {
			return err
		}
		newLeader, err := commit(start.Add(30 * time.Second))
		if err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		d := time.Since(start)
		took = append(took, d)
		if newLeader == leader {
			return fmt.Errorf("round %d: %s still leads after %v", r, leader, sig)
		}
		// Bring the victim back and let it catch up before the next round.
		if sig == syscall.SIGSTOP {
			_ = victim.cmd.Process.Signal(syscall.SIGCONT)
		} else {
			_ = victim.cmd.Wait()
			// Restarted on its name, the port it bound the first time.
			if victim.cmd, _, err = startNodeProcess(victim.addr, victim.dir); err != nil {
				return err
			}
		}
		if err := waitCaughtUp(client, members); err != nil {
			return err
		}
	}
	slices.Sort(took)
	fmt.Printf("scenario=failover signal=%v rounds=%d min=%v median=%v max=%v\n", sig, rounds,
		took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	return nil
}

// waitCaughtUp waits until every member has applied the leader's commit.
func waitCaughtUp(client *raftserver.System, members []raftserver.ServerID) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var commits []uint64
		for _, m := range members {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := client.Overview(ctx, m)
			cancel()
			if err == nil {
				commits = append(commits, st.LastApplied)
			}
		}
		if len(commits) == len(members) && slices.Min(commits) == slices.Max(commits) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("members did not catch up")
}
