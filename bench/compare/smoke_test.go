package main

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestHarnessesCommit runs each system for about a second with one caller
// and checks that it committed commands and that its leader applied at
// least as many as the callers counted: a harness that commits nothing
// must fail here, not show up as a slow system in a table. Skipped with
// -short: it starts three clusters (hashicorp's first election alone
// takes a second or more with its default timeouts).
func TestHarnessesCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three clusters; without -short only")
	}
	for _, sys := range append(slices.Clone(systems), "rago-snapshots") {
		t.Run(sys, func(t *testing.T) {
			c, err := starters[sys](t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			res, err := drive(c, 16, 1, 200*time.Millisecond, time.Second)
			if cerr := c.close(); cerr != nil {
				t.Errorf("close: %v", cerr)
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Count == 0 || res.P50 <= 0 {
				t.Fatalf("nothing measured: %+v", res)
			}
			if res.Applied < uint64(res.Count) {
				t.Fatalf("the leader applied %d commands, the callers counted %d", res.Applied, res.Count)
			}
			t.Logf("%s: %.0f/s, p50 %s, %d applied", sys, res.PerSecond, formatMicros(res.P50), res.Applied)
		})
	}
}

// silentCluster accepts proposals and never commits them: each times out
// (after 50 ms rather than the callers' 10 s, to keep the test short).
type silentCluster struct{}

func (silentCluster) propose(ctx context.Context, _ []byte) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return context.DeadlineExceeded
	}
}
func (silentCluster) applied() uint64 { return 0 }
func (silentCluster) close() error    { return nil }

// failingCluster fails every proposal at once.
type failingCluster struct{}

func (failingCluster) propose(context.Context, []byte) error { return errors.New("no leader") }
func (failingCluster) applied() uint64                       { return 0 }
func (failingCluster) close() error                          { return nil }

func TestDriveFailsWhenNothingCommits(t *testing.T) {
	for name, c := range map[string]cluster{"failing": failingCluster{}, "silent": silentCluster{}} {
		t.Run(name, func(t *testing.T) {
			res, err := drive(c, 16, 2, 10*time.Millisecond, 100*time.Millisecond)
			if !errors.Is(err, errNothingCommitted) {
				t.Fatalf("drive = %+v, %v; want errNothingCommitted", res, err)
			}
		})
	}
}
