package main

import (
	"fmt"
	"os"
	"strings"

	goversion "github.com/hashicorp/go-version"
	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/runnerrelease"
)

func bumpCommand() *cli.Command {
	return &cli.Command{
		Name:  "bump",
		Usage: "move a recipe's pins forward, editing only the pinned values",
		Subcommands: []*cli.Command{
			bumpRunnerCommand(),
		},
	}
}

func bumpRunnerCommand() *cli.Command {
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
		Action: bumpRunner,
	}
}

func bumpRunner(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageErr("bump runner needs exactly one recipe file, e.g. imagebake bump runner recipes/github-runner-focal.yaml --latest")
	}
	path := c.Args().First()
	to, sum, latest := c.String("to"), c.String("sha256"), c.Bool("latest")
	switch {
	case latest && (to != "" || sum != ""):
		return usageErr("--latest picks the version and hash; drop --to and --sha256")
	case !latest && to == "":
		return usageErr("say which version: --latest, --to V (looked up on GitHub) or --to V --sha256 H")
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return cli.Exit(fmt.Sprintf("imagebake: recipe %s: %v", path, err), exitFailed)
	}
	old, err := recipes.ReadRunner(data)
	if err != nil {
		return cli.Exit(fmt.Sprintf("imagebake: %s: %v", path, err), exitFailed)
	}

	var want runnerrelease.Release
	switch {
	case sum != "":
		want = runnerrelease.Release{Version: to, SHA256: sum}
	default:
		// The token comes only from the environment, so it never shows in
		// argv (ps, shell history) and is never printed.
		token := os.Getenv("GITHUB_TOKEN")
		if latest {
			want, err = runnerrelease.Latest(c.Context, c.String("api-url"), token)
		} else {
			want, err = runnerrelease.Get(c.Context, c.String("api-url"), token, to)
		}
		if err != nil {
			return cli.Exit("imagebake: "+err.Error(), exitFailed)
		}
		logger(c).Info("runner release", "version", want.Version, "sha256", want.SHA256, "from", want.SHA256Source)
	}

	// BumpRunner checks the version's and hash's spelling first, so a bad
	// --to or --sha256 is reported before anything is compared.
	out, err := recipes.BumpRunner(data, want.Version, want.SHA256)
	if err != nil {
		if sum != "" {
			return usageErr("%v", err)
		}
		return cli.Exit(fmt.Sprintf("imagebake: %s: %v", path, err), exitFailed)
	}
	newV, err := goversion.NewVersion(want.Version)
	if err != nil {
		return usageErr("--to %q: not a runner version such as 2.338.0", want.Version)
	}
	if minV := goversion.Must(goversion.NewVersion(recipes.MinRunnerVersion)); newV.LessThan(minV) {
		return cli.Exit(fmt.Sprintf("imagebake: runner %s is older than %s, the oldest runner GitHub registers; choose a newer one (--latest)", want.Version, recipes.MinRunnerVersion), exitFailed)
	}
	oldV, oldErr := goversion.NewVersion(old.Version)
	if oldErr == nil && newV.Equal(oldV) {
		// Hex compares case-insensitively: the API answers lower case.
		if strings.EqualFold(old.SHA256, want.SHA256) {
			fmt.Fprintf(c.App.Writer, "%s: runner already at %s\n", path, old.Version)
			return nil
		}
		// Same version, different hash: either the recipe or the source
		// is wrong, and silently trusting either defeats the pin.
		return cli.Exit(fmt.Sprintf("imagebake: %s: runner %s is pinned with sha256 %s, but %s; check the release's linux-x64 SHA and edit runner.sha256 by hand",
			path, old.Version, old.SHA256, hashSource(want)), exitFailed)
	}
	if oldErr == nil && newV.LessThan(oldV) && !c.Bool("allow-downgrade") {
		return cli.Exit(fmt.Sprintf("imagebake: %s: %s would downgrade the runner from %s; pass --allow-downgrade if you mean it", path, want.Version, old.Version), exitFailed)
	}

	// The bumped recipe must load; this also lets a bump rescue a recipe
	// whose only problem was a runner too old to register.
	if _, err := recipes.Parse(path, out); err != nil {
		return cli.Exit(fmt.Sprintf("%v\nimagebake: %s: not written: the bumped recipe does not validate", err, path), exitFailed)
	}
	verb := ""
	if c.Bool("dry-run") {
		verb = " (dry run, not written)"
	} else if err := recipes.ReplaceFile(path, out); err != nil {
		return cli.Exit("imagebake: "+err.Error(), exitFailed)
	}
	fmt.Fprintf(c.App.Writer, "%s: runner %s → %s%s\n", path, old.Version, want.Version, verb)
	fmt.Fprintf(c.App.Writer, "  sha256 %s → %s\n", old.SHA256, want.SHA256)
	return nil
}

func hashSource(r runnerrelease.Release) string {
	if r.SHA256Source == "" {
		return "--sha256 says " + r.SHA256
	}
	return "the release's " + r.SHA256Source + " says " + r.SHA256
}
