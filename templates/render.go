// Package templates renders a recipe into one #cloud-config document through
// templates embedded in the binary, and encodes it as Azure custom data.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"

	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/recipes"
)

//go:embed files/*.tmpl
var files embed.FS

// Paths where the runner's pieces land in the image; internal/contract
// holds them, as recipes validation reads them too.
const (
	RunnerEnvFile      = contract.RunnerEnvFile
	RunnerStartScript  = contract.RunnerStartScript
	RunnerCycleScript  = contract.RunnerCycleScript
	RunnerInstallerSh  = contract.RunnerInstaller
	SystemdDir         = contract.SystemdUnitDir
	SudoersDir         = contract.SudoersDir
	cloudConfigHeader  = "#cloud-config\n"
	implicitRunnerPkgs = "curl jq"
)

// scriptData is what the runner's scripts are rendered from (the install,
// start and lifecycle scripts). Templates run with missingkey=error and
// typed data, so a misspelt field fails the render instead of printing
// "<no value>".
type scriptData struct {
	Recipe, Version, SHA256, User, Group, Dir string
	Ephemeral                                 bool
	EnvFile, StartScript, CycleScript         string
	// URL is runner.url ("" for github.com's release asset).
	URL string
	// Mode is runner.registration.mode: the start script holds only the
	// chosen mode's code.
	Mode    string
	OnNoJob string
	// Clouds are the clouds the scripts tell apart by azEnvironment.
	Clouds []cloudData
	// The lifecycle's contract values, spelt once in internal/contract.
	StartFailedExit                                                               int
	OutcomeTag, TagCycle, CycleRunning, CycleDelete, OnNoJobCycle                 string
	OutcomeJobDone, OutcomeRefused, OutcomeStale, OutcomeCrashed, OutcomeNoConfig string
}

// cloudData is one cloud as the scripts match and address it: Env is the
// azEnvironment in lower case (the scripts lower-case IMDS's value), the
// resources are query-escaped for IMDS's token URL.
type cloudData struct {
	Env, ResourceManager, ARMResource, VaultSuffix, VaultResource string
}

func clouds() []cloudData {
	var out []cloudData
	for _, c := range contract.Clouds() {
		out = append(out, cloudData{Env: strings.ToLower(c.Environment), ResourceManager: c.ResourceManager,
			ARMResource: url.QueryEscape(c.ARMResource), VaultSuffix: c.VaultSuffix, VaultResource: url.QueryEscape(c.VaultResource)})
	}
	return out
}

// unitData is what the built-in runner unit is rendered from.
type unitData struct {
	Recipe, User, Group, Dir            string
	StartScript, CycleScript, Lifecycle string
}

// Options are the target-specific parts of a render. The zero value renders
// the recipe alone, as `imagebake render` shows it.
type Options struct {
	// HostKey, when set, pins the build VM's SSH host key (ed25519).
	HostKeyPrivate, HostKeyPublic string
	// BuildUser and BuildAuthorizedKey add a login for the build's SSH
	// session on targets without a provisioning agent (the local target).
	// Deprovisioning removes it.
	BuildUser, BuildAuthorizedKey string
}

// PartKind says which offline validator applies to a rendered part.
type PartKind string

// Part kinds.
const (
	KindUnit    PartKind = "unit"
	KindScript  PartKind = "script"
	KindSudoers PartKind = "sudoers"
	KindFile    PartKind = "file"
	KindEnv     PartKind = "env"
)

// Part is one file the cloud-config writes, kept for validation and tests.
type Part struct {
	Path     string
	Kind     PartKind
	Content  string
	Mode     string
	Owner    string
	Deferred bool
}

// Document is a rendered recipe.
type Document struct {
	CloudConfig []byte
	Parts       []Part
	// Steps are runcmd's commands as argv, in order; the cloud-config
	// holds each one guarded by StepLine.
	Steps [][]string
}

// The cloud-config, as an ordered struct so that output is deterministic.
type cloudConfig struct {
	SSHDeleteKeys *bool             `yaml:"ssh_deletekeys,omitempty"`
	SSHKeys       map[string]string `yaml:"ssh_keys,omitempty"`
	Apt           *aptConfig        `yaml:"apt,omitempty"`
	PackageUpdate bool              `yaml:"package_update,omitempty"`
	Packages      []string          `yaml:"packages,omitempty"`
	Groups        []string          `yaml:"groups,omitempty"`
	Users         []any             `yaml:"users"`
	WriteFiles    []writeFile       `yaml:"write_files,omitempty"`
	Runcmd        []string          `yaml:"runcmd,omitempty"`
}

type aptConfig struct {
	Sources map[string]aptSource `yaml:"sources"`
}

type aptSource struct {
	Source    string `yaml:"source"`
	Key       string `yaml:"key,omitempty"`
	KeyID     string `yaml:"keyid,omitempty"`
	KeyServer string `yaml:"keyserver,omitempty"`
}

type user struct {
	Name              string   `yaml:"name"`
	System            bool     `yaml:"system,omitempty"`
	Groups            []string `yaml:"groups,omitempty"`
	Homedir           string   `yaml:"homedir,omitempty"`
	Shell             string   `yaml:"shell,omitempty"`
	LockPasswd        bool     `yaml:"lock_passwd"`
	Sudo              string   `yaml:"sudo,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
}

type writeFile struct {
	Path        string `yaml:"path"`
	Content     string `yaml:"content"`
	Permissions string `yaml:"permissions"`
	Owner       string `yaml:"owner"`
	Defer       bool   `yaml:"defer,omitempty"`
}

// Render turns a validated recipe into one cloud-config document. The same
// recipe and options always give the same bytes.
func Render(r *recipes.Recipe, opts Options) (*Document, error) {
	tpl, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	rd := renderer{r: r, tpl: tpl}
	cc := cloudConfig{}
	if opts.HostKeyPrivate != "" {
		t := true
		cc.SSHDeleteKeys = &t
		cc.SSHKeys = map[string]string{"ed25519_private": opts.HostKeyPrivate, "ed25519_public": opts.HostKeyPublic}
	}
	if len(r.Apt.Sources) > 0 {
		cc.Apt = &aptConfig{Sources: map[string]aptSource{}}
		for name, s := range r.Apt.Sources {
			cc.Apt.Sources[name+".list"] = aptSource{Source: s.Source, Key: s.Key, KeyID: s.KeyID, KeyServer: s.KeyServer}
		}
	}
	cc.Packages = rd.packages()
	cc.PackageUpdate = len(cc.Packages) > 0 || cc.Apt != nil
	cc.Groups = append([]string(nil), r.Groups...)

	// "default" first keeps the platform's default user: on Azure that is
	// the admin user the build logs in as.
	cc.Users = []any{"default"}
	for _, u := range r.Users {
		cc.Users = append(cc.Users, user{Name: u.Name, System: u.System, Groups: u.Groups, Homedir: u.Home, Shell: u.Shell, LockPasswd: true})
	}
	if opts.BuildUser != "" {
		cc.Users = append(cc.Users, user{Name: opts.BuildUser, Shell: "/bin/sh", LockPasswd: true,
			Sudo: "ALL=(ALL) NOPASSWD:ALL", SSHAuthorizedKeys: []string{opts.BuildAuthorizedKey}})
	}

	if err := rd.sudoers(); err != nil {
		return nil, err
	}
	if err := rd.runner(); err != nil {
		return nil, err
	}
	if err := rd.units(); err != nil {
		return nil, err
	}
	for _, f := range r.Files {
		// A file owned by anyone but root may belong to a user or group the
		// recipe (or a package) creates: deferred files are written in the
		// final stage, after users_groups and packages.
		owner, group, _ := strings.Cut(f.Owner, ":")
		rd.add(Part{Path: f.Path, Kind: KindFile, Content: f.Content, Mode: normMode(f.Mode), Owner: f.Owner,
			Deferred: owner != "root" || (group != "" && group != "root") || under(f.Path, r.Users)})
	}
	for _, p := range rd.parts {
		cc.WriteFiles = append(cc.WriteFiles, writeFile{Path: p.Path, Content: p.Content, Permissions: p.Mode, Owner: p.Owner, Defer: p.Deferred})
	}
	steps := rd.runcmd(opts)
	for i, st := range steps {
		cc.Runcmd = append(cc.Runcmd, StepLine(i+1, len(steps), st))
	}

	var buf bytes.Buffer
	buf.WriteString(cloudConfigHeader)
	fmt.Fprintf(&buf, "# Rendered by imagebake from recipe %s (sha256 %s). Do not edit: edit the recipe.\n", r.Name, r.Hash())
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cc); err != nil {
		return nil, fmt.Errorf("recipe %s: encode cloud-config: %w", r.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("recipe %s: encode cloud-config: %w", r.Name, err)
	}
	return &Document{CloudConfig: buf.Bytes(), Parts: rd.parts, Steps: steps}, nil
}

// parseTemplates parses the embedded templates. missingkey=error makes a
// key missing from map data an error; the data are typed structs anyway,
// where a misspelt field is an error at execution.
func parseTemplates() (*template.Template, error) {
	tpl, err := template.New("").Option("missingkey=error").Funcs(template.FuncMap{"shq": ShellQuote}).ParseFS(files, "files/*.tmpl")
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	return tpl, nil
}

// under reports whether p lies inside a recipe user's home, which only
// exists once that user does.
func under(p string, users []recipes.User) bool {
	for _, u := range users {
		if u.Home != "" && strings.HasPrefix(p, u.Home+"/") {
			return true
		}
	}
	return false
}

func normMode(m string) string {
	if len(m) == 3 {
		return "0" + m
	}
	return m
}

type renderer struct {
	r     *recipes.Recipe
	tpl   *template.Template
	parts []Part
}

func (rd *renderer) add(p Part) { rd.parts = append(rd.parts, p) }

func (rd *renderer) exec(name string, data any) (string, error) {
	var b strings.Builder
	if err := rd.tpl.ExecuteTemplate(&b, name, data); err != nil {
		return "", fmt.Errorf("recipe %s: template %s: %w", rd.r.Name, name, err)
	}
	return b.String(), nil
}

// packages is the recipe's list plus what the runner's scripts need, in
// order, without duplicates.
func (rd *renderer) packages() []string {
	var out []string
	seen := map[string]bool{}
	add := func(p string) {
		name := strings.SplitN(p, "=", 2)[0]
		if !seen[name] {
			seen[name] = true
			out = append(out, p)
		}
	}
	for _, p := range rd.r.Packages {
		add(p)
	}
	if rd.r.Runner != nil {
		for _, p := range strings.Fields(implicitRunnerPkgs) {
			add(p)
		}
	}
	return out
}

// SudoersPath is where a recipe's i-th sudoers rule lands. sudo skips files
// whose names contain '.' or end in '~', so the name has neither.
func SudoersPath(user string, i int) string {
	return fmt.Sprintf("%simagebake-%s-%d", SudoersDir, user, i)
}

// SudoersLine renders one rule.
func SudoersLine(s recipes.SudoRule) string {
	tag := ""
	if s.NoPasswd {
		tag = "NOPASSWD: "
	}
	return fmt.Sprintf("%s ALL=(%s) %s%s\n", s.User, s.RunAs, tag, strings.Join(s.Commands, ", "))
}

func (rd *renderer) sudoers() error {
	for i, s := range rd.r.Sudoers {
		rd.add(Part{Path: SudoersPath(s.User, i), Kind: KindSudoers, Mode: "0440", Owner: "root:root",
			Content: "# Rendered by imagebake from recipe " + rd.r.Name + "\n" + SudoersLine(s)})
	}
	return nil
}

func (rd *renderer) userGroup(name string) string {
	// useradd gives every user (system ones too) a group of its own name.
	return name
}

func (rd *renderer) runner() error {
	rn := rd.r.Runner
	if rn == nil {
		return nil
	}
	data := scriptData{
		Recipe: rd.r.Name, Version: rn.Version, SHA256: strings.ToLower(rn.SHA256),
		User: rn.User, Group: rd.userGroup(rn.User), Dir: rn.Dir, Ephemeral: rn.Ephemeral,
		EnvFile: RunnerEnvFile, StartScript: RunnerStartScript, CycleScript: RunnerCycleScript,
		URL: rn.URL, Mode: rn.Registration.Mode, OnNoJob: rn.OnNoJob, Clouds: clouds(),
		StartFailedExit: contract.StartFailedExit, OutcomeTag: contract.TagOutcome, TagCycle: contract.TagCycle,
		CycleRunning: contract.CycleRunning, CycleDelete: contract.CycleDelete, OnNoJobCycle: contract.OnNoJobCycle,
		OutcomeJobDone: contract.OutcomeJobDone, OutcomeRefused: contract.OutcomeRefused, OutcomeStale: contract.OutcomeStale,
		OutcomeCrashed: contract.OutcomeCrashed, OutcomeNoConfig: contract.OutcomeNoConfig,
	}
	if data.Mode != contract.RegistrationJIT && data.Mode != contract.RegistrationKeyVaultPAT {
		// Validation refuses other modes; a hand-built recipe must not
		// render a start script for a mode nobody wrote.
		return fmt.Errorf("recipe %s: runner.registration.mode %q: not jit or keyvault-pat", rd.r.Name, data.Mode)
	}
	install, err := rd.exec("install-runner.sh.tmpl", data)
	if err != nil {
		return err
	}
	start, err := rd.exec("start-runner.sh.tmpl", data)
	if err != nil {
		return err
	}
	rd.add(Part{Path: RunnerEnvFile, Kind: KindEnv, Content: RunnerEnv(rn), Mode: "0644", Owner: "root:root"})
	rd.add(Part{Path: RunnerInstallerSh, Kind: KindScript, Content: install, Mode: "0755", Owner: "root:root"})
	rd.add(Part{Path: RunnerStartScript, Kind: KindScript, Content: start, Mode: "0755", Owner: "root:root"})
	if rn.Lifecycle == "cycle-tag" {
		cycle, err := rd.exec("completed-cycle.sh.tmpl", data)
		if err != nil {
			return err
		}
		rd.add(Part{Path: RunnerCycleScript, Kind: KindScript, Content: cycle, Mode: "0755", Owner: "root:root"})
	}
	return nil
}

// RunnerEnv is the runner's settings as shell assignments, every value
// single-quoted; the runner's scripts source it. It holds no secret: only
// where to fetch one.
func RunnerEnv(rn *recipes.Runner) string {
	vars := map[string]string{
		contract.EnvRunnerLabels: strings.Join(rn.Labels, ","),
	}
	if rn.Registration.Mode == contract.RegistrationKeyVaultPAT {
		// Only keyvault-pat's start script reads them.
		vars[contract.EnvKeyVaultName] = rn.Registration.KeyVault
		vars[contract.EnvKeyVaultSecret] = rn.Registration.Secret
	}
	for k, v := range rn.Env {
		if _, builtin := vars[k]; !builtin {
			vars[k] = v
		}
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Rendered by imagebake: the runner's settings (no secrets).\n")
	// Values are single-quoted data: shellcheck's notes about $ (SC2016) or
	// a trailing '\' (SC1003) inside single quotes, and about quotes kept
	// in values (SC2089, SC2090), do not apply.
	b.WriteString("# shellcheck disable=SC1003,SC2016,SC2089,SC2090\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\nexport %s\n", k, ShellQuote(vars[k]), k)
	}
	return b.String()
}

func (rd *renderer) units() error {
	for _, u := range rd.r.Systemd {
		content := u.Content
		if u.Template != "" {
			rn := rd.r.Runner
			data := unitData{
				Recipe: rd.r.Name, User: rn.User, Group: rd.userGroup(rn.User), Dir: rn.Dir,
				StartScript: RunnerStartScript, CycleScript: RunnerCycleScript, Lifecycle: rn.Lifecycle,
			}
			var err error
			if content, err = rd.exec(u.Template+".tmpl", data); err != nil {
				return err
			}
			if rn.Lifecycle != "cycle-tag" {
				content = dropLines(content, "ExecStopPost=", "# The lifecycle runs")
			}
		}
		rd.add(Part{Path: SystemdDir + u.Name, Kind: KindUnit, Content: content, Mode: "0644", Owner: "root:root"})
	}
	return nil
}

func dropLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		keep := true
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				keep = false
			}
		}
		if keep {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// runcmd runs last, in the final stage, after packages and deferred files.
// Each entry is one command's argv; StepLine writes it into the document.
func (rd *renderer) runcmd(opts Options) [][]string {
	var cmds [][]string
	for _, u := range rd.r.Users {
		if u.System && u.Home != "" {
			// useradd --system makes no home directory.
			cmds = append(cmds, []string{"install", "-d", "-o", u.Name, "-g", rd.userGroup(u.Name), "-m", "0755", "--", u.Home})
		}
	}
	if rd.r.Runner != nil {
		cmds = append(cmds, []string{RunnerInstallerSh})
	}
	var enable []string
	for _, u := range rd.r.Systemd {
		if u.Enable {
			enable = append(enable, u.Name)
		}
	}
	if len(rd.r.Systemd) > 0 {
		cmds = append(cmds, []string{"systemctl", "daemon-reload"})
	}
	if len(enable) > 0 {
		// Enabled, not started: the unit's first run is on the image's VMs.
		// "--": validation refuses names starting with '-'; this keeps a
		// name from ever being read as an option all the same.
		cmds = append(cmds, append([]string{"systemctl", "enable", "--"}, enable...))
	}
	return cmds
}

// StepLine is runcmd step i of n as one line of shell. cloud-init writes
// runcmd's string entries verbatim into one /bin/sh script without set -e,
// whose exit status is its last command's: a failed step would go unseen.
// Guarded, the first failing step names itself on stderr (cloud-init's
// output log, after the step's own output) and ends the script with its
// status, which cc_scripts_user reports as a failed module (status
// "error"). Every word is single-quoted, so no recipe string is ever read
// as shell.
func StepLine(i, n int, argv []string) string {
	words := make([]string, len(argv))
	for j, w := range argv {
		words[j] = ShellQuote(w)
	}
	return fmt.Sprintf("%s || { s=$?; printf 'imagebake: runcmd step %%s of %%s failed (exit status %%s): %%s\\n' %d %d \"$s\" %s >&2; exit \"$s\"; }",
		strings.Join(words, " "), i, n, ShellQuote(strings.Join(argv, " ")))
}

// ShellQuote quotes s for a POSIX shell: single quotes, with each embedded
// single quote written as '\”. The result is always one word.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// RenderAccess is the cloud-config for booting an already-baked image to
// verify it: only the pinned host key and a login for the check session,
// nothing of the recipe (the image already holds it).
func RenderAccess(opts Options) ([]byte, error) {
	t := true
	cc := cloudConfig{SSHDeleteKeys: &t, Users: []any{"default"}}
	if opts.HostKeyPrivate != "" {
		cc.SSHKeys = map[string]string{"ed25519_private": opts.HostKeyPrivate, "ed25519_public": opts.HostKeyPublic}
	}
	if opts.BuildUser != "" {
		cc.Users = append(cc.Users, user{Name: opts.BuildUser, Shell: "/bin/sh", LockPasswd: true,
			Sudo: "ALL=(ALL) NOPASSWD:ALL", SSHAuthorizedKeys: []string{opts.BuildAuthorizedKey}})
	}
	var buf bytes.Buffer
	buf.WriteString(cloudConfigHeader)
	// Indent 2, as Render: yaml.v3's default of 4 misplaces a block
	// scalar's indentation indicator inside a sequence item.
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cc); err != nil {
		return nil, fmt.Errorf("encode cloud-config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode cloud-config: %w", err)
	}
	return buf.Bytes(), nil
}
