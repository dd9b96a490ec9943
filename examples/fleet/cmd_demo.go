package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rago-raft/rago/examples/fleet/internal/node"
	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/internal/creds"
	"github.com/rago-raft/rago/examples/internal/demoproc"
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
		sec.SecretFile = filepath.Join(*data, creds.DemoSecretFile)
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
		if err := creds.MakeDemoSecret(sec.SecretFile); err != nil {
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
		sup: demoproc.New(stdout)}
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

	sig, stopSignals := demoproc.Signals()
	defer stopSignals()

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

	d.sup.Prompt(sig, os.Stdin, d.command)
	d.stopAll()
	return nil
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
// starts.
func demoCheckPorts(nodes []demoNode, fresh bool, dir string) error {
	ports := make([]demoproc.Ports, len(nodes))
	for i, n := range nodes {
		ports[i] = demoproc.Ports{ID: n.ID, Raft: n.Raft, HTTP: n.HTTP}
	}
	return demoproc.CheckPorts(ports, fresh, filepath.Join(dir, layoutFile), "fleet")
}

// demo runs the nodes of a layout as child processes.
type demo struct {
	dir      string
	exe      string
	logLevel string
	// sec are the credentials every node gets, token the API token the
	// demo sends with its own POSTs; scheme and hc are how the demo talks
	// to the nodes' HTTP API.
	sec    creds.Flags
	token  string
	scheme string
	hc     *http.Client
	sup    *demoproc.Supervisor

	mu     sync.Mutex
	layout demoLayout // grows with add
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

// start starts node id as a child process running "serve".
func (d *demo) start(id string) error {
	n, ok := d.node(id)
	if !ok {
		return fmt.Errorf("no node %q in this demo", id)
	}
	d.mu.Lock()
	args := []string{"serve", "--id", n.ID, "--zone", n.Zone, "--raft", n.Raft, "--http", n.HTTP, "--data", n.Data,
		"--seeds", strings.Join(d.layout.Seeds, ","), "--shards", strconv.Itoa(d.layout.Shards), "--log-level", d.logLevel}
	d.mu.Unlock()
	return d.sup.Start(id, d.exe, append(args, d.sec.Args()...), []string{parentEnv + "=" + strconv.Itoa(os.Getpid())})
}

// waitUp waits until the nodes' HTTP APIs answer, and fails as soon as
// one of them exits instead.
func (d *demo) waitUp(nodes []demoNode, limit time.Duration) error {
	var eps []demoproc.Endpoint
	for _, n := range nodes {
		eps = append(eps, demoproc.Endpoint{ID: n.ID, URL: d.url(n)})
	}
	return d.sup.WaitUp(d.hc, limit, eps...)
}

func (d *demo) banner(fresh bool) {
	nodes := d.nodes()
	d.sup.Print(func(w io.Writer) { d.printBanner(w, fresh, nodes) })
}

// printBanner writes the banner; the nodes' output waits meanwhile.
func (d *demo) printBanner(w io.Writer, fresh bool, nodes []demoNode) {
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
		d.sup.Say("%s", demoCommands)
		return false
	case "add":
		if err := d.add(); err != nil {
			d.sup.Say("add: %v", err)
		}
		return false
	case "kill", "stop", "start", "activate", "deactivate":
	default:
		d.sup.Say("unknown command %q; %s", verb, demoCommands)
		return false
	}
	if len(ids) == 0 {
		d.sup.Say("%s which node? e.g. '%s n2'", verb, verb)
		return false
	}
	for _, id := range ids {
		if err := d.control(verb, id); err != nil {
			d.sup.Say("%s %s: %v", verb, id, err)
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
		d.sup.Say("started %s", id)
		return nil
	case "activate":
		// A node activates itself: only it knows its zone.
		if d.sup.Running(id) == nil {
			return fmt.Errorf("not running; 'start %s' starts it (a node activates itself when it starts)", id)
		}
		if err := d.post(n, "/activate"); err != nil {
			return err
		}
		d.sup.Say("activated %s: placement uses it again, and members move to it", id)
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
		d.sup.Say("deactivated %s: its members move to other nodes (watch the page); 'activate %s' undoes it", id, id)
		return nil
	}
	p := d.sup.Running(id)
	if p == nil {
		return fmt.Errorf("not running; 'start %s' starts it", id)
	}
	if verb == "kill" {
		if err := p.Kill(); err != nil {
			return err
		}
		d.sup.Say("killed %s (pid %d) with SIGKILL", id, p.Pid())
		return nil
	}
	if err := d.sup.Stop(p); err != nil {
		return err
	}
	d.sup.Say("stopped %s; 'start %s' starts it again", id, id)
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
		if d.sup.Running(n.ID) != nil {
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
	d.sup.Say("added %s in zone %s: web page and API %s/, raft %s; members move to it (watch the page)", id, zone, d.url(n), n.Raft)
	return nil
}

// status prints every node's state, from its own /status.
func (d *demo) status() {
	nodes := d.nodes()
	lines := make([]string, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			p := d.sup.Running(n.ID)
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
				lines[i] = fmt.Sprintf("%-3s zone %-2s pid %-7d does not answer: %v", n.ID, n.Zone, p.Pid(), err)
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
				n.ID, n.Zone, p.Pid(), state, st.Replicas, st.Leaders, moves, st.Reconciler.Owned, st.Reconciler.Converged, d.url(n))
		})
	}
	wg.Wait()
	for _, l := range lines {
		d.sup.Say("%s", l)
	}
}

// stopAll stops every running node, in order, and says so.
func (d *demo) stopAll() {
	d.sup.StopAll()
	d.sup.Say("all nodes stopped; run the demo again to restart the fleet with its data")
}
