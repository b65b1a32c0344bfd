package contract

// Where the runner's pieces land in the image, and the variables of its env
// file. templates writes them; recipes refuses recipe files and env keys
// that would collide with them; checks and tests read them. The lifecycle
// script keeps the founding runbook's path so that existing automation
// finds it.
const (
	// RunnerEnvFile is the runner's settings as shell assignments (no
	// secrets), sourced by the start script.
	RunnerEnvFile     = "/etc/imagebake/runner.env"
	RunnerStartScript = "/opt/githubrunner/start_runner.sh"
	RunnerCycleScript = "/opt/githubrunner/completed_cycle.sh"
	RunnerInstaller   = "/opt/imagebake/install-runner.sh"

	// SystemdUnitDir and SudoersDir are where units and sudoers rules are
	// written; the trailing '/' is part of the prefix.
	SystemdUnitDir = "/etc/systemd/system/"
	SudoersDir     = "/etc/sudoers.d/"
	SudoersFile    = "/etc/sudoers"
)

// ReservedDirs are the directories whose contents are imagebake's own: a
// recipe may not write files there or put a home or runner.dir there.
func ReservedDirs() []string {
	return []string{"/etc/imagebake", "/opt/imagebake", "/opt/githubrunner"}
}

// The env file's variables. The first three are written from other recipe
// fields (registration, labels); the last two are required in runner.env
// (RESOURCE_GROUP only with lifecycle cycle-tag). start-runner.sh reads
// KEYVAULT_*, RUNNER_LABELS and REPO_URL by these names.
const (
	EnvKeyVaultName   = "KEYVAULT_NAME"
	EnvKeyVaultSecret = "KEYVAULT_SECRET"
	EnvRunnerLabels   = "RUNNER_LABELS"
	EnvRepoURL        = "REPO_URL"
	EnvResourceGroup  = "RESOURCE_GROUP"
)
