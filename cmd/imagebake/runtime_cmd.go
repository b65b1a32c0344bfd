package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/imagebake/imagebake/bake"
	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/platform"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/runnerreg"
)

// runtimeCycles reads --cycles ("none" is a VM without the tag) and
// refuses what verify --runtime cannot run, before anything is resolved.
func runtimeCycles(values []string, r *recipes.Recipe) ([]string, error) {
	if r.Runner == nil {
		return nil, usageErr("%s has no runner section: verify --runtime boots runner VMs", r.Source)
	}
	var cycles []string
	for _, c := range values {
		for _, part := range strings.Split(c, ",") {
			switch part = strings.TrimSpace(part); part {
			case "none":
				cycles = append(cycles, "")
			case "delete", "deallocate", "running":
				cycles = append(cycles, part)
			default:
				return nil, usageErr("--cycles %q: use delete, deallocate, running or none", part)
			}
		}
	}
	return cycles, nil
}

// verifyRuntime runs verify --runtime: the published image as runner VMs,
// one per cycle value, each watched from boot to its end.
func (a *app) verifyRuntime(ctx context.Context, f verifyFlags, r *recipes.Recipe, v gallery.ImageVersion) error {
	textOut := f.out.text()
	cycles := f.cycles
	exe, err := os.Executable()
	if err != nil {
		return failed("verify --runtime: %v", err)
	}
	opts := bake.RuntimeOptions{
		LocalOptions: bake.LocalOptions{CacheDir: f.cacheDir, LogDir: f.logDirFor(f.image, "runtime"),
			Abort: a.abort, Progress: a.stderr, Logger: a.log, Sink: bake.NewTextSink(textOut, isTerminal(textOut)),
			MemoryMiB: f.memoryMiB, CPUs: f.cpus, CleanupTime: f.cleanupTimeout},
		Cycles:       cycles,
		Relay:        platform.SelfRelay(exe, relayCommand),
		GitHubAPIURL: f.githubAPIURL,
		VMTimeout:    f.vmTimeout,
	}
	if f.githubAPIURL != "" {
		// The token comes from the environment only: never argv.
		opts.GitHubToken = runnerreg.NewSecret(os.Getenv("GITHUB_TOKEN"))
	}
	fmt.Fprintf(textOut, "verifying the runtime of %s %s (%s): %d runner VM(s), registration %s\n",
		f.image, v.Name, v.Path, len(cycles), runtimeMode(r))
	m, rep, err := bake.VerifyRuntime(ctx, r, v, opts)
	if eerr := f.out.result(struct {
		*bake.Manifest
		Runtime *bake.RuntimeReport `json:"runtime"`
	}{m, rep}, nil); eerr != nil {
		return eerr
	}
	for _, res := range rep.Results {
		fmt.Fprintln(textOut, res.Line())
	}
	if rep.Summary != "" {
		// The lifecycle line goes to stdout even with --output json's
		// stderr text: CI greps it.
		fmt.Fprintln(textOut, rep.Summary)
	}
	if len(m.Left) > 0 {
		fmt.Fprintf(textOut, "left in place: %s\n", strings.Join(m.Left, "; "))
	}
	if err != nil {
		fmt.Fprintf(textOut, "logs: %s\n", m.LogDir)
		return failed("verify --runtime of %s %s failed: %v", f.image, v.Name, err)
	}
	return nil
}

func runtimeMode(r *recipes.Recipe) string {
	if r.Runner == nil {
		return "none (the recipe has no runner section)"
	}
	return r.Runner.Registration.Mode
}
