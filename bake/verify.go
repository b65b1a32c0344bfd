package bake

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/imagebake/imagebake/checks"
	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// VerifyUser is the login a verify boot adds; it differs from BuildUser so
// that the build user's absence can be checked.
const VerifyUser = "imagebake-verify"

// VerifyLocal boots a fresh VM from a published version and runs the
// recipe's checks on it, plus checks that the image was generalized:
// cloud-init ran again on this first boot, the machine-id and SSH host keys
// differ from the build's, and the build user is gone.
func VerifyLocal(ctx context.Context, r *recipes.Recipe, v gallery.ImageVersion, opts LocalOptions) (*Manifest, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Manifest{Recipe: r.Name, RecipeHash: r.Hash(), Target: "local", Image: r.Gallery.Image, Version: v.Name,
		Path: v.Path, Started: time.Now(), LogDir: opts.LogDir, Resources: map[string]string{}}
	p := NewPipeline(log, opts.Sink, opts.Timeouts)
	err := verifyLocal(ctx, p, r, v, opts, m, log)
	return finish(p, m, err, UnwindOptions{Timeout: opts.CleanupTime, Keep: opts.KeepOnFail, Abort: opts.Abort}, "verified")
}

func verifyLocal(ctx context.Context, p *Pipeline, r *recipes.Recipe, v gallery.ImageVersion, opts LocalOptions, m *Manifest, log *slog.Logger) error {
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return fmt.Errorf("log folder %s: %w", opts.LogDir, err)
	}
	var base qemu.Base
	if err := p.Stage(ctx, "base", func(ctx context.Context) error {
		b, _, err := ResolveLocalBase(ctx, r, opts.CacheDir, opts.Progress, log)
		if err != nil {
			return err
		}
		// The published disk, booted with the base's kernel when the base
		// boots that way.
		base = qemu.Base{Disk: v.Path, Kernel: b.Kernel, Initrd: b.Initrd, Append: b.Append}
		return nil
	}); err != nil {
		return err
	}
	signer, authLine, err := sshsession.NewClientKey()
	if err != nil {
		return err
	}
	hostPriv, hostLine, hostPub, err := sshsession.NewHostKey()
	if err != nil {
		return err
	}
	userData, err := templates.RenderAccess(templates.Options{HostKeyPrivate: hostPriv, HostKeyPublic: hostLine, BuildUser: VerifyUser, BuildAuthorizedKey: authLine})
	if err != nil {
		return err
	}
	var machine *qemu.Machine
	if err := p.Stage(ctx, "boot", func(ctx context.Context) error {
		var err error
		machine, err = qemu.Start(ctx, qemu.MachineOptions{Base: base, UserData: userData, Hostname: r.Name + "-verify",
			MemoryMiB: r.Build.MemoryMiB, CPUs: r.Build.CPUs, LogDir: opts.LogDir, Logger: log})
		if machine != nil {
			p.OnCleanupKeepable("verify VM (qemu, overlay, seed server)", func(context.Context) error { return machine.Destroy() })
		}
		return err
	}); err != nil {
		return err
	}
	var session *sshsession.Session
	if err := p.Stage(ctx, "ssh", func(ctx context.Context) error {
		var err error
		session, err = dialWatching(ctx, machine, sshsession.Config{Addr: machine.SSHAddr(), User: VerifyUser, Signer: signer, HostKey: hostPub, Logger: log})
		if err == nil {
			p.OnCleanup("ssh session", func(context.Context) error { session.Close(); return nil })
		}
		return err
	}); err != nil {
		return err
	}
	if _, err := cloudInitAndChecks(ctx, p, session, r, checks.Verify, opts.LogDir, m); err != nil {
		return err
	}
	return p.Stage(ctx, "generalized", func(ctx context.Context) error {
		results := session.RunChecks(ctx, generalizedChecks(v, machine.Seed().InstanceID()))
		m.Checks = append(m.Checks, checkReports(results)...)
		return checksError(results)
	})
}

func generalizedChecks(v gallery.ImageVersion, instanceID string) []sshsession.Check {
	q := sshsession.ShellQuote
	cs := []sshsession.Check{
		{Name: "cloud-init ran again on first boot", Sudo: true, Run: fmt.Sprintf(`test "$(cat /var/lib/cloud/data/instance-id)" = %s`, q(instanceID))},
		{Name: "build user " + BuildUser + " is gone", Run: fmt.Sprintf(`! getent passwd %s`, q(BuildUser))},
	}
	if id := v.Tags[TagMachineID]; id != "" {
		cs = append(cs, sshsession.Check{Name: "machine-id differs from the build's", Run: fmt.Sprintf(`test -s /etc/machine-id && test "$(cat /etc/machine-id)" != %s`, q(id))})
	}
	if keys := strings.Fields(v.Tags[TagHostKeys]); len(keys) > 0 {
		var greps []string
		for _, k := range keys {
			greps = append(greps, "-e "+q(k))
		}
		cs = append(cs, sshsession.Check{Name: "SSH host keys differ from the build's",
			Run: fmt.Sprintf(`test -n "$(%s)" && ! %s | grep -qxF %s`, hostKeysCommand, hostKeysCommand, strings.Join(greps, " "))})
	}
	return cs
}
