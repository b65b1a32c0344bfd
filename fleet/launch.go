package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/imagebake/imagebake/internal/contract"
)

// DefaultParallel bounds concurrent VM creates. Compute allows a
// subscription 500 PutVM calls a minute but each VM only 4 (FACTS: Compute
// throttling); a create is one PUT plus polls, so a handful in flight keeps
// a large launch well under every bucket and its Retry-After waits short.
const DefaultParallel = 4

// DefaultCleanupTimeout bounds the undo of a half-launched VM after ctx
// ended (Ctrl-C): deleting its registration and whatever the target made.
const DefaultCleanupTimeout = 5 * time.Minute

// MaxCount is the most VMs one launch makes.
const MaxCount = 100

// LaunchSpec is one launch: Count VMs of one image version.
type LaunchSpec struct {
	Image   string // gallery image name
	Version string // resolved X.Y.Z
	ImageID string // where the version is (see VMSpec.ImageID)
	Count   int
	// NamePrefix starts every VM's (and runner's) name: PREFIX-LAUNCHID-N.
	// Default: the image name, made name-safe.
	NamePrefix string
	// LaunchID is this launch's ID (8 lowercase hex); "" draws one.
	LaunchID string
	Cycle    string // the cycle tag; "" leaves it off
	// Registration is contract.RegistrationJIT (mint a JIT config per VM,
	// before creating it) or contract.RegistrationKeyVaultPAT (mint
	// nothing; the VM registers itself).
	Registration  string
	Labels        []string
	RunnerGroupID int64
	WorkFolder    string
	Parallel      int           // default DefaultParallel
	CleanupTime   time.Duration // default DefaultCleanupTimeout
	Now           func() time.Time
}

// Launched is what became of one requested VM.
type Launched struct {
	Name string `json:"name"`
	// VM is set when the VM was created (and is running its runner).
	VM *VM `json:"vm,omitempty"`
	// RunnerID is the JIT registration the VM holds (0 when none was
	// minted, or it was deleted because the VM was not created).
	RunnerID int64 `json:"runnerId,omitempty"`
	// Error says why the VM was not created; never holds a secret.
	Error string `json:"error,omitempty"`
}

// prefixRe is what a name prefix may be: letters, digits and inner
// hyphens, so that PREFIX-ID-N is a valid Azure VM name, Linux host name
// (computerName) and GitHub runner name.
var prefixRe = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}[A-Za-z0-9])?$`)

var launchIDRe = regexp.MustCompile(`^[a-z0-9]{4,16}$`)

// ValidatePrefix checks a --name-prefix.
func ValidatePrefix(p string) error {
	if !prefixRe.MatchString(p) {
		return fmt.Errorf("name prefix %q: use 1-40 letters, digits and inner '-'", p)
	}
	return nil
}

// DefaultPrefix derives a name prefix from an image name (gallery names
// may hold '.' and '_', which host names may not).
func DefaultPrefix(image string) string {
	b := make([]byte, 0, len(image))
	for i := 0; i < len(image) && len(b) < 40; i++ {
		ch := image[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
			b = append(b, ch)
		case len(b) > 0 && b[len(b)-1] != '-':
			b = append(b, '-')
		}
	}
	for len(b) > 0 && b[len(b)-1] == '-' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "runner"
	}
	return string(b)
}

// NewLaunchID draws a launch ID: 8 hex digits.
func NewLaunchID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// VMName is the name of a launch's VM n (1-based).
func VMName(prefix, launchID string, n int) string {
	return prefix + "-" + launchID + "-" + strconv.Itoa(n)
}

func (s *LaunchSpec) check(reg Registrar) error {
	switch {
	case s.Image == "" || s.Version == "" || s.ImageID == "":
		return errors.New("launch: image, version and image ID are required")
	case s.Count < 1 || s.Count > MaxCount:
		return fmt.Errorf("launch: count %d: want 1 to %d", s.Count, MaxCount)
	}
	if s.NamePrefix == "" {
		s.NamePrefix = DefaultPrefix(s.Image)
	}
	if err := ValidatePrefix(s.NamePrefix); err != nil {
		return err
	}
	if s.LaunchID == "" {
		s.LaunchID = NewLaunchID()
	}
	if !launchIDRe.MatchString(s.LaunchID) {
		return fmt.Errorf("launch ID %q: want 4-16 lowercase letters and digits", s.LaunchID)
	}
	switch s.Cycle {
	case "", contract.CycleDelete, contract.CycleDeallocate, contract.CycleRunning:
	default:
		return fmt.Errorf("cycle %q: use delete, deallocate or running", s.Cycle)
	}
	switch s.Registration {
	case contract.RegistrationJIT:
		if reg == nil {
			return errors.New("launch: jit registration needs a GitHub client")
		}
		if len(s.Labels) == 0 {
			return errors.New("launch: jit runners need at least one label")
		}
		if s.RunnerGroupID <= 0 {
			s.RunnerGroupID = 1
		}
	case contract.RegistrationKeyVaultPAT:
	default:
		return fmt.Errorf("registration %q: use jit or keyvault-pat", s.Registration)
	}
	if s.Parallel <= 0 {
		s.Parallel = DefaultParallel
	}
	if s.CleanupTime <= 0 {
		s.CleanupTime = DefaultCleanupTimeout
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	return nil
}

// Launch creates spec.Count runner VMs on t, at most spec.Parallel at a
// time. For jit each VM's runner is registered first (reg.MintJIT, named
// as the VM, with spec's labels and group) and its JIT config becomes the
// VM's userData: a VM whose mint failed is never created, and a VM that
// could not be created has its registration deleted. When ctx ends
// (Ctrl-C) no further VM is started; registrations of VMs not created are
// deleted and the target removes a create it had under way, both with a
// fresh context bounded by spec.CleanupTime. VMs already created stay:
// their runners are live.
//
// The result has one entry per requested VM, in order; the error joins
// every VM's failure (and ctx's cause when it ended).
func Launch(ctx context.Context, spec LaunchSpec, t Target, reg Registrar, log *slog.Logger) ([]Launched, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := spec.check(reg); err != nil {
		return nil, err
	}
	created := spec.Now().UTC().Format(time.RFC3339)
	out := make([]Launched, spec.Count)
	errs := make([]error, spec.Count)
	sem := make(chan struct{}, spec.Parallel)
	var wg sync.WaitGroup
	for i := range out {
		name := VMName(spec.NamePrefix, spec.LaunchID, i+1)
		out[i].Name = name
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
		}
		if ctx.Err() != nil {
			errs[i] = fmt.Errorf("runner VM %s: not started: %w", name, context.Cause(ctx))
			out[i].Error = "not started: " + context.Cause(ctx).Error()
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = launchOne(ctx, spec, created, out[i].Name, t, reg, log)
		}(i)
	}
	wg.Wait()
	err := errors.Join(errs...)
	if ctx.Err() != nil {
		err = errors.Join(fmt.Errorf("launch %s interrupted: %w", spec.LaunchID, context.Cause(ctx)), err)
	}
	return out, err
}

func launchOne(ctx context.Context, spec LaunchSpec, created, name string, t Target, reg Registrar, log *slog.Logger) (Launched, error) {
	l := Launched{Name: name}
	fail := func(err error) (Launched, error) {
		err = fmt.Errorf("runner VM %s: %w", name, err)
		l.Error = err.Error()
		return l, err
	}
	vs := VMSpec{Name: name, Image: spec.Image, Version: spec.Version, ImageID: spec.ImageID, Cycle: spec.Cycle,
		Tags: map[string]string{
			contract.TagLaunchedFrom:  spec.Image,
			contract.TagLaunchVersion: spec.Version,
			contract.TagLaunchID:      spec.LaunchID,
			contract.TagCreated:       created,
		}}
	if spec.Cycle != "" {
		vs.Tags[contract.TagCycle] = spec.Cycle
	}
	var runnerID int64
	if spec.Registration == contract.RegistrationJIT {
		jit, err := reg.MintJIT(ctx, name, spec.Labels, spec.RunnerGroupID, spec.WorkFolder)
		if err != nil {
			return fail(fmt.Errorf("registering its runner (no VM created): %w", err))
		}
		runnerID = jit.RunnerID
		log.Info("runner registered", "vm", name, "runner", runnerID)
		vs.UserData = jit.EncodedJITConfig
		vs.Tags[contract.TagRunnerID] = strconv.FormatInt(runnerID, 10)
	}
	// undo deletes the registration of a VM that will not run it; ctx may
	// be over, so it gets its own bounded one.
	undo := func(cause error) (Launched, error) {
		if runnerID == 0 {
			return fail(cause)
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), spec.CleanupTime)
		defer cancel()
		if err := reg.DeleteRunner(cctx, runnerID); err != nil {
			return fail(errors.Join(cause, fmt.Errorf("its runner registration %d is left: %w", runnerID, err)))
		}
		log.Info("runner registration deleted", "vm", name, "runner", runnerID)
		return fail(fmt.Errorf("%w (its runner registration %d was deleted)", cause, runnerID))
	}
	if ctx.Err() != nil {
		return undo(fmt.Errorf("not created: %w", context.Cause(ctx)))
	}
	vm, err := t.Create(ctx, vs)
	if err != nil {
		return undo(fmt.Errorf("creating it: %w", err))
	}
	if vm.RunnerID == 0 {
		vm.RunnerID = runnerID
	}
	if vm.LaunchID == "" {
		vm.LaunchID = spec.LaunchID
	}
	l.VM, l.RunnerID = &vm, runnerID
	log.Info("runner VM created", "vm", name, "id", vm.ID)
	return l, nil
}
