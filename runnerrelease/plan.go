package runnerrelease

import (
	"errors"
	"fmt"
	"strings"

	goversion "github.com/hashicorp/go-version"

	"github.com/imagebake/imagebake/recipes"
)

// Verdict is what a bump of a recipe's runner pin would do.
type Verdict int

const (
	// Bump: write the new version and hash.
	Bump Verdict = iota
	// Unchanged: the recipe already pins this version with this hash.
	Unchanged
	// TooOld: the version is older than recipes.MinRunnerVersion, which
	// GitHub no longer registers; refused even as a requested downgrade.
	TooOld
	// Downgrade: the version is older than the pinned one and a downgrade
	// was not asked for.
	Downgrade
	// HashMismatch: the same version with another hash. Either the recipe
	// or the source is wrong, and silently trusting either defeats the pin.
	HashMismatch
)

// ErrVersion marks a runner version that cannot be compared: its parts
// are digits but too large for a number (2.99999999999999999999.0).
var ErrVersion = errors.New("not a usable runner version")

// PlanBump decides whether a recipe pinning old may move to rel. Only the
// verdict Bump means "write"; the others say why not (or that there is
// nothing to do). A pinned version that does not parse never blocks a
// bump: bumping is how such a recipe gets fixed.
func PlanBump(old recipes.RunnerPin, rel Release, allowDowngrade bool) (Verdict, error) {
	newV, err := goversion.NewVersion(rel.Version)
	if err != nil {
		return 0, fmt.Errorf("runner version %q: %w", rel.Version, ErrVersion)
	}
	if newV.LessThan(goversion.Must(goversion.NewVersion(recipes.MinRunnerVersion))) {
		return TooOld, nil
	}
	oldV, err := goversion.NewVersion(old.Version)
	if err != nil {
		return Bump, nil
	}
	switch {
	case newV.Equal(oldV) && strings.EqualFold(old.SHA256, rel.SHA256):
		// Hex compares case-insensitively: the API answers lower case.
		return Unchanged, nil
	case newV.Equal(oldV):
		return HashMismatch, nil
	case newV.LessThan(oldV) && !allowDowngrade:
		return Downgrade, nil
	}
	return Bump, nil
}
