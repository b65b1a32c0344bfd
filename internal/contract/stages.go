package contract

// The names of the stages bake runs. A recipe's build.timeouts may bound
// any of them and the CLI's default timeouts name them; bake declares its
// flows with these constants and a test there checks that every flow uses
// only these names and that every name is used by some flow.
const (
	StageCredentials   = "credentials"
	StageBase          = "base"
	StageVersion       = "version"
	StageResourceGroup = "resource-group"
	StageNetwork       = "network"
	StageVM            = "vm"
	StageRender        = "render"
	StageBoot          = "boot"
	StageSSH           = "ssh"
	StageCloudInit     = "cloud-init"
	StageChecks        = "checks"
	StageDeprovision   = "deprovision"
	StageDeallocate    = "deallocate"
	StageGeneralize    = "generalize"
	StageImage         = "image"
	StageCapture       = "capture"
	StagePublish       = "publish"
	StageGeneralized   = "generalized"
	StageFirstBoot     = "first-boot"
	// verify --runtime: the platform stand-in, the runner VMs, their cycles.
	StagePlatform  = "platform"
	StageLaunch    = "launch"
	StageLifecycle = "lifecycle"
)

// Stages returns every stage name, in the order a reader meets them (local
// and Azure stages interleaved as their flows run). It returns a fresh
// slice: callers may not change the package's list.
func Stages() []string {
	return []string{
		StageCredentials, StageBase, StageVersion, StageResourceGroup, StageNetwork, StageVM,
		StageRender, StageBoot, StageSSH, StageCloudInit, StageChecks, StageDeprovision,
		StageDeallocate, StageGeneralize, StageImage, StageCapture, StagePublish, StageGeneralized,
		StageFirstBoot, StagePlatform, StageLaunch, StageLifecycle,
	}
}

// IsStage reports whether name is one of Stages.
func IsStage(name string) bool {
	for _, s := range Stages() {
		if s == name {
			return true
		}
	}
	return false
}
