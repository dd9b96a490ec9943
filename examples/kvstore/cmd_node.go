package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/client"
	"github.com/rago-raft/rago/examples/kvstore/internal/node"
)

// nodeFlags are the flags of serve and join.
type nodeFlags struct {
	id, raft, http, data, advertise string
	maxValue                        byteSize
	timeout, probe                  time.Duration
	logLevel, logFormat             string
	sec                             securityFlags
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	f.maxValue = node.DefaultMaxValueBytes
	fs.StringVar(&f.id, "id", "", "node `id`: letters, digits, - and _ (required)")
	fs.StringVar(&f.raft, "raft", "", "`host:port` of the node's Raft transport; its identity, keep it across restarts (required)")
	fs.StringVar(&f.http, "http", "", "`host:port` of the HTTP API and web page (required)")
	fs.StringVar(&f.data, "data", "", "data `directory`; restarting with the same one rejoins the cluster (required)")
	fs.StringVar(&f.advertise, "advertise-http", "", "`URL` other nodes and pages use for this node (default http://<--http>, https:// with --tls-*)")
	fs.Var(&f.maxValue, "max-value", "largest value accepted, in bytes (suffixes KiB, MiB), up to 8MiB")
	fs.DurationVar(&f.timeout, "timeout", node.DefaultRequestTimeout, "how long a request may wait for the cluster before 503/504")
	fs.DurationVar(&f.probe, "probe-interval", node.DefaultProbeInterval, "how often the node probes every member for /cluster and the page")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	f.sec.register(fs)
}

func (f *nodeFlags) config(stderr io.Writer) (node.Config, error) {
	for name, v := range map[string]string{"--id": f.id, "--raft": f.raft, "--http": f.http, "--data": f.data} {
		if v == "" {
			return node.Config{}, cli.Usagef("%s is required", name)
		}
	}
	logger, err := cli.NewLogger(f.logLevel, f.logFormat, stderr)
	if err != nil {
		return node.Config{}, err
	}
	cfg := node.Config{
		ID:             f.id,
		RaftAddr:       f.raft,
		HTTPAddr:       f.http,
		AdvertiseHTTP:  f.advertise,
		DataDir:        f.data,
		MaxValueBytes:  int(f.maxValue),
		RequestTimeout: f.timeout,
		ProbeInterval:  f.probe,
		Logger:         logger,
	}
	if err := f.sec.apply(&cfg, logger); err != nil {
		return node.Config{}, err
	}
	return cfg, nil
}

const serveHelp = `
Runs one node of a kvstore cluster: its Raft member, the HTTP API and the web
page. All nodes of a cluster run this same command with the same --peers.

The first start of a node with an empty --data forms the cluster: the node
starts its member with --peers as the initial configuration, and the members
elect a leader once a majority runs. Start them in any order, or all at once.
Later starts find the member in --data and rejoin (--peers is then ignored).

	kvstore serve --id n1 --raft 127.0.0.1:7001 --http 127.0.0.1:8001 --data d/n1 \
	    --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 \
	    --secret-file cluster.secret

The Raft port needs credentials, the same kind on every node: a shared secret
(--secret-file), mutual TLS (--tls-ca, --tls-cert, --tls-key; the certificate
then serves HTTPS too, unless --insecure-http), or both; --insecure runs
without. --api-token-file guards writes and admin endpoints of the HTTP API.

A node that lost its --data may be started again with serve and the same
--peers: its new replica is not the one the cluster knows (each replica has
its own incarnation), so the cluster ignores its votes, and the node rejoins
through the leader by itself, copying the log before it votes again.

SIGINT or SIGTERM stops the node cleanly; SIGKILL is fine too: nothing
acknowledged is lost.`

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("serve", stderr, serveHelp)
	var nf nodeFlags
	nf.register(fs)
	peers := fs.String("peers", "", "initial members as `id=host:port,...` (Raft addresses), this node included; used on the first start only")
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	cfg, err := nf.config(stderr)
	if err != nil {
		return err
	}
	if cfg.Peers, err = node.ParsePeers(*peers); err != nil {
		return err
	}
	n, err := node.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %s: web page and API at %s/\n", cfg.ID, n.HTTPURL())
	return cli.ServeUntilSignal(n.Stop, cfg.Logger, parentEnv)
}

const joinHelp = `
Runs a new node (like serve) and asks a running cluster, through the node at
--via, to add it as a member. Once added it receives the whole log from the
leader and serves like the others.

	kvstore join --id n4 --raft 127.0.0.1:7004 --http 127.0.0.1:8004 --data d/n4 \
	    --via http://127.0.0.1:8001

Restart a joined node with the same command (or with serve and no --peers):
it finds its member in --data and is not added twice. It needs the
cluster's credentials (--secret-file or --tls-*, as serve); with an API
token (--api-token-file) it also uses it to ask to be added, and with
--tls-ca it trusts the HTTPS of --via.`

func runJoin(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("join", stderr, joinHelp)
	var nf nodeFlags
	nf.register(fs)
	via := fs.String("via", envOr("KVSTORE_ADDR", ""), "`URLs` of running nodes, comma-separated (default $KVSTORE_ADDR)")
	wait := fs.Duration("join-timeout", 30*time.Second, "how long to keep asking the cluster to add this node")
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	if *via == "" {
		return cli.Usagef("--via is required: the address of a running node")
	}
	cfg, err := nf.config(stderr)
	if err != nil {
		return err
	}
	cfg.Join = true
	opts, err := nf.sec.clientOptions(cfg.Logger)
	if err != nil {
		return err
	}
	c, err := client.NewWithOptions(strings.Split(*via, ","), opts)
	if err != nil {
		return cli.Usagef("--via: %v", err)
	}
	n, err := node.Start(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait)
	member, err := n.IsMember(ctx)
	if err == nil && !member {
		var res api.MembersResult
		res, err = c.AddMember(ctx, api.JoinRequest{ID: cfg.ID, Raft: n.Self().Node, HTTP: n.HTTPURL()})
		if err == nil {
			cfg.Logger.Info("added to the cluster", "members", membersText(res.Members))
		}
	}
	cancel()
	if err != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = n.Stop(sctx)
		return fmt.Errorf("could not join through %s: %w (run the same command again to retry)", *via, err)
	}
	fmt.Fprintf(stdout, "node %s: web page and API at %s/\n", cfg.ID, n.HTTPURL())
	return cli.ServeUntilSignal(n.Stop, cfg.Logger, parentEnv)
}

func membersText(ms []api.Node) string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return strings.Join(ids, ",")
}

// parentEnv names the environment variable in which the demo passes its
// process id to the nodes it starts (see cli.ParentGone).
const parentEnv = "KVSTORE_DEMO_PARENT"

const leaveHelp = `
Removes a node from the cluster, through any node (--addr), and deletes the
removed member's replica on its node. The node's process keeps running and
answers 503 not_member until you stop it; 'kvstore join' adds it again, as a
new member that receives the whole log.

If the node is down when it is removed, its replica cannot be deleted: delete
its --data directory before you start it again.`

func runLeave(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("leave", stderr, leaveHelp)
	id := fs.String("id", "", "`id` of the node to remove (required)")
	cf := registerClientFlags(fs)
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	if *id == "" {
		return cli.Usagef("--id is required")
	}
	c, ctx, cancel, err := cf.client()
	if err != nil {
		return err
	}
	defer cancel()
	res, err := c.RemoveMember(ctx, *id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s; the members are now %s\n", *id, membersText(res.Members))
	if !res.ReplicaDeleted {
		fmt.Fprintf(stdout, "%s did not answer, so its replica is still in its data directory: delete that before starting it again\n", *id)
	}
	return nil
}

// byteSize is a flag holding a number of bytes, written as 1048576, 512KiB
// or 1MiB.
type byteSize int

func (b *byteSize) String() string {
	switch v := int(*b); {
	case v >= 1<<20 && v%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", v>>20)
	case v >= 1<<10 && v%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", v>>10)
	default:
		return strconv.Itoa(v)
	}
}

func (b *byteSize) Set(s string) error {
	mult := 1
	for suffix, m := range map[string]int{"KiB": 1 << 10, "MiB": 1 << 20, "K": 1 << 10, "M": 1 << 20} {
		if t, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = t, m
			break
		}
	}
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < 1 {
		return fmt.Errorf("%q is not a positive size such as 1048576, 512KiB or 1MiB", s)
	}
	*b = byteSize(v * mult)
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
