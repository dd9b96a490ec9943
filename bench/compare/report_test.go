package main

import (
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median reordered its input: %v", tc.in)
			}
		}
	}
}

func TestRatioToBest(t *testing.T) {
	if got := ratioToBest(150, []float64{100, 120}); got != 1.25 {
		t.Errorf("ratio = %v, want 1.25 (rago over the best peer)", got)
	}
	if got := ratioToBest(90, []float64{0, 100}); got != 0.9 {
		t.Errorf("ratio = %v, want 0.9 (a peer without figures is no best)", got)
	}
	if got := ratioToBest(90, []float64{0, 0}); got != 0 {
		t.Errorf("ratio without peers = %v, want 0", got)
	}
}

func TestFormats(t *testing.T) {
	for in, want := range map[float64]string{0: "0/s", 999.4: "999/s", 1455: "1,455/s", 29283.4: "29,283/s", 1234567: "1,234,567/s"} {
		if got := formatRate(in); got != want {
			t.Errorf("formatRate(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{562: "562 µs", 1050: "1.05 ms", 23500: "23.5 ms", 117000: "117 ms", 2100000: "2.10 s"} {
		if got := formatMicros(in); got != want {
			t.Errorf("formatMicros(%v) = %q, want %q", in, got, want)
		}
	}
	if got := formatBytes(16); got != "16 B" {
		t.Errorf("formatBytes(16) = %q", got)
	}
	if got := formatBytes(1024); got != "1 KiB" {
		t.Errorf("formatBytes(1024) = %q", got)
	}
}

func TestTable(t *testing.T) {
	c1, c2 := cell{16, 1}, cell{1024, 512}
	got := map[cell]map[string][]cellResult{
		c1: {
			"rago":      {{PerSecond: 1600, P50: 500, P99: 900, PeakRSS: 100 << 10}, {PerSecond: 1700, P50: 400, P99: 1000, PeakRSS: 120 << 10}},
			"hashicorp": {{PerSecond: 1400, P50: 700, P99: 1500, PeakRSS: 50 << 10}},
			"etcd":      {{PerSecond: 1500, P50: 600, P99: 1200, PeakRSS: 60 << 10}},
		},
		c2: {
			"rago": {{PerSecond: 30000, P50: 9000, P99: 117000, PeakRSS: 400 << 10}},
			// hashicorp failed in every round: it shows dashes.
			"etcd": {{PerSecond: 35000, P50: 8000, P99: 40000, PeakRSS: 280 << 10}},
		},
	}
	out := table([]cell{c1, c2}, systems, got)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header, a rule and 2 rows:\n%s", out)
	}
	wantHead := "| payload, callers | rago | hashicorp | etcd | rago / best peer | p50 rago / hashicorp / etcd | p99 rago / hashicorp / etcd | peak RSS rago / hashicorp / etcd |"
	if lines[0] != wantHead {
		t.Errorf("header:\n%s\nwant\n%s", lines[0], wantHead)
	}
	// Medians over two rounds: 1650/s, p50 450 µs, p99 950 µs, 110 MiB;
	// ratio 1650 / 1500.
	want1 := "| 16 B, 1 | 1,650/s | 1,400/s | 1,500/s | 1.10 | 450 µs / 700 µs / 600 µs | 950 µs / 1.50 ms / 1.20 ms | 110 / 50 / 60 MiB |"
	if lines[2] != want1 {
		t.Errorf("row 1:\n%s\nwant\n%s", lines[2], want1)
	}
	// Below 1 the ratio is bold, as in the table.
	want2 := "| 1 KiB, 512 | 30,000/s | - | 35,000/s | **0.86** | 9.00 ms / - / 8.00 ms | 117 ms / - / 40.0 ms | 400 / - / 280 MiB |"
	if lines[3] != want2 {
		t.Errorf("row 2:\n%s\nwant\n%s", lines[3], want2)
	}

	lines = strings.Split(strings.TrimSpace(fsyncLines([]cell{c1, c2}, systems, got, 250)), "\n")
	if len(lines) != 2 {
		t.Fatalf("want the fdatasync line and one for the single-caller cell:\n%s", strings.Join(lines, "\n"))
	}
	if want := "single-caller p50 / fdatasync, 16 B: rago 450 µs = 1.80x, hashicorp 700 µs = 2.80x, etcd 600 µs = 2.40x"; lines[1] != want {
		t.Errorf("fdatasync line:\n%s\nwant\n%s", lines[1], want)
	}
}

// TestTableRatioLeavesRagoVariantsOut: rago-snapshots is a column of its
// own but not a peer: rago / best peer compares with hashicorp and etcd.
func TestTableRatioLeavesRagoVariantsOut(t *testing.T) {
	c := cell{1024, 512}
	got := map[cell]map[string][]cellResult{c: {
		"rago":           {{PerSecond: 30000}},
		"rago-snapshots": {{PerSecond: 40000}},
		"etcd":           {{PerSecond: 20000}},
	}}
	lines := strings.Split(strings.TrimSpace(table([]cell{c}, []string{"rago", "rago-snapshots", "etcd"}, got)), "\n")
	if !strings.HasPrefix(lines[2], "| 1 KiB, 512 | 30,000/s | 40,000/s | 20,000/s | 1.50 |") {
		t.Errorf("row:\n%s", lines[2])
	}
}
