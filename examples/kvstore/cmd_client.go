package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rago-raft/rago/examples/internal/cli"
	"github.com/rago-raft/rago/examples/kvstore/internal/api"
	"github.com/rago-raft/rago/examples/kvstore/internal/client"
)

// defaultAddrs are the demo's nodes.
const defaultAddrs = "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003"

// clientFlags are the flags every client command shares.
type clientFlags struct {
	addr      string
	timeout   time.Duration
	json      bool
	tlsCA     string
	tokenFile string
}

func registerClientFlags(fs *flag.FlagSet) *clientFlags {
	cf := &clientFlags{}
	fs.StringVar(&cf.addr, "addr", envOr("KVSTORE_ADDR", defaultAddrs), "`URLs` of nodes, comma-separated; the client finds the leader and fails over (default $KVSTORE_ADDR, else the demo's nodes)")
	fs.DurationVar(&cf.timeout, "timeout", 10*time.Second, "give up after this long (the client retries while the cluster has no leader)")
	fs.BoolVar(&cf.json, "json", false, "print the API's JSON answer")
	fs.StringVar(&cf.tlsCA, "tls-ca", os.Getenv("KVSTORE_TLS_CA"), "CA `FILE` (PEM) to trust for nodes that serve HTTPS; addresses without a scheme then get https:// (default $KVSTORE_TLS_CA)")
	fs.StringVar(&cf.tokenFile, "api-token-file", os.Getenv("KVSTORE_API_TOKEN_FILE"), "`FILE` holding the nodes' API token, for writes and admin commands (default $KVSTORE_API_TOKEN_FILE)")
	return cf
}

func (cf *clientFlags) client() (*client.Client, context.Context, context.CancelFunc, error) {
	opts, err := loadClientOptions(cf.tlsCA, cf.tokenFile, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	addr := cf.addr
	if addr == defaultAddrs && opts.RootCAs != nil {
		// The demo's nodes, run with --tls-*: they serve HTTPS.
		addr = strings.ReplaceAll(addr, "http://", "https://")
	}
	c, err := client.NewWithOptions(strings.Split(addr, ","), opts)
	if err != nil {
		return nil, nil, nil, cli.Usagef("--addr: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cf.timeout)
	return c, ctx, cancel, nil
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// explain turns a client error into the line a person needs.
func explain(err error) error {
	var ae *api.Error
	switch {
	case errors.As(err, &ae) && ae.Code == api.CodeCASMismatch:
		if ae.Current == nil {
			return fmt.Errorf("mismatch: the key does not exist; nothing was written")
		}
		return fmt.Errorf("mismatch: the key is %s at revision %d; nothing was written", showValue(*ae.Current), ae.Current.Revision)
	case errors.As(err, &ae) && ae.Code == api.CodeUnauthorized:
		return fmt.Errorf("%w (give the nodes' token with --api-token-file)", ae)
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, client.ErrUnreachable) && strings.Contains(err.Error(), "x509:"):
		return fmt.Errorf("%w (the node's certificate is not trusted: give its CA with --tls-ca)", err)
	case errors.Is(err, client.ErrUnreachable):
		return fmt.Errorf("%w (is the cluster running? try 'kvstore demo', or set --addr)", err)
	}
	return err
}

func showValue(e api.Entry) string {
	if e.ValueBase64 != "" {
		return "(base64) " + e.ValueBase64
	}
	return strconv.Quote(e.Value)
}

func runPut(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("put", stderr, `
Sets KEY to VALUE. With VALUE left out or "-", the value is read from stdin
(any bytes). Write the value after "--" when it starts with a dash.

	kvstore put greeting "hello, raft"
	kvstore put config/app.json - < app.json`)
	cf := registerClientFlags(fs)
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return cli.Usagef("want KEY [VALUE]; without VALUE (or with -) the value is read from stdin")
	}
	var value []byte
	if len(pos) == 1 || pos[1] == "-" {
		if value, err = io.ReadAll(os.Stdin); err != nil {
			return fmt.Errorf("reading the value from stdin: %w", err)
		}
	} else {
		value = []byte(pos[1])
	}
	c, ctx, cancel, err := cf.client()
	if err != nil {
		return err
	}
	defer cancel()
	res, err := c.Put(ctx, pos[0], value)
	if err != nil {
		return explain(err)
	}
	if cf.json {
		return printJSON(stdout, res)
	}
	verb := "updated"
	if res.Created {
		verb = "created"
	}
	fmt.Fprintf(stdout, "%s %s at revision %d\n", verb, res.Key, res.Revision)
	return nil
}

func runGet(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("get", stderr, `
Prints the value of KEY (its bytes, then a newline unless it ends in one).
A missing key exits with status 1.`)
	cf := registerClientFlags(fs)
	consistency := fs.String("consistency", "linearizable", "linearizable (confirmed by a quorum), leader (the leader's state) or local (the answering node's state)")
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cli.Usagef("want one KEY")
	}
	c, ctx, cancel, err := cf.client()
	if err != nil {
		return err
	}
	defer cancel()
	res, err := c.Get(ctx, pos[0], *consistency)
	if err != nil {
		return explain(err)
	}
	if cf.json {
		return printJSON(stdout, res)
	}
	b, err := res.Bytes()
	if err != nil {
		return err
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	_, err = stdout.Write(b)
	return err
}

func runDel(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("del", stderr, `
Deletes KEY. A missing key exits with status 1.`)
	cf := registerClientFlags(fs)
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return cli.Usagef("want one KEY")
	}
	c, ctx, cancel, err := cf.client()
	if err != nil {
		return err
	}
	defer cancel()
	res, err := c.Delete(ctx, pos[0])
	if err != nil {
		return explain(err)
	}
	if cf.json {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "deleted %s\n", res.Key)
	return nil
}

func runCAS(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("cas", stderr, `
Sets KEY to NEW (or deletes it) only if it is as expected, in one step.
A mismatch writes nothing, prints the key's current state and exits with
status 1.

	kvstore cas counter --expect 41 42
	kvstore cas lock --expect-absent me
	kvstore cas lock --expect me --delete
	kvstore cas config --expect-revision 17 new-config`)
	cf := registerClientFlags(fs)
	var expect optString
	fs.Var(&expect, "expect", "the `value` the key must have")
	absent := fs.Bool("expect-absent", false, "the key must not exist")
	revision := fs.Int64("expect-revision", -1, "the `revision` the key must have (0: must not exist)")
	del := fs.Bool("delete", false, "delete the key instead of setting it")
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	var req api.CASRequest
	conditions := 0
	if expect.set {
		conditions++
		req.Expected, _ = json.Marshal(expect.v)
	}
	if *absent {
		conditions++
		req.Expected = json.RawMessage("null")
	}
	if *revision >= 0 {
		conditions++
		r := uint64(*revision)
		req.ExpectedRevision = &r
	}
	if conditions != 1 {
		return cli.Usagef("give exactly one of --expect, --expect-absent and --expect-revision")
	}
	switch {
	case len(pos) == 1 && *del:
		req.Delete = true
	case len(pos) == 2 && !*del:
		req.Value = &pos[1]
	default:
		return cli.Usagef("want KEY and NEW, or KEY and --delete")
	}
	c, ctx, cancel, err := cf.client()
	if err != nil {
		return err
	}
	defer cancel()
	res, err := c.CAS(ctx, pos[0], req)
	if err != nil {
		return explain(err)
	}
	if cf.json {
		return printJSON(stdout, res)
	}
	switch {
	case req.Delete:
		fmt.Fprintf(stdout, "swapped: deleted %s\n", res.Key)
	default:
		fmt.Fprintf(stdout, "swapped: %s at revision %d\n", res.Key, res.Revision)
	}
	return nil
}

// optString is a string flag that knows whether it was given, so that
// --expect "" (expect the empty value) differs from no --expect.
type optString struct {
	v   string
	set bool
}

func (o *optString) String() string { return o.v }

func (o *optString) Set(s string) error {
	o.v, o.set = s, true
	return nil
}

func runList(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("list", stderr, `
Lists the keys that start with PREFIX (all keys without one) in byte order,
one per line as KEY<tab>VALUE. It pages through the whole range unless
--limit stops it.`)
	cf := registerClientFlags(fs)
	limit := fs.Int("limit", 0, "list at most `n` keys (0: all)")
	keysOnly := fs.Bool("keys", false, "print only the keys")
	consistency := fs.String("consistency", "linearizable", "linearizable, leader or local")
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return cli.Usagef("want at most one PREFIX")
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	c, ctx, cancel, err := cf.client()
	if err != nil {
		return err
	}
	defer cancel()
	var all []api.Entry
	after := ""
	for {
		page := 1000
		if *limit > 0 {
			page = min(page, *limit-len(all))
		}
		res, err := c.List(ctx, prefix, after, page, *consistency)
		if err != nil {
			return explain(err)
		}
		all = append(all, res.Items...)
		if !res.More || (*limit > 0 && len(all) >= *limit) {
			break
		}
		after = res.Next
	}
	if cf.json {
		return printJSON(stdout, all)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, e := range all {
		if *keysOnly {
			fmt.Fprintln(w, e.Key)
			continue
		}
		v := e.Value
		if e.ValueBase64 != "" {
			v = "(base64) " + e.ValueBase64
		}
		fmt.Fprintf(w, "%s\t%s\n", e.Key, strings.ReplaceAll(v, "\n", `\n`))
	}
	return w.Flush()
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := prog.NewFlags("status", stderr, `
Shows every member of the cluster as the first node that answers sees it:
role, term, commit and applied index, keys and whether it is reachable.`)
	cf := registerClientFlags(fs)
	pos, err := cli.ParseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return cli.Usagef("unexpected argument %q", pos[0])
	}
	c, ctx, cancel, err := cf.client()
	if err != nil {
		return err
	}
	defer cancel()
	cl, err := c.Cluster(ctx, true)
	if err != nil {
		return explain(err)
	}
	if cf.json {
		return printJSON(stdout, cl)
	}
	leader := cl.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(stdout, "leader %s, %d of %d voters reachable (quorum %d), as seen by %s\n\n", leader, cl.Reachable, cl.Voters, cl.Quorum, cl.ObservedBy)
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MEMBER\tROLE\tTERM\tCOMMIT\tAPPLIED\tKEYS\tSTATE\tHTTP")
	for _, m := range cl.Members {
		state := "ok"
		switch {
		case !m.Reachable:
			state = "unreachable"
		case m.Behind > 0:
			state = fmt.Sprintf("catching up (%d behind)", m.Behind)
		}
		if !m.Reachable {
			fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t%s\t%s\n", m.ID, state, m.HTTP)
			continue
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", m.ID, m.Role, m.Term, m.CommitIndex, m.LastApplied, m.Keys, state, m.HTTP)
	}
	return w.Flush()
}
