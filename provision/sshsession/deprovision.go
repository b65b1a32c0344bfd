package sshsession

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNoDrop is returned by Deprovision when the steps were started but the
// session was still up when ctx ended: the steps failed early or do not end
// the session. The error carries the tail of the steps' log.
var ErrNoDrop = errors.New("deprovision started but the session did not drop")

// deprovisionLog is where the detached steps write their output. /run is a
// tmpfs, so the log never ends up in the captured image.
const deprovisionLog = "/run/imagebake-deprovision.log"

// AzureDeprovisionSteps are the last commands run on an Azure build VM.
// waagent deletes the admin user (the SSH login) and keeps SSH host keys on
// Ubuntu, hence the explicit rm; `--machine-id` needs cloud-init ≥ 22.3.
func AzureDeprovisionSteps() []string {
	return []string{
		"cloud-init clean --logs --machine-id",
		"rm -f /etc/ssh/ssh_host_*",
		"waagent -force -deprovision+user",
		"sync",
	}
}

// LocalDeprovisionSteps are the last commands run on a local (QEMU) build VM:
// the same cleanup without waagent, deleting the build user (forced: it is
// still logged in) and powering off so the disk can be captured.
func LocalDeprovisionSteps(buildUser string) []string {
	return []string{
		"cloud-init clean --logs --machine-id",
		"rm -f /etc/ssh/ssh_host_*",
		"userdel -f -r " + ShellQuote(buildUser),
		// cloud-init gave the build user sudo through this file; a later
		// account of the same name must not inherit it.
		"if [ -e /etc/sudoers.d/90-cloud-init-users ]; then sed -i " + ShellQuote("/^"+buildUser+" /d") + " /etc/sudoers.d/90-cloud-init-users; fi",
		"sync",
		"poweroff",
	}
}

// deprovisionCommand wraps steps into one command: sudo runs in the
// foreground (so a refused sudo is an exit status we see), and starts the
// steps detached from the SSH session (setsid, nohup, no inherited pipes) so
// they survive the session they are about to end. Steps stop at the first
// failure (set -e): better no image than a half-cleaned one.
func deprovisionCommand(steps []string) string {
	script := "set -e\n" + strings.Join(steps, "\n")
	inner := "nohup setsid sh -c " + ShellQuote(script) + " >" + deprovisionLog + " 2>&1 </dev/null &"
	return "sudo -n sh -c " + ShellQuote(inner)
}

// Deprovision runs steps (e.g. AzureDeprovisionSteps()) as one detached sudo
// command. It must be the last use of the session: the steps delete the
// login user or power the VM off, so the session is expected to drop, and a
// drop after the command was sent is success. A non-zero exit status that
// arrives first (sudo refused) is an error. If the session is still up when
// ctx ends, the error wraps ErrNoDrop and ctx's cause; bound ctx accordingly
// (a few minutes).
func (s *Session) Deprovision(ctx context.Context, steps []string) error {
	if len(steps) == 0 {
		return fmt.Errorf("deprovision %s: no steps", s.addr)
	}
	s.log.Info("deprovisioning; the session is expected to drop", "steps", len(steps))
	start := time.Now()
	_, err := s.Run(ctx, deprovisionCommand(steps))
	switch {
	case errors.Is(err, ErrSessionDropped):
		s.log.Info("deprovision: session dropped before the command returned", "after", time.Since(start).Round(time.Millisecond))
		return nil
	case err != nil:
		return fmt.Errorf("deprovision %s: %w", s.addr, err)
	}
	select {
	case <-s.done:
		if err := s.connErr(); !errors.Is(err, ErrSessionDropped) {
			return fmt.Errorf("deprovision %s: %w", s.addr, err)
		}
		s.log.Info("deprovision: session dropped", "after", time.Since(start).Round(time.Millisecond))
		return nil
	case <-ctx.Done():
	}
	// Still connected: the steps' log says why.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	res, _ := s.Run(lctx, "sudo -n cat "+deprovisionLog)
	tail := strings.Join(LogExcerpt(res.Stdout, 10), " | ")
	return fmt.Errorf("deprovision %s: %w after %s (log %s: %q): %w",
		s.addr, ErrNoDrop, time.Since(start).Round(time.Millisecond), deprovisionLog, tail, context.Cause(ctx))
}
