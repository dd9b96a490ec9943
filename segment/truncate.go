package segment

import (
	"errors"
	"sync"
)

// Truncations in the background.
//
// A server truncates its log after each snapshot, on its own goroutine.
// Truncate waits for the store's lock, which a flush of a WAL file holds
// while it writes and syncs its sstables, and then may flush pebble's
// memtable and hand linked files back to the WAL, all with syncs; a
// leader waiting for that stalls every command of its cluster (the p99
// at 1 KiB x 512 in docs/benchmarks.md, item 20). TruncateLater leaves
// the work to a goroutine of the store instead. Until it runs, the
// entries stay readable, which no server minds (it never reads below its
// own first index), and a crash meanwhile loses the truncation, as it
// may lose an unsynced one anyway: it only brings back entries a
// snapshot covers. A server that starts reads the store's bounds and
// floor, so it first settles what is still pending for its UID (Settle).

// truncator runs the truncations that TruncateLater queued, one at a time.
type truncator struct {
	mu       sync.Mutex
	ended    *sync.Cond        // broadcast when a truncation ends
	pending  map[string]uint64 // the highest index to truncate through, per UID
	running  map[string]bool   // UIDs whose truncation runs now
	started  bool              // the goroutine runs
	stopping bool              // no more truncations are queued
	wake     chan struct{}
	exited   chan struct{}
}

func (t *truncator) init() {
	t.ended = sync.NewCond(&t.mu)
	t.pending = map[string]uint64{}
	t.running = map[string]bool{}
	t.wake = make(chan struct{}, 1)
	t.exited = make(chan struct{})
}

// TruncateLater is Truncate without waiting for it: it queues the
// truncation of uid's entries up to and including index and returns. A
// goroutine of the store carries it out soon (truncations queued for the
// same UID meanwhile fold into the highest); a failure is logged, and the
// entries stay until a later truncation. Once the store is closing, it
// does nothing. See Settle.
func (s *Store) TruncateLater(uid string, index uint64) {
	t := &s.trunc
	t.mu.Lock()
	if t.stopping {
		t.mu.Unlock()
		return
	}
	if index > t.pending[uid] {
		t.pending[uid] = index
	}
	if !t.started {
		t.started = true
		go s.runTruncations()
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Settle carries out at once the truncation TruncateLater queued for uid,
// after waiting for one that runs; so that what the store says of uid
// (Bounds, Floor) reflects every truncation queued before. A server calls
// it before it reads its log's bounds at start.
func (s *Store) Settle(uid string) error {
	index, ok := s.trunc.take(uid)
	if !ok {
		return nil
	}
	return s.Truncate(uid, index)
}

// take waits until no truncation of uid runs and removes the one queued
// for uid, if any.
func (t *truncator) take(uid string) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.running[uid] {
		t.ended.Wait()
	}
	index, ok := t.pending[uid]
	delete(t.pending, uid)
	return index, ok
}

// runTruncations is the goroutine: it runs the queued truncations until
// the store closes, and those queued before that.
func (s *Store) runTruncations() {
	t := &s.trunc
	defer close(t.exited)
	for {
		<-t.wake
		for {
			t.mu.Lock()
			uid, index, ok := "", uint64(0), false
			for u, i := range t.pending {
				uid, index, ok = u, i, true
				break
			}
			if !ok {
				stopping := t.stopping
				t.mu.Unlock()
				if stopping {
					return
				}
				break
			}
			delete(t.pending, uid)
			t.running[uid] = true
			t.mu.Unlock()
			if err := s.Truncate(uid, index); err != nil && !errors.Is(err, ErrClosed) {
				s.logger.Warn("segment: truncation failed; the entries stay until the next one", "uid", uid, "index", index, "err", err)
			}
			t.mu.Lock()
			delete(t.running, uid)
			t.ended.Broadcast()
			t.mu.Unlock()
		}
	}
}

// stop runs what is queued, ends the goroutine and queues nothing more.
// It must be called without the store's lock, which the truncations take.
func (t *truncator) stop() {
	t.mu.Lock()
	t.stopping = true
	started := t.started
	t.mu.Unlock()
	if !started {
		return
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
	<-t.exited
}
