package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/imagebake/imagebake/bake"
	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/internal/buildinfo"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/release"
)

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "imagebake")
	}
	return filepath.Join(os.TempDir(), "imagebake-cache")
}

func localFlagDefs() []cli.Flag {
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

// localFlags are the flags bake and verify share: the target, the local
// gallery and cache, the build VM and the output.
type localFlags struct {
	target         string
	galleryDir     string
	cacheDir       string
	logDir         string
	memoryMiB      int
	cpus           int
	keepOnFailure  bool
	cleanupTimeout time.Duration
	out            output
}

func (a *app) readLocalFlags(c *cli.Context) (localFlags, error) {
	out, err := a.readOutput(c)
	if err != nil {
		return localFlags{}, err
	}
	return localFlags{
		target: c.String("target"), galleryDir: c.String("gallery-dir"), cacheDir: c.String("cache-dir"), logDir: c.String("log-dir"),
		memoryMiB: c.Int("memory"), cpus: c.Int("cpus"), keepOnFailure: c.Bool("keep-on-failure"),
		cleanupTimeout: c.Duration("cleanup-timeout"), out: out,
	}, nil
}

func checkTarget(target string) error {
	if target != "local" && target != "azure" {
		return usageErr("--target %q: use local or azure", target)
	}
	return nil
}

// localStore is the local gallery in dir, or in the default folder.
func (a *app) localStore(dir string) (*local.Store, error) {
	if dir == "" {
		var err error
		if dir, err = local.DefaultRoot(); err != nil {
			return nil, usageErr("no --gallery-dir and no default: %v", err)
		}
	}
	return local.New(dir, a.log), nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("CI") == ""
}

// logDirFor is --log-dir, or a fresh folder under the cache for one build.
func (f localFlags) logDirFor(recipe, kind string) string {
	if f.logDir != "" {
		return f.logDir
	}
	return filepath.Join(f.cacheDir, "logs", fmt.Sprintf("%s-%s-%s", recipe, kind, time.Now().UTC().Format("20060102T150405Z")))
}

type bakeFlags struct {
	localFlags
	azure   azureBuildFlags
	version string // exactly this X.Y.Z instead of the next patch
	ifChanged
}

func (a *app) bakeCommand() *cli.Command {
	return &cli.Command{
		Name:      "bake",
		Usage:     "bake a recipe into a new image version (locally on QEMU by default, or on Azure)",
		ArgsUsage: "RECIPE",
		Description: "Boots a build VM with the rendered cloud-config, waits for cloud-init, runs the built-in and recipe checks\n" +
			"over SSH, deprovisions, captures and publishes the next patch version in the recipe's MAJOR.MINOR line.\n" +
			"Everything the build created is removed afterwards, on success, failure or Ctrl-C.\n" +
			"Exit codes: 0 baked, 1 bake failed, 2 bad usage or recipe.",
		Flags: append(append(localFlagDefs(),
			&cli.StringFlag{Name: "version", Usage: "publish exactly this X.Y.Z instead of the next patch", EnvVars: envs("VERSION")},
		), append(azureFlags(), ifChangedFlags()...)...),
		Action: func(c *cli.Context) error {
			lf, err := a.readLocalFlags(c)
			if err != nil {
				return err
			}
			r, err := loadRecipe(c)
			if err != nil {
				return err
			}
			f := bakeFlags{localFlags: lf, azure: readAzureBuildFlags(c), version: c.String("version")}
			if f.version != "" {
				if _, err := gallery.ParseVersion(f.version); err != nil {
					return usageErr("--version %q: %v", f.version, err)
				}
			}
			if f.ifChanged, err = readIfChanged(c); err != nil {
				return err
			}
			return a.runBake(c.Context, f, r)
		},
	}
}

func (a *app) runBake(ctx context.Context, f bakeFlags, r *recipes.Recipe) error {
	if skip, err := a.skipUnchanged(ctx, f, r); err != nil || skip {
		return err
	}
	if err := checkTarget(f.target); err != nil {
		return err
	}
	if f.target == "azure" {
		return a.bakeAzure(ctx, f, r)
	}
	return a.bakeLocal(ctx, f, r)
}

func (a *app) bakeLocal(ctx context.Context, f bakeFlags, r *recipes.Recipe) error {
	if r.Base.Local == (recipes.LocalBase{}) {
		return cli.Exit(fmt.Sprintf("%s: base.local is not set; the local target needs base.local (builtin: debian-bookworm, a path, or a url with sha256)", r.Source), exitUsage)
	}
	store, err := a.localStore(f.galleryDir)
	if err != nil {
		return err
	}
	textOut := f.out.text()
	fmt.Fprintf(textOut, "baking %s (%.12s) on the local target\n", r.Name, r.Hash())
	opts := bake.LocalOptions{
		Store: store, CacheDir: f.cacheDir, LogDir: f.logDirFor(r.Name, "bake"), Version: f.version,
		MemoryMiB: f.memoryMiB, CPUs: f.cpus, KeepOnFail: f.keepOnFailure, Abort: a.abort,
		Progress: a.stderr, Logger: a.log, Sink: bake.NewTextSink(textOut, isTerminal(textOut)),
		Timeouts: bake.StageTimeouts(r), CleanupTime: f.cleanupTimeout, GitCommit: buildinfo.SourceCommit(r.Source),
	}
	m, err := bake.Local(ctx, r, opts)
	return a.finish("bake", m, err, f.out)
}

// finish prints the result, writes GitHub step outputs, and maps the error
// to an exit code.
func (a *app) finish(verb string, m *bake.Manifest, err error, out output) error {
	if eerr := out.result(m, nil); eerr != nil {
		return eerr
	}
	textOut := out.text()
	if len(m.Left) > 0 {
		fmt.Fprintf(textOut, "left in place: %s\n", strings.Join(m.Left, "; "))
	}
	if err != nil {
		fmt.Fprintf(textOut, "logs: %s\n", m.LogDir)
		return failed("%s of %s failed: %v", verb, m.Recipe, err)
	}
	if m.Version != "" && m.Result == "baked" {
		fmt.Fprintf(textOut, "published %s %s: %s\n", m.Image, m.Version, firstNonEmpty(m.Path, m.VersionID))
		if m.Path != "" {
			fmt.Fprintf(textOut, "check it: imagebake verify %s@%s\nboot it:  %s\n", m.Image, m.Version, m.BootCommand)
		}
		if err := writeGitHubOutput([2]string{"version", m.Version}, [2]string{"version-id", firstNonEmpty(m.VersionID, m.Path)}, [2]string{"image", m.Image}); err != nil {
			return failed("GITHUB_OUTPUT: %v", err)
		}
	}
	return nil
}

// parseImageRef splits IMAGE[@VERSION].
func parseImageRef(s string) (image, version string) {
	image, version, _ = strings.Cut(s, "@")
	return image, version
}

type verifyFlags struct {
	localFlags
	azure   azureBuildFlags
	image   string
	version string // "" or "latest": what "latest" resolves to
	// runtime: boot the image as runner VMs, one per cycle, and watch
	// their lifecycle (verify --runtime).
	runtime      bool
	cycles       []string
	githubAPIURL string
	vmTimeout    time.Duration
}

func (a *app) verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "boot a fresh VM from a published version and run the recipe's checks on it",
		ArgsUsage: "IMAGE[@VERSION]",
		Description: "Without @VERSION, verifies the version \"latest\" resolves to. Locally it also proves the image was\n" +
			"generalized: cloud-init runs again, machine-id and SSH host keys differ from the build's, the build user is gone.\n" +
			"It fails when the first boot left a failed unit or a degraded system, and prints the image's boot-to-ready time\n" +
			"(QEMU launched to the recipe's main unit running).",
		Flags: append(append(localFlagDefs(),
			&cli.StringFlag{Name: "recipe", Usage: "the recipe whose checks to run (default recipes/IMAGE.yaml)", EnvVars: envs("RECIPE")},
			&cli.BoolFlag{Name: "runtime", Usage: "boot the image as runner VMs (one per --cycles value) on a local stand-in of Azure and GitHub, and watch each register once, run its job and end as its cycle tag says (local target)"},
			&cli.StringSliceFlag{Name: "cycles", Value: cli.NewStringSlice("delete", "none", "running"), Usage: "with --runtime: the cycle tag values to try (delete, deallocate, running, none = no tag)"},
			&cli.DurationFlag{Name: "vm-timeout", Value: 20 * time.Minute, Usage: "with --runtime: bound on one runner VM's boot, job and cycle"},
			&cli.StringFlag{Name: "github-api-url", Usage: "with --runtime: mint JIT configs on this GitHub API (token in GITHUB_TOKEN) instead of the built-in stand-in; the guest must reach it", EnvVars: envs("GITHUB_API_URL")},
		), azureFlags()...),
		Action: func(c *cli.Context) error {
			lf, err := a.readLocalFlags(c)
			if err != nil {
				return err
			}
			if c.NArg() != 1 {
				return usageErr("verify needs IMAGE[@VERSION], e.g. imagebake verify local-demo@1.0.1")
			}
			if err := checkTarget(lf.target); err != nil {
				return err
			}
			f := verifyFlags{localFlags: lf, azure: readAzureBuildFlags(c), runtime: c.Bool("runtime"),
				cycles: c.StringSlice("cycles"), githubAPIURL: c.String("github-api-url"), vmTimeout: c.Duration("vm-timeout")}
			f.image, f.version = parseImageRef(c.Args().First())
			if f.runtime && f.target != "local" {
				return usageErr("verify --runtime runs on the local target (the Azure side is played on loopback); drop --target %s", f.target)
			}
			recipePath := c.String("recipe")
			if recipePath == "" {
				recipePath = filepath.Join("recipes", f.image+".yaml")
			}
			r, err := recipes.Load(recipePath)
			if err != nil {
				return cli.Exit(fmt.Sprintf("%v\n(verify runs the checks of the recipe the image was baked from; name it with --recipe)", err), exitUsage)
			}
			if f.runtime {
				if f.cycles, err = runtimeCycles(f.cycles, r); err != nil {
					return err
				}
			}
			return a.runVerify(c.Context, f, r)
		},
	}
}

func (a *app) runVerify(ctx context.Context, f verifyFlags, r *recipes.Recipe) error {
	if f.target == "azure" {
		return a.verifyAzure(ctx, f, r)
	}
	store, err := a.localStore(f.galleryDir)
	if err != nil {
		return err
	}
	v, err := release.Resolve(ctx, store, f.image, f.version)
	if err != nil {
		return failed("%v", err)
	}
	textOut := f.out.text()
	if h := v.Tags[contract.TagRecipeHash]; h != "" && h != r.Hash() {
		fmt.Fprintf(textOut, "note: %s@%s was baked from another revision of the recipe (hash %.12s, now %.12s)\n", f.image, v.Name, h, r.Hash())
	}
	if f.runtime {
		return a.verifyRuntime(ctx, f, r, v)
	}
	fmt.Fprintf(textOut, "verifying %s %s (%s)\n", f.image, v.Name, v.Path)
	opts := bake.LocalOptions{CacheDir: f.cacheDir, LogDir: f.logDirFor(f.image, "verify"), KeepOnFail: f.keepOnFailure,
		Abort: a.abort, Progress: a.stderr, Logger: a.log, Sink: bake.NewTextSink(textOut, isTerminal(textOut)),
		MemoryMiB: f.memoryMiB, CPUs: f.cpus, Timeouts: bake.StageTimeouts(r), CleanupTime: f.cleanupTimeout}
	m, err := bake.VerifyLocal(ctx, r, v, opts)
	if err := a.finish("verify", m, err, f.out); err != nil {
		return err
	}
	boot := ""
	if m.Boot != nil {
		boot = fmt.Sprintf(", no failed unit, boot-to-ready %.1fs (%s)", m.Boot.Seconds, m.Boot.Ready)
	}
	fmt.Fprintf(textOut, "verified %s %s: %d checks passed%s\n", f.image, v.Name, len(m.Checks), boot)
	return nil
}

func (a *app) baseCommand() *cli.Command {
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
					return a.runBaseBuild(c.Context, qemu.BuildOptions{CacheDir: c.String("cache-dir"), Suite: c.String("suite"), Logger: a.log})
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
					return a.runBasePull(c.Context, basePullFlags{baseURL: c.String("base-url"), cacheDir: c.String("cache-dir")})
				},
			},
		},
	}
}

func (a *app) runBaseBuild(ctx context.Context, opts qemu.BuildOptions) error {
	start := time.Now()
	b, err := qemu.BuildBase(ctx, opts)
	if err != nil {
		return failed("base build: %v", err)
	}
	fmt.Fprintf(a.stdout, "base debian-%s ready in %s: %s\n", opts.Suite, time.Since(start).Round(time.Second), b.Disk)
	return nil
}

type basePullFlags struct {
	baseURL  string // where the image and SHA256SUMS are
	cacheDir string
}

func (a *app) runBasePull(ctx context.Context, f basePullFlags) error {
	path, err := qemu.PullUbuntuFocal(ctx, f.baseURL, f.cacheDir, a.stderr)
	if err != nil {
		return failed("base pull focal: %v", err)
	}
	fmt.Fprintf(a.stdout, "focal cloud image verified: %s\n", path)
	return nil
}
