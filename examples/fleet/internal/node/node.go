// Package node runs one node of the fleet example: a rago system, its
// fleet agent, the shards of the key-value store that placement gives it,
// and the HTTP API and web page.
//
// Every node runs the same code. On start it joins placement (Activate),
// adds every shard group the books do not hold yet (any node may: a group
// added twice is refused as existing), and records its HTTP address in the
// fleet's directory, a small group of its own, so that any node's page can
// show every node's reconciler.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/examples/fleet/internal/shard"
	"github.com/rago-raft/rago/examples/internal/creds"
	"github.com/rago-raft/rago/examples/internal/nodedir"
	"github.com/rago-raft/rago/examples/internal/web"
	"github.com/rago-raft/rago/fleet"
	"github.com/rago-raft/rago/raftserver"
)

// Defaults and bounds of Config.
const (
	DefaultShards         = 500
	MaxShards             = 10000
	DefaultReplicas       = 3
	DefaultRequestTimeout = 5 * time.Second
	DefaultMaxValueBytes  = 1 << 20
)

// DirectoryGroup is the group that maps node names to their HTTP
// addresses and ids: a map like the shards, under keys "node/<raft>".
const DirectoryGroup = "directory"

// ErrConfig reports a configuration that cannot work; the message says
// which flag to change.
var ErrConfig = errors.New("fleetkv: invalid configuration")

// ErrShardCount: the fleet's shards were created with another count than
// this node's --shards; keys would go to other shards than on the nodes
// that wrote them.
var ErrShardCount = errors.New("fleetkv: the fleet has another shard count")

// Config configures a node.
type Config struct {
	// ID is the node's short name for people (n1); the fleet knows the
	// node by its Raft address.
	ID string
	// RaftAddr is the host:port of the node's rago transport, its name in
	// the fleet: keep it across restarts.
	RaftAddr string
	// HTTPAddr is the host:port the HTTP API listens on.
	HTTPAddr string
	// DataDir holds the node's data.
	DataDir string
	// Zone is the node's failure domain; a group's members go to distinct
	// zones while there are enough.
	Zone string
	// Seeds are the Raft addresses of the nodes that host the fleet's
	// books: the same list on every node.
	Seeds []string
	// Shards is how many shard groups the store has: the same on every
	// node, fixed when the first node adds them.
	Shards int
	// Replicas is each shard's member count.
	Replicas int
	// Activate joins placement at start (and after a deactivation: a
	// node started again takes members again). Off, the node only serves
	// requests until POST /activate.
	Activate bool
	// RequestTimeout bounds the fleet part of one HTTP request.
	RequestTimeout time.Duration
	// MaxValueBytes bounds a value.
	MaxValueBytes int
	// Fleet tunes the agent (System, Zone, Seeds and Logger are set here).
	Fleet fleet.Config
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger

	// Credentials: see creds.Credentials. A config without ClusterSecret
	// or TLS is refused unless Insecure.
	ClusterSecret []byte
	TLS           *actor.TLSConfig
	HTTPS         bool
	Insecure      bool
	APIToken      string
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *Config) fill() error {
	if !idPattern.MatchString(c.ID) {
		return fmt.Errorf("%w: --id %q: use 1-64 letters, digits, - and _", ErrConfig, c.ID)
	}
	if err := nodedir.CheckAddress(c.RaftAddr); err != nil {
		return fmt.Errorf("%w: --raft: %v", ErrConfig, err)
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return fmt.Errorf("%w: --http %q is not host:port: %v", ErrConfig, c.HTTPAddr, err)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: --data is required", ErrConfig)
	}
	if len(c.Seeds) == 0 {
		return fmt.Errorf("%w: --seeds is required: the Raft addresses of the 3 (or 5) nodes that keep the fleet's books, the same on every node", ErrConfig)
	}
	for _, s := range c.Seeds {
		if err := nodedir.CheckAddress(s); err != nil {
			return fmt.Errorf("%w: --seeds: %v", ErrConfig, err)
		}
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.Shards < 1 || c.Shards > MaxShards {
		return fmt.Errorf("%w: --shards %d is outside 1..%d", ErrConfig, c.Shards, MaxShards)
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Replicas < 1 || c.Replicas > 9 {
		return fmt.Errorf("%w: --replicas %d is outside 1..9", ErrConfig, c.Replicas)
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxValueBytes <= 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	hasCreds := c.ClusterSecret != nil || c.TLS != nil
	switch {
	case !hasCreds && !c.Insecure:
		return fmt.Errorf("%w: no credentials for the Raft port: give --secret-file, or --tls-ca, --tls-cert and --tls-key, or --insecure to accept anyone who can reach %s", ErrConfig, c.RaftAddr)
	case hasCreds && c.Insecure:
		return fmt.Errorf("%w: --insecure contradicts the credentials given (--secret-file or --tls-*): drop one", ErrConfig)
	case c.HTTPS && c.TLS == nil:
		return fmt.Errorf("%w: HTTPS uses the node's TLS certificate: give --tls-ca, --tls-cert and --tls-key", ErrConfig)
	}
	if c.APIToken != "" {
		if err := creds.CheckAPIToken(c.APIToken); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	return nil
}

// ParseSeeds parses a comma-separated list of Raft addresses.
func ParseSeeds(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// Node is a running node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	sys     *raftserver.System
	agent   *fleet.Agent
	client  *fleet.Client
	started time.Time
	token   creds.Token

	httpURL  string
	listener net.Listener
	server   *http.Server
	https    *creds.HTTPSCert
	metrics  http.Handler
	// peers fetches other nodes' /status for the placement view.
	peers *http.Client

	report reportCache

	mu       sync.Mutex
	ready    bool   // the setup finished: active (if asked), shards added, registered
	setupErr string // the setup's latest failure, while it retries

	stopCtx context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// Start starts a node: its rago system (which restarts the members found
// in DataDir), the fleet agent, and the HTTP server. It returns once the
// HTTP server listens; joining placement and adding the shards go on in
// the background (GET /status says when they are done).
func Start(cfg Config) (_ *Node, err error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	// An unwritable --data, or one that holds another node's data.
	if err := nodedir.Claim(cfg.DataDir, cfg.ID, cfg.RaftAddr); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), started: time.Now(), token: creds.NewToken(cfg.APIToken)}
	n.stopCtx, n.stop = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.stop()
			if n.agent != nil {
				n.agent.Stop()
			}
			if n.sys != nil {
				_ = n.sys.Stop()
			}
		}
	}()
	if cfg.HTTPS {
		if n.https, err = creds.NewHTTPSCert(cfg.TLS, n.log); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	n.peers, err = peerClient(cfg)
	if err != nil {
		return nil, err
	}
	n.sys, err = raftserver.StartSystem(raftserver.SystemConfig{
		DataDir:  filepath.Join(cfg.DataDir, "raft"),
		Address:  cfg.RaftAddr,
		Machines: fleet.Machines(map[string]raftserver.MachineFactory{shard.Kind: shard.Factory}),
		Logger:   cfg.Logger,
		Node:     actor.Config{TLS: cfg.TLS, ClusterSecret: cfg.ClusterSecret},
	})
	if err != nil {
		return nil, fmt.Errorf("start the rago node at %s: %w", cfg.RaftAddr, err)
	}
	fc := cfg.Fleet
	fc.System, fc.Zone, fc.Seeds, fc.Logger = n.sys, cfg.Zone, cfg.Seeds, cfg.Logger
	if n.agent, err = fleet.Start(fc); err != nil {
		return nil, fmt.Errorf("start the fleet agent: %w", err)
	}
	n.client = n.agent.Client()
	n.metrics = web.Metrics(n.sys, true) // hundreds of clusters: summed over them

	n.listener, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for HTTP on %s: %w", cfg.HTTPAddr, err)
	}
	scheme := "http://"
	if cfg.HTTPS {
		scheme = "https://"
	}
	n.httpURL = scheme + n.listener.Addr().String()
	n.server = &http.Server{
		Handler:           n.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	if cfg.HTTPS {
		n.server.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: n.https.Get}
		n.https.WarnUncovered(n.httpURL, n.log)
	}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		var err error
		if cfg.HTTPS {
			err = n.server.ServeTLS(n.listener, "", "")
		} else {
			err = n.server.Serve(n.listener)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("HTTP server failed", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		n.setup(n.stopCtx)
	}()
	n.log.Info("node started", "raft", n.sys.Name(), "http", n.httpURL, "zone", cfg.Zone, "data", cfg.DataDir,
		"raft_auth", creds.RaftAuth(cfg.ClusterSecret, cfg.TLS), "api_token", cfg.APIToken != "")
	if cfg.Insecure {
		n.log.Warn("the Raft port is not authenticated (--insecure): anyone who can reach it can act as a member of the fleet", "raft", n.sys.Name())
	}
	if cfg.APIToken != "" && !cfg.HTTPS && !creds.IsLoopback(n.listener.Addr()) {
		n.log.Warn("the API token travels in clear text over plain HTTP on a non-loopback address; use --tls-* for HTTPS", "http", n.httpURL)
	}
	return n, nil
}

// peerClient is how a node asks its peers for their /status: HTTPS nodes
// trust the cluster's CA, which signs every node's certificate.
func peerClient(cfg Config) (*http.Client, error) {
	hc := &http.Client{Timeout: time.Second}
	if cfg.HTTPS && cfg.TLS.CAFile != "" {
		pem, err := os.ReadFile(cfg.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: --tls-ca: %w", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		hc.Transport = t
	}
	return hc, nil
}

// setup joins placement, adds the missing shards and registers this
// node's address, retrying each step until it succeeds or the node stops:
// the books need a quorum of the seeds, which may still be starting.
func (n *Node) setup(ctx context.Context) {
	steps := []struct {
		what string
		do   func(context.Context) error
	}{
		{"join placement", n.activateAtStart},
		{"add the shards", n.ensureShards},
		{"register in the directory", n.register},
	}
	backoff := 200 * time.Millisecond
	for _, s := range steps {
		for {
			sctx, cancel := context.WithTimeout(ctx, max(n.cfg.RequestTimeout, 10*time.Second))
			err := s.do(sctx)
			cancel()
			if err == nil {
				break
			}
			if errors.Is(err, ErrShardCount) {
				// Not a passing condition: keys would be misrouted. The
				// node serves nothing but says why.
				n.log.Error("refusing to serve the store", "err", err)
				n.setFailure(err.Error())
				return
			}
			n.setFailure(fmt.Sprintf("%s: %v", s.what, err))
			n.log.Debug("setup step will be retried", "step", s.what, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
	n.mu.Lock()
	n.ready, n.setupErr = true, ""
	n.mu.Unlock()
	n.log.Info("node ready: in placement, shards added, registered", "shards", n.cfg.Shards)
}

func (n *Node) setFailure(msg string) {
	n.mu.Lock()
	n.setupErr = msg
	n.mu.Unlock()
}

func (n *Node) activateAtStart(ctx context.Context) error {
	if !n.cfg.Activate {
		return nil
	}
	return n.agent.Activate(ctx)
}

// ensureShards adds every shard group the books do not hold, after
// checking that the shards already there were made for the same count.
func (n *Node) ensureShards(ctx context.Context) error {
	b, err := n.agent.Books(ctx)
	if err != nil {
		return err
	}
	if g := b.Groups[shard.Name(0)]; g != nil {
		c, err := shard.ParseConfig(g.Machine.Config)
		if err != nil {
			return err
		}
		if c.Shards != n.cfg.Shards {
			return fmt.Errorf("%w: its shards were made for %d, this node has --shards %d", ErrShardCount, c.Shards, n.cfg.Shards)
		}
	}
	if len(b.ActiveNodes()) == 0 {
		return fleet.ErrNoActiveNodes // wait for a node to activate
	}
	want := []fleet.GroupSpec{{Name: DirectoryGroup, Machine: raftserver.MachineSpec{Kind: shard.Kind}, Replicas: 3}}
	for i := range n.cfg.Shards {
		want = append(want, fleet.GroupSpec{Name: shard.Name(i), Machine: shard.Spec(i, n.cfg.Shards), Replicas: n.cfg.Replicas})
	}
	added := 0
	for _, g := range want {
		if b.Groups[g.Name] != nil {
			continue
		}
		if err := n.agent.AddGroup(ctx, g); err != nil && !errors.Is(err, fleet.ErrGroupExists) {
			return fmt.Errorf("add %s: %w", g.Name, err)
		}
		added++
	}
	if added > 0 {
		n.log.Info("added shard groups to the books", "added", added)
	}
	return nil
}

// DirectoryEntry is what the directory holds of a node, under
// "node/<raft address>".
type DirectoryEntry struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
	Zone string `json:"zone"`
}

func (n *Node) register(ctx context.Context) error {
	me := DirectoryEntry{ID: n.cfg.ID, HTTP: n.httpURL, Zone: n.cfg.Zone}
	key := "node/" + n.sys.Name()
	if dir, err := n.directory(ctx); err == nil && dir[n.sys.Name()] == me {
		return nil
	}
	v, _ := json.Marshal(me)
	_, err := n.process(ctx, DirectoryGroup, shard.Command{Op: shard.OpPut, Key: key, Value: v})
	return err
}

// directory reads every node's entry, by Raft address, from the
// directory's leader.
func (n *Node) directory(ctx context.Context) (map[string]DirectoryEntry, error) {
	a, err := n.query(ctx, DirectoryGroup, shard.Query{Op: shard.OpList, Prefix: "node/"}, raftserver.QueryLeader)
	if err != nil {
		return nil, err
	}
	out := map[string]DirectoryEntry{}
	for _, it := range a.Items {
		var e DirectoryEntry
		if json.Unmarshal(it.Value, &e) == nil {
			out[strings.TrimPrefix(it.Key, "node/")] = e
		}
	}
	return out, nil
}

// process sends a command to group through the fleet client.
func (n *Node) process(ctx context.Context, group string, c shard.Command) (shard.Result, error) {
	b, _ := json.Marshal(c)
	reply, err := n.client.Process(ctx, group, b)
	if err != nil {
		return shard.Result{}, err
	}
	var r shard.Result
	if err := json.Unmarshal(reply, &r); err != nil {
		return r, fmt.Errorf("%w: the shard's reply does not decode: %v", raftserver.ErrMachine, err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("%w: %s", shard.ErrInvalid, r.Error)
	}
	return r, nil
}

// query runs q on group's machine.
func (n *Node) query(ctx context.Context, group string, q shard.Query, kind raftserver.QueryKind) (shard.Answer, error) {
	b, _ := json.Marshal(q)
	reply, err := n.client.Query(ctx, group, kind, b)
	if err != nil {
		return shard.Answer{}, err
	}
	var a shard.Answer
	if err := json.Unmarshal(reply, &a); err != nil {
		return a, fmt.Errorf("%w: the shard's answer does not decode: %v", raftserver.ErrMachine, err)
	}
	return a, nil
}

// HTTPURL returns the URL of the node's HTTP API.
func (n *Node) HTTPURL() string { return n.httpURL }

// Agent returns the node's fleet agent.
func (n *Node) Agent() *fleet.Agent { return n.agent }

// Stop stops the HTTP server (waiting for requests in flight up to ctx),
// the setup, the agent and the rago system.
func (n *Node) Stop(ctx context.Context) error {
	n.stop()
	var errs []error
	if err := n.server.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("HTTP shutdown: %w", err))
	}
	n.wg.Wait()
	n.agent.Stop()
	if err := n.sys.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("rago shutdown: %w", err))
	}
	n.log.Info("node stopped")
	return errors.Join(errs...)
}
