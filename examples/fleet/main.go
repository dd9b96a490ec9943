// Command fleet is a sharded key-value store on rago's fleet: keys hash
// onto shard groups (kv-0000, kv-0001, ...), each a small replicated map,
// and the fleet places each group's members on the nodes, zone-aware, and
// moves them when nodes come and go.
//
//	fleet demo                                five local nodes in three zones
//	fleet serve --id n1 --raft ... --http ... --data ... --zone a --seeds ...
//
// Run "fleet help" or "fleet COMMAND -h" for the details; the README next
// to this file has a tour and the HTTP API.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rago-raft/rago/examples/internal/creds"
)

// program is how the messages name this command.
const program = "fleet"

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis after the name
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	// Assigned here, not in the declaration, because "help" refers to the
	// list itself.
	commands = []command{
		{"demo", "[flags]", "run 5 nodes in 3 zones on this machine, with their logs, until Ctrl-C", runDemo},
		{"serve", "--id ID --raft HOST:PORT --http HOST:PORT --data DIR --zone Z --seeds ADDR,ADDR,ADDR", "run one node", runServe},
		{"help", "[COMMAND]", "show help", runHelp},
	}
}

// errUsage marks a command line mistake: the message is followed by the
// command's usage hint, and the exit status is 2.
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usageErr(format string, args ...any) error { return errUsage{fmt.Sprintf(format, args...)} }

// usageOf turns the shared credentials' usage mistakes into this
// command's; other errors pass as they are.
func usageOf(err error) error {
	if u, ok := errors.AsType[*creds.UsageError](err); ok {
		return errUsage{u.Msg}
	}
	return err
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line and returns the exit status: 0 on success, 1
// on failure, 2 on a usage mistake.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" {
		printUsage(stdout)
		return 0
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := usageOf(c.run(args[1:], stdout, stderr))
		var u errUsage
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &u) && u.msg == "":
			return 2 // the flag package has said what is wrong
		case errors.As(err, &u):
			fmt.Fprintf(stderr, "%s %s: %s\nRun '%s %s -h' for help.\n", program, c.name, u.msg, program, c.name)
			return 2
		default:
			fmt.Fprintf(stderr, "%s %s: %v\n", program, c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", program, name)
	printUsage(stderr)
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `fleet is a sharded key-value store on rago's fleet: many Raft groups placed
over a set of nodes, zone-aware, moved as nodes come and go.

Usage:

	fleet COMMAND [arguments]

Commands:

`)
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-6s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Start here:

	fleet demo                       five nodes on 127.0.0.1, pages on :8101-8105
	curl -X PUT localhost:8101/kv/greeting --data-binary hello    (in another terminal)
	curl localhost:8105/kv/greeting

Run 'fleet COMMAND -h' for a command's flags.
`)
}

func runHelp(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] && c.name != "help" {
			return c.run([]string{"-h"}, stdout, stderr)
		}
	}
	return usageErr("no command %q", args[0])
}

// newFlags makes the flag set of a command, with a usage text that shows
// the synopsis, a description and the flags.
func newFlags(name string, stderr io.Writer, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(program+" "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var synopsis string
	for _, c := range commands {
		if c.name == name {
			synopsis = c.args
		}
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s %s %s\n\n%s\n\nFlags:\n", program, name, synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses a command's flags, which take no positional
// arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage{} // the flag package printed the problem and the usage
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
