package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/runnerrelease"
)

func (a *app) bumpCommand() *cli.Command {
	return &cli.Command{
		Name:  "bump",
		Usage: "move a recipe's pins forward, editing only the pinned values",
		Subcommands: []*cli.Command{
			a.bumpRunnerCommand(),
		},
	}
}

type bumpRunnerFlags struct {
	recipe         string
	to             string // the version to pin, or "" with latest
	sha256         string // given by hand: the API is not asked
	latest         bool
	allowDowngrade bool
	apiURL         string
	dryRun         bool
}

func (a *app) bumpRunnerCommand() *cli.Command {
	return &cli.Command{
		Name:      "runner",
		Usage:     "set runner.version and runner.sha256 in a recipe, from GitHub's releases or by hand",
		ArgsUsage: "RECIPE",
		Description: "With --latest, asks GitHub for the newest actions/runner release and the SHA-256 of its\n" +
			"linux-x64 tarball; with --to V alone, looks up release vV the same way; with --to V --sha256 H,\n" +
			"uses what you give and asks nothing. Only the two values' bytes change: comments, quoting and\n" +
			"layout stay as written, and the file is replaced atomically. GITHUB_TOKEN, if set, is sent to\n" +
			"the API (it lifts the anonymous rate limit). Refuses downgrades without --allow-downgrade and\n" +
			"any version older than " + recipes.MinRunnerVersion + ". Exit 0 done (or nothing to do), 1 refused or failed, 2 bad usage.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "the runner version to pin, e.g. 2.338.0"},
			&cli.StringFlag{Name: "sha256", Usage: "the SHA-256 of actions-runner-linux-x64-<V>.tar.gz (with --to; skips the API)"},
			&cli.BoolFlag{Name: "latest", Usage: "pin GitHub's latest runner release"},
			&cli.BoolFlag{Name: "allow-downgrade", Usage: "allow pinning an older version than the recipe has"},
			&cli.StringFlag{Name: "api-url", Value: runnerrelease.DefaultBaseURL, Usage: "GitHub API base URL (GitHub Enterprise: https://HOST/api/v3)", EnvVars: envs("GITHUB_API_URL")},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would change; write nothing"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr("bump runner needs exactly one recipe file, e.g. imagebake bump runner recipes/github-runner-focal.yaml --latest")
			}
			f := bumpRunnerFlags{recipe: c.Args().First(), to: c.String("to"), sha256: c.String("sha256"), latest: c.Bool("latest"),
				allowDowngrade: c.Bool("allow-downgrade"), apiURL: c.String("api-url"), dryRun: c.Bool("dry-run")}
			switch {
			case f.latest && (f.to != "" || f.sha256 != ""):
				return usageErr("--latest picks the version and hash; drop --to and --sha256")
			case !f.latest && f.to == "":
				return usageErr("say which version: --latest, --to V (looked up on GitHub) or --to V --sha256 H")
			}
			if f.to != "" && f.sha256 == "" { // with --sha256 the recipe's own rule checks it
				if err := runnerrelease.CheckVersion(strings.TrimPrefix(f.to, "v")); err != nil {
					return usageErr("--to %q: %v", f.to, err)
				}
			}
			return a.runBumpRunner(c.Context, f)
		},
	}
}

// release is the release to pin: given by hand, or asked of the API.
func (a *app) release(ctx context.Context, f bumpRunnerFlags) (runnerrelease.Release, error) {
	if f.sha256 != "" {
		return runnerrelease.Release{Version: f.to, SHA256: f.sha256}, nil
	}
	// The token comes only from the environment, so it never shows in
	// argv (ps, shell history) and is never printed.
	token := os.Getenv("GITHUB_TOKEN")
	var (
		rel runnerrelease.Release
		err error
	)
	if f.latest {
		rel, err = runnerrelease.Latest(ctx, f.apiURL, token)
	} else {
		rel, err = runnerrelease.Get(ctx, f.apiURL, token, f.to)
	}
	if err != nil {
		return rel, failed("%v", err)
	}
	a.log.Info("runner release", "version", rel.Version, "sha256", rel.SHA256, "from", rel.SHA256Source)
	return rel, nil
}

func (a *app) runBumpRunner(ctx context.Context, f bumpRunnerFlags) error {
	path := f.recipe
	data, err := recipes.ReadFile(path)
	if err != nil {
		return failed("%v", err)
	}
	old, err := recipes.ReadRunner(data)
	if err != nil {
		return failed("%s: %v", path, err)
	}
	byHand := f.sha256 != ""
	want, err := a.release(ctx, f)
	if err != nil {
		return err
	}
	// BumpRunner checks the version's and hash's spelling first, so a bad
	// --to or --sha256 is reported before anything is compared.
	out, err := recipes.BumpRunner(data, want.Version, want.SHA256)
	if err != nil {
		if byHand {
			return usageErr("%v", err)
		}
		return failed("%s: %v", path, err)
	}
	verdict, err := runnerrelease.PlanBump(old, want, f.allowDowngrade)
	switch {
	case errors.Is(err, runnerrelease.ErrVersion) && byHand:
		return usageErr("--to %q: not a runner version such as 2.338.0", want.Version)
	case err != nil:
		// Only the API can have said it: never blame a --to not given.
		return failed("%s: the API answered %v; nothing written", path, err)
	}
	if verdict != runnerrelease.Bump {
		return a.notBumped(path, old, want, verdict)
	}

	// The bumped recipe must load; this also lets a bump rescue a recipe
	// whose only problem was a runner too old to register.
	if _, err := recipes.Parse(path, out); err != nil {
		return cli.Exit(fmt.Sprintf("%v\nimagebake: %s: not written: the bumped recipe does not validate", err, path), exitFailed)
	}
	verb := ""
	if f.dryRun {
		verb = " (dry run, not written)"
	} else if err := recipes.ReplaceFile(path, out); err != nil {
		return failed("%v", err)
	}
	fmt.Fprintf(a.stdout, "%s: runner %s → %s%s\n", path, old.Version, want.Version, verb)
	fmt.Fprintf(a.stdout, "  sha256 %s → %s\n", old.SHA256, want.SHA256)
	return nil
}

// notBumped reports a verdict other than Bump: nothing to do (exit 0), or
// why the bump is refused (exit 1).
func (a *app) notBumped(path string, old recipes.RunnerPin, want runnerrelease.Release, verdict runnerrelease.Verdict) error {
	switch verdict {
	case runnerrelease.Unchanged:
		fmt.Fprintf(a.stdout, "%s: runner already at %s\n", path, old.Version)
		return nil
	case runnerrelease.TooOld:
		return failed("runner %s is older than %s, the oldest runner GitHub registers; choose a newer one (--latest)", want.Version, recipes.MinRunnerVersion)
	case runnerrelease.HashMismatch:
		return failed("%s: runner %s is pinned with sha256 %s, but %s; check the release's linux-x64 SHA and edit runner.sha256 by hand",
			path, old.Version, old.SHA256, hashSource(want))
	case runnerrelease.Downgrade:
		return failed("%s: %s would downgrade the runner from %s; pass --allow-downgrade if you mean it", path, want.Version, old.Version)
	}
	return failed("%s: runner %s: no bump (verdict %d)", path, want.Version, verdict)
}

func hashSource(r runnerrelease.Release) string {
	if r.SHA256Source == "" {
		return "--sha256 says " + r.SHA256
	}
	return "the release's " + r.SHA256Source + " says " + r.SHA256
}
