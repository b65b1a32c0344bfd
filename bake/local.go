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
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// BuildUser is the login imagebake adds on the local target for its own SSH
// session; deprovisioning deletes it.
const BuildUser = "imagebake"

// Tags imagebake records on every version it publishes.
const (
	TagRecipe      = gallery.TagRecipe
	TagRecipeHash  = gallery.TagRecipeHash
	TagRunner      = gallery.TagRunner
	TagBaseImage   = gallery.TagBaseImage
	TagBaseVersion = gallery.TagBaseVersion
	TagImagebake   = gallery.TagImagebake
	TagCommit      = gallery.TagCommit
	TagBuildID     = gallery.TagBuildID
	TagMachineID   = gallery.TagMachineID
	TagHostKeys    = gallery.TagHostKeys
)

// LocalOptions configure a local bake.
type LocalOptions struct {
	Store       gallery.Store
	CacheDir    string // base images and downloads
	LogDir      string // the build's logs (serial console, cloud-init logs)
	Version     string // a pinned X.Y.Z; empty: the next patch in the recipe's line
	MemoryMiB   int
	CPUs        int
	KeepOnFail  bool
	Abort       <-chan struct{} // closed on a second Ctrl-C: stop cleaning up
	Progress    io.Writer       // download progress
	Logger      *slog.Logger
	Sink        Sink
	Commit      string // the recipe repository's commit, when known
	GitCommit   string
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

// Local bakes r on this machine under QEMU and publishes it to opts.Store.
func Local(ctx context.Context, r *recipes.Recipe, opts LocalOptions) (*Manifest, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	info := buildinfo.Get()
	m := &Manifest{Recipe: r.Name, RecipeHash: r.Hash(), Target: "local", Image: r.Gallery.Image,
		Imagebake: info.Version, Commit: opts.GitCommit, Started: time.Now(), LogDir: opts.LogDir, Resources: map[string]string{}}
	p := NewPipeline(log, opts.Sink, opts.Timeouts)
	buildID := NewBuildID()

	err := bakeLocal(ctx, p, r, opts, m, buildID, log)
	return finish(p, m, err, UnwindOptions{Timeout: opts.CleanupTime, Keep: opts.KeepOnFail, Abort: opts.Abort}, "baked")
}

func bakeLocal(ctx context.Context, p *Pipeline, r *recipes.Recipe, opts LocalOptions, m *Manifest, buildID string, log *slog.Logger) error {
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return fmt.Errorf("log folder %s: %w", opts.LogDir, err)
	}
	var base qemu.Base
	if err := p.Stage(ctx, "base", func(ctx context.Context) (err error) {
		base, m.BaseImage, err = ResolveLocalBase(ctx, r, opts.CacheDir, opts.Progress, log)
		m.BaseVersion = filepath.Base(filepath.Dir(base.Disk))
		return err
	}); err != nil {
		return err
	}

	if err := p.Stage(ctx, "version", func(ctx context.Context) error {
		versions, err := opts.Store.List(ctx, r.Gallery.Image)
		if err != nil {
			return err
		}
		if opts.Version != "" {
			for _, v := range versions {
				if v.Name == opts.Version {
					return fmt.Errorf("gallery version %s of %s: %w; versions are never overwritten, choose another", opts.Version, r.Gallery.Image, gallery.ErrVersionExists)
				}
			}
			m.Version = opts.Version
		} else {
			names := make([]string, len(versions))
			for i, v := range versions {
				names[i] = v.Name
			}
			if m.Version, err = gallery.Next(names, r.Gallery.Version); err != nil {
				return err
			}
		}
		p.Note("version", "will publish "+r.Gallery.Image+" "+m.Version+" (moves to the next patch if a concurrent bake takes it)")
		return nil
	}); err != nil {
		return err
	}

	var (
		machine  *qemu.Machine
		signer   ssh.Signer
		hostPub  ssh.PublicKey
		session  *sshsession.Session
		userData []byte
	)
	if err := p.Stage(ctx, "render", func(ctx context.Context) error {
		var authLine, hostPriv, hostLine string
		var err error
		if signer, authLine, err = sshsession.NewClientKey(); err != nil {
			return err
		}
		if hostPriv, hostLine, hostPub, err = sshsession.NewHostKey(); err != nil {
			return err
		}
		doc, err := templates.Render(r, templates.Options{HostKeyPrivate: hostPriv, HostKeyPublic: hostLine,
			BuildUser: BuildUser, BuildAuthorizedKey: authLine})
		if err != nil {
			return err
		}
		userData = doc.CloudConfig
		return nil
	}); err != nil {
		return err
	}

	if err := p.Stage(ctx, "boot", func(ctx context.Context) error {
		mem, cpus := r.Build.MemoryMiB, r.Build.CPUs
		if opts.MemoryMiB > 0 {
			mem = opts.MemoryMiB
		}
		if opts.CPUs > 0 {
			cpus = opts.CPUs
		}
		var err error
		machine, err = qemu.Start(ctx, qemu.MachineOptions{Base: base, UserData: userData, Hostname: r.Name,
			MemoryMiB: mem, CPUs: cpus, LogDir: opts.LogDir, Logger: log})
		if machine != nil {
			p.OnCleanupKeepable("build VM (qemu, overlay, seed server)", func(context.Context) error { return machine.Destroy() })
		}
		if err != nil {
			return err
		}
		m.Resources["sshAddr"] = machine.SSHAddr()
		m.Resources["overlay"] = machine.Overlay()
		m.Resources["serialLog"] = machine.SerialLog()
		return nil
	}); err != nil {
		return err
	}

	if err := p.Stage(ctx, "ssh", func(ctx context.Context) error {
		var err error
		session, err = dialWatching(ctx, machine, sshsession.Config{Addr: machine.SSHAddr(), User: BuildUser, Signer: signer, HostKey: hostPub, Logger: log})
		if err != nil {
			return err
		}
		p.OnCleanup("ssh session", func(context.Context) error { session.Close(); return nil })
		return nil
	}); err != nil {
		if opts.KeepOnFail {
			p.Note("ssh", keepHint(machine))
		}
		return err
	}

	results, err := cloudInitAndChecks(ctx, p, session, r, checks.Build, opts.LogDir, m)
	if err != nil {
		if opts.KeepOnFail {
			p.Note("checks", keepHint(machine))
		}
		return err
	}
	_ = results

	var identity map[string]string
	if err := p.Stage(ctx, "deprovision", func(ctx context.Context) error {
		// Record what must differ on a VM booted from the image.
		identity = buildIdentity(ctx, session)
		if err := session.Deprovision(ctx, sshsession.LocalDeprovisionSteps(BuildUser)); err != nil {
			return err
		}
		session.Close()
		p.Forget("ssh session")
		// The steps end with poweroff; wait for QEMU to exit.
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if err := machine.Wait(wctx); err != nil {
			return fmt.Errorf("build VM did not power off after deprovisioning: %w", err)
		}
		return nil
	}); err != nil {
		return err
	}

	var captured qemu.Captured
	if err := p.Stage(ctx, "capture", func(ctx context.Context) error {
		dst := filepath.Join(filepath.Dir(machine.Overlay()), "captured.qcow2")
		var err error
		captured, err = machine.Capture(ctx, dst)
		return err
	}); err != nil {
		return err
	}

	return p.Stage(ctx, "publish", func(ctx context.Context) error {
		tags := versionTags(r, m, buildID)
		for k, v := range identity {
			tags[k] = v
		}
		req := gallery.CreateRequest{Version: opts.Version, Source: captured.Path, MoveSource: true, RecipeHash: m.RecipeHash,
			Tags: tags, ExcludeFromLatest: r.Gallery.ExcludeFromLatest, Regions: []gallery.Region{{Name: "local", Replicas: 1}}}
		if eol, err := endOfLife(r); err != nil {
			return err
		} else if eol != nil {
			req.EndOfLife = eol
		}
		var v gallery.ImageVersion
		var err error
		if opts.Version != "" {
			v, err = opts.Store.Create(ctx, r.Gallery.Image, req)
		} else {
			v, err = gallery.Publish(ctx, opts.Store, r.Gallery.Image, r.Gallery.Version, req, 20)
		}
		if err != nil {
			return err
		}
		m.Version, m.VersionID, m.Path = v.Name, v.ID, v.Path
		m.BootCommand = bootCommand(v.Path, base, r.Build.MemoryMiB)
		p.Note("publish", fmt.Sprintf("%s %s → %s (%d MiB)", r.Gallery.Image, v.Name, v.Path, v.SizeBytes>>20))
		return nil
	})
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

// cloudInitAndChecks waits for cloud-init, fails with its logs when it
// failed, then runs every check.
func cloudInitAndChecks(ctx context.Context, p *Pipeline, session *sshsession.Session, r *recipes.Recipe, phase checks.Phase, logDir string, m *Manifest) ([]sshsession.CheckResult, error) {
	if err := p.Stage(ctx, "cloud-init", func(ctx context.Context) error {
		st, err := session.WaitCloudInit(ctx, 3*time.Second)
		if err != nil {
			return err
		}
		if err := st.Err(r.Build.AllowRecoverableErrors); err != nil {
			dir := filepath.Join(logDir, "cloud-init")
			if cerr := session.CollectLogs(ctx, dir); cerr != nil {
				return fmt.Errorf("%w (and collecting cloud-init's logs failed: %v)", err, cerr)
			}
			excerpt := ""
			for _, f := range []string{"cloud-init-output.log", "cloud-init.log"} {
				if b, rerr := os.ReadFile(filepath.Join(dir, f)); rerr == nil {
					excerpt += "--- " + f + " ---\n" + strings.Join(sshsession.LogExcerpt(string(b), 20), "\n") + "\n"
				}
			}
			return fmt.Errorf("%w\ncloud-init's logs are in %s; the lines that explain it:\n%s", err, dir, excerpt)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	var results []sshsession.CheckResult
	err := p.Stage(ctx, "checks", func(ctx context.Context) error {
		results = session.RunChecks(ctx, checks.For(r, phase))
		m.Checks = checkReports(results)
		passed := 0
		for _, res := range results {
			if res.Passed {
				passed++
			}
		}
		p.Note("checks", fmt.Sprintf("%d/%d checks passed", passed, len(results)))
		return checksError(results)
	})
	return results, err
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
