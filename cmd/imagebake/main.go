// Command imagebake bakes VM images from declarative recipes. This package
// only wires the command line; the work lives in the other packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/internal/buildinfo"
)

// Exit codes: 0 done, 1 the work failed (invalid recipe, failed bake), 2 bad
// usage.
const (
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	// The first SIGINT/SIGTERM cancels ctx so that cleanups run; a second
	// one closes abort, which stops the cleanups (what is left is printed).
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	abort := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
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
	app.Metadata = map[string]any{"abort": (<-chan struct{})(abort)}
	err := app.RunContext(ctx, interspersed(app, args))
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, "imagebake:", err)
	return exitUsage
}

func envs(name string) []string { return []string{"IMAGEBAKE_" + name} }

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "imagebake",
		Usage:     "bake VM images for ephemeral GitHub Actions runners (and any Linux role) from a recipe",
		Version:   buildinfo.Get().Version,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error", EnvVars: envs("LOG_LEVEL")},
		},
		Before: func(c *cli.Context) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return cli.Exit(fmt.Sprintf("--log-level %q: use debug, info, warn or error", c.String("log-level")), exitUsage)
			}
			c.App.Metadata["logger"] = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
			return nil
		},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return cli.Exit("imagebake: "+err.Error()+" (see --help)", exitUsage)
		},
		Commands: []*cli.Command{
			validateCommand(),
			renderCommand(),
			bakeCommand(),
			verifyCommand(),
			baseCommand(),
			versionsCommand(),
			promoteCommand(),
			rollbackCommand(),
			pruneCommand(),
			bumpCommand(),
			gcCommand(),
			versionCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

func logger(c *cli.Context) *slog.Logger {
	if l, ok := c.App.Metadata["logger"].(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

func abortChan(c *cli.Context) <-chan struct{} {
	ch, _ := c.App.Metadata["abort"].(<-chan struct{})
	return ch
}

func usageErr(format string, args ...any) error {
	return cli.Exit("imagebake: "+fmt.Sprintf(format, args...), exitUsage)
}
