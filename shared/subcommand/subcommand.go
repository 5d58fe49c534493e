// Package subcommand runs the subcommand a binary is asked for, the same way
// in every Lookalike binary: `indexer run|serve`, `gateway serve|canary`.
package subcommand

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
)

// Command is one subcommand.
type Command struct {
	Name    string
	Summary string
	// Run gets the arguments after the name. os.Args holds the program name
	// and those arguments too, so a command whose flags are read from
	// os.Args (conf.Parse) sees only its own.
	Run func(ctx context.Context, args []string) int
}

// Exit statuses of the dispatcher itself.
const (
	ExitOK    = 0
	ExitUsage = 2
)

// Run runs the command that os.Args[1] names, or def when os.Args[1] is
// absent or a flag; "help" lists the commands on stderr.
func Run(ctx context.Context, stderr io.Writer, def string, cmds ...Command) int {
	name, args := def, os.Args[1:]
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		usage(stderr, def, cmds)
		return ExitOK
	}
	for _, c := range cmds {
		if c.Name == name {
			os.Args = append([]string{os.Args[0]}, args...)
			return c.Run(ctx, args)
		}
	}
	fmt.Fprintf(stderr, "unknown command %q\n", name)
	usage(stderr, def, cmds)
	return ExitUsage
}

func usage(w io.Writer, def string, cmds []Command) {
	fmt.Fprintf(w, "usage: %s <command> [flags]  (--help after a command lists its flags)\n\n", progName())
	for _, c := range cmds {
		mark := ""
		if c.Name == def {
			mark = " (default)"
		}
		fmt.Fprintf(w, "  %-10s %s%s\n", c.Name, c.Summary, mark)
	}
}

func progName() string {
	p := os.Args[0]
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	return p
}
