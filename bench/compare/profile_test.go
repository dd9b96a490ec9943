package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProfilesCoverTheWindow checks that the CPU profile, the trace and
// the heap profile are written when the cell ends (without a warm-up, the
// window starts at once).
func TestProfilesCoverTheWindow(t *testing.T) {
	dir := t.TempDir()
	p := profiles{cpu: filepath.Join(dir, "cpu"), heap: filepath.Join(dir, "heap"), trace: filepath.Join(dir, "trace")}
	stop, err := p.start(0)
	if err != nil {
		t.Fatal(err)
	}
	busy(10 * time.Millisecond) // something for the profiles to see
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.cpu, p.heap, p.trace} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 {
			t.Errorf("%s is empty", f)
		}
	}
}

// TestProfilesRefuseAWindowThatNeverStarted checks that a cell that ends
// within its warm-up says so instead of leaving empty files unexplained.
func TestProfilesRefuseAWindowThatNeverStarted(t *testing.T) {
	dir := t.TempDir()
	p := profiles{cpu: filepath.Join(dir, "cpu"), trace: filepath.Join(dir, "trace")}
	stop, err := p.start(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Fatalf("stop: %v, want an error saying the profiles did not start", err)
	}
}

func busy(d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); {
	}
}
