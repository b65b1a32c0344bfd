package azure

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
)

// GalleryImage names one image definition of an Azure Compute Gallery.
type GalleryImage struct {
	ResourceGroup, Gallery, Image string
}

func (g GalleryImage) String() string {
	return fmt.Sprintf("gallery %s image %s", g.Gallery, g.Image)
}

func (g GalleryImage) version(v string) string { return g.String() + " version " + v }

// GetGalleryImage reads the image definition.
func (c *Clients) GetGalleryImage(ctx context.Context, g GalleryImage) (armcompute.GalleryImage, error) {
	var res armcompute.GalleryImagesClientGetResponse
	err := c.call(ctx, "get "+g.String()+" definition", func(ctx context.Context) error {
		var err error
		res, err = c.galleryImages.Get(ctx, g.ResourceGroup, g.Gallery, g.Image, nil)
		return err
	})
	return res.GalleryImage, err
}

// CreateGalleryImage creates the image definition and waits until it exists.
func (c *Clients) CreateGalleryImage(ctx context.Context, g GalleryImage, def armcompute.GalleryImage) (armcompute.GalleryImage, error) {
	res, err := run(ctx, c, "create "+g.String()+" definition", func(ctx context.Context) (*runtime.Poller[armcompute.GalleryImagesClientCreateOrUpdateResponse], error) {
		return c.galleryImages.BeginCreateOrUpdate(ctx, g.ResourceGroup, g.Gallery, g.Image, def, nil)
	})
	return res.GalleryImage, err
}

// ListGalleryVersions lists every version of the image (all pages).
func (c *Clients) ListGalleryVersions(ctx context.Context, g GalleryImage) ([]*armcompute.GalleryImageVersion, error) {
	pager := c.galleryVersion.NewListByGalleryImagePager(g.ResourceGroup, g.Gallery, g.Image, nil)
	return allPages(ctx, c, "list versions of "+g.String(), pager, func(p armcompute.GalleryImageVersionsClientListByGalleryImageResponse) []*armcompute.GalleryImageVersion {
		return p.Value
	})
}

// GetGalleryVersion reads one version; with replication, its per-region
// replication status too.
func (c *Clients) GetGalleryVersion(ctx context.Context, g GalleryImage, version string, replication bool) (armcompute.GalleryImageVersion, error) {
	var opts *armcompute.GalleryImageVersionsClientGetOptions
	if replication {
		opts = &armcompute.GalleryImageVersionsClientGetOptions{Expand: to.Ptr(armcompute.ReplicationStatusTypesReplicationStatus)}
	}
	var res armcompute.GalleryImageVersionsClientGetResponse
	err := c.call(ctx, "get "+g.version(version), func(ctx context.Context) error {
		var err error
		res, err = c.galleryVersion.Get(ctx, g.ResourceGroup, g.Gallery, g.Image, version, opts)
		return err
	})
	return res.GalleryImageVersion, err
}

// VersionOperation is the create (or, on an existing version, the update)
// of a gallery image version.
type VersionOperation = Operation[armcompute.GalleryImageVersionsClientCreateOrUpdateResponse]

// BeginGalleryVersion PUTs a version and returns once Azure accepted it.
// Azure has no create-only PUT for versions: on an existing version it is
// an update (Status 200), and with another source it is refused (409
// PropertyChangeNotAllowed). Callers that must not overwrite read first.
func (c *Clients) BeginGalleryVersion(ctx context.Context, g GalleryImage, version string, body armcompute.GalleryImageVersion) (*VersionOperation, error) {
	return begin(ctx, c, "create "+g.version(version), func(ctx context.Context) (*runtime.Poller[armcompute.GalleryImageVersionsClientCreateOrUpdateResponse], error) {
		return c.galleryVersion.BeginCreateOrUpdate(ctx, g.ResourceGroup, g.Gallery, g.Image, version, body, nil)
	})
}

// UpdateGalleryVersion PATCHes a version and waits for the update.
func (c *Clients) UpdateGalleryVersion(ctx context.Context, g GalleryImage, version string, upd armcompute.GalleryImageVersionUpdate) (armcompute.GalleryImageVersion, error) {
	res, err := run(ctx, c, "update "+g.version(version), func(ctx context.Context) (*runtime.Poller[armcompute.GalleryImageVersionsClientUpdateResponse], error) {
		return c.galleryVersion.BeginUpdate(ctx, g.ResourceGroup, g.Gallery, g.Image, version, upd, nil)
	})
	return res.GalleryImageVersion, err
}

// DeleteGalleryVersion deletes a version and waits. A version absent at
// the start is a not-found error (IsNotFound); one gone by the end is fine.
func (c *Clients) DeleteGalleryVersion(ctx context.Context, g GalleryImage, version string) error {
	o, err := begin(ctx, c, "delete "+g.version(version), func(ctx context.Context) (*runtime.Poller[armcompute.GalleryImageVersionsClientDeleteResponse], error) {
		return c.galleryVersion.BeginDelete(ctx, g.ResourceGroup, g.Gallery, g.Image, version, nil)
	})
	if err != nil {
		return err
	}
	if _, err := o.Wait(ctx, nil); err != nil && !IsNotFound(err) {
		return err
	}
	return nil
}
