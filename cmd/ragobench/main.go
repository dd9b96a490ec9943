// Command ragobench measures rago's command throughput and latency with
// fsync on: a 3-member cluster, either as 3 nodes in this process or as 3
// OS processes on loopback, driven by synchronous or pipelined callers.
// It prints one summary line per run, including the disk's own fdatasync
// latency measured in the same run, so latency can be read as a multiple
// of one fdatasync.
//
//	go run ./cmd/ragobench -topology inproc -mode sync -clients 1 -payload 16 -duration 10s
//	go run ./cmd/ragobench -topology procs -mode pipeline -clients 8 -inflight 1000
//	go run ./cmd/ragobench -topology procs -mode sync -clients 64 -auth tls
//	go run ./cmd/ragobench -scenario clusters -clusters 10000 -idle 30s
//	go run ./cmd/ragobench -scenario failover -signal KILL -rounds 5
//	go run ./cmd/ragobench -scenario storage-tax -png docs/storage-tax.png
//	go run ./cmd/ragobench -scenario restart -clusters 1000
//	go run ./cmd/ragobench -scenario install -state-mb 100
//	go run ./cmd/ragobench -scenario fleet -groups 300 -nodes 4 -add 1
//
// docs/benchmarks.md has the figures and the script that runs the matrix.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rago-raft/rago/raftserver"
)

type options struct {
	topology string
	mode     string
	clients  int
	inflight int
	payload  int
	duration time.Duration
	warmup   time.Duration
	dir      string
	auth     string
	scrape   time.Duration
}

func main() {
	var o options
	scenario := flag.String("scenario", "commands", "commands: throughput and latency; clusters: start many idle clusters and measure memory and idle CPU; "+
		"failover; storage-tax: disk bytes against live data over time; restart: time to serve again; install: a follower's catch-up by snapshot; "+
		"fleet: time for a fleet's groups to settle after nodes join or leave under writes")
	clusters := flag.Int("clusters", 1000, "clusters scenario: how many 3-member clusters")
	idle := flag.Duration("idle", 30*time.Second, "clusters scenario: how long to measure idle CPU")
	signal := flag.String("signal", "KILL", "failover scenario: KILL or STOP the leader's node process")
	rounds := flag.Int("rounds", 5, "failover scenario: how many failovers")
	flag.StringVar(&o.topology, "topology", "inproc", "inproc: 3 nodes in this process; procs: 3 nodes as OS processes")
	flag.StringVar(&o.mode, "mode", "sync", "sync: each caller waits for its command; pipeline: each caller keeps -inflight commands in flight")
	flag.IntVar(&o.clients, "clients", 1, "concurrent callers")
	flag.IntVar(&o.inflight, "inflight", 1000, "commands in flight per pipelined caller")
	flag.IntVar(&o.payload, "payload", 16, "command size in bytes")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured time before it")
	flag.StringVar(&o.dir, "dir", "", "data directory (default: a new temporary one, removed afterwards)")
	flag.StringVar(&o.auth, "auth", authPlain, "commands scenario: how the nodes (the client's too) authenticate each other: plain (not at all), "+
		"secret (a cluster secret) or tls (mutual TLS with certificates made for the run); the credentials' files are removed afterwards")
	flag.DurationVar(&o.scrape, "scrape", 0, "commands scenario, inproc: read every node's System.Metrics this often during the run, as a metrics scraper would (0: never)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the measured run (this process only)")
	memprofile := flag.String("memprofile", "", "clusters scenario: write a heap profile here once the clusters are idle, right after the RSS is measured "+
		"(read it with go tool pprof -sample_index=inuse_space); it samples every 4 KiB allocated, "+
		"not every 512 KiB, so the figures are finer and the RSS a little higher than without it")
	keys := flag.Int("keys", 50000, "storage-tax scenario: distinct keys")
	value := flag.Int("value", 1024, "storage-tax scenario: value size in bytes")
	writes := flag.Int("writes", 600000, "storage-tax scenario: commands in all (the first -keys fill, the rest overwrite)")
	settle := flag.Duration("settle", 15*time.Second, "storage-tax scenario: sampling after the writes")
	csvOut := flag.String("csv", "", "storage-tax scenario: write the samples here")
	pngOut := flag.String("png", "", "storage-tax scenario: write the chart here")
	logRatio := flag.Float64("log-ratio", 0, "storage-tax scenario: SnapshotPolicy.LogRatio (0: the default)")
	noSnapshots := flag.Bool("no-snapshots", false, "storage-tax scenario: a machine without snapshots (the baseline)")
	perCluster := flag.Int("per-cluster", 100, "restart scenario: commands per cluster of the many-clusters case")
	stateMB := flag.Int("state-mb", 100, "install scenario: the machine's state in MiB")
	var fo fleetOptions
	flag.IntVar(&fo.groups, "groups", 300, "fleet scenario: groups of 3 members")
	flag.IntVar(&fo.nodes, "nodes", 4, "fleet scenario: nodes at the start (the first 3 are the seeds)")
	flag.IntVar(&fo.add, "add", 0, "fleet scenario: nodes to add")
	flag.IntVar(&fo.remove, "remove", 0, "fleet scenario: nodes to deactivate (the last ones; not with -add)")
	flag.IntVar(&fo.writers, "writers", 4, "fleet scenario: concurrent writers during the change")
	flag.IntVar(&fo.zones, "zones", 3, "fleet scenario: zones, given to the nodes in turn")
	flag.DurationVar(&fo.interval, "interval", 250*time.Millisecond, "fleet scenario: the agents' survey interval (fleet.Config.Interval)")
	flag.IntVar(&fo.maxChanges, "max-changes", 8, "fleet scenario: changes at once per node (fleet.Config.MaxChanges)")
	flag.DurationVar(&fo.timeout, "timeout", 5*time.Minute, "fleet scenario: give up if the fleet has not settled after this long (the start, then the change)")
	flag.DurationVar(&fo.linger, "linger", 0, "fleet scenario: after the fleet settled, watch it this long (logs what still changes)")
	node := flag.String("node", "", "internal: run as a node process at this address")
	nodeDir := flag.String("node-dir", "", "internal: the node process's data directory")
	nodeCreds := flag.String("node-creds", "", "internal: the node process's credentials directory (with -auth)")
	nodeID := flag.String("node-id", "", "internal: the node process's name among the credentials")
	flag.Parse()
	log.SetFlags(0)

	if *node != "" {
		runNode(*node, *nodeDir, &credentials{mode: o.auth, dir: *nodeCreds}, *nodeID)
		return
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 4096
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *scenario != "commands" {
		if o.auth != authPlain {
			log.Fatalf("-auth %s: only the commands scenario authenticates its nodes", o.auth)
		}
		dir := o.dir
		if dir == "" {
			d, err := os.MkdirTemp("", "ragobench")
			if err != nil {
				log.Fatal(err)
			}
			defer os.RemoveAll(d)
			dir = d
		}
		var err error
		switch {
		case *scenario == "clusters":
			err = runClusters(*clusters, *idle, dir, *memprofile)
		case *scenario == "storage-tax":
			kind := "store"
			if *noSnapshots {
				kind = "plain"
			}
			err = runStorageTax(dir, kind, *keys, *value, *writes, *logRatio, *settle, *csvOut, *pngOut)
		case *scenario == "restart":
			err = runRestart(dir, []int{100_000, 1_000_000}, *clusters, *perCluster)
		case *scenario == "install":
			err = runInstall(dir, *stateMB)
		case *scenario == "fleet":
			err = runFleet(dir, fo)
		case *scenario != "failover":
			err = fmt.Errorf("unknown scenario %q", *scenario)
		case *signal == "KILL":
			err = runFailover(syscall.SIGKILL, *rounds, dir)
		case *signal == "STOP":
			err = runFailover(syscall.SIGSTOP, *rounds, dir)
		default:
			err = fmt.Errorf("unknown signal %q", *signal)
		}
		if err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

// benchMachine counts commands; its reply is the count so far.
type benchMachine struct{ n uint64 }

func (m *benchMachine) Apply(_ *raftserver.ApplyContext, _ []byte) []byte {
	m.n++
	return binary.BigEndian.AppendUint64(nil, m.n)
}

var machines = map[string]raftserver.MachineFactory{
	"bench": func([]byte) (raftserver.Machine, error) { return &benchMachine{}, nil },
}

func systemConfig(dir, addr string) raftserver.SystemConfig {
	return raftserver.SystemConfig{DataDir: dir, Address: addr, Machines: machines}
}

func runNode(addr, dir string, creds *credentials, id string) {
	cfg := systemConfig(dir, addr)
	err := creds.apply(&cfg, id)
	var s *raftserver.System
	if err == nil {
		s, err = raftserver.StartSystem(cfg)
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("READY", s.Name())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = s.Stop()
}

func run(o options) error {
	if o.clients < 1 || o.inflight < 1 || o.payload < 0 || o.duration <= 0 {
		return fmt.Errorf("bad flags: clients %d, inflight %d, payload %d, duration %v", o.clients, o.inflight, o.payload, o.duration)
	}
	if o.auth != authPlain && o.auth != authSecret && o.auth != authTLS {
		return fmt.Errorf("unknown -auth %q (plain, secret or tls)", o.auth)
	}
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "ragobench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	fsync, err := measureFdatasync(dir, 1, 2*time.Second)
	if err != nil {
		return err
	}
	// Three nodes on one disk sync at the same time: the disk's latency
	// under that load is the floor a commit (leader and one follower
	// durable) cannot beat here.
	fsync3, err := measureFdatasync(dir, 3, 2*time.Second)
	if err != nil {
		return err
	}

	// Every node gets credentials, the client's too: it is a node that
	// dials the leader like any peer.
	creds, err := makeCredentials(o.auth, dir, []string{"client", "n0", "n1", "n2"})
	if err != nil {
		return err
	}
	defer creds.remove()
	start := func(id string) (*raftserver.System, error) {
		cfg := systemConfig(filepath.Join(dir, id), "127.0.0.1:0")
		if err := creds.apply(&cfg, id); err != nil {
			return nil, err
		}
		return raftserver.StartSystem(cfg)
	}
	client, err := start("client")
	if err != nil {
		return err
	}
	defer client.Stop()
	var members []raftserver.ServerID
	var pids []int
	scraped := []*raftserver.System{client}
	switch o.topology {
	case "inproc":
		for i := range 3 {
			s, err := start(fmt.Sprint("n", i))
			if err != nil {
				return err
			}
			defer s.Stop()
			members = append(members, raftserver.ServerID{Name: "bench", Node: s.Name()})
			scraped = append(scraped, s)
		}
		pids = []int{os.Getpid()}
	case "procs":
		for i := range 3 {
			id := fmt.Sprint("n", i)
			cmd, name, err := startNodeProcess("127.0.0.1:0", filepath.Join(dir, id), creds.nodeArgs(id)...)
			if err != nil {
				return err
			}
			defer func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() }()
			members = append(members, raftserver.ServerID{Name: "bench", Node: name})
			pids = append(pids, cmd.Process.Pid)
		}
		pids = append(pids, os.Getpid())
	default:
		return fmt.Errorf("unknown topology %q", o.topology)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := client.StartCluster(ctx, "bench", raftserver.MachineSpec{Kind: "bench"}, members); err != nil {
		return err
	}
	_, leader, err := client.ProcessCommand(ctx, members[0], make([]byte, o.payload))
	if err != nil {
		return err
	}

	if o.scrape > 0 {
		stop := scrapeEvery(o.scrape, scraped)
		defer stop()
	}
	var res result
	switch o.mode {
	case "sync":
		res, err = runSync(client, leader, o)
	case "pipeline":
		res, err = runPipeline(client, leader, o)
	default:
		return fmt.Errorf("unknown mode %q", o.mode)
	}
	if err != nil {
		return err
	}
	rss := 0
	for _, pid := range pids {
		rss += rssKiB(pid)
	}
	p50, p99 := res.percentile(50), res.percentile(99)
	fmt.Printf("topology=%s auth=%s mode=%s clients=%d inflight=%d payload=%d commits/s=%.0f p50=%v p99=%v rss=%dMiB fdatasync_p50=%v fdatasync3_p50=%v p50/fdatasync=%.2f errors=%d\n",
		o.topology, o.auth, o.mode, o.clients, inflightOf(o), o.payload, float64(res.count)/res.elapsed.Seconds(),
		p50.Round(time.Microsecond), p99.Round(time.Microsecond), rss/1024, fsync.Round(time.Microsecond),
		fsync3.Round(time.Microsecond), float64(p50)/float64(fsync), res.errors)
	return nil
}

// scrapeEvery reads the systems' metrics every interval until the
// returned stop is called: the load a metrics scraper adds.
func scrapeEvery(interval time.Duration, systems []*raftserver.System) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, s := range systems {
					_ = s.Metrics()
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func inflightOf(o options) int {
	if o.mode == "sync" {
		return 1
	}
	return o.inflight
}

// startNodeProcess starts a node process at addr with its data in dir;
// args are more flags for it (its credentials).
// startNodeProcess starts a node on addr in a process of its own and
// returns the node's name from its READY line. A first start passes port
// 0, so the node binds a port itself: a port picked here and handed over
// could be taken by another program in between. A restart passes the name.
func startNodeProcess(addr, dir string, args ...string) (*exec.Cmd, string, error) {
	cmd := exec.Command(os.Args[0], append([]string{"-node", addr, "-node-dir", dir}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, "", err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	name, ok := strings.CutPrefix(strings.TrimSpace(line), "READY ")
	if !ok || name == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, "", fmt.Errorf("node process %s in %s: %q", addr, dir, line)
	}
	return cmd, name, nil
}

// result holds what the measured window saw.
type result struct {
	count     int64
	errors    int64
	elapsed   time.Duration
	latencies []time.Duration
}

func (r *result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	slices.Sort(r.latencies)
	i := int(float64(len(r.latencies)-1) * p / 100)
	return r.latencies[i]
}

// window says whether now is inside the measured part of the run.
type window struct {
	start, end time.Time
}

func newWindow(o options) window {
	start := time.Now().Add(o.warmup)
	return window{start: start, end: start.Add(o.duration)}
}

func (w window) measured(t time.Time) bool { return !t.Before(w.start) && t.Before(w.end) }

func runSync(client *raftserver.System, leader raftserver.ServerID, o options) (result, error) {
	w := newWindow(o)
	var mu sync.Mutex
	var res result
	var wg sync.WaitGroup
	for range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := make([]byte, o.payload)
			var lat []time.Duration
			var n, errs int64
			via := leader
			for {
				start := time.Now()
				if !start.Before(w.end) {
					break
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, l, err := client.ProcessCommand(ctx, via, cmd)
				cancel()
				done := time.Now()
				if err != nil {
					errs++
					continue
				}
				via = l
				if w.measured(start) && w.measured(done) {
					n++
					lat = append(lat, done.Sub(start))
				}
			}
			mu.Lock()
			res.count += n
			res.errors += errs
			res.latencies = append(res.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = o.duration
	return res, nil
}

func runPipeline(client *raftserver.System, leader raftserver.ServerID, o options) (result, error) {
	w := newWindow(o)
	var count, errs atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	for range o.clients {
		ib, err := client.Node().NewInbox()
		if err != nil {
			return result{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ib.Close()
			cmd := make([]byte, o.payload)
			sent := make(map[uint64]time.Time, o.inflight)
			var next uint64
			var lat []time.Duration
			send := func() {
				next++
				sent[next] = time.Now()
				if err := client.PipelineCommand(leader, cmd, next, ib.Ref()); err != nil {
					errs.Add(1)
				}
			}
			for range o.inflight {
				send()
			}
			for len(sent) > 0 {
				m, err := ib.ReceiveTimeout(10 * time.Second)
				if err != nil {
					errs.Add(int64(len(sent)))
					break
				}
				now := time.Now()
				switch m := m.(type) {
				case *raftserver.Applied:
					for _, r := range m.Results {
						t0, ok := sent[r.Correlation]
						if !ok {
							continue
						}
						delete(sent, r.Correlation)
						if w.measured(t0) && w.measured(now) {
							count.Add(1)
							lat = append(lat, now.Sub(t0))
						}
						if now.Before(w.end) {
							send()
						}
					}
				case *raftserver.Rejected:
					delete(sent, m.Correlation)
					errs.Add(1)
					if now.Before(w.end) {
						send()
					}
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return result{count: count.Load(), errors: errs.Load(), elapsed: o.duration, latencies: all}, nil
}

// measureFdatasync runs writers goroutines that each append 4 KiB to their
// own file and fdatasync it, for d, in dir (the disk the WALs use), and
// returns the median time of one round.
func measureFdatasync(dir string, writers int, d time.Duration) (time.Duration, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine, err := fdatasyncRounds(dir, d)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			lat = append(lat, mine...)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	slices.Sort(lat)
	return lat[len(lat)/2], nil
}

func fdatasyncRounds(dir string, d time.Duration) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fdatasync")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var lat []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); {
		start := time.Now()
		if _, err := f.Write(buf); err != nil {
			return nil, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

// rssKiB reads a process's resident set size from /proc.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
