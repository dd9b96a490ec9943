package raftserver_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/rago-raft/rago/raftserver"
)

// counter is a tiny machine: every command adds its value to a total and
// replies with the new total.
type counter struct{ total int }

type add struct{ N int }

func (c *counter) Apply(_ *raftserver.ApplyContext, cmd add) int {
	c.total += cmd.N
	return c.total
}

// Three nodes in one process (each would normally be its own OS process),
// a cluster with one member on each, and a few commands.
func Example() {
	machines := map[string]raftserver.MachineFactory{
		"counter": func([]byte) (raftserver.Machine, error) {
			return raftserver.NewTypedMachine[add, int](&counter{}, raftserver.JSON[add]{}, raftserver.JSON[int]{}), nil
		},
	}
	var systems []*raftserver.System
	var members []raftserver.ServerID
	for i := range 3 {
		dir, err := os.MkdirTemp("", "rago-example")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		sys, err := raftserver.StartSystem(raftserver.SystemConfig{DataDir: dir, Address: "127.0.0.1:0", Machines: machines})
		if err != nil {
			log.Fatal(err)
		}
		defer sys.Stop()
		systems = append(systems, sys)
		members = append(members, raftserver.ServerID{Name: fmt.Sprint("counter", i+1), Node: sys.Name()})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := systems[0].StartCluster(ctx, "counter", raftserver.MachineSpec{Kind: "counter"}, members); err != nil {
		log.Fatal(err)
	}
	client := raftserver.TypedClient[add, int]{System: systems[0], Cmds: raftserver.JSON[add]{}, Replies: raftserver.JSON[int]{}}
	for _, n := range []int{1, 2, 3} {
		// Any member will do: a follower redirects to the leader.
		total, _, err := client.Process(ctx, members[n-1], add{N: n})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("total:", total)
	}
	// A client that knows only the cluster's name asks its node's
	// leaderboard first and falls back to any member, which redirects.
	via, _, err := systems[2].Leader("counter")
	if err != nil {
		via = members[2]
	}
	total, _, err := client.Process(ctx, via, add{N: 4})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("total:", total)
	// Output:
	// total: 1
	// total: 3
	// total: 6
	// total: 10
}
