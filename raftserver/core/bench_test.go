package core

import (
	"fmt"
	"testing"
	"time"
)

// benchMember is a member of the benchmark cluster: its core, its log and
// the writes it has not reported durable yet.
type benchMember struct {
	r       *Raft
	log     *windowLog
	pending []Entry
}

// windowLog is a LogReader that keeps only the newest entries, so a long
// benchmark measures the core rather than the growth of a test log. The
// core reads only near the end of the log here (previous terms, commits).
type windowLog struct {
	base uint64 // index of ents[0]
	ents []Entry
}

const benchWindow = 1 << 14

func (l *windowLog) write(ents []Entry) {
	first := ents[0].Index
	l.ents = append(l.ents[:first-l.base], ents...)
	if len(l.ents) > 2*benchWindow {
		drop := len(l.ents) - benchWindow
		l.ents = append(l.ents[:0], l.ents[drop:]...)
		l.base += uint64(drop)
	}
}

func (l *windowLog) FirstIndex() uint64 { return 1 }
func (l *windowLog) LastIndex() uint64  { return l.base + uint64(len(l.ents)) - 1 }

func (l *windowLog) Term(i uint64) (uint64, error) {
	if i == 0 {
		return 0, nil
	}
	if i < l.base || i > l.LastIndex() {
		return 0, fmt.Errorf("%w: %d outside the benchmark window", ErrUnavailable, i)
	}
	return l.ents[i-l.base].Term, nil
}

func (l *windowLog) Entries(lo, hi uint64, maxBytes int) ([]Entry, error) {
	if lo < l.base || hi > l.LastIndex()+1 {
		return nil, fmt.Errorf("%w: [%d, %d) outside the benchmark window", ErrUnavailable, lo, hi)
	}
	return l.ents[lo-l.base : hi-l.base], nil
}

type benchMsg struct {
	from, to int
	msg      Message
}

// benchCluster runs members in-process with no I/O: messages are handed
// over as Go values, writes become durable when the loop flushes them.
type benchCluster struct {
	members []*benchMember
	index   map[ServerID]int
	ids     []ServerID
	queue   []benchMsg
	steps   int
	applied int
}

func newBenchCluster(b *testing.B, n int) *benchCluster {
	c := &benchCluster{index: map[ServerID]int{}}
	var m Membership
	for i := 1; i <= n; i++ {
		m.Voters = append(m.Voters, id(i))
	}
	for i := 1; i <= n; i++ {
		log := &windowLog{base: 1, ents: make([]Entry, 0, 2*benchWindow+1024)}
		c.ids = append(c.ids, id(i))
		r, err := New(Config{ID: id(i), InitialMembers: m, Seed: uint64(i)}, HardState{}, log)
		if err != nil {
			b.Fatal(err)
		}
		c.index[id(i)] = i - 1
		c.members = append(c.members, &benchMember{r: r, log: log})
		c.step(i-1, Started{})
	}
	return c
}

func (c *benchCluster) step(i int, ev Event) {
	m := c.members[i]
	acts, err := m.r.Step(ev)
	c.steps++
	if err != nil {
		panic(err)
	}
	for _, a := range acts {
		switch a := a.(type) {
		case Append:
			m.log.write(a.Entries)
			m.pending = append(m.pending, a.Entries[len(a.Entries)-1])
		case Send:
			c.queue = append(c.queue, benchMsg{from: i, to: c.index[a.To], msg: a.Msg})
		case Apply:
			if i == 0 {
				c.applied += int(a.To - a.From + 1)
			}
		}
	}
}

// settle delivers messages and flushes writes (one Written per member per
// round, as a WAL reports once per fsync) until nothing moves.
func (c *benchCluster) settle() {
	for {
		for len(c.queue) > 0 {
			q := c.queue
			c.queue = nil
			for _, m := range q {
				c.step(m.to, Receive{From: c.ids[m.from], Msg: m.msg})
			}
		}
		moved := false
		for i, m := range c.members {
			if n := len(m.pending); n > 0 {
				last := m.pending[n-1]
				m.pending = m.pending[:0]
				c.step(i, Written{Term: last.Term, To: last.Index})
				moved = true
			}
		}
		if !moved && len(c.queue) == 0 {
			return
		}
	}
}

// BenchmarkCoreSteps measures the core alone: a 3-member cluster applying
// 16-byte commands, `batch` commands per write/replication round, with no
// encoding, I/O or scheduling. "each" feeds one Command event per command
// (one AppendEntries per command and follower); "events" feeds the round's
// commands as one Commands event. It reports core steps per second (every
// Step call on any member) and commands applied per second.
//
//	go test ./raftserver/core -run XXX -bench BenchmarkCoreSteps -benchtime 2s
func BenchmarkCoreSteps(b *testing.B) {
	type variant struct {
		batch   int
		asBatch bool
	}
	for _, v := range []variant{{1, false}, {16, false}, {256, false}, {16, true}, {256, true}} {
		batch, asBatch := v.batch, v.asBatch
		mode := "each"
		if asBatch {
			mode = "events"
		}
		b.Run(fmt.Sprintf("3members/16B/batch=%d/%s", batch, mode), func(b *testing.B) {
			c := newBenchCluster(b, 3)
			c.step(0, ElectionTimeout{})
			c.settle()
			if c.members[0].r.Role() != RoleLeader {
				b.Fatal("no leader")
			}
			data := make([]byte, 16)
			token := new(int)
			cmds := make([]Command, 0, batch)
			c.steps, c.applied = 0, 0
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				cmd := Command{Data: data, Token: token}
				if !asBatch {
					c.step(0, cmd)
				} else {
					cmds = append(cmds, cmd)
				}
				if (i+1)%batch == 0 || i == b.N-1 {
					if len(cmds) > 0 {
						c.step(0, Commands{Batch: cmds})
						cmds = cmds[:0]
					}
					c.settle()
				}
			}
			c.settle()
			elapsed := time.Since(start).Seconds()
			b.StopTimer()
			if c.applied < b.N {
				b.Fatalf("applied %d of %d", c.applied, b.N)
			}
			b.ReportMetric(float64(c.steps)/elapsed, "steps/s")
			b.ReportMetric(float64(c.applied)/elapsed, "cmds/s")
			b.ReportMetric(float64(c.steps)/float64(b.N), "steps/cmd")
		})
	}
}
