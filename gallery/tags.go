package gallery

// Tags imagebake records on every version it publishes (Azure tags, or the
// local gallery's metadata). Later commands read them: --if-changed compares
// the recipe hash, base version and imagebake version; verify compares the
// build's machine-id and host keys.
const (
	TagRecipe      = "imagebake.recipe"
	TagRecipeHash  = "imagebake.recipe-hash"
	TagRunner      = "imagebake.runner-version"
	TagBaseImage   = "imagebake.base-image"
	TagBaseVersion = "imagebake.base-version"
	TagImagebake   = "imagebake.version"
	TagCommit      = "imagebake.commit"
	TagBuildID     = "imagebake.build-id"
	TagMachineID   = "imagebake.build-machine-id"
	TagHostKeys    = "imagebake.build-host-keys"
)
