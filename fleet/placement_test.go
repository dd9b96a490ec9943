package fleet

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// genNodes draws 1 to 12 nodes with distinct names in 1 to 4 zones.
func genNodes(t *rapid.T) []Node {
	n := rapid.IntRange(1, 12).Draw(t, "nodes")
	zones := rapid.IntRange(1, 4).Draw(t, "zones")
	base := rapid.IntRange(0, 1000).Draw(t, "base")
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{Name: fmt.Sprintf("10.0.%d.%d:7000", base, i), Zone: fmt.Sprint("z", rapid.IntRange(0, zones-1).Draw(t, "zone"))}
	}
	return nodes
}

func zonesOf(nodes []Node) map[string]bool {
	z := map[string]bool{}
	for _, n := range nodes {
		z[n.Zone] = true
	}
	return z
}

func TestPlacementProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := genNodes(t)
		group := rapid.StringMatching(`[a-z0-9/-]{1,20}`).Draw(t, "group")
		replicas := rapid.IntRange(1, 5).Draw(t, "replicas")
		got := Place(group, nodes, replicas)

		// Deterministic, whatever the order the nodes are listed in.
		shuffled := rapid.Permutation(nodes).Draw(t, "order")
		require.Equal(t, got, Place(group, shuffled, replicas))

		// Distinct known nodes, as many as asked for or as there are.
		require.Len(t, got, min(replicas, len(nodes)))
		names := map[string]Node{}
		for _, n := range nodes {
			names[n.Name] = n
		}
		seen := map[string]bool{}
		usedZones := map[string]bool{}
		for _, name := range got {
			n, ok := names[name]
			require.True(t, ok, "placed on an unknown node %s", name)
			require.False(t, seen[name], "placed twice on %s", name)
			seen[name] = true
			usedZones[n.Zone] = true
		}
		// Spread over as many zones as possible.
		require.Len(t, usedZones, min(len(got), len(zonesOf(nodes))))

		// Adding a node moves members only onto it.
		added := Node{Name: "added:7000", Zone: fmt.Sprint("z", rapid.IntRange(0, 4).Draw(t, "addedZone"))}
		after := Place(group, append(slices.Clone(nodes), added), replicas)
		for _, name := range after {
			require.True(t, name == added.Name || slices.Contains(got, name),
				"adding %v put %s in (before %v, after %v)", added, name, got, after)
		}

		// Removing a node moves only the member it hosted.
		if len(nodes) > 1 {
			i := rapid.IntRange(0, len(nodes)-1).Draw(t, "removed")
			rest := slices.Delete(slices.Clone(nodes), i, i+1)
			after := Place(group, rest, replicas)
			for _, name := range got {
				if name != nodes[i].Name {
					require.Contains(t, after, name, "removing %v moved %s (before %v, after %v)", nodes[i], name, got, after)
				}
			}
		}
	})
}

// placeAll places groups and counts the members per node.
func placeAll(groups int, nodes []Node, replicas int) (map[string][]string, map[string]int) {
	placed := map[string][]string{}
	load := map[string]int{}
	for g := range groups {
		name := fmt.Sprint("group-", g)
		placed[name] = Place(name, nodes, replicas)
		for _, n := range placed[name] {
			load[n]++
		}
	}
	return placed, load
}

func sameZoneNodes(n int) []Node {
	nodes := make([]Node, n)
	for i := range nodes {
		nodes[i] = Node{Name: fmt.Sprintf("node-%d:7000", i)}
	}
	return nodes
}

// TestPlacementIsBalanced: with nodes in one zone, or zones of equal size,
// no node hosts more than the mean plus five standard deviations of a
// uniform placement, mean+5√mean (and none fewer than mean-5√mean): the
// bound the fleet's documentation states.
func TestPlacementIsBalanced(t *testing.T) {
	const groups, replicas = 1000, 3
	for _, tc := range []struct {
		nodes, zones int
	}{{3, 1}, {4, 1}, {5, 1}, {8, 1}, {12, 1}, {6, 3}, {9, 3}, {12, 3}, {8, 2}} {
		nodes := make([]Node, tc.nodes)
		for i := range nodes {
			nodes[i] = Node{Name: fmt.Sprintf("node-%d:7000", i), Zone: fmt.Sprint("z", i%tc.zones)}
		}
		_, load := placeAll(groups, nodes, replicas)
		mean := float64(groups*replicas) / float64(tc.nodes)
		slack := 5 * math.Sqrt(mean)
		require.Len(t, load, tc.nodes)
		for n, c := range load {
			require.LessOrEqual(t, float64(c), mean+slack, "%d nodes in %d zones: %s hosts %d, mean %.0f", tc.nodes, tc.zones, n, c, mean)
			require.GreaterOrEqual(t, float64(c), mean-slack, "%d nodes in %d zones: %s hosts %d, mean %.0f", tc.nodes, tc.zones, n, c, mean)
		}
	}
}

// TestAddingANodeMovesItsShare: adding a node to n moves about
// replicas/(n+1) of the groups' members onto it, and nothing else.
func TestAddingANodeMovesItsShare(t *testing.T) {
	const groups, replicas = 2000, 3
	for n := 3; n <= 9; n++ {
		nodes := sameZoneNodes(n + 1)
		before, _ := placeAll(groups, nodes[:n], replicas)
		after, load := placeAll(groups, nodes, replicas)
		moved := 0
		for g, members := range after {
			for _, m := range members {
				if !slices.Contains(before[g], m) {
					require.Equal(t, nodes[n].Name, m)
					moved++
				}
			}
		}
		require.Equal(t, load[nodes[n].Name], moved)
		share := float64(groups*replicas) / float64(n+1)
		require.InDelta(t, share, float64(moved), 5*math.Sqrt(share), "%d nodes to %d", n, n+1)
	}
}
