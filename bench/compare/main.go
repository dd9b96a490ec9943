// Command compare runs the same workload on rago, hashicorp/raft and
// etcd-io/raft, interleaved, and prints one table: 3 replicas in one
// process each, fdatasync on, synchronous callers that each wait until
// their command is committed and applied on the leader, for each payload
// size and number of callers. Each system runs each cell in a child
// process of its own (this binary again) in a fresh data directory, so
// that its peak RSS is its own.
//
//	cd bench/compare && go run . -rounds 3 -duration 10s
//
// It is a module of its own so that rago's go.mod stays free of other
// Raft libraries; docs/benchmarks.md has figures and what each harness
// does.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var starters = map[string]func(dir string) (cluster, error){
	"rago": startRago,
	// rago-snapshots is rago whose machine snapshots; not in the default
	// run (see countingMachine), -systems rago,rago-snapshots shows what
	// snapshots cost.
	"rago-snapshots": startRagoSnapshots,
	"hashicorp":      startHashicorp,
	"etcd":           startEtcd,
}

type options struct {
	rounds           int
	duration, warmup time.Duration
	payloads         []int
	callers          []int
	systems          []string
	dir              string
	fsyncTime        time.Duration
}

func main() {
	log.SetFlags(0)
	var o options
	payloads := flag.String("payloads", "16,1024", "command sizes in bytes, comma-separated")
	callers := flag.String("callers", "1,64,512", "numbers of synchronous callers, comma-separated")
	names := flag.String("systems", strings.Join(systems, ","), "systems to run, comma-separated (rago, hashicorp, etcd; also rago-snapshots)")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; the table shows the median of each figure over them")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per system and cell")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured time before it")
	flag.StringVar(&o.dir, "dir", os.TempDir(), "where the data directories go (the disk under test); removed afterwards")
	flag.DurationVar(&o.fsyncTime, "fsync-time", 2*time.Second, "how long to measure fdatasync at the start of each round")
	child := flag.String("child", "", "internal: run one system for one cell and print its result")
	cpuProfile := flag.String("cpuprofile", "", "with -child: write a CPU profile of the measured window to this file")
	heapProfile := flag.String("memprofile", "", "with -child: write a heap profile at the end of the measured window to this file")
	traceFile := flag.String("trace", "", "with -child: write an execution trace of the measured window to this file")
	flag.Parse()
	var err error
	if o.payloads, err = parseInts(*payloads); err != nil {
		log.Fatalf("-payloads: %v", err)
	}
	if o.callers, err = parseInts(*callers); err != nil {
		log.Fatalf("-callers: %v", err)
	}
	for _, n := range strings.Split(*names, ",") {
		if _, ok := starters[n]; !ok {
			log.Fatalf("-systems: unknown system %q", n)
		}
		o.systems = append(o.systems, n)
	}
	if *child != "" {
		if len(o.payloads) != 1 || len(o.callers) != 1 {
			log.Fatal("-child takes one payload and one number of callers")
		}
		res, err := runChild(*child, o.dir, o.payloads[0], o.callers[0], o.warmup, o.duration, profiles{*cpuProfile, *heapProfile, *traceFile})
		if err != nil {
			log.Fatalf("%s: %v", *child, err)
		}
		b, _ := json.Marshal(res)
		fmt.Printf("RESULT %s\n", b)
		return
	}
	if o.rounds < 1 || o.duration <= 0 || o.fsyncTime <= 0 {
		log.Fatal("-rounds must be at least 1, -duration and -fsync-time positive")
	}
	if err := runAll(o, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// runChild starts one system in dir, drives it and reports, with its
// peak RSS read before the cluster is closed.
func runChild(system, dir string, payload, callers int, warmup, duration time.Duration, prof profiles) (cellResult, error) {
	c, err := starters[system](dir)
	if err != nil {
		return cellResult{}, err
	}
	stop, err := prof.start(warmup)
	if err != nil {
		_ = c.close()
		return cellResult{}, err
	}
	res, err := drive(c, payload, callers, warmup, duration)
	if perr := stop(); err == nil && perr != nil {
		err = perr
	}
	res.System = system
	res.PeakRSS = peakRSSKiB()
	if cerr := c.close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return res, err
}

// runAll runs the rounds, each of which runs every cell on every system in
// turn, and writes the table to w.
func runAll(o options, w io.Writer) error {
	root, err := os.MkdirTemp(o.dir, "ragocompare")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var cells []cell
	for _, p := range o.payloads {
		for _, c := range o.callers {
			cells = append(cells, cell{p, c})
		}
	}
	got := map[cell]map[string][]cellResult{}
	for _, c := range cells {
		got[c] = map[string][]cellResult{}
	}
	loadBefore := loadAverage()
	began := time.Now()
	var fsyncs []float64
	var failures []string
	for round := 1; round <= o.rounds; round++ {
		f, err := measureFdatasync(root, o.fsyncTime)
		if err != nil {
			return err
		}
		fsyncs = append(fsyncs, micros(f))
		log.Printf("round %d: fdatasync p50 %s, load %s", round, formatMicros(micros(f)), loadAverage())
		order := roundOrder(o.systems, round)
		for _, c := range cells {
			for _, sys := range order {
				res, err := runChildProcess(exe, root, sys, c, o)
				if err != nil {
					failures = append(failures, fmt.Sprintf("round %d, %s, %s x%d: %v", round, sys, formatBytes(c.payload), c.callers, err))
					log.Printf("round %d %-9s %6s x%-3d FAILED: %v", round, sys, formatBytes(c.payload), c.callers, err)
					continue
				}
				got[c][sys] = append(got[c][sys], res)
				log.Printf("round %d %-9s %6s x%-3d %10s  p50 %-9s p99 %-9s max %-9s peak RSS %4d MiB  errors %d",
					round, sys, formatBytes(c.payload), c.callers, formatRate(res.PerSecond), formatMicros(res.P50),
					formatMicros(res.P99), formatMicros(res.Max), res.PeakRSS/1024, res.Errors)
			}
		}
	}
	fmt.Fprintf(w, "%s, %d rounds of %v (after %v warm-up) per system and cell, interleaved; medians over the rounds.\n",
		began.Format("2006-01-02"), o.rounds, o.duration, o.warmup)
	fmt.Fprintf(w, "%s/%s, %d CPUs, %s; load average %s at the start, %s at the end.\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), loadBefore, loadAverage())
	fmt.Fprintf(w, "versions: %s\n\n", versions())
	fmt.Fprint(w, table(cells, o.systems, got))
	fmt.Fprintln(w)
	fmt.Fprint(w, fsyncLines(cells, o.systems, got, median(fsyncs)))
	if len(failures) > 0 {
		return fmt.Errorf("%d runs failed:\n  %s", len(failures), strings.Join(failures, "\n  "))
	}
	return nil
}

// roundOrder is the order in which the systems run each cell of a round:
// rotated by one every round, so that each system in turn runs first.
// Whoever runs first in a round follows the fdatasync probe, and each one
// follows the removal of another's data: fixed places would charge any
// cost those leave behind to the same system every time.
func roundOrder(systems []string, round int) []string {
	k := (round - 1) % len(systems)
	return append(slices.Clone(systems[k:]), systems[:k]...)
}

// settle makes the file system write out what the last run or probe left
// (dirty pages, the journal's record of a removed directory) before the
// next one starts, so that no run pays for its predecessor's writes.
func settle() { syscall.Sync() }

// runChildProcess runs one system for one cell in a child process, in a
// fresh data directory removed afterwards.
func runChildProcess(exe, root, system string, c cell, o options) (cellResult, error) {
	dir, err := os.MkdirTemp(root, system)
	if err != nil {
		return cellResult{}, err
	}
	defer settle()
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), o.warmup+o.duration+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-child", system, "-dir", dir,
		"-payloads", fmt.Sprint(c.payload), "-callers", fmt.Sprint(c.callers),
		"-warmup", o.warmup.String(), "-duration", o.duration.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if b, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			var res cellResult
			if jerr := json.Unmarshal([]byte(b), &res); jerr != nil {
				return cellResult{}, jerr
			}
			return res, err
		}
	}
	if err == nil {
		err = errors.New("the child printed no result")
	}
	return cellResult{}, err
}

// peakRSSKiB is this process's peak resident set size (VmHWM), in KiB.
func peakRSSKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// loadAverage is the 1, 5 and 15 minute load averages: the machine may be
// shared, and the figures mean little without them.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// versions lists the peers' module versions this binary was built with.
func versions() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	want := []string{"github.com/hashicorp/raft", "github.com/hashicorp/raft-wal", "go.etcd.io/raft/v3"}
	var out []string
	for _, d := range info.Deps {
		if slices.Contains(want, d.Path) {
			out = append(out, d.Path+" "+d.Version)
		}
	}
	return strings.Join(out, ", ") + "; rago from this checkout"
}
