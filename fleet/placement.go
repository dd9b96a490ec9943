// Package fleet runs many consensus groups across a set of nodes. This
// file holds placement: which nodes host the members of a group, decided
// by rendezvous hashing (highest random weight) so that every node that
// knows the same nodes computes the same answer, with no coordination and
// no table to keep.
package fleet

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"slices"
)

// Node is a node that may host members: its name (the rago node name) and
// its zone (a failure domain: a rack, a data centre; "" is a zone too).
type Node struct {
	Name string
	Zone string
}

// weight is the rendezvous weight of node for group: a 64-bit hash of
// both, mixed so that the weights of one group over many nodes are
// independent. Wire format of placement: changing it moves members.
func weight(group, node string) uint64 {
	h := fnv.New64a()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(group)))
	_, _ = h.Write(n[:])
	_, _ = h.Write([]byte(group))
	_, _ = h.Write([]byte(node))
	return mix(h.Sum64())
}

// mix is a 64-bit finaliser (splitmix64's): FNV alone leaves the high bits
// of similar inputs correlated, which would skew the ranking.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Place returns the nodes that host group's replicas members, in order of
// preference: the first is the desired leader. Nodes are ranked by their
// rendezvous weight for group; the best node of each zone comes first,
// zones in the order of their best node, so that the members spread over
// as many zones as there are; then the remaining nodes by rank. With fewer
// nodes than replicas, every node is returned. Nodes must have distinct
// names; their order does not matter.
func Place(group string, nodes []Node, replicas int) []string {
	if replicas <= 0 || len(nodes) == 0 {
		return nil
	}
	type ranked struct {
		node Node
		w    uint64
	}
	rank := make([]ranked, len(nodes))
	for i, n := range nodes {
		rank[i] = ranked{n, weight(group, n.Name)}
	}
	slices.SortFunc(rank, func(a, b ranked) int {
		if c := cmp.Compare(b.w, a.w); c != 0 {
			return c
		}
		return cmp.Compare(a.node.Name, b.node.Name)
	})
	out := make([]string, 0, min(replicas, len(nodes)))
	taken := make([]bool, len(rank))
	zones := map[string]bool{}
	for i, r := range rank {
		if len(out) == replicas {
			return out
		}
		if !zones[r.node.Zone] {
			zones[r.node.Zone] = true
			taken[i] = true
			out = append(out, r.node.Name)
		}
	}
	for i, r := range rank {
		if len(out) == replicas {
			break
		}
		if !taken[i] {
			out = append(out, r.node.Name)
		}
	}
	return out
}
