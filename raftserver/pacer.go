package raftserver

import (
	"sync"
	"time"
)

// electionPacer spreads the elections of one node's servers. When a node
// is lost, every cluster that had its leader there wants an election at
// about the same time; each one costs synced writes and messages on every
// member, so thousands at once would slow each other down (and collide).
//
// It is a token bucket over the times elections are asked for: a burst is
// let through at once, then each further election waits longer by one
// interval, until the bucket refills. Only the extra delay is the pacer's;
// the randomized timeout the Raft core wants is kept on top of it.
type electionPacer struct {
	rate  float64 // elections per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newElectionPacer(perSecond, burst int) *electionPacer {
	return &electionPacer{rate: float64(perSecond), burst: float64(burst), tokens: float64(burst)}
}

// delay returns how long an election timer that wants want should wait.
func (p *electionPacer) delay(now time.Time, want time.Duration) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.last.IsZero() && now.After(p.last) {
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	}
	if now.After(p.last) {
		p.last = now
	}
	p.tokens--
	if p.tokens >= 0 {
		return want
	}
	return want + time.Duration(-p.tokens/p.rate*float64(time.Second))
}
