// Package pebblesched provides the compaction scheduler rago gives its
// pebble databases. It grants compactions when something happens - the
// database asks for one, a compaction finishes, a flush may have made more
// allowed - and never on a clock. pebble's default scheduler also samples
// the database every 100 ms, so every database of an idle node woke up ten
// times a second; with two databases per node that was most of an idle
// node's CPU.
//
// Lock order follows pebble's rule: the scheduler's mutex comes after the
// database's, so the scheduler never calls into the database while holding
// its own mutex in a path the database may call with its mutex held. Calls
// that may arrive under the database's mutex (UpdateGetAllowedWithoutPermission)
// only poke the granter goroutine.
package pebblesched

import (
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Scheduler is a pebble.CompactionScheduler for one database. Use a new
// one per database (New), in pebble.Options.Experimental.CompactionScheduler.
type Scheduler struct {
	db   pebble.DBForCompaction
	poke chan struct{}
	stop chan struct{}
	done chan struct{}

	mu           sync.Mutex
	running      int
	unregistered bool
}

var _ pebble.CompactionScheduler = (*Scheduler)(nil)

// New returns a scheduler; pebble calls Register when the database opens.
func New() *Scheduler {
	return &Scheduler{poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// Register implements pebble.CompactionScheduler.
func (s *Scheduler) Register(_ int, db pebble.DBForCompaction) {
	s.db = db
	go s.granter()
}

// Unregister implements pebble.CompactionScheduler: it returns once no
// call into the database is under way or will be made.
func (s *Scheduler) Unregister() {
	s.mu.Lock()
	s.unregistered = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
}

// TrySchedule implements pebble.CompactionScheduler.
func (s *Scheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unregistered || s.running >= s.db.GetAllowedWithoutPermission() {
		return false, nil
	}
	s.running++
	return true, grant{s}
}

// UpdateGetAllowedWithoutPermission implements pebble.CompactionScheduler.
func (s *Scheduler) UpdateGetAllowedWithoutPermission() { s.wake() }

func (s *Scheduler) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// granter grants waiting compactions whenever it is poked; it holds no
// lock while it calls into the database.
func (s *Scheduler) granter() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.poke:
		}
		for s.grantOne() {
		}
	}
}

// grantOne gives the database one more compaction if it is allowed one and
// wants one, and reports whether it did.
func (s *Scheduler) grantOne() bool {
	s.mu.Lock()
	if s.unregistered || s.running >= s.db.GetAllowedWithoutPermission() {
		s.mu.Unlock()
		return false
	}
	s.running++ // reserved before asking, so TrySchedule cannot overshoot
	s.mu.Unlock()
	if waiting, _ := s.db.GetWaitingCompaction(); waiting && s.db.Schedule(grant{s}) {
		return true
	}
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	return false
}

// grant is the handle of one granted compaction.
type grant struct{ s *Scheduler }

func (g grant) Started()                                                {}
func (g grant) MeasureCPU(pebble.CompactionGoroutineKind)               {}
func (g grant) CumulativeStats(stats pebble.CompactionGrantHandleStats) {}

// Done ends the compaction and lets a waiting one start.
func (g grant) Done() {
	g.s.mu.Lock()
	g.s.running--
	g.s.mu.Unlock()
	g.s.wake()
}
