// Package gallery holds image versions: their names (parse, sort, next), the
// Store interface that the Azure Compute Gallery and the local directory
// gallery implement with the same semantics, Azure's "latest" rule, and the
// Allocator: the one place a bake's next version is chosen (previewed, then
// published create-only with an auto-incremented patch).
package gallery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Errors a Store returns, wrapped with the image and version; test them with errors.Is.
var (
	// ErrVersionExists means the version name is taken. Stores never overwrite.
	ErrVersionExists = errors.New("already exists")
	// ErrNotFound means there is no such version (or image).
	ErrNotFound = errors.New("not found")
)

// Provisioning states, as Azure reports them (armcompute.GalleryProvisioningState).
const (
	StateCreating  = "Creating"
	StateUpdating  = "Updating"
	StateSucceeded = "Succeeded"
	StateFailed    = "Failed"
	StateDeleting  = "Deleting"
)

// Replication states of one region, as Azure reports them (armcompute.ReplicationState).
const (
	ReplicationCompleted   = "Completed"
	ReplicationReplicating = "Replicating"
	ReplicationFailed      = "Failed"
	ReplicationUnknown     = "Unknown"
)

// ImageVersion is one version of a gallery image as a Store reports it.
type ImageVersion struct {
	// Name is the MAJOR.MINOR.PATCH version name.
	Name string `json:"name"`
	// ID identifies the version in its store: the Azure resource ID, or the
	// version's directory in a local gallery.
	ID string `json:"id"`
	// ProvisioningState is one of the State* constants. Only Succeeded
	// versions are usable.
	ProvisioningState string `json:"provisioningState"`
	// PublishedAt is when the version was created.
	PublishedAt time.Time `json:"publishedAt"`
	// ExcludeFromLatest keeps the version from being resolved as "latest".
	ExcludeFromLatest bool `json:"excludeFromLatest"`
	// EndOfLife is informational, as in Azure: it does not change "latest".
	EndOfLife *time.Time `json:"endOfLife,omitempty"`
	// Regions is the replication status per target region.
	Regions []RegionStatus    `json:"regions"`
	Tags    map[string]string `json:"tags,omitempty"`
	// RecipeHash is the content hash of the recipe the image was baked from.
	RecipeHash string `json:"recipeHash,omitempty"`
	// Path says where the image's bits are: the disk file of a local
	// version, or the source resource ID an Azure version was captured from.
	Path string `json:"path,omitempty"`
	// SizeBytes and SHA256 describe the disk file; Azure stores leave SHA256
	// empty and may leave SizeBytes zero.
	SizeBytes int64  `json:"sizeBytes,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
}

// Version parses the version's name.
func (iv ImageVersion) Version() (Version, error) { return ParseVersion(iv.Name) }

// RegionStatus is the replication state of a version in one region.
type RegionStatus struct {
	Name     string `json:"name"`
	Replicas int    `json:"replicas"`
	// State is one of the Replication* constants.
	State string `json:"state"`
	// Progress is the replication progress in percent.
	Progress int `json:"progress"`
}

// Region is a replication target.
type Region struct {
	Name     string
	Replicas int
	// StorageAccountType overrides CreateRequest.StorageAccountType in this
	// region (Azure only).
	StorageAccountType string
}

// CreateRequest describes a version to create.
type CreateRequest struct {
	// Version is the exact name to create. Publish fills it in.
	Version string
	// Source is where the image comes from: a disk file path for a local
	// gallery, or a VM, managed image or snapshot resource ID for Azure.
	Source string
	// MoveSource lets a local gallery take the source file instead of copying
	// it (a rename when on the same filesystem). Azure ignores it.
	MoveSource bool
	RecipeHash string
	Tags       map[string]string
	// Regions are the replication targets; empty means the store's default
	// (the gallery's own region; "local" for a local gallery).
	Regions           []Region
	ExcludeFromLatest bool
	EndOfLife         *time.Time
	// StorageAccountType is Azure's Standard_LRS, Standard_ZRS or
	// Premium_LRS; a local gallery ignores it.
	StorageAccountType string
}

// Update changes an existing version. Nil fields are left unchanged.
type Update struct {
	ExcludeFromLatest *bool
	EndOfLife         *time.Time
	// Regions replaces the replication targets.
	Regions []Region
	// Tags replaces all tags.
	Tags map[string]string
}

// Store is a gallery of image versions: an Azure Compute Gallery or a local
// directory with the same semantics. Versions are create-only: Create never
// replaces an existing version.
type Store interface {
	// List returns all versions of image (every page), sorted by version,
	// in every provisioning state. An image with no versions yields an
	// empty list. Regions may lack replication state (Azure's list does
	// not return it); Get has it.
	List(ctx context.Context, image string) ([]ImageVersion, error)
	// Get returns one version, with its replication status; ErrNotFound if absent.
	Get(ctx context.Context, image, version string) (ImageVersion, error)
	// Create creates req.Version and returns it once it has succeeded. It
	// fails with ErrVersionExists when the name is taken, whatever the
	// state of the existing version, and then changes nothing.
	Create(ctx context.Context, image string, req CreateRequest) (ImageVersion, error)
	// Update changes the fields set in u and returns the updated version.
	Update(ctx context.Context, image, version string, u Update) (ImageVersion, error)
	// Delete removes a version in any provisioning state; ErrNotFound if absent.
	Delete(ctx context.Context, image, version string) error
}

// Latest returns the version Azure resolves "latest" to: the highest
// MAJOR.MINOR.PATCH among the succeeded versions not excluded from latest.
// The newest by date does not matter. It reports false when there is none.
func Latest(versions []ImageVersion) (ImageVersion, bool) {
	var (
		best    ImageVersion
		bestVer Version
		found   bool
	)
	for _, iv := range versions {
		if iv.ProvisioningState != StateSucceeded || iv.ExcludeFromLatest {
			continue
		}
		v, err := iv.Version()
		if err != nil {
			continue
		}
		if !found || v.Compare(bestVer) > 0 {
			best, bestVer, found = iv, v, true
		}
	}
	return best, found
}

// Sort orders versions by version number, lowest first. Names that are not
// versions sort before all versions, by name.
func Sort(versions []ImageVersion) {
	// Parse each name once, not once per comparison.
	type keyed struct {
		iv  ImageVersion
		v   Version
		err error
	}
	ks := make([]keyed, len(versions))
	for i, iv := range versions {
		v, err := iv.Version()
		ks[i] = keyed{iv, v, err}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		switch {
		case a.err != nil && b.err != nil:
			return cmp.Compare(a.iv.Name, b.iv.Name)
		case a.err != nil:
			return -1
		case b.err != nil:
			return 1
		}
		return a.v.Compare(b.v)
	})
	for i, k := range ks {
		versions[i] = k.iv
	}
}

// imageNamePattern is Azure's rule for gallery image definition names: up to
// 80 letters, digits, '.', '_' and '-', starting and ending with a letter or
// digit. It also keeps local gallery paths from escaping their root.
var imageNamePattern = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,78}[A-Za-z0-9])?$`)

// ValidateImageName checks an image definition name.
func ValidateImageName(name string) error {
	if !imageNamePattern.MatchString(name) {
		return fmt.Errorf("gallery image %q: want 1-80 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", name)
	}
	return nil
}
