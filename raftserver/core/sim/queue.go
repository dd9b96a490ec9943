package sim

import "container/heap"

// event is one thing scheduled to happen at a simulated time.
type event interface{}

type item struct {
	at  int64
	seq uint64
	ev  event
}

// queue orders events by time, then by scheduling order, so ties resolve
// the same way on every run.
type queue []item

// Len, Less, Swap, Push and Pop implement heap.Interface.
func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(item)) }
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

func (w *World) schedule(delayMs int64, ev event) {
	w.seq++
	heap.Push(&w.q, item{at: w.now + delayMs, seq: w.seq, ev: ev})
}

func (w *World) next() (event, bool) {
	if len(w.q) == 0 {
		return nil, false
	}
	it := heap.Pop(&w.q).(item)
	w.now = it.at
	return it.ev, true
}
