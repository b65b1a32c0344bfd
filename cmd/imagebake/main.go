// Command imagebake bakes VM images from declarative recipes. This package
// only wires the command line: each command reads its flags into a struct
// and hands it to a run function; the work lives in the other packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/internal/buildinfo"
	"github.com/imagebake/imagebake/platform"
)

// Exit codes: 0 done, 1 the work failed (invalid recipe, failed bake), 2 bad
// usage.
const (
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == relayCommand {
		// QEMU runs this once per guest connection to the platform stand-in,
		// with the connection as stdin and stdout: nothing else may be
		// written there, so it bypasses the CLI (and its help).
		os.Exit(platform.RelayMain(context.Background(), os.Args[2:], os.Stdin, os.Stdout))
	}
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// relayCommand is the hidden subcommand platform.SelfRelay names.
const relayCommand = "platform-relay"

// app is what every command's run function gets instead of an untyped
// metadata map: where to write, how to log, and the second-signal abort.
type app struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	// abort is closed by a second SIGINT/SIGTERM: cleanups stop.
	abort <-chan struct{}
	// unknownCommand is set when cli looked for a command or help topic
	// that does not exist; run reports it as bad usage.
	unknownCommand string
}

// run is the whole program: it parses args, runs the command, prints the
// error and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	// The first SIGINT/SIGTERM cancels ctx so that cleanups run; a second
	// one closes abort, which stops the cleanups (what is left is printed).
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	abort := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer func() {
		// After Stop no signal is sent on sigs: closing it ends the goroutine.
		signal.Stop(sigs)
		close(sigs)
	}()
	go func() {
		n := 0
		for sig := range sigs {
			n++
			if n == 1 {
				fmt.Fprintf(stderr, "imagebake: %s: stopping and cleaning up (again to stop cleaning up)\n", sig)
				cancel(fmt.Errorf("interrupted by %s", sig))
				continue
			}
			close(abort)
			return
		}
	}()
	a := &app{stdout: stdout, stderr: stderr, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), abort: abort}
	return a.exitCode(a.execute(ctx, args))
}

// execute runs one command line.
func (a *app) execute(ctx context.Context, args []string) error {
	cliApp := a.cli()
	args, err := interspersed(cliApp, args)
	if err != nil {
		return usageErr("%v (see --help)", err)
	}
	if err := cliApp.RunContext(ctx, args); err != nil {
		return err
	}
	if a.unknownCommand != "" {
		return usageErr("no command or help topic %q (see imagebake help)", a.unknownCommand)
	}
	return nil
}

// exitCode prints err and maps it to the exit code: cli.Exit errors carry
// theirs; anything else is cli's own complaint about the command line.
func (a *app) exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(a.stderr, printable(msg))
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(a.stderr, "imagebake:", printable(err.Error()))
	return exitUsage
}

// printable escapes control characters other than newline and tab, so
// that text from an API or a file cannot drive the terminal (escape
// sequences, carriage returns overwriting the line).
func printable(s string) string {
	if !strings.ContainsFunc(s, isUnsafe) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isUnsafe(r) {
			q := fmt.Sprintf("%+q", string(r))
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isUnsafe(r rune) bool { return r != '\n' && r != '\t' && unicode.IsControl(r) }

func envs(name string) []string { return []string{"IMAGEBAKE_" + name} }

// cli builds the command tree; every action reads its flags and calls a
// run method on a.
func (a *app) cli() *cli.App {
	cliApp := &cli.App{
		Name:      "imagebake",
		Usage:     "bake VM images for ephemeral GitHub Actions runners (and any Linux role) from a recipe",
		Version:   buildinfo.Get().Version,
		Writer:    a.stdout,
		ErrWriter: a.stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error", EnvVars: envs("LOG_LEVEL")},
		},
		Before: func(c *cli.Context) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return cli.Exit(fmt.Sprintf("--log-level %q: use debug, info, warn or error", c.String("log-level")), exitUsage)
			}
			a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: lvl}))
			return nil
		},
		// Both report instead of cli's exit code 3 and help text: an
		// unknown command is bad usage (exit 2), and stdout stays clean.
		CommandNotFound: func(_ *cli.Context, name string) { a.unknownCommand = name },
		Commands: []*cli.Command{
			a.validateCommand(),
			a.renderCommand(),
			a.bakeCommand(),
			a.verifyCommand(),
			a.baseCommand(),
			a.versionsCommand(),
			a.promoteCommand(),
			a.rollbackCommand(),
			a.pruneCommand(),
			a.launchCommand(),
			a.runnersCommand(),
			a.bumpCommand(),
			a.gcCommand(),
			a.versionCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
	cliApp.OnUsageError = onUsageError
	setUsageErrors(cliApp.Commands)
	return cliApp
}

// onUsageError reports a flag cli could not parse as bad usage on stderr,
// without the help text cli would print on stdout (which would corrupt
// --output json).
func onUsageError(_ *cli.Context, err error, _ bool) error {
	return usageErr("%v (see --help)", err)
}

func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		setUsageErrors(c.Subcommands)
	}
}

func usageErr(format string, args ...any) error {
	return cli.Exit("imagebake: "+fmt.Sprintf(format, args...), exitUsage)
}

// failed is the exit-1 error: the work failed.
func failed(format string, args ...any) error {
	return cli.Exit("imagebake: "+fmt.Sprintf(format, args...), exitFailed)
}
