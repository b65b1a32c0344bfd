// Package azure is the Azure Compute Gallery implementation of
// gallery.Store: one gallery in one resource group; images are image
// definitions and versions are gallery image versions.
package azure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"

	"github.com/imagebake/imagebake/gallery"
	az "github.com/imagebake/imagebake/provision/azure"
)

// Store is one Azure Compute Gallery.
type Store struct {
	c             *az.Clients
	resourceGroup string
	gallery       string
	// Location is where new versions are created (the gallery's region).
	Location string
	// NoWait returns from Create once Azure accepted the version, without
	// waiting for it to be provisioned and replicated.
	NoWait bool
	// OnAccepted, when set, is told the version's name as soon as Azure
	// accepted it, before waiting: a bake registers the cleanup of a
	// half-created version there.
	OnAccepted func(version string)
	// Progress, when set, hears each region's replication state while
	// Create waits.
	Progress func(regions []gallery.RegionStatus)
}

// New returns the store for gallery in resourceGroup.
func New(c *az.Clients, resourceGroup, galleryName, location string) *Store {
	return &Store{c: c, resourceGroup: resourceGroup, gallery: galleryName, Location: location}
}

func (s *Store) what(image, version string) string {
	return fmt.Sprintf("gallery %s image %s version %s", s.gallery, image, version)
}

// List returns every version of image (all pages), sorted.
func (s *Store) List(ctx context.Context, image string) ([]gallery.ImageVersion, error) {
	var out []gallery.ImageVersion
	pager := s.c.GalleryVersion.NewListByGalleryImagePager(s.resourceGroup, s.gallery, image, nil)
	for pager.More() {
		var page armcompute.GalleryImageVersionsClientListByGalleryImageResponse
		if err := s.c.Do(ctx, fmt.Sprintf("list versions of gallery %s image %s", s.gallery, image), func(ctx context.Context) error {
			var err error
			page, err = pager.NextPage(ctx)
			return err
		}); err != nil {
			if az.IsNotFound(err) {
				return nil, fmt.Errorf("gallery %s image %s: %w (create the image definition, or bake with --create-definition)", s.gallery, image, gallery.ErrNotFound)
			}
			return nil, err
		}
		for _, v := range page.Value {
			out = append(out, convert(v))
		}
	}
	gallery.Sort(out)
	return out, nil
}

// Get returns one version with its replication status.
func (s *Store) Get(ctx context.Context, image, version string) (gallery.ImageVersion, error) {
	var res armcompute.GalleryImageVersionsClientGetResponse
	err := s.c.Do(ctx, s.what(image, version), func(ctx context.Context) error {
		var err error
		res, err = s.c.GalleryVersion.Get(ctx, s.resourceGroup, s.gallery, image, version,
			&armcompute.GalleryImageVersionsClientGetOptions{Expand: to.Ptr(armcompute.ReplicationStatusTypesReplicationStatus)})
		return err
	})
	if az.IsNotFound(err) {
		return gallery.ImageVersion{}, fmt.Errorf("%s: %w", s.what(image, version), gallery.ErrNotFound)
	}
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	return convert(&res.GalleryImageVersion), nil
}

// Create creates the version from req.Source (a VM, managed image or
// version ID), create-only: the PUT carries If-None-Match: *, and an
// existing name (412, or 409 from a concurrent create) is ErrVersionExists.
// A version whose creation failed is deleted, so no Failed version remains.
func (s *Store) Create(ctx context.Context, image string, req gallery.CreateRequest) (gallery.ImageVersion, error) {
	if req.Version == "" {
		return gallery.ImageVersion{}, errors.New("gallery version: no name given")
	}
	tags := map[string]*string{}
	for k, v := range req.Tags {
		tags[k] = to.Ptr(v)
	}
	if req.RecipeHash != "" {
		tags[gallery.TagRecipeHash] = to.Ptr(req.RecipeHash)
	}
	storage := armcompute.StorageAccountTypeStandardLRS
	if req.StorageAccountType != "" {
		storage = armcompute.StorageAccountType(req.StorageAccountType)
	}
	var regions []*armcompute.TargetRegion
	for _, r := range req.Regions {
		st := storage
		if r.StorageAccountType != "" {
			st = armcompute.StorageAccountType(r.StorageAccountType)
		}
		regions = append(regions, &armcompute.TargetRegion{Name: to.Ptr(r.Name), RegionalReplicaCount: to.Ptr(int32(max(r.Replicas, 1))), StorageAccountType: to.Ptr(st)})
	}
	body := armcompute.GalleryImageVersion{
		Location: to.Ptr(s.Location), Tags: tags,
		Properties: &armcompute.GalleryImageVersionProperties{
			PublishingProfile: &armcompute.GalleryImageVersionPublishingProfile{
				ExcludeFromLatest: to.Ptr(req.ExcludeFromLatest), TargetRegions: regions, StorageAccountType: to.Ptr(storage),
				EndOfLifeDate: req.EndOfLife,
			},
			StorageProfile: &armcompute.GalleryImageVersionStorageProfile{Source: sourceFor(req.Source)},
		},
	}
	what := s.what(image, req.Version)
	// If-None-Match: * makes the PUT create-only; without it a PUT on an
	// existing version would update it.
	hctx := runtime.WithHTTPHeader(ctx, http.Header{"If-None-Match": []string{"*"}})
	var poller *runtime.Poller[armcompute.GalleryImageVersionsClientCreateOrUpdateResponse]
	err := s.c.Do(ctx, what, func(context.Context) error {
		var err error
		poller, err = s.c.GalleryVersion.BeginCreateOrUpdate(hctx, s.resourceGroup, s.gallery, image, req.Version, body, nil)
		return err
	})
	if az.IsStatus(err, http.StatusPreconditionFailed) {
		return gallery.ImageVersion{}, fmt.Errorf("%s: %w", what, gallery.ErrVersionExists)
	}
	if az.IsStatus(err, http.StatusConflict) {
		// A conflict is "taken" only when the version really exists (a
		// concurrent bake is creating it); any other conflict is an error.
		if _, gerr := s.Get(ctx, image, req.Version); gerr == nil {
			return gallery.ImageVersion{}, fmt.Errorf("%s: %w", what, gallery.ErrVersionExists)
		}
		return gallery.ImageVersion{}, err
	}
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	if s.OnAccepted != nil {
		s.OnAccepted(req.Version)
	}
	if s.NoWait {
		// Not waiting for every region, but for the copy in the gallery's
		// own region: until it exists the source VM must not be deleted.
		return s.waitHomeRegion(ctx, image, req.Version)
	}
	res, err := s.wait(ctx, image, req.Version, what, poller)
	if err != nil {
		// A failed create leaves a Failed version that would block the
		// name and confuse "latest": remove it.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if derr := s.Delete(dctx, image, req.Version); derr != nil && !errors.Is(derr, gallery.ErrNotFound) {
			return gallery.ImageVersion{}, fmt.Errorf("%w (and deleting the failed version: %v)", err, derr)
		}
		return gallery.ImageVersion{}, err
	}
	return convert(&res.GalleryImageVersion), nil
}

// wait polls the create to its end, reporting replication progress.
func (s *Store) wait(ctx context.Context, image, version, what string, poller *runtime.Poller[armcompute.GalleryImageVersionsClientCreateOrUpdateResponse]) (armcompute.GalleryImageVersionsClientCreateOrUpdateResponse, error) {
	if s.Progress == nil {
		return az.Poll(ctx, s.c, what, poller)
	}
	// A progress read every sixth poll (30 s at the default interval)
	// keeps the reads per bake near what polling alone costs.
	const progressEvery = 6
	for polls := 0; !poller.Done(); polls++ {
		if err := s.c.Do(ctx, what+" (poll)", func(ctx context.Context) error {
			_, err := poller.Poll(ctx)
			return err
		}); err != nil {
			return armcompute.GalleryImageVersionsClientCreateOrUpdateResponse{}, err
		}
		if poller.Done() {
			break
		}
		if polls%progressEvery == 0 {
			if v, err := s.Get(ctx, image, version); err == nil {
				s.Progress(v.Regions)
			}
		}
		if err := s.c.Sleep(ctx); err != nil {
			return armcompute.GalleryImageVersionsClientCreateOrUpdateResponse{}, err
		}
	}
	return az.Poll(ctx, s.c, what, poller)
}

// waitHomeRegion polls the version until its replica in the gallery's
// region is complete (or the version succeeded or failed).
func (s *Store) waitHomeRegion(ctx context.Context, image, version string) (gallery.ImageVersion, error) {
	for {
		v, err := s.Get(ctx, image, version)
		if err != nil {
			return v, err
		}
		switch v.ProvisioningState {
		case gallery.StateSucceeded:
			return v, nil
		case gallery.StateFailed:
			return v, fmt.Errorf("%s: provisioning failed", s.what(image, version))
		}
		for _, r := range v.Regions {
			if sameRegion(r.Name, s.Location) && r.State == gallery.ReplicationCompleted {
				return v, nil
			}
		}
		if err := s.c.Sleep(ctx); err != nil {
			return v, err
		}
	}
}

func sourceFor(id string) *armcompute.GalleryArtifactVersionFullSource {
	src := &armcompute.GalleryArtifactVersionFullSource{}
	if strings.Contains(strings.ToLower(id), "/providers/microsoft.compute/virtualmachines/") {
		src.VirtualMachineID = to.Ptr(id)
	} else {
		src.ID = to.Ptr(id)
	}
	return src
}

// Update changes the fields set in u (PATCH).
func (s *Store) Update(ctx context.Context, image, version string, u gallery.Update) (gallery.ImageVersion, error) {
	upd := armcompute.GalleryImageVersionUpdate{Properties: &armcompute.GalleryImageVersionProperties{
		PublishingProfile: &armcompute.GalleryImageVersionPublishingProfile{}}}
	pp := upd.Properties.PublishingProfile
	if u.ExcludeFromLatest != nil {
		pp.ExcludeFromLatest = to.Ptr(*u.ExcludeFromLatest)
	}
	pp.EndOfLifeDate = u.EndOfLife
	for _, r := range u.Regions {
		tr := &armcompute.TargetRegion{Name: to.Ptr(r.Name), RegionalReplicaCount: to.Ptr(int32(max(r.Replicas, 1)))}
		if r.StorageAccountType != "" {
			tr.StorageAccountType = to.Ptr(armcompute.StorageAccountType(r.StorageAccountType))
		}
		pp.TargetRegions = append(pp.TargetRegions, tr)
	}
	if u.Tags != nil {
		upd.Tags = map[string]*string{}
		for k, v := range u.Tags {
			upd.Tags[k] = to.Ptr(v)
		}
	}
	what := s.what(image, version)
	var res armcompute.GalleryImageVersionsClientUpdateResponse
	err := s.c.Do(ctx, what, func(ctx context.Context) error {
		p, err := s.c.GalleryVersion.BeginUpdate(ctx, s.resourceGroup, s.gallery, image, version, upd, nil)
		if err != nil {
			return err
		}
		res, err = az.Poll(ctx, s.c, what, p)
		return err
	})
	if az.IsNotFound(err) {
		return gallery.ImageVersion{}, fmt.Errorf("%s: %w", what, gallery.ErrNotFound)
	}
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	return convert(&res.GalleryImageVersion), nil
}

// Delete removes a version.
func (s *Store) Delete(ctx context.Context, image, version string) error {
	what := "delete " + s.what(image, version)
	var p *runtime.Poller[armcompute.GalleryImageVersionsClientDeleteResponse]
	err := s.c.Do(ctx, what, func(ctx context.Context) error {
		var err error
		p, err = s.c.GalleryVersion.BeginDelete(ctx, s.resourceGroup, s.gallery, image, version, nil)
		return err
	})
	if az.IsNotFound(err) {
		return fmt.Errorf("%s: %w", s.what(image, version), gallery.ErrNotFound)
	}
	if err != nil {
		return err
	}
	_, err = az.Poll(ctx, s.c, what, p)
	if az.IsNotFound(err) {
		return nil
	}
	return err
}

// EnsureDefinition checks that the image definition exists; with create it
// makes a missing one (Linux, generalized, the base's Hyper-V generation).
func (s *Store) EnsureDefinition(ctx context.Context, image, hyperVGen string, create bool, publisher, offer, sku string) (created bool, err error) {
	what := fmt.Sprintf("gallery %s image definition %s", s.gallery, image)
	err = s.c.Do(ctx, what, func(ctx context.Context) error {
		_, err := s.c.GalleryImages.Get(ctx, s.resourceGroup, s.gallery, image, nil)
		return err
	})
	if err == nil {
		return false, nil
	}
	if !az.IsNotFound(err) {
		return false, err
	}
	if !create {
		return false, fmt.Errorf("%s does not exist: create it, or pass --create-definition: %w", what, gallery.ErrNotFound)
	}
	def := armcompute.GalleryImage{Location: to.Ptr(s.Location), Properties: &armcompute.GalleryImageProperties{
		OSType: to.Ptr(armcompute.OperatingSystemTypesLinux), OSState: to.Ptr(armcompute.OperatingSystemStateTypesGeneralized),
		HyperVGeneration: to.Ptr(armcompute.HyperVGeneration(hyperVGen)),
		Identifier:       &armcompute.GalleryImageIdentifier{Publisher: to.Ptr(publisher), Offer: to.Ptr(offer), SKU: to.Ptr(sku)},
	}}
	err = s.c.Do(ctx, what, func(ctx context.Context) error {
		p, err := s.c.GalleryImages.BeginCreateOrUpdate(ctx, s.resourceGroup, s.gallery, image, def, nil)
		if err != nil {
			return err
		}
		_, err = az.Poll(ctx, s.c, what, p)
		return err
	})
	return err == nil, err
}

func convert(v *armcompute.GalleryImageVersion) gallery.ImageVersion {
	iv := gallery.ImageVersion{Name: deref(v.Name), ID: deref(v.ID), Tags: map[string]string{}}
	for k, t := range v.Tags {
		if t != nil {
			iv.Tags[k] = *t
		}
	}
	iv.RecipeHash = iv.Tags[gallery.TagRecipeHash]
	p := v.Properties
	if p == nil {
		return iv
	}
	if p.ProvisioningState != nil {
		iv.ProvisioningState = string(*p.ProvisioningState)
	}
	if pp := p.PublishingProfile; pp != nil {
		if pp.PublishedDate != nil {
			iv.PublishedAt = *pp.PublishedDate
		}
		iv.ExcludeFromLatest = pp.ExcludeFromLatest != nil && *pp.ExcludeFromLatest
		iv.EndOfLife = pp.EndOfLifeDate
		for _, r := range pp.TargetRegions {
			if r == nil || r.Name == nil {
				continue
			}
			rs := gallery.RegionStatus{Name: *r.Name, Replicas: 1, State: gallery.ReplicationUnknown}
			if r.RegionalReplicaCount != nil {
				rs.Replicas = int(*r.RegionalReplicaCount)
			}
			iv.Regions = append(iv.Regions, rs)
		}
	}
	if rs := p.ReplicationStatus; rs != nil {
		for _, sum := range rs.Summary {
			if sum == nil || sum.Region == nil {
				continue
			}
			for i := range iv.Regions {
				if sameRegion(iv.Regions[i].Name, *sum.Region) {
					if sum.State != nil {
						iv.Regions[i].State = string(*sum.State)
					}
					if sum.Progress != nil {
						iv.Regions[i].Progress = int(*sum.Progress)
					}
				}
			}
		}
	}
	return iv
}

// sameRegion compares "East US" and "eastus".
func sameRegion(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }
	return norm(a) == norm(b)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
