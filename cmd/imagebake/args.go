package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed moves flags written after positional arguments in front of
// them, so `imagebake bake recipe.yaml --target azure` works: urfave/cli v2
// stops parsing flags at the first positional argument. A "--" ends flags.
// A flag that needs a value but ends the line is an error: moved in front
// of the positional arguments it would take one of them as its value.
func interspersed(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 {
		return args, nil
	}
	out := []string{args[0]}
	cmds := app.Commands
	var flags []cli.Flag
	i := 1
	// Walk the command path: global flags, then command and subcommand names.
	for i < len(args) {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			out = append(out, a)
			// A flag between command names belongs to the global options
			// or to the command named so far.
			if takesValue(append(append([]cli.Flag(nil), app.Flags...), flags...), a) && !strings.Contains(a, "=") {
				if i+1 == len(args) {
					return nil, missingValue(a)
				}
				out = append(out, args[i+1])
				i++
			}
			i++
			continue
		}
		cmd := findCommand(cmds, a)
		if cmd == nil {
			break
		}
		out = append(out, a)
		cmds, flags = cmd.Subcommands, cmd.Flags
		i++
	}
	var moved, positional []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			moved = append(moved, a)
			if takesValue(flags, a) && !strings.Contains(a, "=") {
				if i+1 == len(args) {
					return nil, missingValue(a)
				}
				moved = append(moved, args[i+1])
				i++
			}
			continue
		}
		positional = append(positional, a)
	}
	return append(append(out, moved...), positional...), nil
}

func missingValue(flag string) error {
	return fmt.Errorf("flag %s needs a value", flag)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.Name == name {
			return c
		}
		for _, a := range c.Aliases {
			if a == name {
				return c
			}
		}
	}
	return nil
}

// takesValue reports whether the flag named by arg (-x or --xx) needs a
// value; unknown flags are left for cli to report.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, isBool := f.(*cli.BoolFlag); isBool {
				return false
			}
			return true
		}
	}
	return false
}
