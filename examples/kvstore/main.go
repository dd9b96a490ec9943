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
	"fmt"
	"io"
	"os"

	"github.com/rago-raft/rago/examples/internal/cli"
)

// prog is the kvstore command and its subcommands.
var prog = &cli.Program{Name: "kvstore"}

func init() {
	// Assigned here, not in the declaration, because "help" and the usage
	// refer to the program itself.
	prog.Usage = printUsage
	prog.Commands = []cli.Command{
		{Name: "demo", Args: "[flags]", Summary: "run a 3-node cluster on this machine, with its logs, until Ctrl-C", Run: runDemo},
		{Name: "serve", Args: "--id ID --raft HOST:PORT --http HOST:PORT --data DIR [--peers ID=HOST:PORT,...]", Summary: "run one node", Run: runServe},
		{Name: "join", Args: "--id ID --raft HOST:PORT --http HOST:PORT --data DIR --via URL", Summary: "run a new node and add it to a running cluster", Run: runJoin},
		{Name: "leave", Args: "--id ID [--addr URL]", Summary: "remove a node from the cluster", Run: runLeave},
		{Name: "put", Args: "KEY [VALUE|-]", Summary: "set a key (the value from stdin with - or when left out)", Run: runPut},
		{Name: "get", Args: "KEY", Summary: "print a key's value", Run: runGet},
		{Name: "del", Args: "KEY", Summary: "delete a key", Run: runDel},
		{Name: "cas", Args: "KEY (--expect OLD | --expect-absent | --expect-revision N) (NEW | --delete)", Summary: "compare and set", Run: runCAS},
		{Name: "list", Args: "[PREFIX]", Summary: "list keys and values, by prefix", Run: runList},
		{Name: "status", Args: "", Summary: "show every member of the cluster", Run: runStatus},
		{Name: "watch", Args: "[PREFIX] [--from-revision N]", Summary: "print changes of keys as they are committed", Run: runWatch},
		{Name: "backup", Args: "--out FILE", Summary: "write a backup of the cluster's data to FILE", Run: runBackup},
		{Name: "restore", Args: "--from FILE --id ID --raft HOST:PORT --http HOST:PORT --data DIR", Summary: "run a node that starts a new cluster from a backup", Run: runRestore},
		{Name: "certs", Args: "--dir DIR --nodes ID=HOST,...", Summary: "make a CA and node certificates to try mutual TLS", Run: runCerts},
		{Name: "help", Args: "[COMMAND]", Summary: "show help", Run: prog.Help},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line and returns the exit status: 0 on success, 1
// on failure, 2 on a usage mistake.
func run(args []string, stdout, stderr io.Writer) int { return prog.Run(args, stdout, stderr) }

func printUsage(w io.Writer) {
	fmt.Fprint(w, `kvstore is a replicated key-value store on rago (Raft clusters on an actor runtime).

Usage:

	kvstore COMMAND [arguments]

Commands:

`)
	prog.PrintCommands(w, 7)
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
