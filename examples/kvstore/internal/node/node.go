// Package node runs one kvstore node: a rago system with the kv machine,
// the member of the "kv" cluster that lives on it, the HTTP API and the web
// page, and a watcher that probes every member for the page and for the
// early no-quorum answer.
//
// Every node runs the same code. A node that starts for the first time
// with a peer list starts its own member with the whole list as the initial
// configuration; the members then elect a leader among themselves, so
// there is no coordinator and no race when all nodes start at once. A node
// that starts again finds its member in its data directory (rago restarts
// it) and rejoins. A node that joins a running cluster starts its member
// with no configuration and asks a running node to add it.
package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rago-raft/rago/actor"
	"github.com/rago-raft/rago/examples/internal/creds"
	"github.com/rago-raft/rago/examples/internal/nodedir"
	"github.com/rago-raft/rago/examples/internal/web"
	"github.com/rago-raft/rago/examples/kvstore/internal/kv"
	"github.com/rago-raft/rago/raftserver"
)

// ClusterName is the name of the one Raft cluster of the example.
const ClusterName = "kv"

// Defaults of Config.
const (
	DefaultMaxValueBytes  = 1 << 20
	DefaultRequestTimeout = 5 * time.Second
	DefaultProbeInterval  = time.Second
	// MaxValueLimit bounds MaxValueBytes: a value travels base64-encoded
	// inside one message between nodes, and rago's transport refuses
	// messages over 16 MiB.
	MaxValueLimit = 8 << 20
)

// ErrConfig reports a configuration that cannot work; the message says
// which flag to change.
var ErrConfig = errors.New("kvstore: invalid configuration")

// Peer is a member of the initial configuration: a node id and its Raft
// address.
type Peer struct {
	ID   string
	Raft string
}

// ParsePeers parses "n1=127.0.0.1:7001,n2=127.0.0.1:7002".
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%w: peer %q is not id=host:port", ErrConfig, part)
		}
		if err := kv.ValidateNodeID(id); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		if err := nodedir.CheckAddress(addr); err != nil {
			return nil, fmt.Errorf("%w: peer %s: %v", ErrConfig, id, err)
		}
		if seen[id] || seen["@"+addr] {
			return nil, fmt.Errorf("%w: peer %s or address %s appears twice", ErrConfig, id, addr)
		}
		seen[id], seen["@"+addr] = true, true
		out = append(out, Peer{ID: id, Raft: addr})
	}
	return out, nil
}

// Config configures a node.
type Config struct {
	// ID names the node; it is also the name of its Raft server.
	ID string
	// RaftAddr is the host:port of the node's rago transport. It is the
	// node's identity in the cluster: keep it across restarts.
	RaftAddr string
	// HTTPAddr is the host:port the HTTP API listens on.
	HTTPAddr string
	// AdvertiseHTTP is the URL other nodes and the web page use for this
	// node; default "http://" + the listener's address.
	AdvertiseHTTP string
	// DataDir holds the node's data. A node restarted with the same
	// directory rejoins its cluster.
	DataDir string
	// Peers is the initial configuration, used only the first time the
	// node starts (when DataDir holds no member yet). It must include
	// this node.
	Peers []Peer
	// Join starts the member without a configuration, to be added to a
	// running cluster (POST /cluster/members on one of its nodes).
	Join bool
	// RestoreFrom, on the first start (DataDir holds no member yet), is a
	// backup file (GET /backup) the member starts from, as a new cluster
	// of one that other nodes then join.
	RestoreFrom string
	// MaxValueBytes bounds a value; larger ones get 413.
	MaxValueBytes int
	// RequestTimeout bounds the Raft part of one HTTP request.
	RequestTimeout time.Duration
	// ProbeInterval is how often the watcher asks every member for its
	// status.
	ProbeInterval time.Duration
	// Logger receives the node's and rago's logs.
	Logger *slog.Logger

	// ClusterSecret, if set, makes every Raft connection prove in both
	// directions that the other side knows it (rago's
	// actor.Config.ClusterSecret). Every node of the cluster needs the
	// same, of at least actor.MinClusterSecretBytes bytes.
	ClusterSecret []byte
	// TLS, if set, makes every Raft connection mutual TLS
	// (actor.Config.TLS): the node's certificate must cover the host of
	// RaftAddr and chain to the CA every node trusts.
	TLS *actor.TLSConfig
	// HTTPS serves the HTTP API over TLS, with TLS's certificate and key
	// (clients need not present one: the API token is their credential).
	HTTPS bool
	// Insecure lets the node start with neither ClusterSecret nor TLS.
	// Then anyone who can reach RaftAddr can act as a member: send Raft
	// messages, stop the node's member, read the traffic. Without it such
	// a config is refused, so that an open Raft port is always a choice
	// someone made by name.
	Insecure bool
	// APIToken, if set, is the bearer token that every request that
	// writes, changes membership or reaches an admin endpoint (backup,
	// profiler) must carry; reads, the page and the status stay open.
	APIToken string
}

func (c *Config) fill() error {
	if c.RestoreFrom != "" && (c.Join || len(c.Peers) > 0) {
		return fmt.Errorf("%w: a restored node starts a cluster of its own: it takes no peers and joins none", ErrConfig)
	}
	if err := kv.ValidateNodeID(c.ID); err != nil {
		return fmt.Errorf("%w: --id: %v", ErrConfig, err)
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
	if c.AdvertiseHTTP != "" {
		if u, err := url.Parse(c.AdvertiseHTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: the advertised HTTP address %q is not an http:// URL", ErrConfig, c.AdvertiseHTTP)
		}
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = DefaultMaxValueBytes
	}
	if c.MaxValueBytes < 0 || c.MaxValueBytes > MaxValueLimit {
		return fmt.Errorf("%w: --max-value %d is outside 1..%d", ErrConfig, c.MaxValueBytes, MaxValueLimit)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.RequestTimeout < 0 || c.ProbeInterval < 0 {
		return fmt.Errorf("%w: negative timeout %v or probe interval %v", ErrConfig, c.RequestTimeout, c.ProbeInterval)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if err := c.checkSecurity(); err != nil {
		return err
	}
	if c.Join && len(c.Peers) > 0 {
		return fmt.Errorf("%w: a joining node takes no --peers: the cluster tells it its members", ErrConfig)
	}
	if len(c.Peers) > 0 {
		found := false
		for _, p := range c.Peers {
			if p.ID == c.ID {
				if p.Raft != c.RaftAddr {
					return fmt.Errorf("%w: --peers gives %s the address %s but --raft is %s", ErrConfig, c.ID, p.Raft, c.RaftAddr)
				}
				found = true
			} else if p.Raft == c.RaftAddr {
				return fmt.Errorf("%w: --peers gives this node's address %s to %s", ErrConfig, c.RaftAddr, p.ID)
			}
		}
		if !found {
			return fmt.Errorf("%w: --peers must include this node (%s=%s)", ErrConfig, c.ID, c.RaftAddr)
		}
	}
	return nil
}

// startListTimeout bounds how long a starting node waits for its system to
// list the servers it restarted. The list comes from memory, so only a
// node far too overloaded to serve anyway takes long; failing then is
// better than taking a late answer for "no member here" and starting one.
const startListTimeout = 30 * time.Second

// Node is a running kvstore node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	sys     *raftserver.System
	self    raftserver.ServerID
	client  raftserver.TypedClient[kv.Command, kv.Result]
	started time.Time
	watch   *watcher
	// metrics serves GET /metrics; samples feeds GET /metrics/summary.
	metrics http.Handler
	samples *sampler

	httpURL  string
	listener net.Listener
	server   *http.Server
	https    *creds.HTTPSCert // nil without Config.HTTPS
	// token is Config.APIToken, zero without one.
	token creds.Token
	// created: this start created the member from --peers in an empty
	// data directory (see rejoinIfReplaced).
	created bool

	stop    context.CancelFunc
	stopCtx context.Context
	wg      sync.WaitGroup
}

// Start starts a node: its rago system (which restarts a member found in
// DataDir), its member if new, the watcher and the HTTP server. It returns
// once the HTTP server listens; the cluster may still be electing.
func Start(cfg Config) (_ *Node, err error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	// An unwritable --data, or one that holds another node's data.
	if err := nodedir.Claim(cfg.DataDir, cfg.ID, cfg.RaftAddr); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), started: time.Now()}
	n.stopCtx, n.stop = context.WithCancel(context.Background())
	defer func() {
		// Undo what started if a later step failed.
		if err != nil {
			n.stop()
			if n.sys != nil {
				_ = n.sys.Stop()
			}
		}
	}()

	n.token = creds.NewToken(cfg.APIToken)
	if cfg.HTTPS {
		// Loaded before anything starts: a certificate that does not load
		// is a mistake in the flags, reported before the node runs.
		if n.https, err = creds.NewHTTPSCert(cfg.TLS, n.log); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	n.sys, err = raftserver.StartSystem(raftserver.SystemConfig{
		DataDir:  filepath.Join(cfg.DataDir, "raft"),
		Address:  cfg.RaftAddr,
		Machines: map[string]raftserver.MachineFactory{kv.Kind: kv.Factory},
		Logger:   cfg.Logger,
		Node:     actor.Config{TLS: cfg.TLS, ClusterSecret: cfg.ClusterSecret},
		// Removing a member deletes its replica on its node
		// (handleRemoveMember), which needs that node to take deletes
		// from the node the removal went through.
		AllowRemoteDelete: true,
	})
	if err != nil {
		return nil, fmt.Errorf("start the rago node at %s: %w", cfg.RaftAddr, err)
	}
	n.self = raftserver.ServerID{Name: cfg.ID, Node: n.sys.Name()}
	n.client = raftserver.TypedClient[kv.Command, kv.Result]{System: n.sys, Cmds: raftserver.JSON[kv.Command]{}, Replies: raftserver.JSON[kv.Result]{}}
	if err := n.startMember(); err != nil {
		return nil, err
	}

	n.listener, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for HTTP on %s: %w", cfg.HTTPAddr, err)
	}
	n.httpURL = cfg.AdvertiseHTTP
	if n.httpURL == "" {
		scheme := "http://"
		if cfg.HTTPS {
			scheme = "https://"
		}
		n.httpURL = scheme + n.listener.Addr().String()
	}
	n.watch = newWatcher(n)
	n.metrics = web.Metrics(n.sys, false) // one cluster: its server's own series
	n.samples = newSampler(n.sys, n.self)
	n.server = &http.Server{
		Handler:           n.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
	if cfg.HTTPS {
		n.server.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: n.https.Get}
		n.https.WarnUncovered(n.httpURL, n.log)
	}
	if n.created {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.rejoinIfReplaced(n.stopCtx)
		}()
	}
	n.wg.Add(4)
	go func() {
		defer n.wg.Done()
		n.samples.run(n.stopCtx)
	}()
	go func() {
		defer n.wg.Done()
		var err error
		if cfg.HTTPS {
			err = n.server.ServeTLS(n.listener, "", "") // the certificate comes from TLSConfig
		} else {
			err = n.server.Serve(n.listener)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("HTTP server failed", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		n.watch.run(n.stopCtx)
	}()
	go func() {
		defer n.wg.Done()
		n.register(n.stopCtx)
	}()
	n.log.Info("node started", "raft", n.sys.Name(), "http", n.httpURL, "data", cfg.DataDir,
		"raft_auth", cfg.raftAuth(), "api_token", cfg.APIToken != "")
	if cfg.Insecure {
		n.log.Warn("the Raft port is not authenticated (--insecure): anyone who can reach it can act as a member of the cluster, stop this node's member and read its traffic", "raft", n.sys.Name())
	}
	if cfg.APIToken != "" && !cfg.HTTPS && !creds.IsLoopback(n.listener.Addr()) {
		n.log.Warn("the API token travels in clear text over plain HTTP on a non-loopback address; use --tls-* for HTTPS", "http", n.httpURL)
	}
	return n, nil
}

// startMember makes sure this node's member of the cluster runs.
func (n *Node) startMember() error {
	listCtx, cancelList := context.WithTimeout(context.Background(), startListTimeout)
	servers, err := n.sys.LocalServers(listCtx)
	cancelList()
	if err != nil {
		return fmt.Errorf("list the servers in %s: %w", n.cfg.DataDir, err)
	}
	for _, s := range servers {
		if s.Cluster != ClusterName {
			continue
		}
		if s.ID != n.self {
			return fmt.Errorf("%w: the data directory holds member %s, not %s", ErrConfig, s.ID, n.self)
		}
		if n.cfg.RestoreFrom != "" {
			return fmt.Errorf("%w: %s already holds member %s: a restore starts a new cluster in an empty data directory (restart this one with serve)", ErrConfig, n.cfg.DataDir, n.self)
		}
		n.log.Info("member restarted from the data directory", "member", n.self.String())
		return nil
	}
	if n.cfg.RestoreFrom != "" {
		return n.restoreMember()
	}
	var initial []raftserver.ServerID
	switch {
	case n.cfg.Join:
	case len(n.cfg.Peers) > 0:
		for _, p := range n.cfg.Peers {
			initial = append(initial, raftserver.ServerID{Name: p.ID, Node: p.Raft})
		}
	default:
		return fmt.Errorf("%w: %s holds no member yet: give --peers to form a new cluster, or use 'kvstore join' to join a running one",
			ErrConfig, n.cfg.DataDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	err = n.sys.StartServer(ctx, raftserver.ServerConfig{
		ID:             n.self,
		Cluster:        ClusterName,
		Machine:        raftserver.MachineSpec{Kind: kv.Kind},
		InitialMembers: initial,
	})
	switch {
	case errors.Is(err, raftserver.ErrClusterExists):
		// The directory records the member but it is not running: it was
		// removed from the cluster (a removed member stops itself) or gave
		// up after repeated failures. The node serves, as not a member.
		n.log.Warn("the member recorded in the data directory is not running; this node was probably removed from the cluster", "member", n.self.String())
		return nil
	case err != nil:
		return fmt.Errorf("start member %s: %w", n.self, err)
	case n.cfg.Join:
		n.log.Info("member started; waiting to be added to the cluster", "member", n.self.String())
	default:
		n.created = true
		n.log.Info("member started with the initial configuration", "member", n.self.String(), "members", fmt.Sprint(initial))
	}
	return nil
}

// rejoinIfReplaced runs after this node created its member from --peers in
// an empty data directory, which is either the cluster's first start or a
// node whose data was lost or replaced. In the second case the cluster's
// configuration binds this member's ID to the earlier replica's
// incarnation: the cluster ignores this replica's votes and
// acknowledgements, since it lacks what the earlier one promised. It then
// rejoins as a new incarnation through the leader (raftserver's Rejoin:
// removed, added back as a non-voter, caught up, promoted). It asks until
// a peer answers either way, or the node stops.
func (n *Node) rejoinIfReplaced(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		done, err := n.checkReplaced(ctx)
		if done {
			return
		}
		if err != nil {
			n.log.Debug("could not tell yet whether this member replaces an earlier replica", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// checkReplaced asks the peers how they bind this member, and rejoins if
// they bind it to another incarnation. It reports whether that question is
// settled.
func (n *Node) checkReplaced(ctx context.Context) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	me, err := n.sys.Overview(qctx, n.self)
	if err != nil {
		return false, err
	}
	if me.Incarnations[n.self] == me.Incarnation {
		return true, nil // a leader bound this replica: a first start
	}
	for _, p := range n.cfg.Peers {
		peer := raftserver.ServerID{Name: p.ID, Node: p.Raft}
		if peer == n.self {
			continue
		}
		st, err := n.sys.Overview(qctx, peer)
		if err != nil {
			continue
		}
		switch bound := st.Incarnations[n.self]; bound {
		case 0:
			continue // not bound there yet: ask another, or later
		case me.Incarnation:
			return true, nil
		}
		n.log.Warn("this node's data directory is new, but the cluster knows this member from an earlier replica whose data was lost or replaced: rejoining as a new incarnation (its log is copied from the leader before it votes again)",
			"member", n.self.String())
		rctx, cancel := context.WithTimeout(ctx, max(n.cfg.RequestTimeout, time.Minute))
		defer cancel()
		if _, err := n.sys.Rejoin(rctx, peer, n.self); err != nil {
			return false, fmt.Errorf("rejoin through %s: %w", peer, err)
		}
		n.log.Info("rejoined the cluster as a new incarnation", "member", n.self.String())
		return true, nil
	}
	return false, nil
}

// restoreMember starts this node's member as a new cluster of one from the
// backup at RestoreFrom, and forgets the old cluster's nodes in the
// directory the backup holds (other nodes join this one afterwards).
func (n *Node) restoreMember() error {
	f, err := os.Open(n.cfg.RestoreFrom)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), max(n.cfg.RequestTimeout, time.Minute))
	defer cancel()
	if _, _, err := n.sys.RestoreCluster(ctx, ClusterName, raftserver.MachineSpec{Kind: kv.Kind}, []raftserver.ServerID{n.self}, f); err != nil {
		return fmt.Errorf("restore from %s: %w", n.cfg.RestoreFrom, err)
	}
	old, err := n.nodes(ctx, true)
	if err != nil {
		return fmt.Errorf("restore from %s: read the directory: %w", n.cfg.RestoreFrom, err)
	}
	for _, x := range old {
		if x.ID == n.cfg.ID {
			continue
		}
		if _, _, err := n.client.Process(ctx, n.self, kv.Command{Op: kv.OpForgetNode, Node: &kv.NodeInfo{ID: x.ID}}); err != nil {
			return fmt.Errorf("restore from %s: forget the old node %s: %w", n.cfg.RestoreFrom, x.ID, err)
		}
	}
	n.log.Info("member restored from a backup as a new cluster of one; add nodes with kvstore join", "member", n.self.String(), "backup", n.cfg.RestoreFrom)
	return nil
}

// register records this node's HTTP address in the replicated directory,
// once the cluster has a leader, unless it is there already. It retries
// until it succeeds or the node stops.
func (n *Node) register(ctx context.Context) {
	me := kv.NodeInfo{ID: n.cfg.ID, Raft: n.sys.Name(), HTTP: n.httpURL}
	backoff := 200 * time.Millisecond
	for {
		err := n.registerOnce(ctx, me)
		if err == nil {
			return
		}
		n.log.Debug("directory registration will be retried", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (n *Node) registerOnce(ctx context.Context, me kv.NodeInfo) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	nodes, err := n.nodes(ctx, true)
	if err != nil {
		return err
	}
	for _, x := range nodes {
		if x == me {
			return nil
		}
	}
	_, _, err = n.client.Process(ctx, n.self, kv.Command{Op: kv.OpSetNode, Node: &me})
	if err == nil {
		n.log.Info("recorded this node's HTTP address in the cluster directory", "http", me.HTTP)
	}
	return err
}

// nodes reads the directory through this node's member: linearizably
// when consistent, else from its own machine as it is.
func (n *Node) nodes(ctx context.Context, consistent bool) ([]kv.NodeInfo, error) {
	q, _ := json.Marshal(kv.Query{Op: kv.QueryNodes})
	var b []byte
	var err error
	if consistent {
		b, _, err = n.sys.ConsistentQuery(ctx, n.self, q)
	} else {
		b, _, err = n.sys.LocalQuery(ctx, n.self, q)
	}
	if err != nil {
		return nil, err
	}
	var a kv.Answer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%w: directory answer does not decode: %v", raftserver.ErrMachine, err)
	}
	return a.Nodes, nil
}

// IsMember reports whether this node's member knows itself to be in the
// cluster's configuration (a joining node is not, until the leader has
// added it and told it).
func (n *Node) IsMember(ctx context.Context) (bool, error) {
	st, err := n.sys.Overview(ctx, n.self)
	if err != nil {
		return false, err
	}
	return slices.Contains(st.Voters, n.self) || slices.Contains(st.NonVoters, n.self), nil
}

// HTTPURL returns the URL of the node's HTTP API.
func (n *Node) HTTPURL() string { return n.httpURL }

// Self returns the node's member of the cluster.
func (n *Node) Self() raftserver.ServerID { return n.self }

// Stop stops the HTTP server (waiting for requests in flight up to ctx),
// the watcher and the rago system.
func (n *Node) Stop(ctx context.Context) error {
	n.stop()
	var errs []error
	if err := n.server.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("HTTP shutdown: %w", err))
	}
	n.wg.Wait()
	if err := n.sys.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("rago shutdown: %w", err))
	}
	n.log.Info("node stopped")
	return errors.Join(errs...)
}

// memberIDs returns the ids of the given members, sorted.
func memberIDs(ids []raftserver.ServerID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.Name
	}
	sort.Strings(out)
	return out
}
