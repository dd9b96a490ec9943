// Package cli is the command line of the example programs: a program made
// of subcommands ("kvstore put", "fleet demo"), its usage and help, flag
// parsing as people type it, and the exit status of a mistake.
//
// The examples are run by hand, by scripts and by their own tests, so they
// answer the same way to the same kind of mistake: 2 and a hint for a
// command line that cannot be right, 1 for anything that went wrong while
// running, 0 otherwise (help included).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Command is one subcommand.
type Command struct {
	Name    string
	Args    string // synopsis after the name
	Summary string
	Run     func(args []string, stdout, stderr io.Writer) error
}

// Program is a command made of subcommands.
type Program struct {
	// Name is how the messages name the program ("kvstore").
	Name string
	// Commands are the subcommands, in the order of the usage text.
	Commands []Command
	// Usage prints the program's usage text; it may list the commands
	// with PrintCommands.
	Usage func(w io.Writer)
}

// UsageError marks a command line mistake: the message is followed by the
// command's usage hint, and the exit status is 2. An empty message means
// the flag package has printed the problem already.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef returns a UsageError with the formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Run runs the command line and returns the exit status: 0 on success, 1
// on failure, 2 on a usage mistake.
func (p *Program) Run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		p.Usage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" {
		p.Usage(stdout)
		return 0
	}
	for _, c := range p.Commands {
		if c.Name != name {
			continue
		}
		err := c.Run(args[1:], stdout, stderr)
		var u *UsageError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &u) && u.Msg == "":
			return 2 // the flag package has said what is wrong
		case errors.As(err, &u):
			fmt.Fprintf(stderr, "%s %s: %s\nRun '%s %s -h' for help.\n", p.Name, c.Name, u.Msg, p.Name, c.Name)
			return 2
		default:
			fmt.Fprintf(stderr, "%s %s: %v\n", p.Name, c.Name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n\n", p.Name, name)
	p.Usage(stderr)
	return 2
}

// PrintCommands lists the commands for the usage text, one a line, the
// summaries aligned after names padded to width.
func (p *Program) PrintCommands(w io.Writer, width int) {
	for _, c := range p.Commands {
		fmt.Fprintf(w, "\t%-*s %s\n", width, c.Name, c.Summary)
	}
}

// Help is the help command: the usage without arguments, else the named
// command's own -h.
func (p *Program) Help(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		p.Usage(stdout)
		return nil
	}
	for _, c := range p.Commands {
		if c.Name == args[0] && c.Name != "help" {
			return c.Run([]string{"-h"}, stdout, stderr)
		}
	}
	return Usagef("no command %q", args[0])
}

// NewFlags makes the flag set of a command, with a usage text that shows
// the synopsis, a description and the flags.
func (p *Program) NewFlags(name string, stderr io.Writer, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(p.Name+" "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var synopsis string
	for _, c := range p.Commands {
		if c.Name == name {
			synopsis = c.Args
		}
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s %s %s\n\n%s\n", p.Name, name, synopsis, strings.TrimSpace(description))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// ParseArgs parses flags that may come before, between or after the
// positional arguments ("kvstore get k --consistency local"), as people
// type them. Everything after "--" is positional.
func ParseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			// The flag package printed the problem and the usage.
			return nil, &UsageError{}
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

// ParseFlags parses the flags of a command that takes no positional
// arguments: the first argument that is not a flag is a mistake.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{} // the flag package printed the problem and the usage
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
