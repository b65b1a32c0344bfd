package contract

// Tags on everything a build creates (resource groups, VMs, networks,
// managed images), so gc can find a killed build's debris.
const (
	// TagBuildID is the build's random ID; gc lists only what carries it.
	TagBuildID = "imagebake.build-id"
	// TagCreated is when the build started (RFC 3339, UTC); gc compares
	// it with its TTL.
	TagCreated = "imagebake.created"
	// TagRecipe names the recipe baked.
	TagRecipe = "imagebake.recipe"
)

// Tags imagebake records on every version it publishes (Azure tags, or the
// local gallery's metadata), besides TagRecipe and TagBuildID. Later commands
// read them: --if-changed compares the recipe hash, base version and
// imagebake version; verify compares the build's machine-id and host keys.
const (
	TagRecipeHash  = "imagebake.recipe-hash"
	TagRunner      = "imagebake.runner-version"
	TagBaseImage   = "imagebake.base-image"
	TagBaseVersion = "imagebake.base-version"
	TagImagebake   = "imagebake.version"
	TagCommit      = "imagebake.commit"
	TagMachineID   = "imagebake.build-machine-id"
	TagHostKeys    = "imagebake.build-host-keys"
)

// TagCycle is the runner lifecycle's tag on a VM (completed_cycle.sh reads
// it): "running" keeps the VM, "delete" deletes it, anything else
// deallocates it. Verify boots its VM with CycleDelete.
const (
	TagCycle        = "cycle"
	CycleDelete     = "delete"
	CycleRunning    = "running"
	CycleDeallocate = "deallocate"
)

// Tags on runner VMs: TagOutcome is written by the VM's own cycle script
// (one of the Outcome* values) before it deallocates or deletes itself;
// the others are set by whoever created the VM (imagebake launch, verify
// --runtime) and mark it as imagebake's: runners list and prune touch only
// VMs that carry TagLaunchedFrom (with TagCreated for age).
const (
	TagOutcome       = "imagebake.outcome"
	TagLaunchedFrom  = "imagebake.launched-from" // the gallery image name
	TagLaunchVersion = "imagebake.image-version" // the gallery version, such as 1.0.7
	TagLaunchID      = "imagebake.launch-id"     // one ID per launch command
	TagRunnerID      = "imagebake.runner-id"     // GitHub's runner ID (jit), decimal; not a secret
)
