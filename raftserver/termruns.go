package raftserver

import (
	"sort"

	"github.com/rago-raft/rago/raftserver/core"
)

// termRuns remembers the terms of a suffix of a server's log, [from, last],
// as runs of equal terms, so that the term lookups Raft makes all the time
// (the previous entry of every AppendEntries, a follower's check of it, the
// hints of rejections and pre-votes) are answered from memory instead of
// from the segments. Terms never decrease along a log, and change only at
// elections, so a few runs cover a long log.
//
// It learns what the server appends. After a restart it knows nothing,
// and learns from the lookups that go to storage: the last entry first,
// then, going back, every entry whose term equals that of the oldest run
// (all entries between two of equal term have that term) or that sits
// right before the oldest run.
type termRuns struct {
	from uint64    // first index covered; nothing is covered when runs is empty
	runs []termRun // ascending by first; runs[0].first == from
}

type termRun struct {
	first, term uint64
}

// term returns the term of index, if covered (index <= last is the
// caller's to check).
func (t *termRuns) term(index uint64) (uint64, bool) {
	if len(t.runs) == 0 || index < t.from {
		return 0, false
	}
	i := sort.Search(len(t.runs), func(i int) bool { return t.runs[i].first > index }) - 1
	return t.runs[i].term, true
}

// appended records entries written over the log from ents[0].Index on
// (at most one past its end; what was there and after is replaced).
func (t *termRuns) appended(ents []core.Entry) {
	if len(ents) == 0 {
		return
	}
	t.truncate(ents[0].Index)
	for _, e := range ents {
		if n := len(t.runs); n == 0 {
			t.from = e.Index
			t.runs = append(t.runs, termRun{first: e.Index, term: e.Term})
		} else if t.runs[n-1].term != e.Term {
			t.runs = append(t.runs, termRun{first: e.Index, term: e.Term})
		}
	}
}

// truncate forgets index and everything after it.
func (t *termRuns) truncate(index uint64) {
	if len(t.runs) == 0 {
		return
	}
	if index <= t.from {
		t.reset()
		return
	}
	i := sort.Search(len(t.runs), func(i int) bool { return t.runs[i].first >= index })
	t.runs = t.runs[:i]
}

// compacted forgets what lies before first.
func (t *termRuns) compacted(first uint64) {
	if len(t.runs) == 0 || first <= t.from {
		return
	}
	i := sort.Search(len(t.runs), func(i int) bool { return t.runs[i].first > first }) - 1
	if i < 0 {
		return
	}
	t.runs = append(t.runs[:0], t.runs[i:]...)
	t.runs[0].first = first
	t.from = first
}

// learned records a term read from storage at index, where last is the
// log's last index.
func (t *termRuns) learned(index, term, last uint64) {
	switch {
	case len(t.runs) == 0:
		if index == last {
			t.from = index
			t.runs = append(t.runs, termRun{first: index, term: term})
		}
	case index >= t.from:
	case term == t.runs[0].term:
		t.runs[0].first = index
		t.from = index
	case index == t.from-1 && term < t.runs[0].term:
		t.runs = append([]termRun{{first: index, term: term}}, t.runs...)
		t.from = index
	}
}

func (t *termRuns) reset() {
	t.from = 0
	t.runs = t.runs[:0]
}
