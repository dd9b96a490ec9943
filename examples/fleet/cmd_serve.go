package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/rago-raft/rago/examples/fleet/internal/node"
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
			return node.Config{}, usageErr("%s is required", name)
		}
	}
	if f.shards < 1 || f.shards > node.MaxShards {
		return node.Config{}, usageErr("--shards %d: use 1 to %d", f.shards, node.MaxShards)
	}
	if f.replicas < 1 || f.replicas > 9 {
		return node.Config{}, usageErr("--replicas %d: use 1 to 9", f.replicas)
	}
	logger, err := newLogger(f.logLevel, f.logFormat, stderr)
	if err != nil {
		return node.Config{}, err
	}
	c, err := f.sec.Load("go run ./examples/kvstore", logger)
	if err != nil {
		return node.Config{}, usageOf(err)
	}
	return node.Config{
		ID: f.id, RaftAddr: f.raft, HTTPAddr: f.http, DataDir: f.data, Zone: f.zone,
		Seeds: node.ParseSeeds(f.seeds), Shards: f.shards, Replicas: f.replicas, Activate: f.activate,
		RequestTimeout: f.timeout, Logger: logger,
		Fleet:         fleet.Config{PurgeAfter: f.purgeAfter},
		ClusterSecret: c.ClusterSecret, TLS: c.TLS, HTTPS: c.HTTPS, Insecure: c.Insecure, APIToken: c.APIToken,
	}, nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErr("--log-format %q: use text or json", format)
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
	fs := newFlags("serve", stderr, serveHelp)
	var f serveFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
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
	return serveUntilSignal(n, cfg.Logger)
}

// parentEnv names the environment variable in which the demo passes its
// process id to the nodes it starts. A node whose parent is gone (the demo
// was killed with SIGKILL and could not stop it) stops by itself instead
// of holding the demo's ports forever.
const parentEnv = "FLEET_DEMO_PARENT"

// serveUntilSignal runs until SIGINT or SIGTERM (or, under the demo, until
// the demo is gone), then stops the node; a second signal exits at once.
func serveUntilSignal(n *node.Node, logger *slog.Logger) error {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case s := <-sig:
		logger.Info("stopping", "signal", s.String())
	case <-parentGone():
		logger.Warn("stopping: the demo that started this node is gone")
	}
	go func() {
		<-sig
		logger.Warn("second signal: exiting without a clean stop")
		os.Exit(1)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return n.Stop(ctx)
}

// parentGone is closed when the process named by parentEnv is no longer
// this process's parent; it never closes outside the demo.
func parentGone() <-chan struct{} {
	ch := make(chan struct{})
	want, err := strconv.Atoi(os.Getenv(parentEnv))
	if err != nil || want != os.Getppid() {
		return ch
	}
	go func() {
		for os.Getppid() == want {
			time.Sleep(time.Second)
		}
		close(ch)
	}()
	return ch
}
