package recipes

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	goversion "github.com/hashicorp/go-version"

	"github.com/imagebake/imagebake/internal/contract"
)

// MinRunnerVersion is the oldest runner GitHub still registers (since
// 2026-09); an image with an older one can never take a job.
const MinRunnerVersion = "2.329.0"

var (
	recipeNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)
	// useradd's default NAME_REGEX (Debian's adduser is stricter than
	// shadow's): lower case, digits, '_' and '-', not starting with a digit
	// or '-', at most 32 characters.
	accountRe = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	packageRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$`)
	aptNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// A unit name never starts with '-': systemctl would read it as an
	// option (-Hevil.service, --now.service).
	unitNameRe = regexp.MustCompile(`^[A-Za-z0-9:_.\\][A-Za-z0-9:_.\\-]*(@[A-Za-z0-9:_.\\-]*)?\.(service|timer|socket|path|target|mount)$`)
	envKeyRe   = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
	modeRe     = regexp.MustCompile(`^0?[0-7]{3}$|^[0-7]{4}$`)
	lineRe     = regexp.MustCompile(`^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$`)
	regionRe   = regexp.MustCompile(`^[a-z][a-z0-9]{1,39}$`)
	rgRe       = regexp.MustCompile(`^[-\w._()]{1,89}[-\w_()]$`)
	galleryRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._]{0,78}[A-Za-z0-9]$`)
	imageDefRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,78}[A-Za-z0-9]$`)
	keyVaultRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$`)
	kvSecretRe = regexp.MustCompile(`^[A-Za-z0-9-]{1,127}$`)
	// Labels reach config.sh's --labels as one comma-joined argument; a
	// leading '-' would read as a flag.
	labelRe       = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]{0,99}$`)
	urnPartRe     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	vmSizeRe      = regexp.MustCompile(`^(Standard|Basic)_[A-Za-z0-9_-]+$`)
	fingerprintRe = regexp.MustCompile(`^[0-9A-Fa-f]{40}$`)
	hex64Re       = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	// runnerVersionRe is the release's own spelling: go-version also reads
	// "2.340" (padding a .0), "02.340.0" and "2.340.0+meta", none of which
	// name a download.
	runnerVersionRe = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	tagKeyBadRe     = regexp.MustCompile(`[<>%&\\?/]`)
	// cloud-init's templater (BASIC_MATCHER) reads $name and ${name} in an
	// apt source, name being [A-Za-z0-9_.]+; it defines KEY_FILE only when
	// "$KEY_FILE" is spelt so.
	aptVarRe     = regexp.MustCompile(`\$\{[A-Za-z0-9_.]+\}|\$[A-Za-z0-9_.]+`)
	aptKeyFileRe = regexp.MustCompile(`\$KEY_FILE([^A-Za-z0-9_.]|$)`)
)

// Builtin names accepted in base.local.builtin and systemd[].template.
var (
	BuiltinBases     = []string{"debian-bookworm"}
	BuiltinUnits     = []string{"github-runner.service"}
	storageTypes     = []string{"Standard_LRS", "Standard_ZRS", "Premium_LRS", "PremiumV2_LRS"}
	lifecycles       = []string{"cycle-tag", "none"}
	defaultRunnerDir = "/home/%s/actions-runner"
)

func applyDefaults(r *Recipe) {
	for i := range r.Users {
		u := &r.Users[i]
		if u.Home == "" && u.Name != "" {
			u.Home = "/home/" + u.Name
		}
		if u.Shell == "" {
			u.Shell = "/bin/bash"
		}
	}
	for i := range r.Sudoers {
		if r.Sudoers[i].RunAs == "" {
			r.Sudoers[i].RunAs = "ALL"
		}
		for j, cmd := range r.Sudoers[i].Commands {
			// sudo reads a command's words however they are spaced and
			// prints them one space apart (sudo -l); the rule and its
			// built-in check use that form.
			r.Sudoers[i].Commands[j] = squeezeSpaces(cmd)
		}
	}
	for i := range r.Files {
		if r.Files[i].Mode == "" {
			r.Files[i].Mode = "0644"
		}
		if r.Files[i].Owner == "" {
			r.Files[i].Owner = "root:root"
		}
	}
	if r.Runner != nil {
		if r.Runner.Dir == "" && r.Runner.User != "" {
			r.Runner.Dir = fmt.Sprintf(defaultRunnerDir, r.Runner.User)
		}
		if r.Runner.Lifecycle == "" {
			r.Runner.Lifecycle = "cycle-tag"
		}
		reg := &r.Runner.Registration
		if reg.Mode == "" {
			// The founding runbook's {keyVault, secret} keeps its meaning.
			reg.Mode = contract.RegistrationJIT
			if reg.KeyVault != "" || reg.Secret != "" {
				reg.Mode = contract.RegistrationKeyVaultPAT
			}
		}
		if r.Runner.GroupID == 0 {
			r.Runner.GroupID = 1
		}
		if r.Runner.OnNoJob == "" {
			r.Runner.OnNoJob = contract.OnNoJobKeep
		}
	}
	if r.Gallery.Image == "" {
		r.Gallery.Image = r.Name
		if r.Gallery.Azure != nil && r.Gallery.Azure.Image != "" {
			r.Gallery.Image = r.Gallery.Azure.Image
		}
	}
	if r.Gallery.Version == "" {
		r.Gallery.Version = "1.0"
	}
	for i := range r.Gallery.Regions {
		if r.Gallery.Regions[i].Replicas == 0 {
			r.Gallery.Regions[i].Replicas = 1
		}
	}
	if r.Build.VMSize == "" {
		r.Build.VMSize = "Standard_D2s_v3"
	}
	if r.Build.MemoryMiB == 0 {
		r.Build.MemoryMiB = 2048
	}
	if r.Build.CPUs == 0 {
		r.Build.CPUs = 2
	}
}

// squeezeSpaces drops leading and trailing spaces and runs of spaces
// between words. Only ' ': other whitespace is refused as a control
// character or is part of a word to sudo.
func squeezeSpaces(s string) string {
	words := strings.Split(s, " ")
	out := words[:0]
	for _, w := range words {
		if w != "" {
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// v collects validation errors against the recipe's recorded positions.
type v struct {
	r    *Recipe
	errs *ErrorList
	// badText are fields the decoder refused for their characters: one
	// error for one mistake.
	badText map[string]bool
}

func (c v) errf(field, format string, args ...any) {
	if c.badText[field] {
		return
	}
	c.errs.add(c.r.Position(field), field, fmt.Sprintf(format, args...))
}

func oneOf(s string, allowed []string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

func validate(r *Recipe, errs *ErrorList, badText map[string]bool) {
	c := v{r, errs, badText}
	if r.Name == "" {
		c.errf("name", "required; give the recipe a name such as github-runner-focal")
	} else if !recipeNameRe.MatchString(r.Name) {
		c.errf("name", "%q: use 1-64 lower-case letters, digits and '-', starting and ending with a letter or digit", r.Name)
	}
	c.base()
	seenPkg := map[string]bool{}
	for i, p := range r.Packages {
		f := fmt.Sprintf("packages[%d]", i)
		name := strings.SplitN(p, "=", 2)[0]
		switch {
		case !packageRe.MatchString(p):
			c.errf(f, "%q is not a Debian package name (lower case, digits, '+', '-', '.'; optionally =VERSION)", p)
		case seenPkg[name]:
			c.errf(f, "package %q is listed twice; remove one", name)
		}
		seenPkg[name] = true
	}
	c.apt()
	declared := c.accounts()
	c.sudoers(declared)
	c.runner(declared)
	c.files(declared)
	c.units()
	c.checks()
	c.gallery()
	c.build()
	c.tags()
}

func (c v) base() {
	b := c.r.Base
	if b.Azure == "" && b.Local == (LocalBase{}) {
		c.errf("base", "required; set base.azure (a marketplace URN) and/or base.local (builtin, path or url+sha256)")
	}
	if b.Azure != "" {
		parts := strings.Split(b.Azure, ":")
		ok := len(parts) == 4
		for _, p := range parts {
			ok = ok && urnPartRe.MatchString(p)
		}
		if !ok {
			c.errf("base.azure", "%q is not a marketplace URN; write publisher:offer:sku:version, e.g. canonical:0001-com-ubuntu-server-focal:20_04-lts:latest", b.Azure)
		}
	}
	l := b.Local
	n := 0
	for _, s := range []string{l.Builtin, l.Path, l.URL} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		c.errf("base.local", "set exactly one of builtin, path or url")
	}
	if l.Builtin != "" && !oneOf(l.Builtin, BuiltinBases) {
		c.errf("base.local.builtin", "%q is not a built-in base; use one of %s", l.Builtin, strings.Join(BuiltinBases, ", "))
	}
	if l.URL != "" {
		u, err := url.Parse(l.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			c.errf("base.local.url", "%q is not an http(s) URL", l.URL)
		}
		if l.SHA256 == "" {
			c.errf("base.local.sha256", "required with base.local.url: the download is verified against it")
		}
	}
	if l.SHA256 != "" && !hex64Re.MatchString(l.SHA256) {
		c.errf("base.local.sha256", "%q is not a SHA-256 (64 hex digits)", l.SHA256)
	}
	if (l.Kernel == "") != (l.Initrd == "") {
		c.errf("base.local", "kernel and initrd go together; set both or neither")
	}
}

func (c v) apt() {
	for name, s := range c.r.Apt.Sources {
		f := "apt.sources." + name
		if !aptNameRe.MatchString(name) {
			c.errf(f, "source name %q: use lower-case letters, digits and '-' (it becomes /etc/apt/sources.list.d/%s.list)", name, name)
		}
		if !strings.HasPrefix(s.Source, "deb ") && !strings.HasPrefix(s.Source, "deb-src ") {
			c.errf(f+".source", "must be a one-line apt entry starting with \"deb \", e.g. deb [signed-by=$KEY_FILE] https://example.com/apt focal main")
		} else if strings.ContainsAny(s.Source, "\n\r") {
			c.errf(f+".source", "must be a single line")
		} else if m := aptVarRe.FindString(aptKeyFileRe.ReplaceAllString(s.Source, "")); m != "" {
			c.errf(f+".source", "%q: cloud-init replaces $NAME and ${NAME} in apt sources (an unknown one fails the boot, $RELEASE or $MIRROR change with the base); only $KEY_FILE is supported: write the value itself", m)
		}
		if s.Key != "" && !strings.Contains(s.Key, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
			c.errf(f+".key", "must be an ASCII-armored PGP public key (-----BEGIN PGP PUBLIC KEY BLOCK-----)")
		}
		if s.Key != "" && s.KeyID != "" {
			c.errf(f, "give key or keyid, not both")
		}
		if s.KeyID != "" && !fingerprintRe.MatchString(s.KeyID) {
			c.errf(f+".keyid", "%q: give the key's full 40-hex-digit fingerprint (short IDs can be forged)", s.KeyID)
		}
		if s.KeyServer != "" && s.KeyID == "" {
			c.errf(f+".keyserver", "keyserver goes with keyid")
		}
		if s.KeyServer != "" {
			if u, err := url.Parse(s.KeyServer); err != nil || u.Host == "" {
				c.errf(f+".keyserver", "%q is not a key server URL such as hkps://keyserver.ubuntu.com", s.KeyServer)
			}
		}
		if strings.Contains(s.Source, "$KEY_FILE") && s.Key == "" && s.KeyID == "" {
			c.errf(f+".key", "the source uses $KEY_FILE, so a key or keyid is required")
		}
	}
}

// accounts validates users and groups and returns the names of every user
// the recipe declares.
func (c v) accounts() map[string]bool {
	groups := map[string]bool{}
	for i, g := range c.r.Groups {
		f := fmt.Sprintf("groups[%d]", i)
		if !accountRe.MatchString(g) {
			c.errf(f, "%q is not a valid group name (lower case, digits, '_' and '-', at most 32, not starting with a digit or '-')", g)
		}
		if groups[g] {
			c.errf(f, "group %q is declared twice; remove one", g)
		}
		groups[g] = true
	}
	users := map[string]bool{}
	for i, u := range c.r.Users {
		f := fmt.Sprintf("users[%d]", i)
		switch {
		case u.Name == "":
			c.errf(f+".name", "required")
		case !accountRe.MatchString(u.Name):
			c.errf(f+".name", "%q is not a valid user name (lower case, digits, '_' and '-', at most 32, not starting with a digit or '-')", u.Name)
		case u.Name == "root" || u.Name == "default":
			c.errf(f+".name", "%q is reserved; choose another name", u.Name)
		case users[u.Name]:
			c.errf(f+".name", "user %q is declared twice; merge the two entries", u.Name)
		}
		users[u.Name] = true
		for j, g := range u.Groups {
			if !accountRe.MatchString(g) {
				c.errf(fmt.Sprintf("%s.groups[%d]", f, j), "%q is not a valid group name", g)
			}
		}
		c.absPath(f+".home", u.Home)
		c.absPath(f+".shell", u.Shell)
		// ':' separates /etc/passwd's fields: useradd refuses it in both.
		for _, p := range []struct{ field, val string }{{f + ".home", u.Home}, {f + ".shell", u.Shell}} {
			if strings.Contains(p.val, ":") {
				c.errf(p.field, "%q: ':' separates the fields of /etc/passwd, so useradd refuses it; choose a path without ':'", p.val)
			}
		}
		c.ownDir(f+".home", u.Home)
	}
	return users
}

// ownDir refuses a directory that imagebake creates for a user (a home, the
// runner's directory) where the base system or imagebake already has one:
// `install -d -o USER` would hand it to that user.
func (c v) ownDir(field, p string) {
	if p == "" || !strings.HasPrefix(p, "/") {
		return
	}
	if why, bad := systemDir(p); bad {
		c.errf(field, "%q %s; it would be given to the user: choose a directory of its own, e.g. under /home, /srv or /opt", p, why)
	}
}

// systemDir says whether p is, or lies in, a directory of the base system
// or of imagebake, and why.
func systemDir(p string) (string, bool) {
	for _, d := range contract.ReservedDirs() {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "is imagebake's own directory", true
		}
	}
	systemOwned, shared := systemDirs()
	for _, d := range systemOwned {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "belongs to the base system", true
		}
	}
	for _, d := range shared {
		if p == d {
			return "is a shared system directory", true
		}
	}
	return "", false
}

// isSystemDir reports whether p is one of systemDirs' directories itself.
func isSystemDir(p string) bool {
	systemOwned, shared := systemDirs()
	for _, d := range append(systemOwned, shared...) {
		if p == d {
			return true
		}
	}
	return false
}

// systemDirs are the base system's directories: those it owns with all
// they hold, and those shared by everything installed in them.
func systemDirs() (owned, shared []string) {
	return []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/lost+found",
			"/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/var/backups", "/var/cache", "/var/lib/apt",
			"/var/lib/cloud", "/var/lib/dpkg", "/var/lib/systemd", "/var/lib/waagent", "/var/lock", "/var/log",
			"/var/mail", "/var/run", "/var/spool", "/var/tmp"},
		[]string{"/", "/home", "/media", "/mnt", "/opt", "/srv", "/var", "/var/lib", "/var/local", "/var/opt"}
}

func (c v) absPath(field, p string) {
	if p == "" {
		return
	}
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" || strings.ContainsAny(p, "\n\r\x00") {
		c.errf(field, "%q must be an absolute, clean path such as /opt/app/config (no '..', '//' or trailing '/')", p)
	}
}

// sudoersSpecial are characters that end or change a Cmnd in sudoers; rather
// than escape them we refuse them, so the rendered line means what it says.
const sudoersSpecial = ",:=\\#\"\n\r"

func (c v) sudoers(users map[string]bool) {
	for i, s := range c.r.Sudoers {
		f := fmt.Sprintf("sudoers[%d]", i)
		if s.User == "" {
			c.errf(f+".user", "required")
		} else if !accountRe.MatchString(s.User) {
			c.errf(f+".user", "%q is not a valid user name", s.User)
		}
		if s.RunAs != "ALL" && !accountRe.MatchString(s.RunAs) {
			c.errf(f+".runAs", "%q must be ALL or a user name", s.RunAs)
		}
		if len(s.Commands) == 0 {
			c.errf(f+".commands", "list at least one absolute command, e.g. [/usr/bin/apt-get]")
		}
		for j, cmd := range s.Commands {
			cf := fmt.Sprintf("%s.commands[%d]", f, j)
			prog := strings.Fields(cmd)
			switch {
			case cmd == "ALL":
			case len(prog) == 0:
				c.errf(cf, "empty command")
			case strings.ContainsAny(cmd, sudoersSpecial):
				c.errf(cf, "%q contains one of , : = \\ # \" or a newline, which sudoers would read as syntax; wrap the command in a script", cmd)
			case prog[0] == "sudoedit":
				// sudoers' built-in: named bare, followed by the files.
			case path.Base(prog[0]) == "sudoedit":
				c.errf(cf, "%q: sudoers names sudoedit without a path (visudo refuses %s); write sudoedit /path/to/file", cmd, prog[0])
			case !strings.HasPrefix(prog[0], "/"):
				c.errf(cf, "%q is not an absolute path; write /usr/bin/%s", prog[0], prog[0])
			case prog[0] == "/":
				c.errf(cf, "%q: \"/\" is not a command (visudo refuses it); name the program, e.g. /usr/bin/apt-get", cmd)
			case path.Clean(prog[0]) != prog[0]:
				c.errf(cf, "%q is not a clean path", prog[0])
			}
		}
	}
}

func (c v) runner(users map[string]bool) {
	rn := c.r.Runner
	if rn == nil {
		return
	}
	ver, err := runnerVersion(rn.Version)
	switch {
	case rn.Version == "":
		c.errf("runner.version", "required, e.g. 2.337.0")
	case err != nil:
		c.errf("runner.version", "%q is not a runner version (MAJOR.MINOR.PATCH, e.g. 2.337.0)", rn.Version)
	case ver.LessThan(goversion.Must(goversion.NewVersion(MinRunnerVersion))):
		c.errf("runner.version", "%s is older than %s, the oldest runner GitHub registers; run `imagebake bump runner %s --latest`", rn.Version, MinRunnerVersion, c.r.Source)
	}
	if !hex64Re.MatchString(rn.SHA256) {
		c.errf("runner.sha256", "%q is not a SHA-256 (64 hex digits); copy it from the release notes' linux-x64 block", rn.SHA256)
	} else if _, err := hex.DecodeString(rn.SHA256); err != nil {
		c.errf("runner.sha256", "%v", err)
	}
	if rn.User == "" {
		c.errf("runner.user", "required: the runner never runs as root; declare a user under users: and name it here")
	} else if !users[rn.User] {
		c.errf("runner.user", "%q is not declared under users:", rn.User)
	}
	c.absPath("runner.dir", rn.Dir)
	c.ownDir("runner.dir", rn.Dir)
	if strings.ContainsAny(rn.Dir, "%\\") || strings.TrimRight(rn.Dir, " \t") != rn.Dir {
		// systemd expands %-specifiers, joins a line ending in '\' with the
		// next and strips trailing blanks in the unit's WorkingDirectory=.
		c.errf("runner.dir", "%q: the runner unit's WorkingDirectory= cannot hold '%%', '\\' or trailing blanks; choose a plainer directory", rn.Dir)
	}
	if !oneOf(rn.Lifecycle, lifecycles) {
		c.errf("runner.lifecycle", "%q: use cycle-tag or none", rn.Lifecycle)
	}
	reg := rn.Registration
	switch reg.Mode {
	case contract.RegistrationKeyVaultPAT:
		if !keyVaultRe.MatchString(reg.KeyVault) {
			c.errf("runner.registration.keyVault", "%q is not a Key Vault name (3-24 letters, digits and '-', starting with a letter)", reg.KeyVault)
		}
		if !kvSecretRe.MatchString(reg.Secret) {
			c.errf("runner.registration.secret", "%q is not a Key Vault secret name (1-127 letters, digits and '-')", reg.Secret)
		}
	case contract.RegistrationJIT:
		// In the file's usual order, so that errors come out the same way every run.
		for _, kv := range [][2]string{{"keyVault", reg.KeyVault}, {"secret", reg.Secret}} {
			if f, v := kv[0], kv[1]; v != "" {
				c.errf("runner.registration."+f, "mode jit reads a just-in-time config from the VM's userData and needs no Key Vault; remove %s, or set mode: keyvault-pat", f)
			}
		}
	default:
		c.errf("runner.registration.mode", "%q: use jit (recommended: the VM holds no GitHub credential) or keyvault-pat (the founding runbook's PAT in Key Vault)", reg.Mode)
	}
	if rn.URL != "" {
		if err := runnerURL(rn.URL); err != nil {
			c.errf("runner.url", "%v", err)
		}
	}
	if rn.GroupID < 1 {
		c.errf("runner.groupId", "%d: a runner group ID is positive (1 is GitHub's Default group)", rn.GroupID)
	}
	if !oneOf(rn.OnNoJob, []string{contract.OnNoJobKeep, contract.OnNoJobCycle}) {
		c.errf("runner.onNoJob", "%q: use keep (a VM whose runner ran no job is never deleted) or cycle (the cycle tag applies anyway)", rn.OnNoJob)
	}
	for i, l := range rn.Labels {
		if !labelRe.MatchString(l) {
			c.errf(fmt.Sprintf("runner.labels[%d]", i), "%q: labels use letters, digits, '.', '_' and '-', and do not start with '-'", l)
		}
	}
	for k, val := range rn.Env {
		f := "runner.env." + k
		if !envKeyRe.MatchString(k) {
			c.errf(f, "%q is not an environment variable name (A-Z, 0-9, '_')", k)
		}
		if strings.ContainsAny(val, "\x00\n\r") {
			c.errf(f, "values must be a single line")
		}
		if _, own := runnerOwnEnv[k]; own {
			c.errf(f, "%q is set by imagebake from %s; remove it from runner.env", k, runnerOwnEnv[k])
		}
		if looksSecret(k) {
			c.errf(f, "%q looks like a secret; secrets are never baked into an image — use runner.registration (jit mints a one-time config per VM)", k)
		}
	}
	if rn.Lifecycle == "cycle-tag" {
		for _, k := range []string{contract.EnvResourceGroup} {
			if _, ok := rn.Env[k]; !ok {
				c.errf("runner.env", "lifecycle cycle-tag needs %s in runner.env (the VM's resource group)", k)
			}
		}
	}
	if _, ok := rn.Env[contract.EnvRepoURL]; !ok {
		c.errf("runner.env", "REPO_URL is required: the repository or organization URL the runner registers with")
	}
}

// runnerOwnEnv are the env file's variables that imagebake writes from other
// fields; a recipe's value for them would be dropped.
var runnerOwnEnv = map[string]string{
	contract.EnvKeyVaultName:   "runner.registration.keyVault",
	contract.EnvKeyVaultSecret: "runner.registration.secret",
	contract.EnvRunnerLabels:   "runner.labels",
}

// runnerURL checks runner.url: an absolute http(s) URL with a host, no
// credentials (they would be baked into the image) and nothing a shell,
// curl or a terminal could read as anything but the URL.
func runnerURL(raw string) error {
	if len(raw) > 2048 {
		return fmt.Errorf("%d characters: keep the URL under 2048", len(raw))
	}
	if strings.ContainsAny(raw, " \t\"'`\\<>{}|^") {
		return fmt.Errorf("%q holds a blank, a quote or a character URLs escape; percent-encode it", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url's own error repeats the input, credentials and all.
		return errors.New("not a URL; write an absolute https:// URL of the runner tarball")
	}
	// Messages show the URL with any password redacted: it must not reach
	// a terminal or a CI log even when it is refused.
	shown := u.Redacted()
	if u.User != nil {
		return fmt.Errorf("%q holds credentials; they would be baked into the image: serve the mirror without them or inside the network", shown)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q: want an absolute https:// (or http://, the SHA-256 is checked either way) URL of the runner tarball", shown)
	}
	if u.Fragment != "" {
		return fmt.Errorf("%q: a #fragment is never sent to the server; remove it", shown)
	}
	return nil
}

// runnerVersion reads a runner version as its release spells it
// (MAJOR.MINOR.PATCH, no 'v', no padding), each part within range.
func runnerVersion(s string) (*goversion.Version, error) {
	if !runnerVersionRe.MatchString(s) {
		return nil, fmt.Errorf("runner version %q: not MAJOR.MINOR.PATCH (e.g. 2.337.0)", s)
	}
	ver, err := goversion.NewVersion(s)
	if err != nil {
		return nil, fmt.Errorf("runner version %q: a part is out of range", s)
	}
	return ver, nil
}

func looksSecret(k string) bool {
	for _, s := range []string{"TOKEN", "PASSWORD", "SECRET", "PAT", "PRIVATE_KEY"} {
		if k == s || strings.HasSuffix(k, "_"+s) || strings.HasPrefix(k, s+"_") {
			return true
		}
	}
	return false
}

func (c v) owner(field, owner string, users map[string]bool) {
	parts := strings.Split(owner, ":")
	if len(parts) > 2 {
		c.errf(field, "%q: write user or user:group", owner)
		return
	}
	for _, p := range parts {
		if !accountRe.MatchString(p) {
			c.errf(field, "%q: %q is not a valid user or group name", owner, p)
		}
	}
}

func (c v) files(users map[string]bool) {
	seen := map[string]string{}
	for i, fl := range c.r.Files {
		f := fmt.Sprintf("files[%d]", i)
		if fl.Path == "" {
			c.errf(f+".path", "required")
		} else {
			c.absPath(f+".path", fl.Path)
			if prev, dup := seen[fl.Path]; dup {
				c.errf(f+".path", "%s is also written by %s; one path, one file", fl.Path, prev)
			}
			seen[fl.Path] = f
			sudoersDir := strings.TrimSuffix(contract.SudoersDir, "/")
			if fl.Path == contract.SudoersFile || fl.Path == sudoersDir || strings.HasPrefix(fl.Path, contract.SudoersDir) {
				c.errf(f+".path", "write sudo rules under sudoers:, where they are checked with visudo")
			}
			for _, dir := range contract.ReservedDirs() {
				if fl.Path == dir || strings.HasPrefix(fl.Path, dir+"/") {
					c.errf(f+".path", "imagebake writes its own files under %s/; choose another path", dir)
				}
			}
			if isSystemDir(fl.Path) {
				c.errf(f+".path", "%s is a directory of the base system: a file cannot take its place", fl.Path)
			}
			for j, u := range c.r.Systemd {
				if fl.Path == contract.SystemdUnitDir+u.Name {
					c.errf(f+".path", "%s is written by systemd[%d]; give the unit's content there", fl.Path, j)
				}
			}
		}
		if !modeRe.MatchString(fl.Mode) {
			c.errf(f+".mode", "%q is not an octal mode; write it quoted, e.g. \"0644\"", fl.Mode)
		}
		c.owner(f+".owner", fl.Owner, users)
	}
}

func (c v) units() {
	seen := map[string]bool{}
	for i, u := range c.r.Systemd {
		f := fmt.Sprintf("systemd[%d]", i)
		if strings.HasPrefix(u.Name, "-") {
			c.errf(f+".name", "%q starts with '-', which systemctl would read as an option; name the unit with a letter or digit first", u.Name)
		} else if !unitNameRe.MatchString(u.Name) {
			c.errf(f+".name", "%q is not a systemd unit name (e.g. my-agent.service)", u.Name)
		}
		if seen[u.Name] {
			c.errf(f+".name", "unit %q is declared twice", u.Name)
		}
		seen[u.Name] = true
		switch {
		case u.Template == "" && u.Content == "":
			c.errf(f, "set template (one of %s) or content", strings.Join(BuiltinUnits, ", "))
		case u.Template != "" && u.Content != "":
			c.errf(f, "set template or content, not both")
		case u.Template != "" && !oneOf(u.Template, BuiltinUnits):
			c.errf(f+".template", "%q is not a built-in template; use one of %s, or give content", u.Template, strings.Join(BuiltinUnits, ", "))
		case u.Template == "github-runner.service" && c.r.Runner == nil:
			c.errf(f+".template", "the github-runner.service template needs a runner: section")
		}
	}
}

func (c v) checks() {
	seen := map[string]bool{}
	for i, ch := range c.r.Checks {
		f := fmt.Sprintf("checks[%d]", i)
		if strings.TrimSpace(ch.Name) == "" {
			c.errf(f+".name", "required: say what the check proves")
		} else if seen[ch.Name] {
			c.errf(f+".name", "check %q is declared twice", ch.Name)
		}
		seen[ch.Name] = true
		if strings.TrimSpace(ch.Run) == "" {
			c.errf(f+".run", "required: a shell command that exits 0 when the check passes")
		}
	}
}

func (c v) gallery() {
	g := c.r.Gallery
	if !lineRe.MatchString(g.Version) {
		c.errf("gallery.version", "%q is not a MAJOR.MINOR line such as \"1.0\" (the patch is chosen automatically)", g.Version)
	}
	if !imageDefRe.MatchString(g.Image) {
		_, written := c.r.pos["gallery.image"]
		switch {
		case written:
			c.errf("gallery.image", "%q: image names use letters, digits, '.', '_' and '-' (2-80)", g.Image)
		case g.Azure != nil && g.Azure.Image != "":
			// Defaulted from gallery.azure.image, which says it there.
		case recipeNameRe.MatchString(c.r.Name):
			// Defaulted from the name: say so where the author wrote it.
			c.errf("name", "%q is also the gallery image's name (gallery.image is not set), which needs 2-80 characters; use a longer name or set gallery.image", c.r.Name)
		}
	}
	if a := g.Azure; a != nil {
		if !rgRe.MatchString(a.ResourceGroup) {
			c.errf("gallery.azure.resourceGroup", "%q is not a resource group name (1-90 letters, digits, '-', '_', '.', '(', ')', not ending in '.')", a.ResourceGroup)
		}
		if !galleryRe.MatchString(a.Gallery) {
			c.errf("gallery.azure.gallery", "%q is not a gallery name (letters, digits, '.' and '_', 2-80; no '-')", a.Gallery)
		}
		if a.Image != "" && !imageDefRe.MatchString(a.Image) {
			c.errf("gallery.azure.image", "%q is not an image definition name", a.Image)
		}
		if a.Subscription != "" && !uuidRe.MatchString(a.Subscription) {
			c.errf("gallery.azure.subscription", "%q is not a subscription ID (a GUID)", a.Subscription)
		}
	}
	seen := map[string]bool{}
	for i, rg := range g.Regions {
		f := fmt.Sprintf("gallery.regions[%d]", i)
		if !regionRe.MatchString(rg.Name) {
			c.errf(f+".name", "%q is not an Azure region name (lower case, no spaces, e.g. eastus)", rg.Name)
		}
		if seen[rg.Name] {
			c.errf(f+".name", "region %q is listed twice", rg.Name)
		}
		seen[rg.Name] = true
		if rg.Replicas < 1 || rg.Replicas > 100 {
			c.errf(f+".replicas", "%d: replicas must be 1-100", rg.Replicas)
		}
		if rg.StorageType != "" && !oneOf(rg.StorageType, storageTypes) {
			c.errf(f+".storageType", "%q: use one of %s", rg.StorageType, strings.Join(storageTypes, ", "))
		}
	}
	if g.StorageType != "" && !oneOf(g.StorageType, storageTypes) {
		c.errf("gallery.storageType", "%q: use one of %s", g.StorageType, strings.Join(storageTypes, ", "))
	}
	if g.EndOfLife != "" {
		if _, err := ParseEndOfLife(g.EndOfLife); err != nil {
			c.errf("gallery.endOfLife", "%q: write a date (2027-06-30), a time (RFC 3339) or a duration from publishing (90d, 2160h)", g.EndOfLife)
		}
	}
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// EndOfLife is an absolute time or a duration after publishing.
type EndOfLife struct {
	At    time.Time
	After time.Duration
}

// ParseEndOfLife reads a date, an RFC 3339 time or a duration ("90d").
func ParseEndOfLife(s string) (EndOfLife, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return EndOfLife{At: t}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return EndOfLife{At: t}, nil
	}
	d, err := ParseDuration(s)
	if err != nil || d <= 0 {
		return EndOfLife{}, fmt.Errorf("end of life %q: not a date, time or positive duration", s)
	}
	return EndOfLife{After: d}, nil
}

// ParseDuration is time.ParseDuration plus whole days ("30d").
func ParseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, fmt.Errorf("duration %q: days must be a whole number", s)
		}
		if days > int(math.MaxInt64/int64(24*time.Hour)) {
			return 0, fmt.Errorf("duration %q: too long", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// SecurityTypes are the values of build.securityType (Azure's VM security
// types; Standard when unset).
var SecurityTypes = []string{"Standard", "TrustedLaunch", "ConfidentialVM"}

func (c v) build() {
	b := c.r.Build
	if !vmSizeRe.MatchString(b.VMSize) {
		c.errf("build.vmSize", "%q is not an Azure VM size (e.g. Standard_D2s_v3)", b.VMSize)
	}
	if b.SecurityType != "" && !oneOf(b.SecurityType, SecurityTypes) {
		c.errf("build.securityType", "%q: use one of %s", b.SecurityType, strings.Join(SecurityTypes, ", "))
	}
	if b.Location != "" && !regionRe.MatchString(b.Location) {
		c.errf("build.location", "%q is not an Azure region name (e.g. eastus)", b.Location)
	}
	if b.Identity != "" && !strings.HasPrefix(strings.ToLower(b.Identity), "/subscriptions/") {
		c.errf("build.identity", "%q must be a user-assigned identity's resource ID (/subscriptions/…/userAssignedIdentities/NAME)", b.Identity)
	}
	if b.MemoryMiB < 512 || b.MemoryMiB > 65536 {
		c.errf("build.memoryMiB", "%d: give 512-65536 MiB", b.MemoryMiB)
	}
	if b.CPUs < 1 || b.CPUs > 64 {
		c.errf("build.cpus", "%d: give 1-64", b.CPUs)
	}
	for stage, d := range b.Timeouts {
		f := "build.timeouts." + stage
		if !contract.IsStage(stage) {
			c.errf(f, "unknown stage %q; stages are %s", stage, strings.Join(contract.Stages(), ", "))
		}
		if dur, err := ParseDuration(d); err != nil || dur <= 0 {
			c.errf(f, "%q is not a positive duration (e.g. 20m, 1h30m)", d)
		}
	}
}

// Azure's tag limits: at most 50 tags, names up to 512 characters without
// <>%&\?/, values up to 256 characters. imagebake adds its own tags too.
const (
	maxUserTags   = 40
	maxTagKeyLen  = 512
	maxTagValLen  = 256
	reservedTagNS = "imagebake."
)

func (c v) tags() {
	if len(c.r.Tags) > maxUserTags {
		c.errf("tags", "%d tags; at most %d (Azure allows 50 and imagebake adds its own)", len(c.r.Tags), maxUserTags)
	}
	for k, val := range c.r.Tags {
		f := "tags." + k
		switch {
		case k == "" || len(k) > maxTagKeyLen:
			c.errf(f, "tag names are 1-%d characters", maxTagKeyLen)
		case tagKeyBadRe.MatchString(k):
			c.errf(f, "tag name %q contains one of < > %% & \\ ? / which Azure refuses", k)
		case strings.HasPrefix(strings.ToLower(k), reservedTagNS):
			c.errf(f, "tag names starting with %q are imagebake's own", reservedTagNS)
		}
		if len(val) > maxTagValLen {
			c.errf(f, "value is %d characters; Azure allows %d", len(val), maxTagValLen)
		}
	}
}

// SSHSourceCIDR validates one --ssh-source value.
func SSHSourceCIDR(s string) error {
	if _, err := netip.ParsePrefix(s); err != nil {
		return fmt.Errorf("ssh source %q: not a CIDR such as 203.0.113.0/24: %w", s, err)
	}
	return nil
}
