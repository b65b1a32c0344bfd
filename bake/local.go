package bake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagebake/imagebake/checks"
	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/internal/buildinfo"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// BuildUser is the login imagebake adds on the local target for its own SSH
// session; deprovisioning deletes it.
const BuildUser = "imagebake"

// Tags imagebake records on every version it publishes; they are spelled in
// internal/contract.
const (
	TagRecipe      = contract.TagRecipe
	TagRecipeHash  = contract.TagRecipeHash
	TagRunner      = contract.TagRunner
	TagBaseImage   = contract.TagBaseImage
	TagBaseVersion = contract.TagBaseVersion
	TagImagebake   = contract.TagImagebake
	TagCommit      = contract.TagCommit
	TagBuildID     = contract.TagBuildID
	TagMachineID   = contract.TagMachineID
	TagHostKeys    = contract.TagHostKeys
)

// LocalOptions configure a local bake.
type LocalOptions struct {
	Store    gallery.Store
	CacheDir string // base images and downloads
	LogDir   string // the build's logs (serial console, cloud-init logs)
	Version  string // a pinned X.Y.Z; empty: the next patch in the recipe's line
	// MemoryMiB and CPUs override the recipe's build.memoryMiB and
	// build.cpus, for a bake and for a verify.
	MemoryMiB  int
	CPUs       int
	KeepOnFail bool
	Abort      <-chan struct{} // closed on a second Ctrl-C: stop cleaning up
	Progress   io.Writer       // download progress
	Logger     *slog.Logger
	Sink       Sink
	GitCommit  string // the recipe repository's commit, when known
	// Timeouts bound stages by name (StageTimeouts gives the defaults
	// with the recipe's over them); nil bounds none.
	Timeouts    map[string]time.Duration
	CleanupTime time.Duration
}

// NewBuildID is a short random ID that tags everything one build creates.
func NewBuildID() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ResolveLocalBase returns the base to boot for a recipe: the built-in
// Debian base (built once, cached), a local path, or a verified download.
func ResolveLocalBase(ctx context.Context, r *recipes.Recipe, cacheDir string, progress io.Writer, log *slog.Logger) (qemu.Base, string, error) {
	l := r.Base.Local
	switch {
	case l.Builtin != "":
		suite := strings.TrimPrefix(l.Builtin, "debian-")
		b, err := qemu.BuildBase(ctx, qemu.BuildOptions{CacheDir: cacheDir, Suite: suite, Logger: log})
		if err != nil {
			return qemu.Base{}, "", fmt.Errorf("base %s: %w", l.Builtin, err)
		}
		return b, l.Builtin, nil
	case l.Path != "" || l.URL != "":
		disk := l.Path
		if l.URL != "" {
			var err error
			disk, err = qemu.Fetch(ctx, qemu.FetchOptions{URL: l.URL, SHA256: l.SHA256, CacheDir: filepath.Join(cacheDir, "downloads"), Progress: progress})
			if err != nil {
				return qemu.Base{}, "", fmt.Errorf("base %s: %w", l.URL, err)
			}
		} else if _, err := os.Stat(disk); err != nil {
			return qemu.Base{}, "", fmt.Errorf("base.local.path: %w", err)
		}
		b := qemu.Base{Disk: disk, Kernel: l.Kernel, Initrd: l.Initrd}
		if l.Kernel != "" {
			b.Append = "root=/dev/vda rw console=ttyS0"
		}
		return b, disk, nil
	}
	return qemu.Base{}, "", fmt.Errorf("recipe %s has no base.local: add base.local.builtin: debian-bookworm, a path, or a url with sha256", r.Name)
}

// qemuVM is a VM under QEMU reached over SSH: the ssh stage local bake and
// verify share, and what boot and ssh leave for the stages after them.
type qemuVM struct {
	guest
	opts    LocalOptions
	base    qemu.Base
	machine *qemu.Machine
	// buildID goes into the machine's temp-folder marker, which gc reads.
	buildID string
	// user logs in with signer; the VM presents hostPub.
	user    string
	signer  ssh.Signer
	hostPub ssh.PublicKey
}

// start boots the VM and registers its cleanup the moment QEMU runs.
func (q *qemuVM) start(ctx context.Context, hostname, what string, userData []byte) error {
	machine, err := qemu.Start(ctx, qemu.MachineOptions{Base: q.base, UserData: userData, Hostname: hostname,
		MemoryMiB: q.set.MemoryMiB, CPUs: q.set.CPUs, LogDir: q.logDir, Logger: q.log, BuildID: q.buildID})
	if machine != nil {
		q.machine = machine
		q.p.OnCleanupKeepable(what+" (qemu, overlay, seed server)", func(context.Context) error { return machine.Destroy() })
	}
	return err
}

// hintKept says how to reach the kept VM after a stage failed, with
// --keep-on-failure. hintStages maps a failed stage to the stage the hint
// is shown under.
func (q *qemuVM) hintKept(failed string, hintStages map[string]string) {
	if as, ok := hintStages[failed]; ok && q.opts.KeepOnFail {
		q.p.Note(as, keepHint(q.machine))
	}
}

func (q *qemuVM) dial(ctx context.Context) error {
	s, err := dialWatching(ctx, q.machine, sshsession.Config{Addr: q.machine.SSHAddr(), User: q.user, Signer: q.signer, HostKey: q.hostPub, Logger: q.log})
	if err != nil {
		return err
	}
	q.opened(s)
	return nil
}

// localBake is the local bake's build: what its stages (localBakeStages)
// hand one another.
type localBake struct {
	qemuVM
	alloc    *gallery.Allocator
	userData []byte
	// identity is what generalizing must change, read before
	// deprovisioning: the machine-id and host keys.
	identity map[string]string
	captured qemu.Captured
}

// Local bakes r on this machine under QEMU and publishes it to opts.Store.
func Local(ctx context.Context, r *recipes.Recipe, opts LocalOptions) (*Manifest, error) {
	log := loggerOr(opts.Logger)
	set := localSettings(r, opts)
	m := &Manifest{Recipe: r.Name, RecipeHash: r.Hash(), Target: "local", Image: r.Gallery.Image,
		Imagebake: buildinfo.Get().Version, Commit: opts.GitCommit, Started: time.Now(), LogDir: opts.LogDir, Resources: map[string]string{}, Settings: &set}
	p := NewPipeline(opts.Sink, set.timeouts())
	err := bakeLocal(ctx, p, r, set, opts, m, log)
	return finish(p, m, err, UnwindOptions{Timeout: opts.CleanupTime, Keep: opts.KeepOnFail, Abort: opts.Abort}, "baked")
}

func bakeLocal(ctx context.Context, p *Pipeline, r *recipes.Recipe, set Settings, opts LocalOptions, m *Manifest, log *slog.Logger) error {
	if err := prepareLogDir(opts.LogDir); err != nil {
		return err
	}
	b := &localBake{
		qemuVM: qemuVM{guest: guest{job: job{r: r, set: set, p: p, m: m, log: log, logDir: opts.LogDir}, phase: checks.Build}, opts: opts, user: BuildUser, buildID: NewBuildID()},
		alloc: &gallery.Allocator{Store: opts.Store, Image: r.Gallery.Image, Line: r.Gallery.Version, Pinned: opts.Version,
			Log: log, Taken: takenNote(p, r.Gallery.Image)},
	}
	return Run(ctx, p, b, localBakeStages, func(b *localBake, stage string) {
		b.hintKept(stage, map[string]string{contract.StageSSH: contract.StageSSH,
			contract.StageCloudInit: contract.StageChecks, contract.StageChecks: contract.StageChecks})
	})
}

func (b *localBake) resolveBase(ctx context.Context) (err error) {
	b.base, b.m.BaseImage, err = ResolveLocalBase(ctx, b.r, b.opts.CacheDir, b.opts.Progress, b.log)
	b.m.BaseVersion = filepath.Base(filepath.Dir(b.base.Disk))
	if l := b.r.Base.Local; err == nil && l.Path != "" {
		// A path's folder name says nothing about the disk in it; the same
		// content digest nightly.LocalBaseVersion compares for --if-changed.
		b.m.BaseVersion, err = qemu.ContentVersion(ctx, b.opts.CacheDir, l.Path, l.Kernel, l.Initrd)
	}
	return err
}

func (b *localBake) previewVersion(ctx context.Context) (err error) {
	if b.m.Version, err = b.alloc.Preview(ctx); err != nil {
		return err
	}
	b.p.Note(contract.StageVersion, "will publish "+b.r.Gallery.Image+" "+b.m.Version+" (moves to the next patch if a concurrent bake takes it)")
	return nil
}

func (b *localBake) render(ctx context.Context) error {
	k, err := newBootKeys()
	if err != nil {
		return err
	}
	b.signer, b.hostPub = k.signer, k.hostPub
	doc, err := templates.Render(b.r, templates.Options{HostKeyPrivate: k.hostPriv, HostKeyPublic: k.hostLine,
		BuildUser: BuildUser, BuildAuthorizedKey: k.authLine})
	if err != nil {
		return err
	}
	b.userData = doc.CloudConfig
	return nil
}

func (b *localBake) boot(ctx context.Context) error {
	if err := b.start(ctx, b.r.Name, "build VM", b.userData); err != nil {
		return err
	}
	b.m.Resources["sshAddr"] = b.machine.SSHAddr()
	b.m.Resources["overlay"] = b.machine.Overlay()
	b.m.Resources["serialLog"] = b.machine.SerialLog()
	return nil
}

func (b *localBake) deprovision(ctx context.Context) error {
	// Record what must differ on a VM booted from the image.
	b.identity = buildIdentity(ctx, b.session)
	if err := b.session.Deprovision(ctx, sshsession.LocalDeprovisionSteps(BuildUser)); err != nil {
		return err
	}
	b.closeSession()
	// The steps end with poweroff; wait for QEMU to exit.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := b.machine.Wait(wctx); err != nil {
		return fmt.Errorf("build VM did not power off after deprovisioning: %w", err)
	}
	return nil
}

func (b *localBake) capture(ctx context.Context) (err error) {
	dst := filepath.Join(filepath.Dir(b.machine.Overlay()), "captured.qcow2")
	b.captured, err = b.machine.Capture(ctx, dst)
	return err
}

func (b *localBake) publish(ctx context.Context) error {
	r := b.r
	tags := versionTags(r, b.m, b.buildID)
	for k, v := range b.identity {
		tags[k] = v
	}
	req := gallery.CreateRequest{Source: b.captured.Path, MoveSource: true, RecipeHash: b.m.RecipeHash,
		Tags: tags, ExcludeFromLatest: r.Gallery.ExcludeFromLatest, Regions: []gallery.Region{{Name: "local", Replicas: 1}}}
	eol, err := endOfLife(r)
	if err != nil {
		return err
	}
	req.EndOfLife = eol
	v, err := b.alloc.Publish(ctx, req)
	if err != nil {
		return err
	}
	b.m.Version, b.m.VersionID, b.m.Path = v.Name, v.ID, v.Path
	b.m.BootCommand = bootCommand(v.Path, b.base, b.set.MemoryMiB)
	b.p.Note(contract.StagePublish, fmt.Sprintf("%s %s → %s (%d MiB)", r.Gallery.Image, v.Name, v.Path, v.SizeBytes>>20))
	return nil
}

// dialWatching dials SSH but gives up at once when QEMU exits (a kernel
// panic or a bad image), showing the console's last lines.
func dialWatching(ctx context.Context, machine *qemu.Machine, cfg sshsession.Config) (*sshsession.Session, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-machine.Exited():
			cancel(fmt.Errorf("the build VM exited before SSH answered; serial console %s:\n%s", machine.SerialLog(), tail(machine.SerialLog(), 15)))
		case <-ctx.Done():
		}
	}()
	s, err := sshsession.Dial(ctx, cfg)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return nil, cause
		}
		return nil, err
	}
	return s, nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func keepHint(machine *qemu.Machine) string {
	if machine == nil {
		return ""
	}
	host, port, _ := strings.Cut(machine.SSHAddr(), ":")
	return fmt.Sprintf("kept the build VM (--keep-on-failure): ssh -p %s %s@%s (the key was in memory only: add yours with the serial console), overlay %s, console %s",
		port, BuildUser, host, machine.Overlay(), machine.SerialLog())
}

// hostKeysCommand prints a digest of each SSH host public key.
const hostKeysCommand = "sudo -n sh -c 'sha256sum /etc/ssh/ssh_host_*_key.pub' | cut -d' ' -f1 | sort"

// buildIdentity reads what generalizing must change: the machine-id and the
// SSH host keys' fingerprints.
func buildIdentity(ctx context.Context, s *sshsession.Session) map[string]string {
	out := map[string]string{}
	if res, err := s.Run(ctx, "cat /etc/machine-id"); err == nil {
		out[TagMachineID] = strings.TrimSpace(res.Stdout)
	}
	if res, err := s.Run(ctx, hostKeysCommand); err == nil {
		out[TagHostKeys] = strings.Join(strings.Fields(res.Stdout), " ")
	}
	return out
}

func versionTags(r *recipes.Recipe, m *Manifest, buildID string) map[string]string {
	tags := map[string]string{}
	for k, v := range r.Tags {
		tags[k] = v
	}
	tags[TagRecipe] = r.Name
	tags[TagRecipeHash] = m.RecipeHash
	tags[TagBaseImage] = m.BaseImage
	tags[TagBaseVersion] = m.BaseVersion
	tags[TagImagebake] = m.Imagebake
	tags[TagBuildID] = buildID
	if r.Runner != nil {
		tags[TagRunner] = r.Runner.Version
	}
	if m.Commit != "" {
		tags[TagCommit] = m.Commit
	}
	return tags
}

func endOfLife(r *recipes.Recipe) (*time.Time, error) {
	if r.Gallery.EndOfLife == "" {
		return nil, nil
	}
	eol, err := recipes.ParseEndOfLife(r.Gallery.EndOfLife)
	if err != nil {
		return nil, err
	}
	t := eol.At
	if eol.After > 0 {
		t = time.Now().Add(eol.After).UTC()
	}
	return &t, nil
}

// bootCommand is a QEMU command line that boots a published disk as a
// throwaway snapshot, with SSH forwarded to 127.0.0.1:2222.
func bootCommand(disk string, base qemu.Base, memMiB int) string {
	q := sshsession.ShellQuote
	cmd := fmt.Sprintf("qemu-system-x86_64 -machine q35 -cpu max -m %d -nographic -drive file=%s,if=virtio,snapshot=on -nic user,hostfwd=tcp:127.0.0.1:2222-:22", memMiB, q(disk))
	if base.Kernel != "" {
		cmd += fmt.Sprintf(" -kernel %s -initrd %s -append %s", q(base.Kernel), q(base.Initrd), q(firstNonEmptyStr(base.Append, qemu.BaseAppend)))
	}
	return cmd
}
