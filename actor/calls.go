package actor

import (
	"sync"
	"sync/atomic"
)

// callResult is what a waiting caller gets: a reply or an error.
type callResult struct {
	msg Message
	err error
}

// callTable holds the callers waiting for replies, by call id. It is
// sharded because every call adds and removes an entry and many processes
// call at once.
type callTable struct {
	next   atomic.Uint64
	shards [16]callShard
}

type callShard struct {
	mu sync.Mutex
	m  map[uint64]chan callResult
}

func (t *callTable) init() {
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]chan callResult)
	}
}

func (t *callTable) shard(id uint64) *callShard { return &t.shards[id%uint64(len(t.shards))] }

// add registers a new call and returns its id and the channel its result
// arrives on (buffered, so delivering never blocks).
func (t *callTable) add(string) (uint64, chan callResult) {
	id := t.next.Add(1)
	ch := make(chan callResult, 1)
	s := t.shard(id)
	s.mu.Lock()
	s.m[id] = ch
	s.mu.Unlock()
	return id, ch
}

func (t *callTable) remove(id uint64) {
	s := t.shard(id)
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// deliver hands r to the caller of id, if it is still waiting. The entry
// is removed so that a second reply is dropped.
func (t *callTable) deliver(id uint64, r callResult) {
	s := t.shard(id)
	s.mu.Lock()
	ch, ok := s.m[id]
	delete(s.m, id)
	s.mu.Unlock()
	if ok {
		ch <- r
	}
}

// failAll ends every waiting call with ErrNodeStopped.
func (t *callTable) failAll() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for id, ch := range s.m {
			ch <- callResult{err: ErrNodeStopped}
			delete(s.m, id)
		}
		s.mu.Unlock()
	}
}
