// Package checks derives the built-in checks a recipe implies: every package,
// user, group, membership, sudoers rule, unit and file it declares is checked
// on the build VM (and again on verify), next to the recipe's own checks.
package checks

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// Phase says when checks run: on the build VM before deprovisioning, or on
// a VM booted from a published version.
type Phase int

// Phases.
const (
	Build Phase = iota
	Verify
)

var q = sshsession.ShellQuote

// For returns the built-in checks, then the recipe's own.
func For(r *recipes.Recipe, phase Phase) []sshsession.Check {
	var out []sshsession.Check
	add := func(sudo bool, name, format string, args ...any) {
		out = append(out, sshsession.Check{Name: name, Run: fmt.Sprintf(format, args...), Sudo: sudo})
	}
	add(false, "cloud-init finished", `cloud-init status | grep -qx 'status: done'`)

	pkgs := map[string]bool{}
	for _, p := range r.Packages {
		name := strings.SplitN(p, "=", 2)[0]
		pkgs[name] = true
		add(false, "package "+name+" installed", `dpkg-query -W -f='${Status}' %s | grep -q 'install ok installed'`, q(name))
	}
	for name := range r.Apt.Sources {
		add(false, "apt source "+name+" configured", `test -s %s`, q("/etc/apt/sources.list.d/"+name+".list"))
	}
	for _, g := range r.Groups {
		add(false, "group "+g+" exists", `getent group %s >/dev/null`, q(g))
	}
	for _, u := range r.Users {
		add(false, "user "+u.Name+" exists", `getent passwd %s >/dev/null`, q(u.Name))
		add(false, "user "+u.Name+" has home "+u.Home+" and shell "+u.Shell,
			`test "$(getent passwd %s | cut -d: -f6,7)" = %s && test -d %s && test "$(stat -c %%U %s)" = %s`,
			q(u.Name), q(u.Home+":"+u.Shell), q(u.Home), q(u.Home), q(u.Name))
		for _, g := range u.Groups {
			add(false, "user "+u.Name+" in group "+g, `id -nG %s | tr ' ' '\n' | grep -qx %s`, q(u.Name), q(g))
		}
	}
	if len(r.Sudoers) > 0 {
		add(true, "sudoers valid (visudo -c)", `visudo -c >/dev/null`)
	}
	for i, s := range r.Sudoers {
		add(true, fmt.Sprintf("sudoers rule %d effective for %s", i, s.User), `test "$(stat -c %%a %s)" = 440`, q(templates.SudoersPath(s.User, i)))
		for _, c := range s.Commands {
			add(true, "sudo -l -U "+s.User+" allows "+c, `sudo -l -U %s | grep -qF -- %s`, q(s.User), q(c))
		}
	}
	for _, u := range r.Systemd {
		if u.Enable {
			add(false, "unit "+u.Name+" enabled", `test "$(systemctl is-enabled -- %s)" = enabled`, q(u.Name))
		}
		if phase == Build {
			// Enabled, not started: the unit's first run belongs to the
			// image's own VMs, not to the build.
			add(false, "unit "+u.Name+" not active during the build", `! systemctl is-active --quiet -- %s`, q(u.Name))
		}
	}
	for _, f := range r.Files {
		sum := sha256.Sum256([]byte(f.Content))
		mode := strings.TrimLeft(f.Mode, "0")
		if m, err := strconv.ParseUint(f.Mode, 8, 32); err == nil {
			mode = strconv.FormatUint(m, 8)
		}
		owner := f.Owner
		if !strings.Contains(owner, ":") {
			owner += ":" + owner
		}
		// printf, not echo: dash's echo rewrites "\n", "\t" and "\\" in the
		// path. sha256sum reads a check line's name verbatim unless the
		// line starts with '\', which it never does here.
		add(true, "file "+f.Path+" ("+f.Mode+" "+f.Owner+")",
			`test "$(stat -c '%%a %%U:%%G' -- %s)" = %s && printf '%%s\n' %s | sha256sum -c --quiet -`,
			q(f.Path), q(mode+" "+owner), q(hex.EncodeToString(sum[:])+"  "+f.Path))
	}
	if rn := r.Runner; rn != nil {
		add(true, "runner "+rn.Version+" unpacked for "+rn.User,
			`test "$(stat -c %%U %s)" = %s && test "$(cd %s && runuser -u %s -- ./config.sh --version)" = %s`,
			q(rn.Dir+"/config.sh"), q(rn.User), q(rn.Dir), q(rn.User), q(rn.Version))
	}
	for _, c := range r.Checks {
		out = append(out, sshsession.Check{Name: c.Name, Run: c.Run, Sudo: c.Sudo})
	}
	return out
}
