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
//
// Calls to other nodes are also kept in one list per node in each shard,
// so that a lost connection ends just the calls that wait for that node
// (failNode) without a lock or a scan over every call.
type callTable struct {
	self   string // this node's name
	next   atomic.Uint64
	shards [16]callShard
}

type callShard struct {
	mu    sync.Mutex
	m     map[uint64]*pendingCall
	nodes map[string]*pendingCall // head of each node's list
}

// pendingCall is one waiting caller.
type pendingCall struct {
	id uint64
	ch chan callResult // buffered: delivering never blocks
	// node is the node the request went to; empty for local calls, which
	// are in no node list.
	node string
	// epoch is the link epoch (connection) the request was queued in, set
	// by the link under its lock once queued; 0 until then.
	epoch atomic.Uint64
	// req is the request of a local call, as its callee holds it: a reply
	// finds it here to settle it there, and the caller abandons it there
	// if it stops waiting.
	req        *callRequest
	prev, next *pendingCall // the node's list, under the shard's lock
}

func (t *callTable) init(self string) {
	t.self = self
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*pendingCall)
		t.shards[i].nodes = make(map[string]*pendingCall)
	}
}

func (t *callTable) shard(id uint64) *callShard { return &t.shards[id%uint64(len(t.shards))] }

// add registers a new call to node (empty for a call within this node,
// whose request req is then; its from is set here).
func (t *callTable) add(node string, req *callRequest) *pendingCall {
	c := &pendingCall{id: t.next.Add(1), ch: make(chan callResult, 1), node: node, req: req}
	if req != nil {
		req.from = ReplyTo{Node: t.self, ID: c.id}
	}
	s := t.shard(c.id)
	s.mu.Lock()
	s.m[c.id] = c
	if node != "" {
		if head := s.nodes[node]; head != nil {
			head.prev = c
			c.next = head
		}
		s.nodes[node] = c
	}
	s.mu.Unlock()
	return c
}

// takeLocked removes the call id and returns it, or nil if it is not
// waiting any more. Whoever takes a call is the only one that answers it.
func (s *callShard) takeLocked(id uint64) *pendingCall {
	c, ok := s.m[id]
	if !ok {
		return nil
	}
	delete(s.m, id)
	if c.node != "" {
		if c.prev != nil {
			c.prev.next = c.next
		} else if c.next != nil {
			s.nodes[c.node] = c.next
		} else {
			delete(s.nodes, c.node)
		}
		if c.next != nil {
			c.next.prev = c.prev
		}
		c.prev, c.next = nil, nil
	}
	return c
}

// take removes the call id and returns it, or nil if it is not waiting
// any more. Whoever takes a call is the only one that answers it.
func (t *callTable) take(id uint64) *pendingCall {
	s := t.shard(id)
	s.mu.Lock()
	c := s.takeLocked(id)
	s.mu.Unlock()
	return c
}

// remove ends the call id without an answer; it reports whether the call
// was still waiting.
func (t *callTable) remove(id uint64) bool { return t.take(id) != nil }

// deliver hands r to the caller of id, if it is still waiting. The entry
// is removed so that a second reply is dropped.
func (t *callTable) deliver(id uint64, r callResult) {
	if c := t.take(id); c != nil {
		c.ch <- r
	}
}

// failNode ends with err every call to node whose request was queued in
// a link epoch up to epoch: those requests went out on connections that
// are gone, so no reply can come. Calls not queued yet (epoch 0) or
// queued on a later connection keep waiting.
func (t *callTable) failNode(node string, epoch uint64, err error) {
	var failed []*pendingCall
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for c := s.nodes[node]; c != nil; {
			next := c.next
			if e := c.epoch.Load(); e != 0 && e <= epoch {
				failed = append(failed, s.takeLocked(c.id))
			}
			c = next
		}
		s.mu.Unlock()
	}
	for _, c := range failed {
		c.ch <- callResult{err: err}
	}
}

// failAll ends every waiting call with ErrNodeStopped.
func (t *callTable) failAll() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for id, c := range s.m {
			c.ch <- callResult{err: ErrNodeStopped}
			delete(s.m, id)
		}
		clear(s.nodes)
		s.mu.Unlock()
	}
}

// keptTable indexes, by ReplyTo, the calls from other nodes taken by this
// node's processes whose ReplyTo a process has read (Context.ReplyTo) and
// not answered yet: those are the calls Node.Reply may answer, from any
// goroutine, and it must find the call's process to settle the call
// there. Calls a process answers with Context.Reply without reading their
// ReplyTo never enter it, nor do calls from this node, which Node.Reply
// finds through the call table.
type keptTable struct {
	shards [16]keptShard
}

type keptShard struct {
	mu sync.Mutex
	m  map[ReplyTo]*callRequest
}

func (t *keptTable) init() {
	for i := range t.shards {
		t.shards[i].m = make(map[ReplyTo]*callRequest)
	}
}

func (t *keptTable) shard(rt ReplyTo) *keptShard {
	return &t.shards[rt.ID%uint64(len(t.shards))]
}

func (t *keptTable) add(req *callRequest) {
	s := t.shard(req.from)
	s.mu.Lock()
	s.m[req.from] = req
	s.mu.Unlock()
}

// take removes and returns the call rt, or nil if it is not listed.
func (t *keptTable) take(rt ReplyTo) *callRequest {
	s := t.shard(rt)
	s.mu.Lock()
	req := s.m[rt]
	if req != nil {
		delete(s.m, rt)
	}
	s.mu.Unlock()
	return req
}

// remove unlists req if it is still listed.
func (t *keptTable) remove(req *callRequest) {
	s := t.shard(req.from)
	s.mu.Lock()
	if s.m[req.from] == req {
		delete(s.m, req.from)
	}
	s.mu.Unlock()
}
