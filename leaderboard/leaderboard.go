// Package leaderboard is a node-local table of the leader each Raft
// cluster is known to have, and its members. Raft servers on the node
// write to it when they learn of a leader change; clients read it before
// sending a command so that it goes straight to the leader, and fall back
// to a call that redirects when the entry is missing or stale.
//
// Reads never lock and never message anyone: the table is a sync.Map of
// immutable entries, and an update replaces an entry as a whole. Writes are
// rare (one per leader change per local member).
package leaderboard

import (
	"slices"
	"sync"
)

// Entry is what the board knows of one cluster. Leader is the zero value
// when no leader is known (an election is in progress).
type Entry[ID comparable] struct {
	Leader  ID
	Members []ID
	// Term is the Raft term the entry was learned in. An update with an
	// older term is ignored, so a server that lags behind cannot overwrite
	// what a newer one reported.
	Term uint64
}

// Board maps cluster names to entries. The zero value is ready to use and
// safe for concurrent use.
type Board[ID comparable] struct {
	m sync.Map // cluster name -> *Entry[ID]
	// mu serializes writers so the term comparison and the store are one
	// step; readers do not take it.
	mu sync.Mutex
}

// Record stores leader and members for cluster as of term, unless the
// board already holds a newer term. Members is copied. It reports whether
// the entry changed.
func (b *Board[ID]) Record(cluster string, leader ID, members []ID, term uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v, ok := b.m.Load(cluster); ok {
		old := v.(*Entry[ID])
		if term < old.Term {
			return false
		}
		if term == old.Term && old.Leader == leader && slices.Equal(old.Members, members) {
			return false
		}
	}
	b.m.Store(cluster, &Entry[ID]{Leader: leader, Members: slices.Clone(members), Term: term})
	return true
}

// Lookup returns the known leader and members of cluster. ok is false if
// the cluster is unknown; a known cluster with no known leader returns the
// zero leader, its members and ok true. The returned slice must not be
// modified.
func (b *Board[ID]) Lookup(cluster string) (leader ID, members []ID, ok bool) {
	v, ok := b.m.Load(cluster)
	if !ok {
		return leader, nil, false
	}
	e := v.(*Entry[ID])
	return e.Leader, e.Members, true
}

// Get returns the whole entry of cluster.
func (b *Board[ID]) Get(cluster string) (Entry[ID], bool) {
	v, ok := b.m.Load(cluster)
	if !ok {
		return Entry[ID]{}, false
	}
	return *v.(*Entry[ID]), true
}

// Delete forgets cluster (it was deleted on this node).
func (b *Board[ID]) Delete(cluster string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m.Delete(cluster)
}

// Clusters returns the names of the clusters on the board, sorted.
func (b *Board[ID]) Clusters() []string {
	var names []string
	b.m.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	slices.Sort(names)
	return names
}
