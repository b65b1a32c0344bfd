package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/bake"
	"github.com/imagebake/imagebake/fleet"
	fleetlocal "github.com/imagebake/imagebake/fleet/local"
	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/platform"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/runnerreg"
)

// runnersDir is where local runner VMs' records and kept disks live:
// --runners-dir, else beside the default local gallery.
func runnersDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	root, err := local.DefaultRoot()
	if err != nil {
		return "", usageErr("no --runners-dir and no default: %v", err)
	}
	return filepath.Join(filepath.Dir(root), "runners"), nil
}

// localFleet is the local target of runners list|prune: the records earlier
// launches left (the VMs themselves lived only while their launch ran).
func localFleet(c *cli.Context, log *slog.Logger) (fleet.Target, error) {
	dir, err := runnersDir(c.String("runners-dir"))
	if err != nil {
		return nil, err
	}
	return fleetlocal.New(fleetlocal.Options{Dir: dir, Logger: log})
}

// localLaunchEnv starts what local runner VMs run in: the platform
// stand-in, GitHub (a real one through reg, or the built-in stand-in with
// --github-stand-in) and the QEMU target.
func (a *app) localLaunchEnv(ctx context.Context, f launchFlags, r *recipes.Recipe, reg fleet.Registrar) (*fleetlocal.Env, error) {
	dir, err := runnersDir(f.runnersDir)
	if err != nil {
		return nil, err
	}
	base, _, err := bake.ResolveLocalBase(ctx, r, f.cacheDir, a.stderr, a.log)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	rn := r.Runner
	eo := fleetlocal.EnvOptions{Dir: dir, Base: base, Relay: platform.SelfRelay(exe, relayCommand),
		MemoryMiB: f.memoryMiB, CPUs: f.cpus, RepoURL: rn.Env["REPO_URL"], Registration: rn.Registration.Mode,
		KeyVault: rn.Registration.KeyVault, Secret: rn.Registration.Secret, Logger: a.log}
	if !f.standIn {
		eo.Registrar = reg
		// keyvault-pat on a real GitHub: the VM reads this PAT from the
		// stand-in Key Vault, as it would from the recipe's vault.
		eo.GitHubToken = runnerreg.NewSecret(os.Getenv("GITHUB_TOKEN"))
		if reg == nil && eo.GitHubToken.IsZero() {
			return nil, usageErr("%s registers with keyvault-pat: give its PAT in GITHUB_TOKEN, or use --github-stand-in", r.Source)
		}
	}
	return fleetlocal.NewEnv(eo)
}
