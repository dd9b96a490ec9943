package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/rago-raft/rago/raftserver"
)

// runClusters starts n idle 3-member clusters on 3 nodes in this process
// and reports the start time, the resident memory each server adds, and
// the CPU the idle nodes use over idle. With memprofile set, it writes a
// heap profile there once the clusters are idle (after the RSS reading, so
// writing it does not count).
func runClusters(n int, idle time.Duration, dir, memprofile string) error {
	var systems []*raftserver.System
	for i := range 3 {
		s, err := raftserver.StartSystem(systemConfig(filepath.Join(dir, fmt.Sprint("n", i)), "127.0.0.1:0"))
		if err != nil {
			return err
		}
		defer s.Stop()
		systems = append(systems, s)
	}
	runtime.GC()
	debug.FreeOSMemory()
	rssBefore := rssKiB(os.Getpid())

	start := time.Now()
	err := forEachCluster(n, func(i int) error {
		var members []raftserver.ServerID
		for _, s := range systems {
			members = append(members, raftserver.ServerID{Name: fmt.Sprint("c", i), Node: s.Name()})
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _, err := systems[i%3].StartCluster(ctx, fmt.Sprint("c", i), raftserver.MachineSpec{Kind: "bench"}, members)
		return err
	})
	if err != nil {
		return err
	}
	took := time.Since(start)

	// Let elections settle, then measure memory and idle CPU.
	time.Sleep(2 * time.Second)
	runtime.GC()
	debug.FreeOSMemory()
	rssAfter := rssKiB(os.Getpid())
	if memprofile != "" {
		if err := writeHeapProfile(memprofile); err != nil {
			return err
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "heap profile in %s; goroutines=%d heap_alloc=%dKiB heap_inuse=%dKiB stack_inuse=%dKiB gc_sys=%dKiB other_sys=%dKiB\n",
			memprofile, runtime.NumGoroutine(), ms.HeapAlloc>>10, ms.HeapInuse>>10, ms.StackInuse>>10, ms.GCSys>>10, ms.OtherSys>>10)
	}
	if p := os.Getenv("RAGOBENCH_IDLE_PROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	cpu0, wall0 := cpuTime(), time.Now()
	time.Sleep(idle)
	cpu := cpuTime() - cpu0
	wall := time.Since(wall0)
	servers := 3 * n
	fmt.Printf("scenario=clusters clusters=%d servers=%d start=%v rss_before=%dMiB rss_after=%dMiB rss_per_server=%.1fKiB idle_cpu=%.2f%%_of_one_core over=%v\n",
		n, servers, took.Round(time.Millisecond), rssBefore/1024, rssAfter/1024,
		float64(rssAfter-rssBefore)/float64(servers), 100*cpu.Seconds()/wall.Seconds(), idle)

	// Re-election: stop the node that leads the most clusters and time how
	// long until every cluster has a leader on the surviving nodes.
	counts := map[string]int{}
	for i := range n {
		if l, _, ok := systems[1].Leaderboard().Lookup(fmt.Sprint("c", i)); ok {
			counts[l.Node]++
		}
	}
	victim := 0
	for i, s := range systems {
		if counts[s.Name()] > counts[systems[victim].Name()] {
			victim = i
		}
	}
	lost := systems[victim].Name()
	survivor := systems[(victim+1)%3]
	start = time.Now()
	if err := systems[victim].Stop(); err != nil {
		return err
	}
	for i := range n {
		for {
			l, _, ok := survivor.Leaderboard().Lookup(fmt.Sprint("c", i))
			if ok && !l.IsZero() && l.Node != lost {
				break
			}
			if time.Since(start) > 5*time.Minute {
				return fmt.Errorf("cluster %d has no new leader", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	fmt.Printf("scenario=reelection clusters=%d leaders_lost=%d all_reelected_after=%v\n", n, counts[lost], time.Since(start).Round(time.Millisecond))
	return nil
}

// cpuTime is the user plus system CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeHeapProfile writes the live heap as of the last GC to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
