package main

import (
	"fmt"
	"slices"
	"strings"
)

// systems in the order they run in each round and appear in the table.
var systems = []string{"rago", "hashicorp", "etcd"}

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratioToBest is rago's throughput over the best peer's, or 0 when no
// peer has a figure (the row then shows a dash).
func ratioToBest(rago float64, peers []float64) float64 {
	best := 0.0
	for _, p := range peers {
		best = max(best, p)
	}
	if best == 0 {
		return 0
	}
	return rago / best
}

// summary is one system's medians over the rounds in one cell.
type summary struct {
	perSecond, p50, p99, rssKiB float64
	rounds                      int
}

// summarize takes the median of each figure over the rounds, separately.
func summarize(rs []cellResult) summary {
	var tp, p50, p99, rss []float64
	for _, r := range rs {
		tp = append(tp, r.PerSecond)
		p50 = append(p50, r.P50)
		p99 = append(p99, r.P99)
		rss = append(rss, float64(r.PeakRSS))
	}
	return summary{perSecond: median(tp), p50: median(p50), p99: median(p99), rssKiB: median(rss), rounds: len(rs)}
}

// cell names one row of the table.
type cell struct{ payload, callers int }

// table renders the medians as one Markdown table: a row per cell,
// throughput per system and rago / best peer, then latencies and peak
// RSS per system in the same order. got maps a cell and a system to its
// rounds' results; a system without results shows a dash.
func table(cells []cell, names []string, got map[cell]map[string][]cellResult) string {
	var b strings.Builder
	head := []string{"payload, callers"}
	for _, n := range names {
		head = append(head, n)
	}
	head = append(head, "rago / best peer")
	joined := strings.Join(names, " / ")
	head = append(head, "p50 "+joined, "p99 "+joined, "peak RSS "+joined)
	writeRow(&b, head)
	writeRow(&b, slices.Repeat([]string{"---"}, len(head)))
	for _, c := range cells {
		row := []string{fmt.Sprintf("%s, %d", formatBytes(c.payload), c.callers)}
		sums := map[string]summary{}
		for _, n := range names {
			if rs := got[c][n]; len(rs) > 0 {
				sums[n] = summarize(rs)
				row = append(row, formatRate(sums[n].perSecond))
			} else {
				row = append(row, "-")
			}
		}
		var peers []float64
		for _, n := range names {
			if !strings.HasPrefix(n, "rago") { // rago-snapshots is rago too
				peers = append(peers, sums[n].perSecond)
			}
		}
		if r := ratioToBest(sums["rago"].perSecond, peers); r > 0 && sums["rago"].rounds > 0 {
			s := fmt.Sprintf("%.2f", r)
			if r < 1 {
				s = "**" + s + "**"
			}
			row = append(row, s)
		} else {
			row = append(row, "-")
		}
		row = append(row,
			joinFigures(names, sums, func(s summary) string { return formatMicros(s.p50) }),
			joinFigures(names, sums, func(s summary) string { return formatMicros(s.p99) }),
			joinFigures(names, sums, func(s summary) string { return fmt.Sprintf("%.0f", s.rssKiB/1024) })+" MiB")
		writeRow(&b, row)
	}
	return b.String()
}

func joinFigures(names []string, sums map[string]summary, f func(summary) string) string {
	var parts []string
	for _, n := range names {
		if s, ok := sums[n]; ok {
			parts = append(parts, f(s))
		} else {
			parts = append(parts, "-")
		}
	}
	return strings.Join(parts, " / ")
}

func writeRow(b *strings.Builder, cols []string) {
	b.WriteString("| " + strings.Join(cols, " | ") + " |\n")
}

// formatRate writes a rate with thousands separators: 29283.4 -> 29,283/s.
func formatRate(perSecond float64) string {
	n := int64(perSecond + 0.5)
	s := fmt.Sprint(n)
	var out []byte
	for i, ch := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, ch)
	}
	return string(out) + "/s"
}

// formatMicros writes a latency given in microseconds: µs below 1 ms,
// then ms with three significant digits, then s.
func formatMicros(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case us < 10_000:
		return fmt.Sprintf("%.2f ms", us/1000)
	case us < 100_000:
		return fmt.Sprintf("%.1f ms", us/1000)
	case us < 1_000_000:
		return fmt.Sprintf("%.0f ms", us/1000)
	}
	return fmt.Sprintf("%.2f s", us/1e6)
}

func formatBytes(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// fsyncLines reports each system's single-caller p50 as a multiple of one
// fdatasync's p50 measured in the same run (the goal: at most 2).
func fsyncLines(cells []cell, names []string, got map[cell]map[string][]cellResult, fsyncP50us float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fdatasync p50 (4 KiB append, median over rounds): %s\n", formatMicros(fsyncP50us))
	for _, c := range cells {
		if c.callers != 1 {
			continue
		}
		var parts []string
		for _, n := range names {
			rs := got[c][n]
			if len(rs) == 0 || fsyncP50us == 0 {
				parts = append(parts, n+" -")
				continue
			}
			s := summarize(rs)
			parts = append(parts, fmt.Sprintf("%s %s = %.2fx", n, formatMicros(s.p50), s.p50/fsyncP50us))
		}
		fmt.Fprintf(&b, "single-caller p50 / fdatasync, %s: %s\n", formatBytes(c.payload), strings.Join(parts, ", "))
	}
	return b.String()
}
