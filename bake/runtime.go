package bake

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imagebake/imagebake/fleet"
	fleetlocal "github.com/imagebake/imagebake/fleet/local"
	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/internal/ghmodel"
	"github.com/imagebake/imagebake/platform"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/runnerreg"
)

// DefaultRuntimeCycles are the cycle tag values verify --runtime tries, one
// VM each: "" is a VM without the tag (the cycle script deallocates it).
var defaultRuntimeCycles = []string{contract.CycleDelete, "", contract.CycleRunning}

// DefaultRuntimeCycles returns the cycles verify --runtime tries by default.
func DefaultRuntimeCycles() []string { return slices.Clone(defaultRuntimeCycles) }

// RuntimeOptions configure VerifyRuntime.
type RuntimeOptions struct {
	LocalOptions
	// Cycles are the cycle tag values to try, one VM each ("" = no tag);
	// default DefaultRuntimeCycles.
	Cycles []string
	// Relay is how QEMU reaches the platform's listeners (platform.SelfRelay
	// of the imagebake binary).
	Relay platform.RelayCommand
	// GitHubAPIURL and GitHubToken mint JIT configs on a real GitHub (the
	// guest then needs to reach it). Empty: the built-in stand-in plays
	// GitHub at api.github.com for the guest.
	GitHubAPIURL string
	GitHubToken  runnerreg.Secret
	// StandIn replaces the built-in stand-in (tests script refusals and
	// stale runners with it). It must be a TLS model advertising
	// https://api.github.com.
	StandIn *ghmodel.Model
	// Dir holds the VMs' records, disks and logs; default LogDir/runtime
	// or a temporary directory (removed afterwards).
	Dir string
	// LaunchID names this run's VMs (RuntimeVMName); default random.
	LaunchID string
	// VMTimeout bounds one VM's lifecycle, boot to final state; 20 min
	// when zero.
	VMTimeout time.Duration
}

// RuntimeResult is what one runner VM did.
type RuntimeResult struct {
	Cycle   string `json:"cycle"` // "" = no cycle tag
	VM      string `json:"vm"`
	Outcome string `json:"outcome"` // contract.Outcome*, as the VM recorded it
	// End is what became of the VM: destroyed, deallocated, running,
	// stopped (powered off by itself), failed, or timeout.
	End string `json:"end"`
	// Want is what its cycle should have made of it.
	Want string `json:"want"`
	// Registrations counts the registrations GitHub saw for this VM (JIT
	// mints, or config.sh registrations for keyvault-pat).
	Registrations int `json:"registrations"`
	// Sessions counts the runner's sessions with GitHub (one per job taken).
	Sessions int `json:"sessions"`
	// BootToReady is QEMU's start to the runner's first session with
	// GitHub (0 when unknown, e.g. with a real GitHub).
	BootToReady float64 `json:"bootToReadySeconds,omitempty"`
	// Seconds is QEMU's start to the VM's end.
	Seconds float64 `json:"seconds"`
	OK      bool    `json:"ok"`
	Problem string  `json:"problem,omitempty"`
}

// Line is the per-cycle line verify --runtime prints.
func (r RuntimeResult) Line() string {
	status := "ok"
	if !r.OK {
		status = "FAILED: " + r.Problem
	}
	ready := ""
	if r.BootToReady > 0 {
		ready = fmt.Sprintf(", boot-to-ready %.1fs", r.BootToReady)
	}
	return fmt.Sprintf("cycle=%s: %s, outcome %s, %s (want %s), %d registration(s)%s, %.0fs: %s",
		cycleName(r.Cycle), r.VM, orDash(r.Outcome), r.End, r.Want, r.Registrations, ready, r.Seconds, status)
}

func cycleName(c string) string {
	if c == "" {
		return "none"
	}
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RuntimeReport is the whole lifecycle run.
type RuntimeReport struct {
	Registration  string          `json:"registration"`
	GitHub        string          `json:"github"` // "stand-in" or the API URL
	Results       []RuntimeResult `json:"results"`
	Boots         int             `json:"boots"`
	Registrations int             `json:"registrations"`
	// SecretsSeen counts secrets found where they must not be: by the
	// runner inside the VM (command lines, journal) and by imagebake in
	// the platform's log and the VMs' records.
	SecretsSeen int    `json:"secretsSeen"`
	Summary     string `json:"summary"`
}

// summary is the one line the e2e test and CI print:
// "runner lifecycle: 3 boots, 3 registrations, delete→destroyed, …".
func (rep *RuntimeReport) summary() string {
	parts := []string{fmt.Sprintf("%d boots", rep.Boots), fmt.Sprintf("%d registrations", rep.Registrations)}
	for _, r := range rep.Results {
		parts = append(parts, cycleName(r.Cycle)+"→"+r.End)
	}
	parts = append(parts, fmt.Sprintf("%d secrets seen", rep.SecretsSeen))
	return "runner lifecycle: " + strings.Join(parts, ", ")
}

var runtimeCycles = []string{contract.CycleDelete, contract.CycleDeallocate, contract.CycleRunning}

// localRuntime is verify --runtime's build: what its stages
// (localRuntimeStages) hand one another.
type localRuntime struct {
	job
	opts    RuntimeOptions
	version gallery.ImageVersion
	report  *RuntimeReport

	plat     *platform.Platform
	standIn  *ghmodel.Model
	target   *fleetlocal.Target
	reg      fleet.Registrar
	base     qemu.Base
	dir      string
	env      *fleetlocal.Env
	launched []fleet.Launched
	cycles   []string
}

// VerifyRuntime boots a published runner image the way a runner VM boots in
// production, once per cycle value, and watches each VM's whole lifecycle:
// the platform stand-in plays Azure (IMDS with tags and userData, identity
// tokens, Resource Manager's deallocate and delete, Key Vault), GitHub is the
// built-in stand-in (or a real GitHub), and every VM must register once,
// run its one job, record job-done and end as its cycle says.
func VerifyRuntime(ctx context.Context, r *recipes.Recipe, v gallery.ImageVersion, opts RuntimeOptions) (*Manifest, *RuntimeReport, error) {
	log := loggerOr(opts.Logger)
	set := localSettings(r, opts.LocalOptions)
	m := &Manifest{Recipe: r.Name, RecipeHash: r.Hash(), Target: "local", Image: r.Gallery.Image, Version: v.Name,
		Path: v.Path, Started: time.Now(), LogDir: opts.LogDir, Resources: map[string]string{}, Settings: &set}
	rep := &RuntimeReport{}
	p := NewPipeline(opts.Sink, set.timeouts())
	var err error
	if opts.LogDir != "" {
		err = prepareLogDir(opts.LogDir)
	}
	if err == nil {
		b := &localRuntime{job: job{r: r, set: set, p: p, m: m, log: log, logDir: opts.LogDir}, opts: opts, version: v, report: rep}
		err = Run(ctx, p, b, localRuntimeStages, nil)
	}
	m, err = finish(p, m, err, UnwindOptions{Timeout: opts.CleanupTime, Abort: opts.Abort}, "verified")
	return m, rep, err
}

// check refuses what verify --runtime cannot run before anything starts.
func (b *localRuntime) check() error {
	rn := b.r.Runner
	if rn == nil {
		return fmt.Errorf("recipe %s: verify --runtime needs a runner section", b.r.Name)
	}
	if rn.Lifecycle != "" && rn.Lifecycle != "cycle-tag" {
		return fmt.Errorf("recipe %s: runner.lifecycle %q: verify --runtime watches the cycle-tag lifecycle", b.r.Name, rn.Lifecycle)
	}
	if !slices.ContainsFunc(b.r.Systemd, func(u recipes.Unit) bool { return u.Template == "github-runner.service" && u.Enable }) {
		return fmt.Errorf("recipe %s: no enabled github-runner.service unit (systemd: [{name: github-runner.service, template: github-runner.service, enable: true}]): a VM from this image never starts its runner", b.r.Name)
	}
	if b.opts.Relay == nil {
		return errors.New("verify --runtime: no relay command for the guest network")
	}
	b.cycles = b.opts.Cycles
	if len(b.cycles) == 0 {
		b.cycles = DefaultRuntimeCycles()
	}
	for _, c := range b.cycles {
		if c != "" && !slices.Contains(runtimeCycles, c) {
			return fmt.Errorf("verify --runtime: cycle %q: want one of %s or none", c, strings.Join(runtimeCycles, ", "))
		}
	}
	return nil
}

func (b *localRuntime) resolveBase(ctx context.Context) error {
	if err := b.check(); err != nil {
		return err
	}
	base, _, err := ResolveLocalBase(ctx, b.r, b.opts.CacheDir, b.opts.Progress, b.log)
	if err != nil {
		return err
	}
	dir := b.opts.Dir
	if dir == "" && b.logDir != "" {
		dir = filepath.Join(b.logDir, "runtime")
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "imagebake-runtime-")
		if err != nil {
			return fmt.Errorf("runtime dir: %w", err)
		}
		b.p.OnCleanup("runtime dir", func(context.Context) error { return os.RemoveAll(tmp) })
		dir = tmp
	}
	b.dir = dir
	b.base = base
	return nil
}

// startPlatform starts the platform stand-in, GitHub (stand-in or real) and
// the local target, with the identity the cycle script uses and, for
// keyvault-pat, the vault holding a PAT GitHub accepts.
func (b *localRuntime) startPlatform(ctx context.Context) error {
	rn := b.r.Runner
	b.report.Registration = rn.Registration.Mode
	eo := fleetlocal.EnvOptions{Dir: b.dir, Base: b.base, Relay: b.opts.Relay, MemoryMiB: b.opts.MemoryMiB, CPUs: b.opts.CPUs,
		KeepLogs: true, RepoURL: rn.Env["REPO_URL"], Registration: rn.Registration.Mode,
		KeyVault: rn.Registration.KeyVault, Secret: rn.Registration.Secret, StandIn: b.opts.StandIn, Logger: b.log}
	b.report.GitHub = "stand-in"
	if b.opts.GitHubAPIURL != "" {
		b.report.GitHub = b.opts.GitHubAPIURL
		if b.opts.GitHubToken.IsZero() {
			return errors.New("verify --runtime: --github-api-url needs a token in GITHUB_TOKEN")
		}
		scope, err := runnerreg.ParseScope(rn.Env["REPO_URL"])
		if err != nil {
			return fmt.Errorf("recipe %s: runner.env.REPO_URL: %w", b.r.Name, err)
		}
		reg, err := runnerreg.New(runnerreg.Options{Scope: scope.WithAPIBase(b.opts.GitHubAPIURL), Token: b.opts.GitHubToken, Logger: b.log, UserAgent: "imagebake"})
		if err != nil {
			return err
		}
		eo.Registrar, eo.GitHubToken = reg, b.opts.GitHubToken
	}
	env, err := fleetlocal.NewEnv(eo)
	if err != nil {
		return fmt.Errorf("recipe %s: %w", b.r.Name, err)
	}
	b.env = env
	b.plat, b.target, b.reg, b.standIn = env.Platform, env.Target, env.Registrar, env.StandIn
	b.p.OnCleanup("runner VMs and their platform", env.Close)
	b.p.Note(contract.StagePlatform, fmt.Sprintf("Azure stand-in on %s, GitHub: %s, registration %s", b.plat.HTTPSAddr(), b.report.GitHub, rn.Registration.Mode))
	return nil
}

// launch creates one VM per cycle through the same fleet.Launch that
// `imagebake launch` uses: a JIT config minted per VM before it exists.
func (b *localRuntime) launch(ctx context.Context) error {
	rn := b.r.Runner
	launchID := b.opts.LaunchID
	if launchID == "" {
		launchID = fleet.NewLaunchID()[:6]
	}
	for i, c := range b.cycles {
		spec := fleet.LaunchSpec{Image: b.r.Gallery.Image, Version: b.version.Name, ImageID: b.version.Path, Count: 1,
			NamePrefix: fleet.DefaultPrefix(b.r.Gallery.Image), LaunchID: runtimeLaunchID(launchID, i),
			Cycle: c, Registration: rn.Registration.Mode, Labels: rn.Labels, RunnerGroupID: int64(max(rn.GroupID, 1)),
			Parallel: 1}
		got, err := fleet.Launch(ctx, spec, b.target, b.reg, b.log)
		b.launched = append(b.launched, got...)
		if err != nil {
			return err
		}
	}
	return nil
}

func runtimeLaunchID(id string, i int) string { return fmt.Sprintf("%s%d", id, i) }

// RuntimeVMName is the name of the i-th VM (0-based, in Cycles order) of a
// verify --runtime run with launch ID id.
func RuntimeVMName(image, id string, i int) string {
	return fleet.VMName(fleet.DefaultPrefix(image), runtimeLaunchID(id, i), 1)
}

// lifecycle waits for every VM to finish its cycle and checks each.
func (b *localRuntime) lifecycle(ctx context.Context) error {
	timeout := b.opts.VMTimeout
	if timeout == 0 {
		timeout = 20 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var failed []string
	for i, l := range b.launched {
		res := b.watchOne(ctx, b.cycles[i], l)
		b.report.Results = append(b.report.Results, res)
		b.p.Note(contract.StageLifecycle, res.Line())
		if !res.OK {
			failed = append(failed, fmt.Sprintf("cycle=%s: %s", cycleName(res.Cycle), res.Problem))
		}
	}
	b.report.Boots = len(b.report.Results)
	for _, r := range b.report.Results {
		b.report.Registrations += r.Registrations
	}
	b.report.SecretsSeen = b.secretsSeen()
	b.writeLogs()
	b.report.Summary = b.report.summary()
	if b.report.SecretsSeen > 0 {
		failed = append(failed, fmt.Sprintf("%d secret(s) seen where they must not be (see the runner's leak reports)", b.report.SecretsSeen))
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// wantEnd is what a cycle value makes of a VM whose runner did its job.
func wantEnd(cycle string) string {
	switch cycle {
	case contract.CycleDelete:
		return "destroyed"
	case contract.CycleRunning:
		return "running"
	}
	return "deallocated"
}

func (b *localRuntime) watchOne(ctx context.Context, cycle string, l fleet.Launched) RuntimeResult {
	res := RuntimeResult{Cycle: cycle, VM: l.Name, Want: wantEnd(cycle)}
	if l.VM == nil {
		res.End, res.Problem = "not created", l.Error
		return res
	}
	m := b.target.Machine(l.Name)
	started := time.Now()
	if m != nil {
		started = m.Started()
	}
	pvm, _ := b.plat.VM(fleetlocal.DefaultResourceGroup, l.Name)
	// The outcome tag is the cycle script's first write: then the VM's end
	// follows (or, for running, nothing more happens).
	var st platform.VMStatus
	var err error
	for {
		st = pvm.Status()
		if st.Outcome != "" || st.State != platform.StateRunning {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-b.target.Done(l.Name):
			err = errors.New("the VM ended before its cycle script recorded an outcome")
		case <-time.After(500 * time.Millisecond):
			continue
		}
		break
	}
	if err == nil && (st.Outcome != contract.OutcomeJobDone || cycle != contract.CycleRunning) {
		select {
		case <-b.target.Done(l.Name):
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil && cycle == contract.CycleRunning && st.Outcome == contract.OutcomeJobDone {
		// Kept running: it must still be up a little later.
		select {
		case <-b.target.Done(l.Name):
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
	}
	rec, final, _ := b.target.Served(l.Name)
	res.Seconds = time.Since(started).Seconds()
	res.Outcome = rec.Outcome
	if res.Outcome == "" {
		res.Outcome = pvm.Status().Outcome
	}
	switch {
	case !final && rec.State == platform.StateRunning && m != nil && !exited(m.Exited()):
		res.End = "running"
	case rec.State == platform.StateDeleted:
		res.End = "destroyed"
		if _, err := os.Stat(filepath.Join(b.dir, l.VM.Image, l.Name+".qcow2")); err == nil {
			res.End = "deleted, disk left"
		}
	case rec.State == platform.StateDeallocated:
		res.End = "deallocated"
		if _, err := os.Stat(filepath.Join(b.dir, l.VM.Image, l.Name+".qcow2")); err != nil {
			res.End = "deallocated, disk gone"
		}
	case rec.State == platform.StateFailed:
		res.End = "failed"
	case errors.Is(err, context.DeadlineExceeded):
		res.End = "timeout"
	default:
		res.End = "stopped"
	}
	res.Registrations, res.Sessions, res.BootToReady = b.registrations(l, started)
	switch {
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		res.Problem = err.Error()
	case res.Outcome != contract.OutcomeJobDone:
		res.Problem = fmt.Sprintf("the runner ran no job (outcome %s); see %s", orDash(res.Outcome), rec.LogDir)
	case res.End != res.Want:
		res.Problem = fmt.Sprintf("the VM ended %s, want %s", res.End, res.Want)
	case b.standIn != nil && res.Registrations != 1:
		res.Problem = fmt.Sprintf("%d registrations, want 1", res.Registrations)
	case b.standIn != nil && res.Sessions != 1:
		res.Problem = fmt.Sprintf("%d runner sessions, want 1", res.Sessions)
	default:
		res.OK = true
	}
	return res
}

func exited(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// registrations reads from the stand-in how often the VM's runner
// registered and connected, and when it first connected.
func (b *localRuntime) registrations(l fleet.Launched, started time.Time) (regs, sessions int, ready float64) {
	gh := b.standIn
	if gh == nil {
		if l.RunnerID != 0 {
			return 1, 0, 0
		}
		return 0, 0, 0
	}
	var id int64
	for _, mint := range gh.Mints() {
		if mint.Name == l.Name {
			regs++
			id = mint.RunnerID
		}
	}
	// Registrations counts every registration by that name: JIT mints
	// and config.sh's alike.
	regs = gh.Registrations(l.Name)
	sessions = gh.Sessions(l.Name)
	if id == 0 {
		for _, rn := range gh.Runners() {
			if rn.Name == l.Name {
				id = rn.ID
			}
		}
	}
	auth := "runner:" + strconv.FormatInt(id, 10)
	for _, req := range gh.Requests() {
		if req.Endpoint == ghmodel.EpRunnerSession && req.Auth == auth && req.Status < 300 {
			ready = req.Time.Sub(started).Seconds()
			break
		}
	}
	return regs, sessions, ready
}

// writeLogs keeps the platform's and GitHub's request logs beside the VMs'
// (neither holds a token or secret value).
func (b *localRuntime) writeLogs() {
	var pl strings.Builder
	for _, e := range b.plat.Events() {
		pl.WriteString(e.String() + "\n")
	}
	_ = os.WriteFile(filepath.Join(b.dir, "platform.log"), []byte(pl.String()), 0o600)
	if b.standIn != nil {
		var gl strings.Builder
		for _, r := range b.standIn.Requests() {
			fmt.Fprintf(&gl, "%s %s %s %s %d %s\n", r.Time.UTC().Format("15:04:05.000"), r.Method, r.Path, r.Endpoint, r.Status, r.Auth)
		}
		for _, l := range b.standIn.Leaks() {
			fmt.Fprintf(&gl, "LEAK runner %s: %s in %s (sha256 %s…)\n", l.RunnerName, l.Kind, l.Where, l.Fingerprint)
		}
		_ = os.WriteFile(filepath.Join(b.dir, "github.log"), []byte(gl.String()), 0o600)
	}
}

// secretsSeen counts leaks the runner reported from inside the VMs, plus
// any secret value in the platform's log or a VM's record.
func (b *localRuntime) secretsSeen() int {
	n := 0
	if b.standIn != nil {
		n += len(b.standIn.Leaks())
	}
	var text strings.Builder
	for _, e := range b.plat.Events() {
		text.WriteString(e.String())
		text.WriteByte('\n')
	}
	recs, _ := filepath.Glob(filepath.Join(b.dir, "*", "*.json"))
	for _, f := range recs {
		if data, err := os.ReadFile(f); err == nil {
			text.Write(data)
		}
	}
	all := text.String()
	for _, s := range b.env.Secrets() {
		if s != "" && strings.Contains(all, s) {
			n++
		}
	}
	return n
}
