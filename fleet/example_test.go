package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/rago-raft/rago/fleet"
	"github.com/rago-raft/rago/raftserver"
)

// Three members of a group over five nodes in three zones: one member per
// zone, the first the desired leader. Every node that knows these nodes
// computes the same answer.
func ExamplePlace() {
	nodes := []fleet.Node{
		{Name: "10.0.1.1:7000", Zone: "a"},
		{Name: "10.0.1.2:7000", Zone: "a"},
		{Name: "10.0.2.1:7000", Zone: "b"},
		{Name: "10.0.2.2:7000", Zone: "b"},
		{Name: "10.0.3.1:7000", Zone: "c"},
	}
	fmt.Println(fleet.Place("orders", nodes, 3))
	fmt.Println(fleet.Place("payments", nodes, 3))
	// Output:
	// [10.0.3.1:7000 10.0.1.2:7000 10.0.2.1:7000]
	// [10.0.1.2:7000 10.0.2.2:7000 10.0.3.1:7000]
}

// A fleet of three nodes in one process (each would normally be its own
// OS process, on its own machine): every node starts its agent, the seeds
// host the books, the nodes activate, a group is added, and a client
// that knows only the group's name sends it a command.
func ExampleStart() {
	var systems []*raftserver.System
	var seeds []string
	for range 3 {
		sys, err := raftserver.StartSystem(raftserver.SystemConfig{
			DataDir: "/data", FS: vfs.NewMem(), Address: "127.0.0.1:0",
			// Every node knows the books' machine and the groups' kinds.
			Machines: machines,
		})
		if err != nil {
			log.Fatal(err)
		}
		defer sys.Stop()
		systems = append(systems, sys)
		seeds = append(seeds, sys.Name())
	}
	var agents []*fleet.Agent
	for i, sys := range systems {
		agent, err := fleet.Start(fleet.Config{System: sys, Zone: fmt.Sprint("zone", i), Seeds: seeds})
		if err != nil {
			log.Fatal(err)
		}
		defer agent.Stop()
		agents = append(agents, agent)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, agent := range agents {
		if err := agent.Activate(ctx); err != nil {
			log.Fatal(err)
		}
	}
	spec := fleet.GroupSpec{Name: "orders", Machine: raftserver.MachineSpec{Kind: "register"}, Replicas: 3}
	if err := agents[0].AddGroup(ctx, spec); err != nil {
		log.Fatal(err)
	}
	// Any node's client routes by name; the command waits while the
	// group's founder creates it.
	client := agents[2].Client()
	cmd, _ := json.Marshal(setCmd{Key: "first", Value: "order 1"})
	reply, err := client.Process(ctx, "orders", cmd)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	got, err := client.Query(ctx, "orders", raftserver.QueryConsistent, []byte("first"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(got))
	// Output:
	// ok
	// order 1
}
