package bake

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/imagebake/imagebake/checks"
	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// VerifyUser is the login a verify boot adds; it differs from BuildUser so
// that the build user's absence can be checked.
const VerifyUser = "imagebake-verify"

// localVerify is the local verify's build: what its stages
// (localVerifyStages) hand one another.
type localVerify struct {
	qemuVM
	// version is the published version booted.
	version gallery.ImageVersion
}

// VerifyLocal boots a fresh VM from a published version and runs the
// recipe's checks on it, plus checks that the image was generalized:
// cloud-init ran again on this first boot, the machine-id and SSH host keys
// differ from the build's, and the build user is gone. opts.MemoryMiB and
// opts.CPUs size the VM as they do a bake's.
func VerifyLocal(ctx context.Context, r *recipes.Recipe, v gallery.ImageVersion, opts LocalOptions) (*Manifest, error) {
	log := loggerOr(opts.Logger)
	set := localSettings(r, opts)
	m := &Manifest{Recipe: r.Name, RecipeHash: r.Hash(), Target: "local", Image: r.Gallery.Image, Version: v.Name,
		Path: v.Path, Started: time.Now(), LogDir: opts.LogDir, Resources: map[string]string{}, Settings: &set}
	p := NewPipeline(opts.Sink, set.timeouts())
	err := prepareLogDir(opts.LogDir)
	if err == nil {
		b := &localVerify{
			qemuVM:  qemuVM{guest: guest{job: job{r: r, set: set, p: p, m: m, log: log, logDir: opts.LogDir}, phase: checks.Verify}, opts: opts, user: VerifyUser},
			version: v,
		}
		err = Run(ctx, p, b, localVerifyStages, nil)
	}
	return finish(p, m, err, UnwindOptions{Timeout: opts.CleanupTime, Keep: opts.KeepOnFail, Abort: opts.Abort}, "verified")
}

func (b *localVerify) resolveBase(ctx context.Context) error {
	base, _, err := ResolveLocalBase(ctx, b.r, b.opts.CacheDir, b.opts.Progress, b.log)
	if err != nil {
		return err
	}
	// The published disk, booted with the base's kernel when the base
	// boots that way.
	b.base = qemu.Base{Disk: b.version.Path, Kernel: base.Kernel, Initrd: base.Initrd, Append: base.Append}
	return nil
}

// boot renders the cloud-config that only lets the verify user in with a
// pinned host key (the image already holds the recipe) and boots it.
func (b *localVerify) boot(ctx context.Context) error {
	k, err := newBootKeys()
	if err != nil {
		return err
	}
	b.signer, b.hostPub = k.signer, k.hostPub
	userData, err := templates.RenderAccess(templates.Options{HostKeyPrivate: k.hostPriv, HostKeyPublic: k.hostLine, BuildUser: VerifyUser, BuildAuthorizedKey: k.authLine})
	if err != nil {
		return err
	}
	return b.start(ctx, b.r.Name+"-verify", "verify VM", userData)
}

func (b *localVerify) generalized(ctx context.Context) error {
	results := b.session.RunChecks(ctx, generalizedChecks(b.version, b.machine.Seed().InstanceID()))
	b.m.Checks = append(b.m.Checks, checkReports(results)...)
	return checksError(results)
}

func generalizedChecks(v gallery.ImageVersion, instanceID string) []sshsession.Check {
	q := sshsession.ShellQuote
	cs := []sshsession.Check{
		{Name: "cloud-init ran again on first boot", Sudo: true, Run: fmt.Sprintf(`test "$(cat /var/lib/cloud/data/instance-id)" = %s`, q(instanceID))},
		{Name: "build user " + BuildUser + " is gone", Run: fmt.Sprintf(`! getent passwd %s`, q(BuildUser))},
	}
	if id := v.Tags[contract.TagMachineID]; id != "" {
		cs = append(cs, sshsession.Check{Name: "machine-id differs from the build's", Run: fmt.Sprintf(`test -s /etc/machine-id && test "$(cat /etc/machine-id)" != %s`, q(id))})
	}
	if keys := strings.Fields(v.Tags[contract.TagHostKeys]); len(keys) > 0 {
		var greps []string
		for _, k := range keys {
			greps = append(greps, "-e "+q(k))
		}
		cs = append(cs, sshsession.Check{Name: "SSH host keys differ from the build's",
			Run: fmt.Sprintf(`test -n "$(%s)" && ! %s | grep -qxF %s`, hostKeysCommand, hostKeysCommand, strings.Join(greps, " "))})
	}
	return cs
}
