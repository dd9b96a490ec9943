package actor

import "sync/atomic"

// pushStack is a lock-free stack that any number of goroutines push onto
// and one consumer at a time empties in one step, getting the values in
// the order they were pushed. The dispatcher's Schedule and a link's
// senders use it so that a producer never waits for a lock its consumer
// holds: a producer that loses a race retries its compare-and-swap at
// once instead of sleeping until its turn, which under load is what
// turned a mutex into a convoy.
type pushStack[T any] struct {
	top atomic.Pointer[stackNode[T]] // newest first
}

type stackNode[T any] struct {
	v    T
	next *stackNode[T]
}

// push adds v. It never blocks.
func (s *pushStack[T]) push(v T) {
	n := &stackNode[T]{v: v}
	for {
		n.next = s.top.Load()
		if s.top.CompareAndSwap(n.next, n) {
			return
		}
	}
}

// takeAll empties the stack and calls f with each value it held, oldest
// first. It reports whether there was any. Concurrent pushes land either
// in this take or in the stack for the next one.
func (s *pushStack[T]) takeAll(f func(T)) bool {
	top := s.top.Swap(nil)
	if top == nil {
		return false
	}
	var oldest *stackNode[T]
	for top != nil { // newest first: reverse
		next := top.next
		top.next = oldest
		oldest, top = top, next
	}
	for n := oldest; n != nil; n = n.next {
		f(n.v)
	}
	return true
}
