package promexport_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/rago-raft/rago/promexport"
)

// pending are names that the dashboard and the docs use before the
// exporter emits them, each with what it waits for. Once the exporter
// emits one, TestDashboardAndDocsUseEmittedNames fails until it is taken
// off this list.
var pending = map[string]string{}

// emitted returns every family the exporter emits, in either mode, by
// type.
func emitted(t *testing.T) map[string]dto.MetricType {
	out := map[string]dto.MetricType{}
	for _, aggregate := range []bool{false, true} {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(promexport.New(fixed(sample()), promexport.Options{Aggregate: aggregate}))
		fams, err := reg.Gather()
		require.NoError(t, err)
		for _, f := range fams {
			out[f.GetName()] = f.GetType()
		}
	}
	return out
}

var metricName = regexp.MustCompile(`\brago_[a-z0-9_]*[a-z0-9]`)

// checkNames checks that every rago_ name in text is one the exporter
// emits (or a histogram's _bucket, _sum or _count series), or pending.
// In PromQL (promql), a histogram is only queried through those series.
func checkNames(t *testing.T, where, text string, names map[string]dto.MetricType, promql bool) int {
	t.Helper()
	n := 0
	for _, name := range metricName.FindAllString(text, -1) {
		n++
		if _, ok := pending[name]; ok {
			continue
		}
		if typ, ok := names[name]; ok {
			if promql && typ == dto.MetricType_HISTOGRAM {
				t.Errorf("%s: the histogram %s is queried as such; use %s_bucket, _sum or _count", where, name, name)
			}
			continue
		}
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if _, ok := pending[base]; ok {
			continue
		}
		if names[base] == dto.MetricType_HISTOGRAM && base != name {
			continue
		}
		t.Errorf("%s: %s is not a metric the exporter emits", where, name)
	}
	return n
}

// exprs returns every "expr" and template "definition" in a Grafana
// dashboard, with the title of the panel it is in.
func exprs(v any, title string, out map[string][]string) {
	switch v := v.(type) {
	case map[string]any:
		if s, ok := v["title"].(string); ok {
			title = s
		}
		for k, x := range v {
			if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
				out[title] = append(out[title], s)
				continue
			}
			exprs(x, title, out)
		}
	case []any:
		for _, x := range v {
			exprs(x, title, out)
		}
	}
}

// TestDashboardAndDocsUseEmittedNames keeps the Grafana dashboard and the
// operations guide honest: the dashboard is well-formed JSON, every panel
// has queries, and every metric name they use is one the exporter emits.
func TestDashboardAndDocsUseEmittedNames(t *testing.T) {
	names := emitted(t)
	for name, waits := range pending {
		_, ok := names[name]
		require.False(t, ok, "%s is emitted now: take it off the pending list (it waited for %s)", name, waits)
	}

	b, err := os.ReadFile("../docs/grafana/rago-dashboard.json")
	require.NoError(t, err)
	var dash map[string]any
	require.NoError(t, json.Unmarshal(b, &dash), "the dashboard is not JSON")
	require.NotEmpty(t, dash["title"])
	panels, _ := dash["panels"].([]any)
	require.NotEmpty(t, panels)
	for _, p := range panels {
		p := p.(map[string]any)
		if p["type"] == "row" {
			continue
		}
		targets, _ := p["targets"].([]any)
		require.NotEmpty(t, targets, "panel %q has no queries", p["title"])
	}
	byPanel := map[string][]string{}
	exprs(dash, "", byPanel)
	used := 0
	for title, es := range byPanel {
		for _, e := range es {
			used += checkNames(t, "dashboard panel "+title, e, names, true)
		}
	}
	require.Greater(t, used, 20, "the dashboard's queries name few metrics: did the pattern stop matching?")
	// The dashboard shows what the issue asks for.
	var all []string
	for _, es := range byPanel {
		all = append(all, es...)
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{"rago_commands_committed_total", "rago_commit_latency_seconds_bucket", "rago_follower_lag_entries",
		"rago_elections_won_total", "rago_wal_batches_total", "rago_wal_fsync_seconds_bucket", "rago_transport_sent_bytes_total"} {
		require.Contains(t, joined, want)
	}

	doc, err := os.ReadFile("../docs/operations.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(doc), "## Metrics and alerts")
	require.True(t, ok, "docs/operations.md has no section Metrics and alerts")
	section, _, _ = strings.Cut(section, "\n## ")
	// Tables name histograms bare; PromQL in code spans and the rules
	// must use their series.
	require.Greater(t, checkNames(t, "docs/operations.md", section, names, false), 40)
	for _, line := range strings.Split(section, "\n") {
		if strings.Contains(line, "expr:") || strings.Contains(line, "rate(") || strings.Contains(line, "_over_time(") {
			checkNames(t, "docs/operations.md PromQL", promqlOf(line), names, true)
		}
	}
	// Every family is documented.
	for name := range names {
		require.True(t, slices.Contains(metricName.FindAllString(section, -1), name), "docs/operations.md does not mention %s", name)
	}
}

// promqlOf returns the PromQL of a line of the guide: the expression of a
// rule, the code spans with a call in them of a table row or of prose, or
// the whole line (the rest of a rule's expression).
func promqlOf(line string) string {
	if _, e, ok := strings.Cut(line, "expr:"); ok {
		return e
	}
	if !strings.Contains(line, "`") {
		return line // a rule's expression on lines of its own
	}
	var spans []string
	parts := strings.Split(line, "`")
	for i := 1; i < len(parts); i += 2 {
		if strings.Contains(parts[i], "(") {
			spans = append(spans, parts[i])
		}
	}
	return strings.Join(spans, " ")
}
