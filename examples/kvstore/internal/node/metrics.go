package node

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rago-raft/rago/examples/internal/web"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/raftserver"
)

// Sampling of GET /metrics/summary: once a second, two minutes kept.
const (
	summaryInterval = time.Second
	summaryKeep     = 120
)

// sampler keeps the last summaryKeep samples of this node's member for the
// web page's charts (GET /metrics/summary): rates and commit latency
// quantiles over each interval, and a leader's followers' lag.
type sampler struct {
	self raftserver.ServerID
	read func() raftserver.Metrics

	mu      sync.Mutex
	prev    raftserver.ServerMetrics
	prevAt  time.Time
	samples []api.MetricsSample
}

func newSampler(sys *raftserver.System, self raftserver.ServerID) *sampler {
	return &sampler{self: self, read: sys.Metrics}
}

// run samples every summaryInterval until ctx ends.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(summaryInterval)
	defer t.Stop()
	s.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sample(now)
		}
	}
}

// sample reads the member's metrics and records the interval since the
// last sample (the first one only sets the baseline).
func (s *sampler) sample(now time.Time) {
	var cur raftserver.ServerMetrics
	for _, m := range s.read().Servers {
		if m.ID == s.self {
			cur = m
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, prevAt := s.prev, s.prevAt
	s.prev, s.prevAt = cur, now
	if prevAt.IsZero() {
		return
	}
	secs := now.Sub(prevAt).Seconds()
	if secs <= 0 {
		return
	}
	// A counter below its last value started again (the member was
	// created anew): count from zero.
	rate := func(c, p uint64) float64 {
		if c < p {
			p = 0
		}
		return float64(c-p) / secs
	}
	smp := api.MetricsSample{
		Time:             now.UnixMilli(),
		CommitsPerSecond: rate(cur.CommandsCommitted, prev.CommandsCommitted),
		AppliedPerSecond: rate(cur.CommandsApplied, prev.CommandsApplied),
	}
	if cur.Running {
		smp.Role = cur.Role
	}
	if lat := cur.CommitLatency.Since(prev.CommitLatency); lat.Count > 0 {
		ms := func(d time.Duration) *float64 { v := float64(d) / float64(time.Millisecond); return &v }
		smp.CommitP50Ms, smp.CommitP99Ms = ms(lat.Quantile(0.5)), ms(lat.Quantile(0.99))
	}
	if len(cur.FollowerLag) > 0 {
		smp.Lag = make(map[string]uint64, len(cur.FollowerLag))
		for _, l := range cur.FollowerLag {
			smp.Lag[l.Follower.Name] = l.Entries
		}
	}
	if len(s.samples) == summaryKeep {
		s.samples = append(s.samples[:0], s.samples[1:]...)
	}
	s.samples = append(s.samples, smp)
}

// since returns the samples after the Unix millisecond since, oldest
// first.
func (s *sampler) since(since int64) []api.MetricsSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []api.MetricsSample{}
	for _, smp := range s.samples {
		if smp.Time > since {
			out = append(out, smp)
		}
	}
	return out
}

// handleMetricsSummary serves GET /metrics/summary?since=MILLIS: the
// samples after since (all kept without it), for the page's charts.
func (n *Node) handleMetricsSummary(w http.ResponseWriter, r *http.Request) {
	var since int64
	if v := r.URL.Query().Get("since"); v != "" {
		var err error
		if since, err = strconv.ParseInt(v, 10, 64); err != nil {
			n.fail(w, badArg("since must be a time in Unix milliseconds, not %q", v))
			return
		}
	}
	web.AllowCrossOriginReads(w)
	web.WriteJSON(w, http.StatusOK, api.MetricsSummary{
		Node:            n.cfg.ID,
		IntervalSeconds: summaryInterval.Seconds(),
		Samples:         n.samples.since(since),
	})
}
