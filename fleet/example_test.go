package fleet_test

import (
	"fmt"

	"github.com/rago-raft/rago/fleet"
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
