package raftserver_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/rago-raft/rago/raftserver"
)

// register is a byte machine: "set K V" stores V under K and replies with
// the old value; its queries are "get K".
type register struct{ data map[string]string }

func newRegister([]byte) (raftserver.Machine, error) {
	return &register{data: map[string]string{}}, nil
}

func (r *register) Apply(ctx *raftserver.ApplyContext, cmd []byte) []byte {
	f := strings.SplitN(string(cmd), " ", 3)
	if len(f) != 3 || f[0] != "set" {
		ctx.Reject(fmt.Errorf("want \"set KEY VALUE\", got %q", cmd))
		return nil
	}
	old := r.data[f[1]]
	r.data[f[1]] = f[2]
	return []byte(old)
}

func (r *register) Query(q []byte) ([]byte, error) {
	key, ok := strings.CutPrefix(string(q), "get ")
	if !ok {
		return nil, fmt.Errorf("want \"get KEY\", got %q", q)
	}
	return []byte(r.data[key]), nil
}

// nodes starts n systems in this process (each would normally be an OS
// process of its own) that run register machines. stop stops them and
// removes their data.
func nodes(n int) (systems []*raftserver.System, stop func()) {
	return nodesWith(n, func(cfg *raftserver.SystemConfig) {
		cfg.Machines = map[string]raftserver.MachineFactory{"register": newRegister}
	})
}

// nodesWith is nodes with the configuration set by configure (at least
// its Machines).
func nodesWith(n int, configure func(*raftserver.SystemConfig)) (systems []*raftserver.System, stop func()) {
	var dirs []string
	stop = func() {
		for _, s := range systems {
			_ = s.Stop()
		}
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
	}
	for range n {
		dir, err := os.MkdirTemp("", "rago-example")
		if err != nil {
			log.Fatal(err)
		}
		dirs = append(dirs, dir)
		cfg := raftserver.SystemConfig{
			DataDir: dir,
			Address: "127.0.0.1:0", // a free port; use a fixed address in production
		}
		configure(&cfg)
		s, err := raftserver.StartSystem(cfg)
		if err != nil {
			stop()
			log.Fatal(err)
		}
		systems = append(systems, s)
	}
	return systems, stop
}

// membersOn names one member of cluster on each system.
func membersOn(cluster string, systems []*raftserver.System) []raftserver.ServerID {
	var ms []raftserver.ServerID
	for i, s := range systems {
		ms = append(ms, raftserver.ServerID{Name: fmt.Sprintf("%s-%d", cluster, i+1), Node: s.Name()})
	}
	return ms
}

// Start a cluster, wait for its leader, send a command and read it back
// with a linearizable query.
func ExampleSystem_StartCluster() {
	systems, stop := nodes(3)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	members := membersOn("orders", systems)
	if _, _, err := systems[0].StartCluster(ctx, "orders", raftserver.MachineSpec{Kind: "register"}, members); err != nil {
		log.Fatal(err)
	}
	leader, err := systems[0].WaitForLeader(ctx, members[0])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("a leader:", leader.Name != "")

	// Any member will do: a follower redirects to the leader.
	if _, _, err := systems[1].ProcessCommand(ctx, members[1], []byte("set colour blue")); err != nil {
		log.Fatal(err)
	}
	v, _, err := systems[2].ConsistentQuery(ctx, members[2], []byte("get colour"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("colour:", string(v))

	// A command the machine rejects is an error, not a reply.
	_, _, err = systems[0].ProcessCommand(ctx, members[0], []byte("paint it black"))
	fmt.Println("rejected:", errors.Is(err, raftserver.ErrMachine))
	// Output:
	// a leader: true
	// colour: blue
	// rejected: true
}

// Pipelined commands: send many without waiting, and collect the results
// from a notify process (here an inbox). Results come back in log order.
func ExampleSystem_PipelineCommand() {
	systems, stop := nodes(3)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("events", systems)
	if _, _, err := systems[0].StartCluster(ctx, "events", raftserver.MachineSpec{Kind: "register"}, members); err != nil {
		log.Fatal(err)
	}
	leader, err := systems[0].WaitForLeader(ctx, members[0])
	if err != nil {
		log.Fatal(err)
	}
	inbox, err := systems[0].Node().NewInbox()
	if err != nil {
		log.Fatal(err)
	}
	defer inbox.Close()
	const count = 100
	for i := range count {
		cmd := fmt.Appendf(nil, "set last %d", i)
		if err := systems[0].PipelineCommand(leader, cmd, uint64(i), inbox.Ref()); err != nil {
			log.Fatal(err)
		}
	}
	applied := 0
	for applied < count {
		msg, err := inbox.Receive(ctx)
		if err != nil {
			log.Fatal(err)
		}
		switch m := msg.(type) {
		case *raftserver.Applied:
			applied += len(m.Results)
		case *raftserver.Rejected:
			// Not applied (the leader changed, say): resend it to m.Leader.
			log.Fatalf("command %d rejected: %v", m.Correlation, m.Err)
		}
	}
	v, _, err := systems[0].ConsistentQuery(ctx, leader, []byte("get last"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("applied:", applied, "last:", string(v))
	// Output:
	// applied: 100 last: 99
}

// A Pipeline keeps many commands in flight without an inbox to manage:
// it follows the leader, and reports each command once.
func ExampleSystem_NewPipeline() {
	systems, stop := nodes(3)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("metrics", systems)
	if _, _, err := systems[0].StartCluster(ctx, "metrics", raftserver.MachineSpec{Kind: "register"}, members); err != nil {
		log.Fatal(err)
	}
	// Any member will do: commands go on to the leader.
	p, err := systems[1].NewPipeline(members[2], raftserver.PipelineOptions{Window: 100})
	if err != nil {
		log.Fatal(err)
	}
	const count = 1000
	go func() {
		for i := range count {
			if _, err := p.Submit(ctx, fmt.Appendf(nil, "set last %d", i)); err != nil {
				log.Fatal(err)
			}
		}
	}()
	applied := 0
	for range count {
		r := <-p.Results()
		if r.Err != nil {
			// ErrTimeout or ErrLeadershipLost: it may or may not have
			// been applied.
			log.Fatalf("command %d: %v", r.Seq, r.Err)
		}
		applied++
	}
	p.Close()
	v, _, err := systems[0].ConsistentQuery(ctx, members[0], []byte("get last"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("applied:", applied, "last:", string(v))
	// Output:
	// applied: 1000 last: 999
}

// Queries of three strengths, and a Go function over a machine on this
// node.
func ExampleQueryMachine() {
	systems, stop := nodes(1)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("settings", systems)
	if _, _, err := systems[0].StartCluster(ctx, "settings", raftserver.MachineSpec{Kind: "register"}, members); err != nil {
		log.Fatal(err)
	}
	s, m := systems[0], members[0]
	if _, _, err := s.ProcessCommand(ctx, m, []byte("set mode fast")); err != nil {
		log.Fatal(err)
	}
	consistent, _, _ := s.ConsistentQuery(ctx, m, []byte("get mode")) // linearizable
	leader, _, _ := s.LeaderQuery(ctx, m, []byte("get mode"))         // no quorum round: may be stale
	local, _, _ := s.LocalQuery(ctx, m, []byte("get mode"))           // this member, as applied
	keys, _, err := raftserver.QueryMachine(ctx, s, m, raftserver.QueryConsistent,
		func(r *register) (int, error) { return len(r.data), nil })
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(consistent), string(leader), string(local), keys)
	// Output:
	// fast fast fast 1
}

// Find a cluster's leader through the node's leaderboard, and fall back to
// any member when it knows none: the member redirects.
func ExampleSystem_Leader() {
	systems, stop := nodes(3)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("users", systems)
	if _, _, err := systems[0].StartCluster(ctx, "users", raftserver.MachineSpec{Kind: "register"}, members); err != nil {
		log.Fatal(err)
	}
	via, _, err := systems[1].Leader("users")
	if err != nil { // ErrNoLeader (none known yet) or ErrNoSuchCluster
		via = members[1]
	}
	_, leader, err := systems[1].ProcessCommand(ctx, via, []byte("set alice admin"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("applied by a member:", leader.Name != "")
	// Output:
	// applied by a member: true
}

// Grow a cluster by one member, then hand the leadership to it.
func ExampleSystem_AddMember() {
	systems, stop := nodes(4)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("stock", systems)
	if _, _, err := systems[0].StartCluster(ctx, "stock", raftserver.MachineSpec{Kind: "register"}, members[:3]); err != nil {
		log.Fatal(err)
	}
	// The new member starts empty, without members: it waits for the
	// leader to add it and send it the log.
	joiner := members[3]
	err := systems[3].StartServer(ctx, raftserver.ServerConfig{ID: joiner, Cluster: "stock", Machine: raftserver.MachineSpec{Kind: "register"}})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := systems[0].AddMember(ctx, members[0], joiner); err != nil {
		log.Fatal(err)
	}
	voters, _, err := systems[0].Members(ctx, members[0])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("voters:", len(voters))

	if err := systems[0].TransferLeadership(ctx, members[0], joiner); err != nil {
		log.Fatal(err)
	}
	leader, err := systems[0].WaitForLeader(ctx, members[0])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the new member leads:", leader == joiner)
	// Output:
	// voters: 4
	// the new member leads: true
}

// A session applies each command exactly once, even when an attempt's
// outcome was unknown (a timeout, a leader change) and it had to retry.
func ExampleSession_ProcessCommand() {
	systems, stop := nodes(3)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("payments", systems)
	if _, _, err := systems[0].StartCluster(ctx, "payments", raftserver.MachineSpec{Kind: "register"}, members); err != nil {
		log.Fatal(err)
	}
	session := systems[0].NewSession()
	old, _, err := session.ProcessCommand(ctx, members[0], []byte("set invoice-7 paid"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("before: %q\n", old)
	// Output:
	// before: ""
}

// Follow a member's committed log: every command once, in the order the
// cluster committed it, whoever leads. A reader that falls behind is held
// back by its window instead of being flooded.
func ExampleSystem_WatchLog() {
	systems, stop := nodes(3)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	members := membersOn("audit", systems)
	if _, _, err := systems[0].StartCluster(ctx, "audit", raftserver.MachineSpec{Kind: "register"}, members); err != nil {
		log.Fatal(err)
	}
	w, err := systems[0].WatchLog(ctx, members[1], 1, 64)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	for _, cmd := range []string{"set a 1", "set b 2", "set a 3"} {
		if _, _, err := systems[0].ProcessCommand(ctx, members[0], []byte(cmd)); err != nil {
			log.Fatal(err)
		}
	}
	for n := 0; n < 3; {
		e, ok := <-w.C
		if !ok {
			log.Fatal(w.Err()) // a CompactedError: start again from a snapshot
		}
		if e.Kind == raftserver.LogCommand {
			fmt.Printf("%s\n", e.Command)
			n++
		}
	}
	// Output:
	// set a 1
	// set b 2
	// set a 3
}
