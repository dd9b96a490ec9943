// Command kvstore is a replicated key-value store on rago: a cluster of
// nodes, each an OS process with its own data directory, Raft address and
// HTTP address, that keeps every acknowledged write through crashes and
// restarts of a minority of them.
//
//	kvstore demo                           three local nodes in one go
//	kvstore serve --id n1 --raft ... --http ... --data ... --peers ...
//	kvstore join  --id n4 ... --via http://127.0.0.1:8001
//	kvstore leave --id n4
//	kvstore put|get|del|cas|list|status    the client
//	kvstore watch [PREFIX]                 changes as they are committed
//	kvstore backup --out FILE              a backup of the data
//	kvstore restore --from FILE --id n1 ... a new cluster from a backup
//	kvstore certs --dir DIR --nodes ...    certificates to try mutual TLS
//
// Run "kvstore help" or "kvstore COMMAND -h" for the details; the README
// next to this file has the HTTP API and a tour.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

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
		{"demo", "[flags]", "run a 3-node cluster on this machine, with its logs, until Ctrl-C", runDemo},
		{"serve", "--id ID --raft HOST:PORT --http HOST:PORT --data DIR [--peers ID=HOST:PORT,...]", "run one node", runServe},
		{"join", "--id ID --raft HOST:PORT --http HOST:PORT --data DIR --via URL", "run a new node and add it to a running cluster", runJoin},
		{"leave", "--id ID [--addr URL]", "remove a node from the cluster", runLeave},
		{"put", "KEY [VALUE|-]", "set a key (the value from stdin with - or when left out)", runPut},
		{"get", "KEY", "print a key's value", runGet},
		{"del", "KEY", "delete a key", runDel},
		{"cas", "KEY (--expect OLD | --expect-absent | --expect-revision N) (NEW | --delete)", "compare and set", runCAS},
		{"list", "[PREFIX]", "list keys and values, by prefix", runList},
		{"status", "", "show every member of the cluster", runStatus},
		{"watch", "[PREFIX] [--from-revision N]", "print changes of keys as they are committed", runWatch},
		{"backup", "--out FILE", "write a backup of the cluster's data to FILE", runBackup},
		{"restore", "--from FILE --id ID --raft HOST:PORT --http HOST:PORT --data DIR", "run a node that starts a new cluster from a backup", runRestore},
		{"certs", "--dir DIR --nodes ID=HOST,...", "make a CA and node certificates to try mutual TLS", runCerts},
		{"help", "[COMMAND]", "show help", runHelp},
	}
}

// errUsage marks a command line mistake: the message is followed by the
// command's usage, and the exit status is 2.
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usageErr(format string, args ...any) error { return errUsage{fmt.Sprintf(format, args...)} }

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
		err := c.run(args[1:], stdout, stderr)
		var u errUsage
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &u) && u.msg == "":
			return 2 // the flag package has said what is wrong
		case errors.As(err, &u):
			fmt.Fprintf(stderr, "kvstore %s: %s\nRun 'kvstore %s -h' for help.\n", c.name, u.msg, c.name)
			return 2
		default:
			fmt.Fprintf(stderr, "kvstore %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "kvstore: unknown command %q\n\n", name)
	printUsage(stderr)
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `kvstore is a replicated key-value store on rago (Raft clusters on an actor runtime).

Usage:

	kvstore COMMAND [arguments]

Commands:

`)
	for _, c := range commands {
		fmt.Fprintf(w, "\t%-7s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Start here:

	kvstore demo                     three nodes on 127.0.0.1, web pages on :8001-8003
	kvstore put greeting hello       (in another terminal)
	kvstore get greeting
	kvstore status

The client commands talk to --addr (default $KVSTORE_ADDR, else the demo's
three nodes). Run 'kvstore COMMAND -h' for a command's flags.
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
	fs := flag.NewFlagSet("kvstore "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var synopsis string
	for _, c := range commands {
		if c.name == name {
			synopsis = c.args
		}
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: kvstore %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(description))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseArgs parses flags that may come before, between or after the
// positional arguments ("kvstore get k --consistency local"), as people
// type them. Everything after "--" is positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			// The flag package printed the problem and the usage.
			return nil, errUsage{}
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
