// Package recipes is the recipe model: the v1 types, strict YAML loading with
// file:line:col errors, validation, defaults and a stable content hash.
package recipes

// Recipe is one image recipe (format v1). Field tags name the YAML keys; the
// loader rejects any key that is not listed here. A string field holds one
// line without control characters unless its text tag says "multiline"
// (tabs and line breaks too) or "data" (anything: written, never parsed).
type Recipe struct {
	Name        string            `yaml:"name" json:"name"`
	Description string            `yaml:"description" json:"description,omitempty" text:"multiline"`
	Base        Base              `yaml:"base" json:"base"`
	Packages    []string          `yaml:"packages" json:"packages,omitempty"`
	Apt         Apt               `yaml:"apt" json:"apt"`
	Groups      []string          `yaml:"groups" json:"groups,omitempty"`
	Users       []User            `yaml:"users" json:"users,omitempty"`
	Sudoers     []SudoRule        `yaml:"sudoers" json:"sudoers,omitempty"`
	Runner      *Runner           `yaml:"runner" json:"runner,omitempty"`
	Files       []File            `yaml:"files" json:"files,omitempty"`
	Systemd     []Unit            `yaml:"systemd" json:"systemd,omitempty"`
	Checks      []Check           `yaml:"checks" json:"checks,omitempty"`
	Gallery     Gallery           `yaml:"gallery" json:"gallery"`
	Build       Build             `yaml:"build" json:"build"`
	Tags        map[string]string `yaml:"tags" json:"tags,omitempty"`

	// Source is where the recipe was read from; not part of the hash.
	Source string `yaml:"-" json:"-"`
	// pos maps field paths to where they were written.
	pos map[string]Pos
}

// Base names the image the build VM boots, per target.
type Base struct {
	// Azure is a marketplace URN publisher:offer:sku:version ("latest" allowed).
	Azure string    `yaml:"azure" json:"azure,omitempty"`
	Local LocalBase `yaml:"local" json:"local"`
}

// LocalBase is the local (QEMU) target's base disk: exactly one of Builtin,
// Path or URL (with SHA256).
type LocalBase struct {
	// Builtin names a base that `imagebake base build` makes offline
	// ("debian-bookworm").
	Builtin string `yaml:"builtin" json:"builtin,omitempty"`
	Path    string `yaml:"path" json:"path,omitempty"`
	URL     string `yaml:"url" json:"url,omitempty"`
	SHA256  string `yaml:"sha256" json:"sha256,omitempty"`
	// Kernel and Initrd, when set, boot the disk directly (-kernel/-initrd).
	Kernel string `yaml:"kernel" json:"kernel,omitempty"`
	Initrd string `yaml:"initrd" json:"initrd,omitempty"`
}

// Apt holds extra apt repositories.
type Apt struct {
	Sources map[string]AptSource `yaml:"sources" json:"sources,omitempty"`
}

// AptSource is one repository: a deb line and its signing key. The deb line
// may use $KEY_FILE, which cloud-init replaces with the key's path.
type AptSource struct {
	Source string `yaml:"source" json:"source"`
	// Key is an ASCII-armored public key; KeyID a full 40-hex fingerprint
	// fetched from KeyServer at build time. Give one of them.
	Key       string `yaml:"key" json:"key,omitempty" text:"multiline"`
	KeyID     string `yaml:"keyid" json:"keyid,omitempty"`
	KeyServer string `yaml:"keyserver" json:"keyserver,omitempty"`
}

// User is an account created in the image.
type User struct {
	Name   string   `yaml:"name" json:"name"`
	System bool     `yaml:"system" json:"system,omitempty"`
	Groups []string `yaml:"groups" json:"groups,omitempty"`
	Home   string   `yaml:"home" json:"home,omitempty"`
	Shell  string   `yaml:"shell" json:"shell,omitempty"`
}

// SudoRule is one sudoers line for a user.
type SudoRule struct {
	User     string   `yaml:"user" json:"user"`
	RunAs    string   `yaml:"runAs" json:"runAs,omitempty"`
	NoPasswd bool     `yaml:"nopasswd" json:"nopasswd,omitempty"`
	Commands []string `yaml:"commands" json:"commands"`
}

// Runner is the GitHub Actions runner baked into the image.
type Runner struct {
	Version   string   `yaml:"version" json:"version"`
	SHA256    string   `yaml:"sha256" json:"sha256"`
	User      string   `yaml:"user" json:"user"`
	Dir       string   `yaml:"dir" json:"dir,omitempty"`
	Ephemeral bool     `yaml:"ephemeral" json:"ephemeral,omitempty"`
	Labels    []string `yaml:"labels" json:"labels,omitempty"`
	// URL is where the VM downloads the runner tarball from: a mirror or an
	// internal asset (air-gapped, GitHub Enterprise Server). Default:
	// github.com's release asset for Version. SHA256 is enforced either way.
	URL          string       `yaml:"url" json:"url,omitempty"`
	Registration Registration `yaml:"registration" json:"registration"`
	// GroupID is the runner group JIT runners join (1, GitHub's "Default").
	GroupID int `yaml:"groupId" json:"groupId,omitempty"`
	// OnNoJob is what the cycle script does when the runner ran no job
	// (refused, stale, crashed, no registration): keep (default: never
	// delete; deallocate unless cycle=running) or cycle (apply the tag).
	OnNoJob string            `yaml:"onNoJob" json:"onNoJob,omitempty"`
	Env     map[string]string `yaml:"env" json:"env,omitempty"`
	// Lifecycle is what happens after the one job: "cycle-tag" (the VM's
	// cycle tag decides) or "none".
	Lifecycle string `yaml:"lifecycle" json:"lifecycle,omitempty"`
}

// Registration says how the VM registers with GitHub at boot; no credential
// is ever baked into the image. It is written as a mode alone
// (`registration: jit`) or as a mapping. Mode jit (recommended): the VM
// reads a just-in-time config from its userData and holds no GitHub
// credential. Mode keyvault-pat (the founding runbook's): the VM's identity
// reads a PAT from Key Vault secret Secret in KeyVault. The founding
// mapping `{keyVault, secret}` without a mode means keyvault-pat; no
// registration at all means jit.
type Registration struct {
	Mode     string `yaml:"mode" json:"mode" shorthand:"true"`
	KeyVault string `yaml:"keyVault" json:"keyVault,omitempty"`
	Secret   string `yaml:"secret" json:"secret,omitempty"`
}

// File is a file written into the image.
type File struct {
	Path    string `yaml:"path" json:"path"`
	Content string `yaml:"content" json:"content" text:"data"`
	Mode    string `yaml:"mode" json:"mode,omitempty"`
	Owner   string `yaml:"owner" json:"owner,omitempty"`
}

// Unit is a systemd unit: a built-in template or literal content.
type Unit struct {
	Name     string `yaml:"name" json:"name"`
	Template string `yaml:"template" json:"template,omitempty"`
	Content  string `yaml:"content" json:"content,omitempty" text:"multiline"`
	Enable   bool   `yaml:"enable" json:"enable,omitempty"`
}

// Check is a command that must exit 0 on the build VM (and on verify).
type Check struct {
	Name string `yaml:"name" json:"name"`
	Run  string `yaml:"run" json:"run" text:"multiline"`
	Sudo bool   `yaml:"sudo" json:"sudo,omitempty"`
}

// Gallery says where versions are published.
type Gallery struct {
	Azure             *AzureGallery `yaml:"azure" json:"azure,omitempty"`
	Image             string        `yaml:"image" json:"image,omitempty"`
	Version           string        `yaml:"version" json:"version"`
	Regions           []Region      `yaml:"regions" json:"regions,omitempty"`
	ExcludeFromLatest bool          `yaml:"excludeFromLatest" json:"excludeFromLatest,omitempty"`
	EndOfLife         string        `yaml:"endOfLife" json:"endOfLife,omitempty"`
	StorageType       string        `yaml:"storageType" json:"storageType,omitempty"`
}

// AzureGallery is an Azure Compute Gallery image definition.
type AzureGallery struct {
	Subscription  string `yaml:"subscription" json:"subscription,omitempty"`
	ResourceGroup string `yaml:"resourceGroup" json:"resourceGroup"`
	Gallery       string `yaml:"gallery" json:"gallery"`
	Image         string `yaml:"image" json:"image"`
}

// Region is a replication target.
type Region struct {
	Name        string `yaml:"name" json:"name"`
	Replicas    int    `yaml:"replicas" json:"replicas,omitempty"`
	StorageType string `yaml:"storageType" json:"storageType,omitempty"`
}

// Build tunes the build machine.
type Build struct {
	Location               string            `yaml:"location" json:"location,omitempty"`
	VMSize                 string            `yaml:"vmSize" json:"vmSize,omitempty"`
	Spot                   bool              `yaml:"spot" json:"spot,omitempty"`
	Identity               string            `yaml:"identity" json:"identity,omitempty"`
	MemoryMiB              int               `yaml:"memoryMiB" json:"memoryMiB,omitempty"`
	CPUs                   int               `yaml:"cpus" json:"cpus,omitempty"`
	AllowRecoverableErrors bool              `yaml:"allowRecoverableErrors" json:"allowRecoverableErrors,omitempty"`
	Timeouts               map[string]string `yaml:"timeouts" json:"timeouts,omitempty"`
	// SecurityType is the Azure build VM's: Standard (when unset),
	// TrustedLaunch (Gen2 base, secure boot and vTPM) or ConfidentialVM. It
	// also decides the image definition's security type.
	SecurityType string `yaml:"securityType" json:"securityType,omitempty"`
}
