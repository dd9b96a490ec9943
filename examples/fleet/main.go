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
	"fmt"
	"io"
	"os"

	"github.com/rago-raft/rago/examples/internal/cli"
)

// prog is the fleet command and its subcommands.
var prog = &cli.Program{Name: "fleet"}

func init() {
	// Assigned here, not in the declaration, because "help" and the usage
	// refer to the program itself.
	prog.Usage = printUsage
	prog.Commands = []cli.Command{
		{Name: "demo", Args: "[flags]", Summary: "run 5 nodes in 3 zones on this machine, with their logs, until Ctrl-C", Run: runDemo},
		{Name: "serve", Args: "--id ID --raft HOST:PORT --http HOST:PORT --data DIR --zone Z --seeds ADDR,ADDR,ADDR", Summary: "run one node", Run: runServe},
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
	fmt.Fprint(w, `fleet is a sharded key-value store on rago's fleet: many Raft groups placed
over a set of nodes, zone-aware, moved as nodes come and go.

Usage:

	fleet COMMAND [arguments]

Commands:

`)
	prog.PrintCommands(w, 6)
	fmt.Fprint(w, `
Start here:

	fleet demo                       five nodes on 127.0.0.1, pages on :8101-8105
	curl -X PUT localhost:8101/kv/greeting --data-binary hello    (in another terminal)
	curl localhost:8105/kv/greeting

Run 'fleet COMMAND -h' for a command's flags.
`)
}
