package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// childEnv makes the test binary act as the program: runAll starts its
// children as os.Executable() with -child flags, which here is the test
// binary.
const childEnv = "RAGO_COMPARE_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunAll runs the whole program once, briefly: one round, one cell,
// every system in its own child process, and checks the table it prints.
func TestRunAll(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three clusters in child processes; without -short only")
	}
	t.Setenv(childEnv, "1")
	var out strings.Builder
	o := options{
		rounds: 1, duration: 500 * time.Millisecond, warmup: 200 * time.Millisecond,
		payloads: []int{16}, callers: []int{1}, systems: systems, dir: t.TempDir(),
		fsyncTime: 200 * time.Millisecond,
	}
	if err := runAll(o, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log("\n" + out.String())
	var row string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "| 16 B, 1 |") {
			row = line
		}
	}
	cols := strings.Split(row, " | ")
	if len(cols) != 8 {
		t.Fatalf("want the row of 16 B, 1 caller with 8 columns, got %q", row)
	}
	for i, sys := range systems {
		if !strings.HasSuffix(cols[1+i], "/s") || cols[1+i] == "0/s" {
			t.Errorf("%s: throughput %q", sys, cols[1+i])
		}
	}
	if strings.Contains(row, " - ") || strings.Contains(row, " 0 / ") {
		t.Errorf("a figure is missing: %q", row)
	}
	if !strings.Contains(out.String(), "single-caller p50 / fdatasync, 16 B: rago ") {
		t.Errorf("no single-caller line:\n%s", out.String())
	}
	for _, v := range []string{"github.com/hashicorp/raft v", "go.etcd.io/raft/v3 v"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("the versions line does not name %s:\n%s", v, out.String())
		}
	}
}

// TestRoundOrderRotates: over as many rounds as there are systems, each
// system runs first once, and the cyclic order stays the same.
func TestRoundOrderRotates(t *testing.T) {
	sys := []string{"rago", "hashicorp", "etcd"}
	want := [][]string{
		{"rago", "hashicorp", "etcd"},
		{"hashicorp", "etcd", "rago"},
		{"etcd", "rago", "hashicorp"},
		{"rago", "hashicorp", "etcd"},
	}
	for i, w := range want {
		if got := roundOrder(sys, i+1); strings.Join(got, ",") != strings.Join(w, ",") {
			t.Errorf("round %d: got %v, want %v", i+1, got, w)
		}
	}
	if got := roundOrder([]string{"etcd"}, 5); len(got) != 1 || got[0] != "etcd" {
		t.Errorf("one system: got %v", got)
	}
	if sys[0] != "rago" {
		t.Errorf("roundOrder changed its argument: %v", sys)
	}
}
