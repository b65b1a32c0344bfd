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

// Registration modes (runner.registration). With RegistrationJIT the VM
// holds no GitHub credential: whoever creates it (imagebake launch, verify
// --runtime) mints a just-in-time configuration and puts it in the VM's
// userData, which start_runner.sh reads from instance metadata. With
// RegistrationKeyVaultPAT (the founding runbook's way) the VM's identity
// reads a PAT from Key Vault and trades it for a registration token.
const (
	RegistrationJIT         = "jit"
	RegistrationKeyVaultPAT = "keyvault-pat"
)

// UserData contract for jit: the VM's userData, once base64-decoded (IMDS
// /metadata/instance/compute/userData returns it base64-encoded, as Azure
// stores it), is exactly GitHub's encoded_jit_config string, nothing else.

// StartFailedExit is start_runner.sh's exit status when it stops before the
// runner starts (no JIT config in userData, Key Vault or GitHub refused):
// EX_CONFIG from sysexits.h, a code the runner's run.sh never returns, so
// the cycle script can tell "never started" from the runner's own codes.
const StartFailedExit = 78

// Outcomes the cycle script records, after the runner returns, in one
// journal line and in the VM's TagOutcome tag. Only OutcomeJobDone means the
// runner ran its one job; for the others the recipe's runner.onNoJob decides
// (keep: never delete, deallocate unless cycle=running; cycle: apply the
// cycle tag anyway).
const (
	OutcomeJobDone  = "job-done"  // run.sh 0 and .runner gone (an ephemeral runner deletes it after its job)
	OutcomeRefused  = "refused"   // the runner exited and .runner is still there: GitHub refused it or no job came
	OutcomeStale    = "stale"     // exit 7: the runner version is deprecated (ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1)
	OutcomeCrashed  = "crashed"   // any other non-zero status of the runner
	OutcomeNoConfig = "no-config" // StartFailedExit: start_runner.sh found no registration (userData empty, Key Vault or GitHub refused)
)

// Outcomes lists every outcome, for validation of --outcome filters.
func Outcomes() []string {
	return []string{OutcomeJobDone, OutcomeRefused, OutcomeStale, OutcomeCrashed, OutcomeNoConfig}
}

// OnNoJob policies (runner.onNoJob): what the cycle script does when the
// outcome is not OutcomeJobDone.
const (
	OnNoJobKeep  = "keep"  // default: never delete such a VM; deallocate it (or keep it running with cycle=running)
	OnNoJobCycle = "cycle" // apply the cycle tag as for a finished job
)
