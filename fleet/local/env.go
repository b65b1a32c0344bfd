package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/imagebake/imagebake/fleet"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/internal/ghmodel"
	"github.com/imagebake/imagebake/platform"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/runnerreg"
)

// EnvOptions describe the world local runner VMs run in: the platform
// stand-in, GitHub (the built-in stand-in, or a real one reachable from the
// guest) and how the image's runner registers.
type EnvOptions struct {
	Dir       string
	Base      qemu.Base
	Relay     platform.RelayCommand
	MemoryMiB int
	CPUs      int
	KeepLogs  bool
	// RepoURL is the recipe's runner.env REPO_URL: the repository or
	// organization the runners register with.
	RepoURL string
	// Registration is the recipe's mode; for keyvault-pat, KeyVault and
	// Secret name the vault the VM's identity reads the PAT from.
	Registration     string
	KeyVault, Secret string
	// Registrar mints JIT configs on a real GitHub (launch with a GitHub
	// App or token); GitHubToken is the PAT a keyvault-pat VM gets from the
	// vault. With neither, the built-in stand-in plays GitHub.
	Registrar   fleet.Registrar
	GitHubToken runnerreg.Secret
	// StandIn replaces the built-in stand-in (tests script outcomes with
	// it); it must be a TLS model advertising https://api.github.com.
	StandIn *ghmodel.Model
	Logger  *slog.Logger
}

// Env is a running local runner world. Close it.
type Env struct {
	Platform  *platform.Platform
	Target    *Target
	Registrar fleet.Registrar
	// StandIn is the GitHub stand-in, nil with a real GitHub.
	StandIn *ghmodel.Model

	mu      sync.Mutex
	secrets []string
	closers []func(context.Context) error
}

// StandInAdvertiseURL is where runners of the stand-in connect: GitHub's
// own name, which the guest resolves to the platform (GuestCloudConfig).
const StandInAdvertiseURL = "https://api.github.com"

// NewEnv starts the platform stand-in, GitHub and the target.
func NewEnv(opts EnvOptions) (env *Env, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	env = &Env{}
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = env.Close(ctx)
			env = nil
		}
	}()
	plat, err := platform.New(platform.Config{OutcomeTag: contract.TagOutcome, Logger: opts.Logger})
	if err != nil {
		return env, err
	}
	env.Platform = plat
	env.closers = append(env.closers, plat.Close)

	token := opts.GitHubToken
	env.Registrar = opts.Registrar
	if opts.Registrar == nil && token.IsZero() {
		gh := opts.StandIn
		if gh == nil {
			gh = ghmodel.New(ghmodel.Options{TLS: true, AdvertiseURL: StandInAdvertiseURL, Logger: opts.Logger})
			env.closers = append(env.closers, func(context.Context) error { gh.Close(); return nil })
		}
		env.StandIn = gh
		for _, host := range []string{"api.github.com", "github.com"} {
			if err := plat.Mount(host, gh.Handler()); err != nil {
				return env, err
			}
		}
		tok := "ghp_" + randomHex(18)
		gh.AddToken(tok)
		gh.Watch("pat", tok)
		token = runnerreg.NewSecret(tok)
		scope, err := runnerreg.ParseScope(opts.RepoURL)
		if err != nil {
			return env, fmt.Errorf("runner.env REPO_URL: %w", err)
		}
		reg, err := runnerreg.New(runnerreg.Options{Scope: scope.WithAPIBase(gh.URL()), Token: token,
			HTTPClient: gh.Client(), Logger: opts.Logger, UserAgent: "imagebake"})
		if err != nil {
			return env, err
		}
		env.Registrar = reg
	}
	if env.Registrar == nil && opts.Registration == contract.RegistrationJIT {
		return env, errors.New("local runner VMs: jit registration needs a GitHub credential or the stand-in")
	}
	env.addSecret(token.Reveal())
	if env.Registrar != nil {
		env.Registrar = recording{reg: env.Registrar, env: env}
	}

	target, err := New(Options{Dir: opts.Dir, Base: opts.Base, Platform: plat, Relay: opts.Relay,
		MemoryMiB: opts.MemoryMiB, CPUs: opts.CPUs, KeepLogs: opts.KeepLogs, Logger: opts.Logger})
	if err != nil {
		return env, err
	}
	env.Target = target
	env.closers = append(env.closers, target.Close)

	if opts.Registration == contract.RegistrationKeyVaultPAT {
		if token.IsZero() {
			return env, errors.New("local runner VMs: keyvault-pat registration needs a PAT (GITHUB_TOKEN) or the stand-in")
		}
		// The founding runbook's way: the VM's identity reads the PAT from
		// Key Vault and trades it for a registration token.
		if err := plat.AddVault(platform.VaultSpec{Name: opts.KeyVault,
			Secrets: map[string]string{opts.Secret: token.Reveal()}, Readers: []string{target.IdentityID()}}); err != nil {
			return env, err
		}
	}
	return env, nil
}

// GitHub names what plays GitHub: "stand-in" or "github".
func (e *Env) GitHub() string {
	if e.StandIn != nil {
		return "stand-in"
	}
	return "github"
}

func (e *Env) addSecret(s string) {
	if s == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, s)
}

// Secrets are the values handed out (PAT, JIT configs) that no log,
// record or tag may hold.
func (e *Env) Secrets() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.secrets...)
}

// Close stops the VMs still running (their disks are kept), GitHub's
// stand-in and the platform, in that order.
func (e *Env) Close(ctx context.Context) error {
	var errs []error
	for i := len(e.closers) - 1; i >= 0; i-- {
		if err := e.closers[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	e.closers = nil
	return errors.Join(errs...)
}

// recording keeps each minted JIT config as a secret to look for.
type recording struct {
	reg fleet.Registrar
	env *Env
}

func (r recording) MintJIT(ctx context.Context, name string, labels []string, group int64, work string) (runnerreg.JITConfig, error) {
	j, err := r.reg.MintJIT(ctx, name, labels, group, work)
	if err == nil {
		r.env.addSecret(j.EncodedJITConfig.Reveal())
	}
	return j, err
}

func (r recording) DeleteRunner(ctx context.Context, id int64) error {
	return r.reg.DeleteRunner(ctx, id)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
