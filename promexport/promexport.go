// Package promexport exports a rago node's metrics (raftserver.Metrics) to
// Prometheus. It is the only rago package that imports the Prometheus
// client library, so that programs which do not export keep the library's
// dependencies few.
//
// New returns a prometheus.Collector. Register it on a registry and serve
// the registry with promhttp; every scrape calls System.Metrics once and
// turns what it returns into constant metrics, so the collector keeps no
// state and adds nothing to the node's hot paths:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(promexport.New(sys, promexport.Options{}))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// # Names
//
// Every name starts with rago_. Counters end in _total, durations are
// histograms in seconds (_seconds; the buckets of package metrics, from
// 50 µs doubling to about 13 s), sizes are in bytes (_bytes). Series of one
// server carry the labels cluster (its cluster's name) and server (its ID,
// name@node); a leader's rago_follower_lag_entries also carries follower
// (the follower's ID, name@node). Node-wide series carry neither: Prometheus
// adds instance (and job) when it scrapes. A few have a label of their own:
// role (rago_servers), reason (dropped messages) and peer (the peer node
// of the rago_peer_ families). To tell nodes apart by their rago name as
// well, set Options.ConstLabels, e.g. prometheus.Labels{"node": sys.Name()}.
//
// # Many clusters
//
// Every server a node hosts adds about 110 series (its counters, gauges
// and four histograms of 22 series each). A node with a few clusters can
// afford them; one with thousands cannot. Options.Aggregate switches the
// per-cluster series off: the servers' counters are then summed, and
// their histograms merged, into series of the same names without the
// cluster and server labels, and the per-server gauges are left out. The
// node-wide gauges rago_servers (by role), rago_servers_without_leader,
// rago_follower_lag_max_entries and rago_mailbox_depth_max are there in
// both modes, so alerts on them work whatever the mode, and a query that
// sums over clusters (sum(rate(rago_commands_committed_total[1m]))) gives
// the same answer in both. The number of series is then a constant,
// whatever the number of clusters: about 250 on a node with two peers
// (the rago_peer_ families have one series per peer node).
//
// # Adding a metric
//
// The families are tables (nodeFamilies, nodeHistograms, serverCounters,
// serverGauges, serverHistograms): a new field of raftserver.Metrics is one
// line in one of them.
package promexport

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rago-raft/rago/metrics"
	"github.com/rago-raft/rago/raftserver"
)

// Source is what the collector reads: *raftserver.System implements it.
type Source interface {
	Metrics() raftserver.Metrics
}

// Options configure a Collector. The zero value exports every server's
// series with cluster and server labels.
type Options struct {
	// Aggregate switches per-cluster series off: each per-server counter
	// becomes one node-wide series, the sum over the node's servers, each
	// per-server histogram one node-wide histogram that merges theirs, and
	// the per-server gauges (role, term, indexes, sessions, each follower's
	// lag) are not exported. Set it on nodes that host many clusters (see
	// the package documentation).
	Aggregate bool
	// ConstLabels are added to every series, e.g. {"node": sys.Name()}.
	ConstLabels prometheus.Labels
}

// Collector is a prometheus.Collector of one node's metrics (see New).
type Collector struct {
	src  Source
	opts Options

	node       []*prometheus.Desc // nodeFamilies[i]
	nodeHist   []*prometheus.Desc // nodeHistograms[i]
	counters   []*prometheus.Desc // serverCounters[i]
	gauges     []*prometheus.Desc // serverGauges[i]; nil with Aggregate
	histograms []*prometheus.Desc // serverHistograms[i]
	lag        *prometheus.Desc   // nil with Aggregate
}

// New returns a collector of src's metrics, usually a *raftserver.System.
// Each Collect calls src.Metrics once.
func New(src Source, opts Options) *Collector {
	c := &Collector{src: src, opts: opts}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("rago_"+name, help, labels, opts.ConstLabels)
	}
	for _, f := range nodeFamilies {
		c.node = append(c.node, desc(f.name, f.help, f.labels...))
	}
	for _, f := range nodeHistograms {
		c.nodeHist = append(c.nodeHist, desc(f.name, f.help))
	}
	var perServer []string
	if !opts.Aggregate {
		perServer = []string{"cluster", "server"}
		for _, f := range serverGauges {
			c.gauges = append(c.gauges, desc(f.name, f.help, perServer...))
		}
		c.lag = desc("follower_lag_entries",
			"Entries of the leader's log that a follower does not yet hold durably, as its leader (the server) sees it.",
			"cluster", "server", "follower")
	}
	for _, f := range serverCounters {
		c.counters = append(c.counters, desc(f.name, f.help, perServer...))
	}
	for _, f := range serverHistograms {
		c.histograms = append(c.histograms, desc(f.name, f.help, perServer...))
	}
	return c
}

// Describe sends the descriptors of every family the collector exports.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, group := range [][]*prometheus.Desc{c.node, c.nodeHist, c.counters, c.gauges, c.histograms} {
		for _, d := range group {
			ch <- d
		}
	}
	if c.lag != nil {
		ch <- c.lag
	}
}

// Collect reads the node's metrics once and sends them.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	m := c.src.Metrics()
	for i, f := range nodeFamilies {
		f.collect(&m, func(v float64, labelValues ...string) {
			ch <- prometheus.MustNewConstMetric(c.node[i], f.typ, v, labelValues...)
		})
	}
	for i, f := range nodeHistograms {
		ch <- constHistogram(c.nodeHist[i], f.get(&m))
	}
	if c.opts.Aggregate {
		c.collectAggregate(ch, m.Servers)
		return
	}
	for i := range m.Servers {
		s := &m.Servers[i]
		cluster, server := s.Cluster, s.ID.String()
		for j, f := range serverCounters {
			ch <- prometheus.MustNewConstMetric(c.counters[j], prometheus.CounterValue, float64(f.get(s)), cluster, server)
		}
		for j, f := range serverGauges {
			ch <- prometheus.MustNewConstMetric(c.gauges[j], prometheus.GaugeValue, f.get(s), cluster, server)
		}
		for j, f := range serverHistograms {
			ch <- constHistogram(c.histograms[j], f.get(s), cluster, server)
		}
		for _, l := range s.FollowerLag {
			ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(l.Entries), cluster, server, l.Follower.String())
		}
	}
}

// collectAggregate sends the per-server counters summed over servers and
// the per-server histograms merged, without labels of their own.
func (c *Collector) collectAggregate(ch chan<- prometheus.Metric, servers []raftserver.ServerMetrics) {
	for j, f := range serverCounters {
		var sum uint64
		for i := range servers {
			sum += f.get(&servers[i])
		}
		ch <- prometheus.MustNewConstMetric(c.counters[j], prometheus.CounterValue, float64(sum))
	}
	for j, f := range serverHistograms {
		var h metrics.HistogramSnapshot
		for i := range servers {
			h.Add(f.get(&servers[i]))
		}
		ch <- constHistogram(c.histograms[j], h)
	}
}

// constHistogram converts a snapshot, whose counts are per bucket, to a
// Prometheus histogram, whose buckets are cumulative and bounded in
// seconds; the overflow bucket is +Inf, which is the count.
func constHistogram(d *prometheus.Desc, h metrics.HistogramSnapshot, labelValues ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, metrics.Buckets)
	var cum uint64
	for k, b := range metrics.Bounds() {
		cum += h.Counts[k]
		// Not b.Seconds(), which adds whole seconds and nanoseconds and
		// renders 1.6384 s as le="1.6383999999999999".
		buckets[float64(b)/float64(time.Second)] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labelValues...)
}
