package gallery

import "github.com/imagebake/imagebake/internal/contract"

// Tags imagebake records on every version it publishes (Azure tags, or the
// local gallery's metadata). They are spelled once, in internal/contract;
// these names stay for the stores and commands that read versions.
const (
	TagRecipe      = contract.TagRecipe
	TagRecipeHash  = contract.TagRecipeHash
	TagRunner      = contract.TagRunner
	TagBaseImage   = contract.TagBaseImage
	TagBaseVersion = contract.TagBaseVersion
	TagImagebake   = contract.TagImagebake
	TagCommit      = contract.TagCommit
	TagBuildID     = contract.TagBuildID
	TagMachineID   = contract.TagMachineID
	TagHostKeys    = contract.TagHostKeys
)
