package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/internal/creds"
	"github.com/rago-raft/rago/examples/internal/demoproc"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/node"
)

const demoHelp = `
Runs a cluster of three nodes (--nodes) on this machine, each a child process
of this one with its own data directory under --data, Raft port and HTTP
port. Their logs are streamed here, prefixed by node. Ctrl-C stops them all.
Running the demo again restarts the same cluster with its data.

While it runs, type a command and Enter to break things:

	kill n2     SIGKILL the node: its peers see it go at once
	stop n2     SIGSTOP (freeze) it: its connections stay open, its silence gives it away
	cont n2     SIGCONT: let a frozen node go on
	start n2    start a node that is not running
	ps          list the nodes and their process ids
	quit        stop everything (like Ctrl-C)

Or use kill -9 / kill -STOP on the process ids from another terminal.

The nodes' Raft connections are authenticated: the first run writes a random
secret to cluster.secret in --data (mode 0600) and every node gets it with
--secret-file. --secret-file uses another one, --tls-ca, --tls-cert and
--tls-key (a certificate valid for --host; see 'kvstore certs') switch to
mutual TLS and HTTPS, and --insecure runs without authentication. The HTTP
API is open to whoever reaches --host, writes included, unless
--api-token-file gives the nodes a token.`

// demoLayout is the cluster the demo runs, saved in --data so that a
// second run restarts the same nodes on the same addresses (a node's Raft
// address is its identity).
type demoLayout struct {
	Nodes []demoNode `json:"nodes"`
}

type demoNode struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
	Data string `json:"data"`
}

const layoutFile = "demo.json"

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("demo", stderr, demoHelp)
	data := fs.String("data", "kvstore-data", "`directory` for the nodes' data and the demo's layout")
	host := fs.String("host", "127.0.0.1", "`address` the nodes listen on")
	raftPort := fs.Int("raft-port", 7001, "Raft `port` of the first node; the others follow")
	httpPort := fs.Int("http-port", 8001, "HTTP `port` of the first node; the others follow")
	nodes := fs.Int("nodes", 3, "how many nodes (3 survives one failure, 5 two)")
	logLevel := fs.String("log-level", "info", "the nodes' log `level`")
	var sec securityFlags
	sec.register(fs)
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	if *nodes < 1 || *nodes > 9 {
		return cli.Usagef("--nodes %d: use 1 to 9", *nodes)
	}
	// Secure by default: without credentials or --insecure, the nodes get
	// the demo's own secret, made once the ports are known to be free.
	ownSecret := !sec.Insecure && sec.SecretFile == "" && !sec.HasTLS()
	if ownSecret {
		sec.SecretFile = filepath.Join(*data, creds.DemoSecretFile)
	}
	if err := sec.check(); err != nil {
		return err
	}
	layout, fresh, err := demoLoadLayout(*data, *host, *raftPort, *httpPort, *nodes)
	if err != nil {
		return err
	}
	if !fresh {
		changed := false
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "host", "raft-port", "http-port", "nodes":
				changed = true
			}
		})
		if changed {
			fmt.Fprintf(stderr, "note: %s holds a cluster already; it keeps its addresses, and --host, --raft-port, --http-port and --nodes are ignored (use another --data for a new cluster)\n",
				filepath.Join(*data, layoutFile))
		}
	}
	ports := make([]demoproc.Ports, len(layout.Nodes))
	for i, n := range layout.Nodes {
		ports[i] = demoproc.Ports{ID: n.ID, Raft: n.Raft, HTTP: n.HTTP}
	}
	if err := demoproc.CheckPorts(ports, fresh, filepath.Join(*data, layoutFile), "cluster"); err != nil {
		return err
	}
	if ownSecret {
		if err := creds.MakeDemoSecret(sec.SecretFile); err != nil {
			return err
		}
	}
	// Read and check the files once here, so that a mistake is reported
	// once and before any node starts, rather than by each node.
	if err := sec.apply(&node.Config{}, nil); err != nil {
		return err
	}
	opts, err := sec.clientOptions(nil)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find this program to start the nodes: %w", err)
	}
	d := &demo{layout: layout, exe: exe, logLevel: *logLevel, sec: sec, sup: demoproc.New(stdout)}
	d.scheme = "http://"
	d.hc = &http.Client{Timeout: time.Second}
	if sec.HasTLS() && !sec.InsecureHTTP {
		d.scheme = "https://"
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
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
	if err := d.waitUp(time.Minute); err != nil {
		d.stopAll()
		return err
	}
	if fresh {
		// Recorded only now: a layout whose nodes never started must not
		// pin the next run to its addresses.
		if err := demoSaveLayout(*data, layout); err != nil {
			d.stopAll()
			return err
		}
	}
	// The banner invites a write: show it once the cluster can take one.
	if !d.waitLeader(30 * time.Second) {
		d.sup.Say("the nodes answer but have elected no leader yet; writes answer 503 until they do (their logs above say why)")
	}
	d.banner(fresh)

	d.sup.Prompt(sig, os.Stdin, d.command)
	d.stopAll()
	return nil
}

func demoLoadLayout(dir, host string, raftPort, httpPort, count int) (demoLayout, bool, error) {
	path := filepath.Join(dir, layoutFile)
	b, err := os.ReadFile(path)
	if err == nil {
		var l demoLayout
		if err := json.Unmarshal(b, &l); err != nil || len(l.Nodes) == 0 {
			return l, false, fmt.Errorf("%s does not hold a demo layout (%v); remove it or use another --data", path, err)
		}
		return l, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return demoLayout{}, false, err
	}
	var l demoLayout
	for i := range count {
		id := fmt.Sprintf("n%d", i+1)
		l.Nodes = append(l.Nodes, demoNode{
			ID:   id,
			Raft: net.JoinHostPort(host, strconv.Itoa(raftPort+i)),
			HTTP: net.JoinHostPort(host, strconv.Itoa(httpPort+i)),
			Data: filepath.Join(dir, id),
		})
	}
	return l, true, nil
}

// demoSaveLayout records the layout of a cluster that started, so that
// the next run restarts the same nodes.
func demoSaveLayout(dir string, l demoLayout) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(l, "", "  ")
	return os.WriteFile(filepath.Join(dir, layoutFile), append(b, '\n'), 0o644)
}

// demo runs the nodes of a layout as child processes.
type demo struct {
	layout   demoLayout
	exe      string
	logLevel string
	// sec are the credentials every node gets; scheme and hc are how the
	// demo itself talks to the nodes' HTTP API (https:// with TLS).
	sec    securityFlags
	scheme string
	hc     *http.Client
	sup    *demoproc.Supervisor
}

func (d *demo) node(id string) (demoNode, bool) {
	for _, n := range d.layout.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return demoNode{}, false
}

func (d *demo) peers() string {
	var ps []string
	for _, n := range d.layout.Nodes {
		ps = append(ps, n.ID+"="+n.Raft)
	}
	return strings.Join(ps, ",")
}

// start starts node id as a child process running "serve".
func (d *demo) start(id string) error {
	n, ok := d.node(id)
	if !ok {
		return fmt.Errorf("no node %q in this demo", id)
	}
	args := []string{"serve", "--id", n.ID, "--raft", n.Raft, "--http", n.HTTP, "--data", n.Data,
		"--peers", d.peers(), "--log-level", d.logLevel}
	return d.sup.Start(id, d.exe, append(args, d.sec.args()...), []string{parentEnv + "=" + strconv.Itoa(os.Getpid())})
}

// waitUp waits until every node's HTTP API answers, and fails as soon as
// one of them exits instead.
func (d *demo) waitUp(limit time.Duration) error {
	var nodes []demoproc.Endpoint
	for _, n := range d.layout.Nodes {
		nodes = append(nodes, demoproc.Endpoint{ID: n.ID, URL: d.url(n)})
	}
	return d.sup.WaitUp(d.hc, limit, nodes...)
}

// waitLeader waits until a node says it leads, and reports whether one
// did within limit. It gives up early when a node exits: the main loop
// reports that.
func (d *demo) waitLeader(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, n := range d.layout.Nodes {
			select {
			case <-d.sup.Proc(n.ID).Done():
				return false
			default:
			}
			var st api.Status
			resp, err := d.hc.Get(d.url(n) + "/status")
			if err != nil {
				continue
			}
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if err == nil && st.Role == "leader" && st.Leader == st.ID {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (d *demo) banner(fresh bool) {
	pids := map[string]int{}
	for _, n := range d.layout.Nodes {
		if p := d.sup.Proc(n.ID); p != nil {
			pids[n.ID] = p.Pid()
		}
	}
	d.sup.Print(func(w io.Writer) { d.printBanner(w, fresh, pids) })
}

func (d *demo) printBanner(w io.Writer, fresh bool, pids map[string]int) {
	what := "Started"
	if !fresh {
		what = "Restarted"
	}
	fmt.Fprintf(w, "\n%s a kvstore cluster of %d nodes (data in %s):\n\n", what, len(d.layout.Nodes), filepath.Dir(d.layout.Nodes[0].Data))
	for _, n := range d.layout.Nodes {
		fmt.Fprintf(w, "  %-3s  web page and API  %s/   raft %s   pid %d\n", n.ID, d.url(n), n.Raft, pids[n.ID])
	}
	fmt.Fprintf(w, "\n%s\n", d.securityText())
	first := d.url(d.layout.Nodes[0])
	curl, write, client := "curl", "", "go run ./examples/kvstore status"
	if d.scheme == "https://" {
		curl += " --cacert " + d.sec.TLSCA
		client += " --tls-ca " + d.sec.TLSCA
	}
	if d.sec.TokenFile != "" {
		write = ` -H "Authorization: Bearer $(cat ` + d.sec.TokenFile + `)"`
	}
	fmt.Fprintf(w, `
Open %s/ in a browser, then try:

  %s -X PUT%s %s/kv/greeting --data-binary 'hello, raft'
  %s %s/kv/greeting
  %s     (or type 'ps' here)

Type 'kill n1' (or 'stop', 'cont', 'start', 'ps', 'quit') and Enter to break
things; Ctrl-C stops the cluster, and running the demo again restarts it.

`, first, curl, write, first, curl, d.url(d.layout.Nodes[len(d.layout.Nodes)-1]), client)
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
		api = fmt.Sprintf("HTTP API: writes and admin endpoints need the token in %s; reads are open.", d.sec.TokenFile)
	}
	if d.scheme == "https://" {
		api += fmt.Sprintf(" HTTPS with the nodes' certificates: trust %s.", d.sec.TLSCA)
	}
	return raft + "\n" + api
}

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
	case "ps", "status":
		d.ps()
		return false
	case "help", "?":
		d.sup.Say("commands: kill ID, stop ID, cont ID, start ID, ps, quit")
		return false
	case "kill", "stop", "cont", "start":
	default:
		d.sup.Say("unknown command %q; try: kill n1, stop n1, cont n1, start n1, ps, quit", verb)
		return false
	}
	if len(ids) == 0 {
		d.sup.Say("%s which node? e.g. '%s n1'", verb, verb)
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
	if verb == "start" {
		if err := d.start(id); err != nil {
			return err
		}
		d.sup.Say("started %s", id)
		return nil
	}
	p := d.sup.Proc(id)
	if p == nil {
		return fmt.Errorf("no node %q", id)
	}
	select {
	case <-p.Done():
		return fmt.Errorf("not running; 'start %s' starts it", id)
	default:
	}
	sig, err := demoSignal(verb)
	if err != nil {
		return err
	}
	if err := p.Signal(sig); err != nil {
		return err
	}
	switch verb {
	case "stop":
		d.sup.Say("froze %s (pid %d): its connections stay open, but its peers will notice its silence; 'cont %s' resumes it", id, p.Pid(), id)
	case "cont":
		d.sup.Say("resumed %s", id)
	case "kill":
		d.sup.Say("killed %s (pid %d) with SIGKILL", id, p.Pid())
	}
	return nil
}

func (d *demo) ps() {
	for _, n := range d.layout.Nodes {
		state := "not running"
		if p := d.sup.Running(n.ID); p != nil {
			state = fmt.Sprintf("pid %d", p.Pid())
		}
		d.sup.Say("%-3s %-14s http://%s/", n.ID, state, n.HTTP)
	}
}

// stopAll stops every running node, in order, and says so.
func (d *demo) stopAll() {
	d.sup.StopAll()
	d.sup.Say("all nodes stopped; run the demo again to restart the cluster with its data")
}
