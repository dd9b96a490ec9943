package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/rago-raft/rago/examples/fleet/internal/node"
	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/internal/creds"
	"github.com/rago-raft/rago/fleet"
)

// serveFlags are the flags of serve.
type serveFlags struct {
	id, raft, http, data, zone, seeds string
	shards, replicas                  int
	activate                          bool
	timeout, purgeAfter               time.Duration
	logLevel, logFormat               string
	sec                               creds.Flags
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.id, "id", "", "node `id` for people: letters, digits, - and _ (required)")
	fs.StringVar(&f.raft, "raft", "", "`host:port` of the node's Raft transport: its name in the fleet, keep it across restarts (required)")
	fs.StringVar(&f.http, "http", "", "`host:port` of the HTTP API and web page (required)")
	fs.StringVar(&f.data, "data", "", "data `directory`; restarting with the same one brings the node's members back (required)")
	fs.StringVar(&f.zone, "zone", "", "the node's `zone` (a rack, a data centre): a group's members go to distinct zones while there are enough")
	fs.StringVar(&f.seeds, "seeds", "", "Raft `addresses` of the 3 (or 5) nodes that keep the fleet's books, comma-separated, the same on every node (required)")
	fs.IntVar(&f.shards, "shards", node.DefaultShards, "how many shard groups the keys are spread over: the same on every node, fixed by the first start")
	fs.IntVar(&f.replicas, "replicas", node.DefaultReplicas, "members per shard")
	fs.BoolVar(&f.activate, "activate", true, "join placement at start (false: serve requests only, until POST /activate)")
	fs.DurationVar(&f.timeout, "timeout", node.DefaultRequestTimeout, "how long a request may wait for the fleet before 503/504")
	fs.DurationVar(&f.purgeAfter, "purge-after", time.Minute, "a node not seen for this long is marked gone and its members are replaced elsewhere")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	f.sec.Register(fs, "writes, POST /activate and POST /deactivate")
}

// config checks the flags and builds the node's configuration.
func (f *serveFlags) config(stderr io.Writer) (node.Config, error) {
	for name, v := range map[string]string{"--id": f.id, "--raft": f.raft, "--http": f.http, "--data": f.data, "--seeds": f.seeds} {
		if v == "" {
			return node.Config{}, cli.Usagef("%s is required", name)
		}
	}
	if f.shards < 1 || f.shards > node.MaxShards {
		return node.Config{}, cli.Usagef("--shards %d: use 1 to %d", f.shards, node.MaxShards)
	}
	if f.replicas < 1 || f.replicas > 9 {
		return node.Config{}, cli.Usagef("--replicas %d: use 1 to 9", f.replicas)
	}
	logger, err := cli.NewLogger(f.logLevel, f.logFormat, stderr)
	if err != nil {
		return node.Config{}, err
	}
	c, err := f.sec.Load("go run ./examples/kvstore", logger)
	if err != nil {
		return node.Config{}, err
	}
	return node.Config{
		ID: f.id, RaftAddr: f.raft, HTTPAddr: f.http, DataDir: f.data, Zone: f.zone,
		Seeds: node.ParseSeeds(f.seeds), Shards: f.shards, Replicas: f.replicas, Activate: f.activate,
		RequestTimeout: f.timeout, Logger: logger,
		Fleet:         fleet.Config{PurgeAfter: f.purgeAfter},
		ClusterSecret: c.ClusterSecret, TLS: c.TLS, HTTPS: c.HTTPS, Insecure: c.Insecure, APIToken: c.APIToken,
	}, nil
}

const serveHelp = `
Runs one node of a fleet: its rago system, its fleet agent (the books'
member too on a seed), the members of the shard groups placement gives it,
and the HTTP API and web page. Every node runs this same command with the
same --seeds and --shards.

	fleet serve --id n1 --raft 127.0.0.1:7101 --http 127.0.0.1:8101 --data d/n1 \
	    --zone a --seeds 127.0.0.1:7101,127.0.0.1:7103,127.0.0.1:7105 \
	    --secret-file cluster.secret

On start the node joins placement, adds the shard groups the books do not
hold yet (any node may; the first does), and records its HTTP address in the
fleet's directory. The seeds elect the books' leader once two of three run:
start them in any order.

The Raft port needs credentials, the same kind on every node: a shared secret
(--secret-file), mutual TLS (--tls-ca, --tls-cert, --tls-key; the certificate
then serves HTTPS too, unless --insecure-http), or both; --insecure runs
without. --api-token-file guards writes and POST /activate, /deactivate.

SIGINT or SIGTERM stops the node cleanly; SIGKILL is fine too: nothing
acknowledged is lost.`

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("serve", stderr, serveHelp)
	var f serveFlags
	f.register(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := f.config(stderr)
	if err != nil {
		return err
	}
	n, err := node.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %s: web page and API at %s/\n", cfg.ID, n.HTTPURL())
	return cli.ServeUntilSignal(n.Stop, cfg.Logger, parentEnv)
}

// parentEnv names the environment variable in which the demo passes its
// process id to the nodes it starts (see cli.ParentGone).
const parentEnv = "FLEET_DEMO_PARENT"
