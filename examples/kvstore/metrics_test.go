package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/examples/kvstore/internal/api"
)

// TestMetrics: the nodes serve Prometheus metrics on /metrics and the
// page's live charts, on a cluster of three node processes.
func TestMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	c := startCluster(t, 3)
	t.Run("Prometheus", func(t *testing.T) { testPrometheusMetrics(t, c) })
	t.Run("ChartsInBrowser", func(t *testing.T) { testCharts(t, c) })
}

// scrapeMetrics reads p's /metrics as Prometheus would, in the text
// format, and parses it.
func scrapeMetrics(t *testing.T, p *proc) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.url()+"/metrics", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"), resp.Header.Get("Content-Type"))
	var parser expfmt.TextParser
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "/metrics of %s does not parse as Prometheus text", p.id)
	return fams
}

// serverValue returns the value of counter or gauge family name for p's
// member of the cluster kv.
func serverValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, p *proc) float64 {
	t.Helper()
	f := fams[name]
	require.NotNil(t, f, "no %s", name)
	for _, m := range f.GetMetric() {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		if l["cluster"] == "kv" && l["server"] == p.id+"@"+p.raft {
			if f.GetType() == dto.MetricType_COUNTER {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series of %s for %s", name, p.id)
	return 0
}

// testPrometheusMetrics: /metrics parses as Prometheus text, with rago's
// families labelled by cluster and server and Go's own, and the leader's
// committed counter moves by the writes it took.
func testPrometheusMetrics(t *testing.T, c *testCluster) {
	lead := c.leader(c.nodes[0])
	before := scrapeMetrics(t, lead)
	for name, typ := range map[string]dto.MetricType{
		"rago_commands_committed_total":   dto.MetricType_COUNTER,
		"rago_commit_latency_seconds":     dto.MetricType_HISTOGRAM,
		"rago_elections_won_total":        dto.MetricType_COUNTER,
		"rago_server_leader":              dto.MetricType_GAUGE,
		"rago_follower_lag_entries":       dto.MetricType_GAUGE,
		"rago_wal_batches_total":          dto.MetricType_COUNTER,
		"rago_transport_sent_bytes_total": dto.MetricType_COUNTER,
		"go_goroutines":                   dto.MetricType_GAUGE,
		"process_resident_memory_bytes":   dto.MetricType_GAUGE,
	} {
		require.Contains(t, before, name)
		require.Equal(t, typ, before[name].GetType(), name)
	}
	require.Equal(t, 1.0, serverValue(t, before, "rago_server_leader", lead))

	const n = 5
	for i := range n {
		r := do(t, http.MethodPut, lead.url()+"/kv/metrics-"+strconv.Itoa(i), strings.NewReader("v"))
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	}
	after := scrapeMetrics(t, lead)
	committed := serverValue(t, after, "rago_commands_committed_total", lead) - serverValue(t, before, "rago_commands_committed_total", lead)
	require.GreaterOrEqual(t, committed, float64(n), "the leader's committed counter moved by the writes")
	wal := func(f map[string]*dto.MetricFamily) float64 {
		return f["rago_wal_batches_total"].GetMetric()[0].GetCounter().GetValue()
	}
	require.Greater(t, wal(after), wal(before))

	// Every follower applied them, by its own /metrics.
	for _, f := range c.followers() {
		require.Eventually(t, func() bool {
			return serverValue(t, scrapeMetrics(t, f), "rago_server_applied_index", f) >= serverValue(t, after, "rago_server_commit_index", lead)
		}, waitFor, 50*time.Millisecond, "%s applies what the leader committed", f.id)
	}

	// The page's summary: the interval with the writes shows commits on
	// the leader, and the leader reports both followers' lag.
	require.Eventually(t, func() bool {
		var s api.MetricsSummary
		if code, err := httpGetJSON(lead.url()+"/metrics/summary", &s); err != nil || code != http.StatusOK {
			return false
		}
		seen := false
		for _, smp := range s.Samples {
			if smp.CommitsPerSecond > 0 && smp.CommitP99Ms != nil && len(smp.Lag) == 2 {
				seen = true
			}
		}
		return seen && s.Node == lead.id
	}, waitFor, 100*time.Millisecond, "a sample of the leader with commits, latency and lag")
}

// testCharts: the page draws commits per second and commit latency of
// the leader, and the lag of both followers, from live samples.
func testCharts(t *testing.T, c *testCluster) {
	b := newBrowser(t)
	lead := c.leader(c.nodes[0])
	b.step(chromedp.Navigate(c.followers()[0].url() + "/"))

	// Writes, a few a second, while the page watches.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("%s/kv/chart-%d", lead.url(), i%10), strings.NewReader("v"))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer wg.Wait()
	defer cancel()

	commits := b.poll(`(() => { const s = document.querySelector("#chart-commits"); return s && Number(s.dataset.max) > 0 ? s.dataset.max : ""; })()`)
	require.NotEmpty(t, commits)
	b.poll(`document.querySelector('#chart-commits path.series[data-series="` + lead.id + `"]') ? "line" : ""`)
	b.poll(`document.querySelector('#chart-latency path.series[data-series="` + lead.id + ` p99"]') ? "p99" : ""`)
	legend := b.poll(`(() => { const l = document.querySelector('#legend-latency [data-series="` + lead.id + ` p50"]'); return l ? l.textContent : ""; })()`)
	require.Contains(t, legend, " ms")
	var followers []string
	for _, f := range c.followers() {
		followers = append(followers, f.id)
	}
	lags := b.poll(`(() => { const ls = [...document.querySelectorAll("#chart-lag path.series")].map((p) => p.dataset.series).sort(); return ls.length === 2 ? ls.join(",") : ""; })()`)
	require.Equal(t, strings.Join(followers, ","), lags)
	// The page loads nothing from elsewhere.
	external, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll("script[src], link[href]").length`))
	require.NoError(t, err)
	require.Zero(t, external)
}
