package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/imagebake/imagebake/bake"
	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/recipes"
)

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "imagebake")
	}
	return filepath.Join(os.TempDir(), "imagebake-cache")
}

func localFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "target", Value: "local", Usage: "local (QEMU on this machine) or azure", EnvVars: envs("TARGET")},
		&cli.StringFlag{Name: "gallery-dir", Usage: "the local gallery folder (default $XDG_DATA_HOME/imagebake/gallery)", EnvVars: envs("GALLERY_DIR")},
		&cli.StringFlag{Name: "cache-dir", Value: defaultCacheDir(), Usage: "base images and downloads", EnvVars: envs("CACHE_DIR")},
		&cli.StringFlag{Name: "log-dir", Usage: "the build's logs (default under the cache dir, one folder per build)", EnvVars: envs("LOG_DIR")},
		&cli.IntFlag{Name: "memory", Usage: "build VM memory in MiB (default: the recipe's build.memoryMiB)", EnvVars: envs("MEMORY")},
		&cli.IntFlag{Name: "cpus", Usage: "build VM CPUs (default: the recipe's build.cpus)", EnvVars: envs("CPUS")},
		&cli.BoolFlag{Name: "keep-on-failure", Usage: "keep the build VM after a failure and print how to reach it", EnvVars: envs("KEEP_ON_FAILURE")},
		&cli.DurationFlag{Name: "cleanup-timeout", Value: 15 * time.Minute, Usage: "bound on all cleanups together", EnvVars: envs("CLEANUP_TIMEOUT")},
		outputFlag(),
	}
}

func localStore(c *cli.Context) (*local.Store, error) {
	root := c.String("gallery-dir")
	if root == "" {
		var err error
		if root, err = local.DefaultRoot(); err != nil {
			return nil, usageErr("no --gallery-dir and no default: %v", err)
		}
	}
	return local.New(root, logger(c)), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("CI") == ""
}

func logDir(c *cli.Context, recipe, kind string) string {
	if d := c.String("log-dir"); d != "" {
		return d
	}
	return filepath.Join(c.String("cache-dir"), "logs", fmt.Sprintf("%s-%s-%s", recipe, kind, time.Now().UTC().Format("20060102T150405Z")))
}

// stageTimeouts bound every stage that waits on a machine, so a hung VM
// fails the bake (and is cleaned up) instead of blocking a nightly job; the
// recipe's build.timeouts override them. Publishing has no default bound:
// Azure replication has been seen to take hours.
func stageTimeouts(r *recipes.Recipe) map[string]time.Duration {
	out := map[string]time.Duration{
		"boot": 10 * time.Minute, "ssh": 15 * time.Minute, "cloud-init": 45 * time.Minute, "checks": 20 * time.Minute,
		"deprovision": 10 * time.Minute, "capture": 30 * time.Minute, "generalized": 5 * time.Minute,
	}
	for stage, s := range r.Build.Timeouts {
		if d, err := recipes.ParseDuration(s); err == nil {
			out[stage] = d
		}
	}
	return out
}

func bakeCommand() *cli.Command {
	return &cli.Command{
		Name:      "bake",
		Usage:     "bake a recipe into a new image version (locally on QEMU by default, or on Azure)",
		ArgsUsage: "RECIPE",
		Description: "Boots a build VM with the rendered cloud-config, waits for cloud-init, runs the built-in and recipe checks\n" +
			"over SSH, deprovisions, captures and publishes the next patch version in the recipe's MAJOR.MINOR line.\n" +
			"Everything the build created is removed afterwards, on success, failure or Ctrl-C.\n" +
			"Exit codes: 0 baked, 1 bake failed, 2 bad usage or recipe.",
		Flags: append(append(localFlags(),
			&cli.StringFlag{Name: "version", Usage: "publish exactly this X.Y.Z instead of the next patch", EnvVars: envs("VERSION")},
		), append(azureFlags(), ifChangedFlags()...)...),
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			r, err := loadRecipe(c)
			if err != nil {
				return err
			}
			if v := c.String("version"); v != "" {
				if _, err := gallery.ParseVersion(v); err != nil {
					return usageErr("--version %q: %v", v, err)
				}
			}
			if skip, err := skipUnchanged(c, r); err != nil || skip {
				return err
			}
			switch c.String("target") {
			case "local":
				return bakeLocal(c, r)
			case "azure":
				return bakeAzure(c, r)
			default:
				return usageErr("--target %q: use local or azure", c.String("target"))
			}
		},
	}
}

func bakeLocal(c *cli.Context, r *recipes.Recipe) error {
	if r.Base.Local == (recipes.LocalBase{}) {
		return cli.Exit(fmt.Sprintf("%s: base.local is not set; the local target needs base.local (builtin: debian-bookworm, a path, or a url with sha256)", r.Source), exitUsage)
	}
	store, err := localStore(c)
	if err != nil {
		return err
	}
	out := c.App.Writer
	jsonOut := c.String("output") == "json"
	progress := c.App.ErrWriter
	textOut := out
	if jsonOut {
		textOut = c.App.ErrWriter
	}
	fmt.Fprintf(textOut, "baking %s (%.12s) on the local target\n", r.Name, r.Hash())
	opts := bake.LocalOptions{
		Store: store, CacheDir: c.String("cache-dir"), LogDir: logDir(c, r.Name, "bake"), Version: c.String("version"),
		MemoryMiB: c.Int("memory"), CPUs: c.Int("cpus"), KeepOnFail: c.Bool("keep-on-failure"), Abort: abortChan(c),
		Progress: progress, Logger: logger(c), Sink: bake.NewTextSink(textOut, isTerminal(textOut)),
		Timeouts: stageTimeouts(r), CleanupTime: c.Duration("cleanup-timeout"), GitCommit: gitCommit(r.Source),
	}
	m, err := bake.Local(c.Context, r, opts)
	return finish(c, "bake", m, err, textOut, jsonOut)
}

// finish prints the result, writes GitHub step outputs, and maps the error
// to an exit code.
func finish(c *cli.Context, verb string, m *bake.Manifest, err error, textOut io.Writer, jsonOut bool) error {
	if jsonOut {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if eerr := enc.Encode(m); eerr != nil {
			return eerr
		}
	}
	if len(m.Left) > 0 {
		fmt.Fprintf(textOut, "left in place: %s\n", strings.Join(m.Left, "; "))
	}
	if err != nil {
		fmt.Fprintf(textOut, "logs: %s\n", m.LogDir)
		return cli.Exit(fmt.Sprintf("imagebake: %s of %s failed: %v", verb, m.Recipe, err), exitFailed)
	}
	if m.Version != "" && m.Result == "baked" {
		fmt.Fprintf(textOut, "published %s %s: %s\n", m.Image, m.Version, firstNonEmpty(m.Path, m.VersionID))
		if m.Path != "" {
			fmt.Fprintf(textOut, "check it: imagebake verify %s@%s\nboot it:  %s\n", m.Image, m.Version, m.BootCommand)
		}
		if err := writeGitHubOutput(m); err != nil {
			return cli.Exit("imagebake: GITHUB_OUTPUT: "+err.Error(), exitFailed)
		}
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// writeGitHubOutput appends the version and its ID as step outputs when run
// in GitHub Actions.
func writeGitHubOutput(m *bake.Manifest) error {
	path := os.Getenv("GITHUB_OUTPUT")
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "version=%s\nversion-id=%s\nimage=%s\n", m.Version, firstNonEmpty(m.VersionID, m.Path), m.Image)
	return err
}

func gitCommit(recipePath string) string {
	dir := filepath.Dir(recipePath)
	for i := 0; i < 10; i++ {
		head, err := os.ReadFile(filepath.Join(dir, ".git", "HEAD"))
		if err == nil {
			ref := strings.TrimSpace(string(head))
			if name, ok := strings.CutPrefix(ref, "ref: "); ok {
				b, err := os.ReadFile(filepath.Join(dir, ".git", name))
				if err != nil {
					return ""
				}
				return strings.TrimSpace(string(b))
			}
			return ref
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return ""
}

// parseImageRef splits IMAGE[@VERSION].
func parseImageRef(s string) (image, version string) {
	image, version, _ = strings.Cut(s, "@")
	return image, version
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "boot a fresh VM from a published version and run the recipe's checks on it",
		ArgsUsage: "IMAGE[@VERSION]",
		Description: "Without @VERSION, verifies the version \"latest\" resolves to. Locally it also proves the image was\n" +
			"generalized: cloud-init runs again, machine-id and SSH host keys differ from the build's, the build user is gone.",
		Flags: append(append(localFlags(),
			&cli.StringFlag{Name: "recipe", Usage: "the recipe whose checks to run (default recipes/IMAGE.yaml)", EnvVars: envs("RECIPE")},
		), azureFlags()...),
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			if c.NArg() != 1 {
				return usageErr("verify needs IMAGE[@VERSION], e.g. imagebake verify local-demo@1.0.1")
			}
			target := c.String("target")
			if target != "local" && target != "azure" {
				return usageErr("--target %q: use local or azure", target)
			}
			image, version := parseImageRef(c.Args().First())
			recipePath := c.String("recipe")
			if recipePath == "" {
				recipePath = filepath.Join("recipes", image+".yaml")
			}
			r, err := recipes.Load(recipePath)
			if err != nil {
				return cli.Exit(fmt.Sprintf("%v\n(verify runs the checks of the recipe the image was baked from; name it with --recipe)", err), exitUsage)
			}
			if target == "azure" {
				return verifyAzure(c, r, version)
			}
			store, err := localStore(c)
			if err != nil {
				return err
			}
			v, err := resolveVersion(c.Context, store, image, version)
			if err != nil {
				return cli.Exit("imagebake: "+err.Error(), exitFailed)
			}
			jsonOut := c.String("output") == "json"
			textOut := c.App.Writer
			if jsonOut {
				textOut = c.App.ErrWriter
			}
			if h := v.Tags[bake.TagRecipeHash]; h != "" && h != r.Hash() {
				fmt.Fprintf(textOut, "note: %s@%s was baked from another revision of the recipe (hash %.12s, now %.12s)\n", image, v.Name, h, r.Hash())
			}
			fmt.Fprintf(textOut, "verifying %s %s (%s)\n", image, v.Name, v.Path)
			opts := bake.LocalOptions{CacheDir: c.String("cache-dir"), LogDir: logDir(c, image, "verify"), KeepOnFail: c.Bool("keep-on-failure"),
				Abort: abortChan(c), Progress: c.App.ErrWriter, Logger: logger(c), Sink: bake.NewTextSink(textOut, isTerminal(textOut)),
				Timeouts: stageTimeouts(r), CleanupTime: c.Duration("cleanup-timeout")}
			m, err := bake.VerifyLocal(c.Context, r, v, opts)
			if err := finish(c, "verify", m, err, textOut, jsonOut); err != nil {
				return err
			}
			fmt.Fprintf(textOut, "verified %s %s: %d checks passed\n", image, v.Name, len(m.Checks))
			return nil
		},
	}
}

func resolveVersion(ctx context.Context, store gallery.Store, image, version string) (gallery.ImageVersion, error) {
	if version != "" && version != "latest" {
		return store.Get(ctx, image, version)
	}
	all, err := store.List(ctx, image)
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	v, ok := gallery.Latest(all)
	if !ok {
		return gallery.ImageVersion{}, fmt.Errorf("image %s has no version that \"latest\" resolves to (%d versions, none succeeded and not excluded)", image, len(all))
	}
	return v, nil
}

func baseCommand() *cli.Command {
	cache := &cli.StringFlag{Name: "cache-dir", Value: defaultCacheDir(), Usage: "where bases are kept", EnvVars: envs("CACHE_DIR")}
	return &cli.Command{
		Name:  "base",
		Usage: "make or download base images for the local target",
		Subcommands: []*cli.Command{
			{
				Name:  "build",
				Usage: "build a Debian cloud base offline with mmdebstrap (cached; rebuilt only when its inputs change)",
				Flags: []cli.Flag{cache, &cli.StringFlag{Name: "suite", Value: "bookworm", Usage: "Debian suite"}},
				Action: func(c *cli.Context) error {
					start := time.Now()
					b, err := qemu.BuildBase(c.Context, qemu.BuildOptions{CacheDir: c.String("cache-dir"), Suite: c.String("suite"), Logger: logger(c)})
					if err != nil {
						return cli.Exit("imagebake: base build: "+err.Error(), exitFailed)
					}
					fmt.Fprintf(c.App.Writer, "base debian-%s ready in %s: %s\n", c.String("suite"), time.Since(start).Round(time.Second), b.Disk)
					return nil
				},
			},
			{
				Name:      "pull",
				Usage:     "download the official Ubuntu cloud image and verify it against the published SHA256SUMS",
				ArgsUsage: "focal",
				Flags:     []cli.Flag{cache, &cli.StringFlag{Name: "base-url", Value: "https://cloud-images.ubuntu.com/focal/current/", Usage: "where the image and SHA256SUMS are", EnvVars: envs("BASE_URL")}},
				Action: func(c *cli.Context) error {
					if c.Args().First() != "focal" || c.NArg() != 1 {
						return usageErr("base pull takes one name: focal")
					}
					path, err := qemu.PullUbuntuFocal(c.Context, c.String("base-url"), c.String("cache-dir"), c.App.ErrWriter)
					if err != nil {
						return cli.Exit("imagebake: base pull focal: "+err.Error(), exitFailed)
					}
					fmt.Fprintf(c.App.Writer, "focal cloud image verified: %s\n", path)
					return nil
				},
			},
		},
	}
}

func versionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "versions",
		Usage: "list and manage image versions",
		Subcommands: []*cli.Command{{
			Name:      "list",
			Usage:     "list an image's versions, marking the one \"latest\" resolves to",
			ArgsUsage: "IMAGE",
			Flags:     releaseFlags(),
			Action: func(c *cli.Context) error {
				if err := checkOutput(c); err != nil {
					return err
				}
				if c.NArg() != 1 {
					return usageErr("versions list needs IMAGE")
				}
				store, err := storeFor(c, c.Args().First())
				if err != nil {
					return err
				}
				all, err := store.List(c.Context, c.Args().First())
				if err != nil && !errors.Is(err, gallery.ErrNotFound) {
					return cli.Exit("imagebake: "+err.Error(), exitFailed)
				}
				// Azure's list has no replication state; each version's
				// Get (with $expand=ReplicationStatus) has.
				for i, v := range all {
					if len(v.Regions) > 0 && v.Regions[0].State != gallery.ReplicationUnknown {
						continue
					}
					if full, err := store.Get(c.Context, c.Args().First(), v.Name); err == nil {
						all[i].Regions = full.Regions
					}
				}
				latest, _ := gallery.Latest(all)
				if c.String("output") == "json" {
					type row struct {
						gallery.ImageVersion
						Latest bool `json:"latest"`
					}
					rows := []row{}
					for _, v := range all {
						rows = append(rows, row{v, v.Name == latest.Name})
					}
					enc := json.NewEncoder(c.App.Writer)
					enc.SetIndent("", "  ")
					return enc.Encode(rows)
				}
				tw := tabwriter.NewWriter(c.App.Writer, 0, 2, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tLATEST\tSTATE\tPUBLISHED\tEXCLUDED\tEND OF LIFE\tREGIONS\tRECIPE HASH\tRUNNER\tBASE\tSIZE")
				for _, v := range all {
					mark := ""
					if v.Name == latest.Name {
						mark = "*"
					}
					eol := "-"
					if v.EndOfLife != nil {
						eol = v.EndOfLife.Format("2006-01-02")
					}
					var regions []string
					for _, r := range v.Regions {
						regions = append(regions, fmt.Sprintf("%s×%d:%s", r.Name, r.Replicas, dash(r.State)))
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\t%.12s\t%s\t%s\t%d MiB\n", v.Name, mark, v.ProvisioningState,
						v.PublishedAt.Format(time.RFC3339), v.ExcludeFromLatest, eol, strings.Join(regions, ","), v.RecipeHash, dash(v.Tags[bake.TagRunner]), dash(v.Tags[bake.TagBaseVersion]), v.SizeBytes>>20)
				}
				return tw.Flush()
			},
		}},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
