package sshsession

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Health is what systemd says about a booted guest.
type Health struct {
	// State is `systemctl is-system-running`'s answer: running, degraded,
	// starting, maintenance, …
	State string
	// Failed are the units `systemctl --failed` lists, each with its
	// `systemctl status` lines.
	Failed []FailedUnit
}

// FailedUnit is one failed unit and what `systemctl status` says about it.
type FailedUnit struct {
	Name   string
	Status string
}

// Err fails a boot that ended degraded or with a failed unit, showing each
// failed unit's status. A system still starting is not an error by itself
// (a long-running oneshot unit keeps it "starting"); its failed units are.
func (h Health) Err() error {
	if len(h.Failed) == 0 && h.State != "degraded" && h.State != "maintenance" {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "system is %s", h.State)
	if len(h.Failed) > 0 {
		names := make([]string, len(h.Failed))
		for i, u := range h.Failed {
			names[i] = u.Name
		}
		fmt.Fprintf(&b, "; %d failed unit(s): %s", len(h.Failed), strings.Join(names, ", "))
		for _, u := range h.Failed {
			fmt.Fprintf(&b, "\n--- systemctl status %s ---\n%s", u.Name, strings.TrimRight(u.Status, "\n"))
		}
	}
	return errors.New(b.String())
}

// unitNameRe is what a unit name from `systemctl --failed` must look like
// before it goes into another command: the guest's answer is not trusted.
var unitNameRe = regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]{1,255}$`)

// SystemHealth asks systemd whether the boot is clean. While the system
// is still initializing or starting it asks again, up to settle, so that a
// unit still on its way to failing is seen. Each failed unit's status is
// read with sudo (its journal lines need it).
func (s *Session) SystemHealth(ctx context.Context, settle time.Duration) (Health, error) {
	var h Health
	deadline := time.Now().Add(settle)
	for {
		res, err := s.Run(ctx, "systemctl is-system-running || true")
		if err != nil {
			return h, fmt.Errorf("systemctl is-system-running: %w", err)
		}
		h.State = strings.TrimSpace(res.Stdout)
		if (h.State != "initializing" && h.State != "starting") || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return h, fmt.Errorf("systemctl is-system-running: %w", context.Cause(ctx))
		case <-time.After(2 * time.Second):
		}
	}
	res, err := s.Run(ctx, "systemctl --failed --no-legend --plain --full --no-pager")
	if err != nil {
		return h, fmt.Errorf("systemctl --failed: %w", err)
	}
	for _, name := range parseFailedUnits(res.Stdout) {
		st, err := s.Run(ctx, "sudo -n systemctl status --no-pager --full --lines=15 "+ShellQuote(name)+" 2>&1 || true")
		if err != nil {
			return h, fmt.Errorf("systemctl status %s: %w", name, err)
		}
		h.Failed = append(h.Failed, FailedUnit{Name: name, Status: st.Stdout})
	}
	return h, nil
}

// parseFailedUnits reads `systemctl --failed --no-legend --plain` lines
// ("UNIT LOAD ACTIVE SUB DESCRIPTION…"), keeping only well-formed names.
func parseFailedUnits(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "●"))
		if len(f) == 0 || !unitNameRe.MatchString(f[0]) {
			continue
		}
		names = append(names, f[0])
	}
	return names
}

// BootClock is the guest's own account of its boot, read in one command.
// systemd's …TimestampMonotonic values are CLOCK_MONOTONIC microseconds,
// which start at zero when the kernel starts, so each is the time from the
// kernel's start to that event.
type BootClock struct {
	// Uptime is the guest's CLOCK_MONOTONIC (/proc/uptime) at ReadAt.
	Uptime time.Duration
	// ReadAt is the host's clock halfway through the command that read
	// Uptime (off by at most half its round trip), so ReadAt - Uptime is
	// when the guest kernel started, on the host's clock.
	ReadAt time.Time
	// Units maps each asked unit to when it started running, since the
	// kernel's start; a unit that has not started in this boot is absent.
	Units map[string]time.Duration
}

// KernelStart is when the guest's kernel started, on the host's clock.
func (c BootClock) KernelStart() time.Time { return c.ReadAt.Add(-c.Uptime) }

// ReadBootClock reads /proc/uptime and, for each unit, when it started
// running in this boot: its main process's start
// (ExecMainStartTimestampMonotonic), or for a unit without one (a target)
// when it became active (ActiveEnterTimestampMonotonic). A oneshot unit is
// never "active" while it runs, which is why the main process's start is
// preferred.
func (s *Session) ReadBootClock(ctx context.Context, units ...string) (BootClock, error) {
	c := BootClock{Units: map[string]time.Duration{}}
	cmd := "cat /proc/uptime"
	if len(units) > 0 {
		q := make([]string, len(units))
		for i, u := range units {
			if !unitNameRe.MatchString(u) {
				return c, fmt.Errorf("boot clock: invalid unit name %q", u)
			}
			q[i] = ShellQuote(u)
		}
		cmd += " && systemctl show --property=Id,ExecMainStartTimestampMonotonic,ActiveEnterTimestampMonotonic " + strings.Join(q, " ")
	}
	before := time.Now()
	res, err := s.Run(ctx, cmd)
	after := time.Now()
	if err != nil {
		return c, fmt.Errorf("boot clock: %w", err)
	}
	c.ReadAt = before.Add(after.Sub(before) / 2)
	return c, parseBootClock(res.Stdout, &c)
}

// parseBootClock reads /proc/uptime's line, then `systemctl show` blocks
// (one per unit, separated by blank lines, keys in systemd's order).
func parseBootClock(out string, c *BootClock) error {
	first, rest, _ := strings.Cut(out, "\n")
	f := strings.Fields(first)
	if len(f) == 0 {
		return fmt.Errorf("boot clock: /proc/uptime: %q", first)
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return fmt.Errorf("boot clock: /proc/uptime: %w", err)
	}
	c.Uptime = time.Duration(up * float64(time.Second))
	if c.Units == nil {
		c.Units = map[string]time.Duration{}
	}
	for _, block := range strings.Split(rest, "\n\n") {
		props := map[string]string{}
		for _, line := range strings.Split(block, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				props[k] = strings.TrimSpace(v)
			}
		}
		id := props["Id"]
		if id == "" {
			continue
		}
		for _, key := range []string{"ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic"} {
			if us, err := strconv.ParseInt(props[key], 10, 64); err == nil && us > 0 {
				c.Units[id] = time.Duration(us) * time.Microsecond
				break
			}
		}
	}
	return nil
}
