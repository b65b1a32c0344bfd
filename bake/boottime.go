package bake

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/recipes"
)

// multiUser is the target a boot is ready at when the recipe names no
// unit (or its unit did not run in this boot).
const multiUser = "multi-user.target"

// BootTiming is how long a local VM took from QEMU's launch to being ready,
// in the manifest as "boot". Ready is what "ready" meant: the recipe's main
// unit running (its main process started), else multi-user.target reached,
// else "ssh" (the first SSH session). Guest times come from systemd's
// monotonic timestamps (kernel start = 0); the host part is QEMU's launch
// to the guest kernel's start, found by reading the guest's uptime against
// the host's clock.
type BootTiming struct {
	Ready string `json:"ready"`
	// Seconds is QEMU launched → Ready: the boot-to-ready time.
	Seconds float64 `json:"seconds"`
	// QEMUToKernelSeconds is QEMU launched → guest kernel started
	// (firmware, kernel and initrd loading).
	QEMUToKernelSeconds float64 `json:"qemuToKernelSeconds"`
	// KernelToReadySeconds is guest kernel started → Ready, by the guest's
	// clock.
	KernelToReadySeconds float64 `json:"kernelToReadySeconds"`
	// MultiUserSeconds is QEMU launched → multi-user.target reached, when
	// it was; comparable between a bake's boot (whose units are only
	// enabled, not started) and a verify's.
	MultiUserSeconds float64 `json:"multiUserSeconds,omitempty"`
	// SSHSeconds is QEMU launched → the first SSH session.
	SSHSeconds float64 `json:"sshSeconds"`
	// Note says why Ready is not the recipe's main unit, when it is not.
	Note string `json:"note,omitempty"`
}

// String is the line verify and bake print: "boot-to-ready 31.2s (…)".
func (t BootTiming) String() string {
	s := fmt.Sprintf("boot-to-ready %.1fs (%s; qemu→kernel %.1fs, kernel→ready %.1fs", t.Seconds, t.Ready, t.QEMUToKernelSeconds, t.KernelToReadySeconds)
	if t.MultiUserSeconds > 0 {
		s += fmt.Sprintf("; multi-user.target %.1fs", t.MultiUserSeconds)
	}
	s += fmt.Sprintf("; first ssh %.1fs)", t.SSHSeconds)
	if t.Note != "" {
		s += "; " + t.Note
	}
	return s
}

// mainUnit is the unit whose start means a VM from this recipe is ready:
// the runner's unit when the recipe has a runner, else the first unit it
// enables; "" when it enables none.
func mainUnit(r *recipes.Recipe) string {
	if r.Runner != nil {
		for _, u := range r.Systemd {
			if u.Template == "github-runner.service" || u.Name == "github-runner.service" {
				return u.Name
			}
		}
	}
	for _, u := range r.Systemd {
		if u.Enable {
			return u.Name
		}
	}
	return ""
}

// measureBoot reads the guest's boot clock and fills in the manifest's
// boot timing. It is called once cloud-init has finished, when every unit
// the boot starts has had its chance.
func (q *qemuVM) measureBoot(ctx context.Context) (BootTiming, error) {
	t := BootTiming{SSHSeconds: q.sshReady.Sub(q.launched).Seconds()}
	unit := mainUnit(q.r)
	units := []string{multiUser}
	if unit != "" {
		units = append([]string{unit}, units...)
	}
	c, err := q.session.ReadBootClock(ctx, units...)
	if err != nil {
		return t, err
	}
	kernel := c.KernelStart().Sub(q.launched)
	if mu, ok := c.Units[multiUser]; ok {
		t.MultiUserSeconds = (kernel + mu).Seconds()
	}
	t.Ready, t.QEMUToKernelSeconds = "ssh", kernel.Seconds()
	ready, ok := c.Units[unit]
	switch {
	case unit != "" && ok:
		t.Ready = unit
	case unit != "":
		t.Note = unit + " did not start in this boot"
		ready, ok = c.Units[multiUser]
		if ok {
			t.Ready = multiUser
		}
	default:
		ready, ok = c.Units[multiUser]
		if ok {
			t.Ready = multiUser
		}
	}
	if ok {
		t.Seconds, t.KernelToReadySeconds = (kernel + ready).Seconds(), ready.Seconds()
	} else {
		t.Seconds, t.KernelToReadySeconds = t.SSHSeconds, (q.sshReady.Sub(c.KernelStart())).Seconds()
	}
	q.m.Boot = &t
	return t, nil
}

// cloudInit is the local bake's cloud-init stage: cloud-init's wait, then
// the build boot's timing, recorded so that it can be compared with the
// published image's (verify's first-boot stage). The build's units are
// only enabled, so its "ready" is multi-user.target. A failure to measure
// costs the bake nothing.
func (b *localBake) cloudInit(ctx context.Context) error {
	if err := b.waitCloudInit(ctx); err != nil {
		return err
	}
	t, err := b.measureBoot(ctx)
	if err != nil {
		b.log.Warn("build boot: no boot timing", "err", err)
		return nil
	}
	b.p.Note(contract.StageCloudInit, "build boot: "+t.String())
	return nil
}

// firstBoot is verify's first-boot stage: the published image's first
// boot must end with no failed unit and not degraded, and its
// boot-to-ready time is measured and printed.
func (b *localVerify) firstBoot(ctx context.Context) error {
	h, err := b.session.SystemHealth(ctx, time.Minute)
	if err != nil {
		return err
	}
	t, merr := b.measureBoot(ctx)
	if merr != nil {
		// Measuring is reporting; a clean boot still verifies.
		b.log.Warn("verify boot: no boot timing", "err", merr)
	} else {
		b.p.Note(contract.StageFirstBoot, t.String())
	}
	if err := h.Err(); err != nil {
		return fmt.Errorf("first boot of %s %s: %w", b.r.Gallery.Image, b.version.Name, err)
	}
	state := h.State
	if state != "running" {
		state += " (no failed unit)"
	}
	b.p.Note(contract.StageFirstBoot, "system "+strings.TrimSpace(state))
	return nil
}
