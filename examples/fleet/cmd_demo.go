package main

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rago-raft/rago/examples/fleet/internal/node"
	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/internal/creds"
)

const demoHelp = `
Runs a fleet of five nodes in three zones on this machine (n1 and n2 in zone
a, n3 and n4 in b, n5 in c), each a child process of this one with its own
data directory under --data, Raft port and HTTP port; n1, n3 and n5 keep the
books. Their logs are streamed here, prefixed by node (warnings and errors
only, unless --log-level). Ctrl-C stops them all. Running the demo again
restarts the same fleet with its data, nodes added since included.

While it runs, type a command and Enter:

	add             start a new node (n6, n7, ...) in the zone with the fewest nodes
	deactivate n2   move n2's members away; it takes no new ones
	activate n2     let n2 take members again
	kill n2         SIGKILL the node: the others see it go at once
	stop n2         stop the node cleanly (SIGTERM)
	start n2        start a node that is not running
	status          every node: its state, members, leaders, moves in flight
	help            this list
	quit            stop everything (like Ctrl-C)

The nodes' Raft connections are authenticated: the first run writes a random
secret to cluster.secret in --data (mode 0600) and every node gets it with
--secret-file. --secret-file uses another one, --tls-ca, --tls-cert and
--tls-key (a certificate valid for --host) switch to mutual TLS and HTTPS,
and --insecure runs without authentication. The HTTP API is open to whoever
reaches --host, writes included, unless --api-token-file gives the nodes a
token.`

// demoLayout is the fleet the demo runs, saved in --data so that a second
// run restarts the same nodes on the same addresses (a node's Raft address
// is its name in the fleet).
type demoLayout struct {
	Shards int        `json:"shards"`
	Seeds  []string   `json:"seeds"`
	Nodes  []demoNode `json:"nodes"`
}

type demoNode struct {
	ID   string `json:"id"`
	Zone string `json:"zone"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
	Data string `json:"data"`
}

const layoutFile = "demo.json"

// demoZones are the zones of the demo's first five nodes.
var demoZones = []string{"a", "a", "b", "b", "c"}

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("demo", stderr, demoHelp)
	data := fs.String("data", "fleet-data", "`directory` for the nodes' data and the demo's layout")
	host := fs.String("host", "127.0.0.1", "`address` the nodes listen on")
	raftPort := fs.Int("raft-port", 7101, "Raft `port` of the first node; the others follow")
	httpPort := fs.Int("http-port", 8101, "HTTP `port` of the first node; the others follow")
	shards := fs.Int("shards", 500, "how many shard groups (fixed by the first run)")
	logLevel := fs.String("log-level", "warn", "the nodes' log `level`")
	var sec creds.Flags
	sec.Register(fs, "writes, POST /activate and POST /deactivate")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *shards < 1 || *shards > node.MaxShards {
		return cli.Usagef("--shards %d: use 1 to %d", *shards, node.MaxShards)
	}
	// Secure by default: without credentials or --insecure, the nodes get
	// the demo's own secret, made once the ports are known to be free.
	ownSecret := !sec.Insecure && sec.SecretFile == "" && !sec.HasTLS()
	if ownSecret {
		sec.SecretFile = filepath.Join(*data, secretFile)
	}
	if err := sec.Check("go run ./examples/kvstore"); err != nil {
		return err
	}
	layout, fresh, err := demoLoadLayout(*data, *host, *raftPort, *httpPort, *shards)
	if err != nil {
		return err
	}
	if !fresh {
		changed := false
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "host", "raft-port", "http-port", "shards":
				changed = true
			}
		})
		if changed {
			fmt.Fprintf(stderr, "note: %s holds a fleet already; it keeps its addresses and shards, and --host, --raft-port, --http-port and --shards are ignored (use another --data for a new fleet)\n",
				filepath.Join(*data, layoutFile))
		}
	}
	if err := demoCheckPorts(layout.Nodes, fresh, *data); err != nil {
		return err
	}
	if ownSecret {
		if err := demoSecret(sec.SecretFile); err != nil {
			return err
		}
	}
	// Read and check the files once here, so that a mistake is reported
	// once and before any node starts, rather than by each node.
	c, err := sec.Load("go run ./examples/kvstore", nil)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find this program to start the nodes: %w", err)
	}
	d := &demo{dir: *data, layout: layout, exe: exe, logLevel: *logLevel, sec: sec, token: c.APIToken,
		out: stdout, color: isTerminal(stdout), procs: map[string]*demoProc{}, exited: make(chan string, 16)}
	d.scheme = "http://"
	d.hc = &http.Client{Timeout: 5 * time.Second}
	if c.HTTPS {
		d.scheme = "https://"
		pem, err := os.ReadFile(sec.TLSCA)
		if err != nil {
			return cli.Usagef("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		d.hc.Transport = t
	}

	// Ctrl-C goes to the demo alone (the nodes run in their own process
	// group), which stops the nodes in order.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)

	for _, n := range layout.Nodes {
		if err := d.start(n.ID); err != nil {
			d.stopAll()
			return err
		}
	}
	if err := d.waitUp(layout.Nodes, time.Minute); err != nil {
		d.stopAll()
		return err
	}
	if fresh {
		// Recorded only now: a layout whose nodes never started must not
		// pin the next run to its addresses.
		if err := d.saveLayout(); err != nil {
			d.stopAll()
			return err
		}
	}
	d.banner(fresh)

	lines := make(chan string)
	go readLines(os.Stdin, lines)
	for {
		select {
		case s := <-sig:
			d.say("%s: stopping the nodes", s)
			d.stopAll()
			return nil
		case id := <-d.exited:
			d.say("%s is not running any more; type 'start %s' to start it again", id, id)
		case line, ok := <-lines:
			if !ok {
				lines = nil // stdin closed: keep running until a signal
				continue
			}
			if quit := d.command(line); quit {
				d.stopAll()
				return nil
			}
		}
	}
}

func demoLoadLayout(dir, host string, raftPort, httpPort, shards int) (demoLayout, bool, error) {
	path := filepath.Join(dir, layoutFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var l demoLayout
		if err := json.Unmarshal(b, &l); err != nil || len(l.Nodes) == 0 || len(l.Seeds) == 0 || l.Shards < 1 {
			return l, false, fmt.Errorf("%s does not hold a demo layout (%v); remove it or use another --data", path, err)
		}
		return l, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return demoLayout{}, false, err
	}
	l := demoLayout{Shards: shards}
	for i, zone := range demoZones {
		id := fmt.Sprintf("n%d", i+1)
		l.Nodes = append(l.Nodes, demoNode{
			ID: id, Zone: zone,
			Raft: net.JoinHostPort(host, strconv.Itoa(raftPort+i)),
			HTTP: net.JoinHostPort(host, strconv.Itoa(httpPort+i)),
			Data: filepath.Join(dir, id),
		})
	}
	// One seed per zone: the books survive the loss of a zone.
	l.Seeds = []string{l.Nodes[0].Raft, l.Nodes[2].Raft, l.Nodes[4].Raft}
	return l, true, nil
}

// demoCheckPorts fails if an address of the nodes is taken, before any
// starts: nodes started on a busy port die at once.
func demoCheckPorts(nodes []demoNode, fresh bool, dir string) error {
	var busy []string
	for _, n := range nodes {
		for _, a := range []struct{ what, addr string }{{"Raft", n.Raft}, {"HTTP", n.HTTP}} {
			ln, err := net.Listen("tcp", a.addr)
			if err != nil {
				busy = append(busy, fmt.Sprintf("%s (%s of %s: %v)", a.addr, a.what, n.ID, errors.Unwrap(err)))
				continue
			}
			ln.Close()
		}
	}
	if len(busy) == 0 {
		return nil
	}
	hint := "stop what holds them, or choose other ports with --raft-port and --http-port"
	if !fresh {
		hint = fmt.Sprintf("the fleet recorded in %s keeps its addresses: stop what holds them, or use another --data for a new fleet", filepath.Join(dir, layoutFile))
	}
	return fmt.Errorf("%w: %s; %s", errPortsBusy, strings.Join(busy, ", "), hint)
}

// errPortsBusy: an address the demo's nodes need is taken.
var errPortsBusy = errors.New("ports in use")

// secretFile is the demo's cluster secret, in its data directory.
const secretFile = "cluster.secret"

// demoSecret makes the demo's cluster secret at path on the first run: 32
// random bytes, hex-encoded, readable by the user alone. A later run keeps
// it.
func demoSecret(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("make the demo's cluster secret: %w", err)
	}
	b := make([]byte, 32)
	rand.Read(b) // crypto/rand never returns an error; it crashes instead
	_, err = fmt.Fprintf(f, "%s\n", hex.EncodeToString(b))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("make the demo's cluster secret: %w", err)
	}
	return nil
}

// demo runs the nodes of a layout as child processes.
type demo struct {
	dir      string
	exe      string
	logLevel string
	color    bool
	// sec are the credentials every node gets, token the API token the
	// demo sends with its own POSTs; scheme and hc are how the demo talks
	// to the nodes' HTTP API.
	sec    creds.Flags
	token  string
	scheme string
	hc     *http.Client

	outMu sync.Mutex
	out   io.Writer

	mu     sync.Mutex
	layout demoLayout // grows with add
	procs  map[string]*demoProc
	exited chan string
}

type demoProc struct {
	cmd      *exec.Cmd
	done     chan struct{}
	stopping bool // the demo stopped it: its exit is no news
}

func (d *demo) saveLayout() error {
	d.mu.Lock()
	b, _ := json.MarshalIndent(d.layout, "", "  ")
	d.mu.Unlock()
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(d.dir, layoutFile)
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

func (d *demo) node(id string) (demoNode, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.layout.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return demoNode{}, false
}

func (d *demo) nodes() []demoNode {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.layout.Nodes)
}

// running returns the process of node id if it runs.
func (d *demo) running(id string) *demoProc {
	d.mu.Lock()
	p := d.procs[id]
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
		return p
	}
}

// start starts node id as a child process running "serve".
func (d *demo) start(id string) error {
	n, ok := d.node(id)
	if !ok {
		return fmt.Errorf("no node %q in this demo", id)
	}
	if p := d.running(id); p != nil {
		return fmt.Errorf("%s is running (pid %d)", id, p.cmd.Process.Pid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	args := []string{"serve", "--id", n.ID, "--zone", n.Zone, "--raft", n.Raft, "--http", n.HTTP, "--data", n.Data,
		"--seeds", strings.Join(d.layout.Seeds, ","), "--shards", strconv.Itoa(d.layout.Shards), "--log-level", d.logLevel}
	cmd := exec.Command(d.exe, append(args, d.sec.Args()...)...)
	cmd.Env = append(os.Environ(), parentEnv+"="+strconv.Itoa(os.Getpid()))
	setProcessGroup(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	p := &demoProc{cmd: cmd, done: make(chan struct{})}
	d.procs[id] = p
	var copying sync.WaitGroup
	copying.Add(2)
	go func() { defer copying.Done(); d.copyLines(id, stdout) }()
	go func() { defer copying.Done(); d.copyLines(id, stderr) }()
	go func() {
		copying.Wait()
		err := cmd.Wait()
		d.mu.Lock()
		stopping := p.stopping
		d.mu.Unlock()
		close(p.done)
		if !stopping {
			d.say("%s exited: %v", id, exitText(err))
			d.exited <- id
		}
	}()
	return nil
}

// waitUp waits until the nodes' HTTP APIs answer, and fails as soon as
// one of them exits instead: its log, streamed above, says why.
func (d *demo) waitUp(nodes []demoNode, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, n := range nodes {
		d.mu.Lock()
		p := d.procs[n.ID]
		d.mu.Unlock()
		for {
			select {
			case <-p.done:
				return fmt.Errorf("%s stopped while starting; its log above says why", n.ID)
			default:
			}
			if resp, err := d.hc.Get(d.url(n) + "/status"); err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not answer on %s/ after %v", n.ID, d.url(n), limit)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

// copyLines copies a child's output line by line, prefixed with its id.
func (d *demo) copyLines(id string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := fmt.Sprintf("%-3s | ", id)
	if d.color {
		i, _ := strconv.Atoi(strings.TrimPrefix(id, "n"))
		prefix = fmt.Sprintf("\x1b[%dm%s\x1b[0m", 31+(i%6), prefix)
	}
	for sc.Scan() {
		d.outMu.Lock()
		fmt.Fprintf(d.out, "%s%s\n", prefix, sc.Text())
		d.outMu.Unlock()
	}
}

func (d *demo) say(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.out, "demo | "+format+"\n", args...)
}

func (d *demo) banner(fresh bool) {
	nodes := d.nodes()
	d.outMu.Lock()
	defer d.outMu.Unlock()
	w := d.out
	what := "Started"
	if !fresh {
		what = "Restarted"
	}
	fmt.Fprintf(w, "\n%s a fleet of %d nodes with %d shards (data in %s):\n\n", what, len(nodes), d.layout.Shards, d.dir)
	for _, n := range nodes {
		seed := ""
		if slices.Contains(d.layout.Seeds, n.Raft) {
			seed = "  seed"
		}
		fmt.Fprintf(w, "  %-3s zone %-2s web page and API  %s/   raft %s%s\n", n.ID, n.Zone, d.url(n), n.Raft, seed)
	}
	fmt.Fprintf(w, "\n%s\n", d.securityText())
	first, last := d.url(nodes[0]), d.url(nodes[len(nodes)-1])
	curl, write := "curl", ""
	if d.scheme == "https://" {
		curl += " --cacert " + d.sec.TLSCA
	}
	if d.sec.TokenFile != "" {
		write = ` -H "Authorization: Bearer $(cat ` + d.sec.TokenFile + `)"`
	}
	fmt.Fprintf(w, `
Open %s/ in a browser to watch placement, then try:

  %s -X PUT%s %s/kv/greeting --data-binary 'hello, fleet'
  %s %s/kv/greeting
  %s %s/placement

The shards spread over the nodes as they start; the page shows it. Type
'add', 'deactivate n2', 'activate n2', 'kill n3', 'stop n3', 'start n3',
'status', 'help' or 'quit' and Enter. Ctrl-C stops the fleet, and running
the demo again restarts it.

`, first, curl, write, first, curl, last, curl, first)
}

// url is the base URL of a node's HTTP API.
func (d *demo) url(n demoNode) string { return d.scheme + n.HTTP }

// securityText says, in the banner, who can reach what.
func (d *demo) securityText() string {
	var raft string
	switch {
	case d.sec.Insecure:
		raft = "Raft connections: NOT authenticated (--insecure): anyone who can reach the Raft ports can act as a member."
	case d.sec.HasTLS() && d.sec.SecretFile != "":
		raft = fmt.Sprintf("Raft connections: mutual TLS (CA %s) and the secret in %s.", d.sec.TLSCA, d.sec.SecretFile)
	case d.sec.HasTLS():
		raft = fmt.Sprintf("Raft connections: mutual TLS (CA %s).", d.sec.TLSCA)
	default:
		raft = fmt.Sprintf("Raft connections: authenticated with the secret in %s.", d.sec.SecretFile)
	}
	host, _, _ := net.SplitHostPort(d.layout.Nodes[0].HTTP)
	api := fmt.Sprintf("HTTP API: open to whoever can reach %s, writes included (--api-token-file guards them).", host)
	if d.sec.TokenFile != "" {
		api = fmt.Sprintf("HTTP API: writes need the token in %s; reads are open.", d.sec.TokenFile)
	}
	return raft + "\n" + api
}

const demoCommands = "commands: add, deactivate ID, activate ID, kill ID, stop ID, start ID, status, help, quit"

// command runs one line typed by the user and reports whether to quit.
func (d *demo) command(line string) bool {
	f := strings.Fields(line)
	if len(f) == 0 {
		return false
	}
	verb, ids := f[0], f[1:]
	switch verb {
	case "quit", "exit", "q":
		return true
	case "status", "ps":
		d.status()
		return false
	case "help", "?":
		d.say("%s", demoCommands)
		return false
	case "add":
		if err := d.add(); err != nil {
			d.say("add: %v", err)
		}
		return false
	case "kill", "stop", "start", "activate", "deactivate":
	default:
		d.say("unknown command %q; %s", verb, demoCommands)
		return false
	}
	if len(ids) == 0 {
		d.say("%s which node? e.g. '%s n2'", verb, verb)
		return false
	}
	for _, id := range ids {
		if err := d.control(verb, id); err != nil {
			d.say("%s %s: %v", verb, id, err)
		}
	}
	return false
}

func (d *demo) control(verb, id string) error {
	n, ok := d.node(id)
	if !ok {
		return fmt.Errorf("no node %q (the nodes: %s)", id, d.ids())
	}
	switch verb {
	case "start":
		if err := d.start(id); err != nil {
			return err
		}
		d.say("started %s", id)
		return nil
	case "activate":
		// A node activates itself: only it knows its zone.
		if d.running(id) == nil {
			return fmt.Errorf("not running; 'start %s' starts it (a node activates itself when it starts)", id)
		}
		if err := d.post(n, "/activate"); err != nil {
			return err
		}
		d.say("activated %s: placement uses it again, and members move to it", id)
		return nil
	case "deactivate":
		// Any running node can deactivate another, even one that is down.
		via, ok := d.anyRunning(id)
		if !ok {
			return errors.New("no node is running to ask")
		}
		if err := d.post(via, "/deactivate?node="+n.Raft); err != nil {
			return err
		}
		d.say("deactivated %s: its members move to other nodes (watch the page); 'activate %s' undoes it", id, id)
		return nil
	}
	p := d.running(id)
	if p == nil {
		return fmt.Errorf("not running; 'start %s' starts it", id)
	}
	if verb == "kill" {
		if err := p.cmd.Process.Signal(demoKill); err != nil {
			return err
		}
		d.say("killed %s (pid %d) with SIGKILL", id, p.cmd.Process.Pid)
		return nil
	}
	d.mu.Lock()
	p.stopping = true
	d.mu.Unlock()
	resume(p.cmd.Process)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	d.say("stopped %s; 'start %s' starts it again", id, id)
	return nil
}

// anyRunning returns a running node, n itself first.
func (d *demo) anyRunning(prefer string) (demoNode, bool) {
	nodes := d.nodes()
	slices.SortStableFunc(nodes, func(a, b demoNode) int {
		if a.ID == prefer {
			return -1
		}
		if b.ID == prefer {
			return 1
		}
		return 0
	})
	for _, n := range nodes {
		if d.running(n.ID) != nil {
			return n, true
		}
	}
	return demoNode{}, false
}

func (d *demo) ids() string {
	var ids []string
	for _, n := range d.nodes() {
		ids = append(ids, n.ID)
	}
	return strings.Join(ids, ", ")
}

// post sends an (empty) POST to a node, with the API token if any.
func (d *demo) post(n demoNode, path string) error {
	req, err := http.NewRequest(http.MethodPost, d.url(n)+path, nil)
	if err != nil {
		return err
	}
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e node.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("%s answered %s: %s", n.ID, resp.Status, e.Message)
	}
	return nil
}

// add lays out a new node in the zone with the fewest nodes, on the ports
// after the highest in use, records it and starts it; it activates itself.
func (d *demo) add() error {
	nodes := d.nodes()
	count := map[string]int{}
	for _, z := range demoZones {
		count[z] = 0
	}
	maxRaft, maxHTTP := 0, 0
	for _, n := range nodes {
		count[n.Zone]++
		_, rp, _ := net.SplitHostPort(n.Raft)
		_, hp, _ := net.SplitHostPort(n.HTTP)
		r, _ := strconv.Atoi(rp)
		h, _ := strconv.Atoi(hp)
		maxRaft, maxHTTP = max(maxRaft, r), max(maxHTTP, h)
	}
	zone := ""
	for _, z := range slices.Sorted(maps.Keys(count)) {
		if zone == "" || count[z] < count[zone] {
			zone = z
		}
	}
	host, _, _ := net.SplitHostPort(nodes[0].Raft)
	id := fmt.Sprintf("n%d", len(nodes)+1)
	n := demoNode{ID: id, Zone: zone,
		Raft: net.JoinHostPort(host, strconv.Itoa(maxRaft+1)),
		HTTP: net.JoinHostPort(host, strconv.Itoa(maxHTTP+1)),
		Data: filepath.Join(d.dir, id)}
	if err := demoCheckPorts([]demoNode{n}, true, d.dir); err != nil {
		return err
	}
	d.mu.Lock()
	d.layout.Nodes = append(d.layout.Nodes, n)
	d.mu.Unlock()
	if err := d.start(id); err != nil {
		return err
	}
	if err := d.waitUp([]demoNode{n}, time.Minute); err != nil {
		return err
	}
	if err := d.saveLayout(); err != nil {
		return err
	}
	d.say("added %s in zone %s: web page and API %s/, raft %s; members move to it (watch the page)", id, zone, d.url(n), n.Raft)
	return nil
}

// status prints every node's state, from its own /status.
func (d *demo) status() {
	nodes := d.nodes()
	lines := make([]string, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			p := d.running(n.ID)
			if p == nil {
				lines[i] = fmt.Sprintf("%-3s zone %-2s not running", n.ID, n.Zone)
				return
			}
			var st node.Status
			resp, err := d.hc.Get(d.url(n) + "/status")
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&st)
				resp.Body.Close()
			}
			if err != nil {
				lines[i] = fmt.Sprintf("%-3s zone %-2s pid %-7d does not answer: %v", n.ID, n.Zone, p.cmd.Process.Pid, err)
				return
			}
			moves := 0
			for _, m := range st.Reconciler.InFlight {
				if m.Kind != "record" { // a routing hint, not a move
					moves++
				}
			}
			state := st.State
			if !st.Ready {
				state += " (starting: " + st.SetupError + ")"
			}
			lines[i] = fmt.Sprintf("%-3s zone %-2s pid %-7d %-13s replicas %4d  leaders %4d  moves in flight %2d  owned %d, converged %d   %s/",
				n.ID, n.Zone, p.cmd.Process.Pid, state, st.Replicas, st.Leaders, moves, st.Reconciler.Owned, st.Reconciler.Converged, d.url(n))
		})
	}
	wg.Wait()
	for _, l := range lines {
		d.say("%s", l)
	}
}

// stopAll asks every running node to stop (SIGTERM, after SIGCONT for a
// frozen one), waits for them, and kills those that take too long.
func (d *demo) stopAll() {
	d.mu.Lock()
	var running []*demoProc
	for _, p := range d.procs {
		select {
		case <-p.done:
		default:
			p.stopping = true
			running = append(running, p)
		}
	}
	d.mu.Unlock()
	for _, p := range running {
		resume(p.cmd.Process)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(20 * time.Second)
	for _, p := range running {
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	d.say("all nodes stopped; run the demo again to restart the fleet with its data")
}

func readLines(r io.Reader, out chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out <- sc.Text()
	}
	close(out)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
