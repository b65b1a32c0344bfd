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

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/internal/contract"
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
	// OnAccepted, when set, is told the version's name as soon as Create
	// knows the version is this build's (Azure accepted its PUT, or it
	// found its own earlier attempt), before waiting: a bake registers the
	// cleanup of a half-created version there.
	OnAccepted func(version string)
	// OnReleased, when set, is told a version OnAccepted named that turned
	// out not to be this build's after all (another writer re-tagged or
	// re-pointed it while it was created): the cleanup registered for it
	// must be dropped, since imagebake never deletes what is not its own.
	OnReleased func(version string)
	// Progress, when set, hears each region's replication state while
	// Create waits.
	Progress func(regions []gallery.RegionStatus)
}

// New returns the store for gallery in resourceGroup.
func New(c *az.Clients, resourceGroup, galleryName, location string) *Store {
	return &Store{c: c, resourceGroup: resourceGroup, gallery: galleryName, Location: location}
}

func (s *Store) image(image string) az.GalleryImage {
	return az.GalleryImage{ResourceGroup: s.resourceGroup, Gallery: s.gallery, Image: image}
}

func (s *Store) what(image, version string) string {
	return fmt.Sprintf("gallery %s image %s version %s", s.gallery, image, version)
}

// List returns every version of image (all pages), sorted.
func (s *Store) List(ctx context.Context, image string) ([]gallery.ImageVersion, error) {
	vs, err := s.c.ListGalleryVersions(ctx, s.image(image))
	if az.IsNotFound(err) {
		return nil, fmt.Errorf("gallery %s image %s: %w (create the image definition, or bake with --create-definition)", s.gallery, image, gallery.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	out := make([]gallery.ImageVersion, 0, len(vs))
	for _, v := range vs {
		if v != nil {
			out = append(out, convert(v))
		}
	}
	gallery.Sort(out)
	return out, nil
}

// Get returns one version with its replication status.
func (s *Store) Get(ctx context.Context, image, version string) (gallery.ImageVersion, error) {
	v, err := s.c.GetGalleryVersion(ctx, s.image(image), version, true)
	if az.IsNotFound(err) {
		return gallery.ImageVersion{}, fmt.Errorf("%s: %w", s.what(image, version), gallery.ErrNotFound)
	}
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	return convert(&v), nil
}

// Create creates the version from req.Source (a VM, managed image or
// version ID), create-only against Azure's real semantics: Azure has no
// create-only PUT for versions (a PUT on an existing one updates it, and
// with another source is refused 409 PropertyChangeNotAllowed). So Create
// reads before it writes, and an existing version is ErrVersionExists; a
// conflict on the PUT is ErrVersionExists when the version then exists;
// and after the create it confirms the version is this build's (its
// imagebake.build-id tag, when req has one, and its source), returning
// ErrVersionExists when it is not. A version that is this build's own
// earlier attempt (same build ID and source) is adopted, not duplicated.
// A version that is not this build's is never modified or deleted; a
// failed create of this build's is deleted, so no Failed version remains.
func (s *Store) Create(ctx context.Context, image string, req gallery.CreateRequest) (gallery.ImageVersion, error) {
	if req.Version == "" {
		return gallery.ImageVersion{}, errors.New("gallery version: no name given")
	}
	g, what := s.image(image), s.what(image, req.Version)

	// Read before create: a PUT on an existing version would update it.
	existing, err := s.c.GetGalleryVersion(ctx, g, req.Version, false)
	switch {
	case err == nil:
		if !ours(&existing, req) {
			return gallery.ImageVersion{}, taken(what, &existing)
		}
		return s.adopt(ctx, image, req)
	case !az.IsNotFound(err):
		return gallery.ImageVersion{}, err
	}

	op, err := s.c.BeginGalleryVersion(ctx, g, req.Version, s.body(req))
	if az.IsStatus(err, http.StatusConflict) || az.IsStatus(err, http.StatusPreconditionFailed) {
		// Taken between the read and the PUT (a concurrent create is in
		// progress, or it exists with another source) — or, when it is
		// ours, our own PUT went through and the SDK's retry of it did
		// not. Any other conflict is an error.
		v, gerr := s.c.GetGalleryVersion(ctx, g, req.Version, false)
		switch {
		case gerr == nil && ours(&v, req):
			return s.adopt(ctx, image, req)
		case gerr == nil:
			return gallery.ImageVersion{}, taken(what, &v)
		}
		return gallery.ImageVersion{}, err
	}
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	// A 200 here means the PUT updated a version that appeared after the
	// read: with the same source (another source is refused), so it is
	// this build's own retried PUT; the confirmation below checks it.
	if s.OnAccepted != nil {
		s.OnAccepted(req.Version)
	}
	var v armcompute.GalleryImageVersion
	if s.NoWait {
		// Not waiting for every region, but for the copy in the gallery's
		// own region: until it exists the source VM must not be deleted.
		v, err = s.waitVersion(ctx, image, req.Version, true)
	} else {
		_, err = op.Wait(ctx, s.progress(image, req.Version))
		if err == nil {
			v, err = s.c.GetGalleryVersion(ctx, g, req.Version, false)
		}
	}
	if err != nil {
		return gallery.ImageVersion{}, s.failed(ctx, image, req, err)
	}
	if !ours(&v, req) {
		if s.OnReleased != nil {
			s.OnReleased(req.Version)
		}
		return gallery.ImageVersion{}, taken(what, &v)
	}
	return convert(&v), nil
}

// adopt waits for this build's own earlier attempt at the version instead
// of writing it again.
func (s *Store) adopt(ctx context.Context, image string, req gallery.CreateRequest) (gallery.ImageVersion, error) {
	if s.OnAccepted != nil {
		s.OnAccepted(req.Version)
	}
	v, err := s.waitVersion(ctx, image, req.Version, s.NoWait)
	if err != nil {
		return gallery.ImageVersion{}, s.failed(ctx, image, req, err)
	}
	return convert(&v), nil
}

// failed handles a create that did not succeed: a Failed version would
// block the name and confuse "latest", so it is removed — but only when it
// is this build's.
func (s *Store) failed(ctx context.Context, image string, req gallery.CreateRequest, err error) error {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	v, gerr := s.c.GetGalleryVersion(dctx, s.image(image), req.Version, false)
	if gerr != nil || !ours(&v, req) {
		return err
	}
	if derr := s.Delete(dctx, image, req.Version); derr != nil && !errors.Is(derr, gallery.ErrNotFound) {
		return fmt.Errorf("%w (and deleting the failed version: %v)", err, derr)
	}
	return err
}

// taken is ErrVersionExists for a version that is not this build's.
func taken(what string, v *armcompute.GalleryImageVersion) error {
	by := ""
	if id := deref(v.Tags[contract.TagBuildID]); id != "" {
		by = " by build " + id
	}
	return fmt.Errorf("%s: %w%s (imagebake never overwrites a version)", what, gallery.ErrVersionExists, by)
}

// ours reports whether v is the version req describes: the same source
// and, when req names its build, the same imagebake.build-id tag.
func ours(v *armcompute.GalleryImageVersion, req gallery.CreateRequest) bool {
	if id := req.Tags[contract.TagBuildID]; id != "" && deref(v.Tags[contract.TagBuildID]) != id {
		return false
	}
	return sameSource(v, req.Source)
}

func sameSource(v *armcompute.GalleryImageVersion, source string) bool {
	if v.Properties == nil || v.Properties.StorageProfile == nil || v.Properties.StorageProfile.Source == nil || source == "" {
		return false
	}
	src := v.Properties.StorageProfile.Source
	for _, id := range []*string{src.ID, src.VirtualMachineID} {
		if id != nil && strings.EqualFold(strings.TrimSuffix(*id, "/"), strings.TrimSuffix(source, "/")) {
			return true
		}
	}
	return false
}

func (s *Store) body(req gallery.CreateRequest) armcompute.GalleryImageVersion {
	tags := map[string]*string{}
	for k, v := range req.Tags {
		tags[k] = to.Ptr(v)
	}
	if req.RecipeHash != "" {
		tags[contract.TagRecipeHash] = to.Ptr(req.RecipeHash)
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
	return armcompute.GalleryImageVersion{
		Location: to.Ptr(s.Location), Tags: tags,
		Properties: &armcompute.GalleryImageVersionProperties{
			PublishingProfile: &armcompute.GalleryImageVersionPublishingProfile{
				ExcludeFromLatest: to.Ptr(req.ExcludeFromLatest), TargetRegions: regions, StorageAccountType: to.Ptr(storage),
				EndOfLifeDate: req.EndOfLife,
			},
			StorageProfile: &armcompute.GalleryImageVersionStorageProfile{Source: sourceFor(req.Source)},
		},
	}
}

// progressEvery: a progress read every sixth poll (30 s at the default
// interval) keeps the reads per bake near what polling alone costs.
const progressEvery = 6

// progress reads replication state between polls, when someone listens.
// A failed read only costs a progress line.
func (s *Store) progress(image, version string) func(ctx context.Context, n int) {
	if s.Progress == nil {
		return nil
	}
	return func(ctx context.Context, n int) {
		if n%progressEvery != 0 {
			return
		}
		if v, err := s.Get(ctx, image, version); err == nil {
			s.Progress(v.Regions)
		}
	}
}

// waitVersion polls the version until it succeeded (or, with homeOnly,
// until its replica in the gallery's region is complete), or failed.
func (s *Store) waitVersion(ctx context.Context, image, version string, homeOnly bool) (armcompute.GalleryImageVersion, error) {
	g := s.image(image)
	for {
		v, err := s.c.GetGalleryVersion(ctx, g, version, true)
		if err != nil {
			return v, err
		}
		iv := convert(&v)
		switch iv.ProvisioningState {
		case gallery.StateSucceeded:
			return v, nil
		case gallery.StateFailed:
			return v, fmt.Errorf("%s: provisioning failed", s.what(image, version))
		}
		if s.Progress != nil {
			s.Progress(iv.Regions)
		}
		if homeOnly {
			for _, r := range iv.Regions {
				if sameRegion(r.Name, s.Location) && r.State == gallery.ReplicationCompleted {
					return v, nil
				}
			}
		}
		if err := s.c.Sleep(ctx); err != nil {
			return v, fmt.Errorf("%s: %w", s.what(image, version), err)
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
	v, err := s.c.UpdateGalleryVersion(ctx, s.image(image), version, upd)
	if az.IsNotFound(err) {
		return gallery.ImageVersion{}, fmt.Errorf("%s: %w", s.what(image, version), gallery.ErrNotFound)
	}
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	return convert(&v), nil
}

// Delete removes a version.
func (s *Store) Delete(ctx context.Context, image, version string) error {
	err := s.c.DeleteGalleryVersion(ctx, s.image(image), version)
	if az.IsNotFound(err) {
		return fmt.Errorf("%s: %w", s.what(image, version), gallery.ErrNotFound)
	}
	return err
}

// Definition is an image definition's identity as far as publishing cares.
type Definition struct {
	// SecurityType is the definition's SecurityType feature ("" when it
	// has none: Standard).
	SecurityType string
	// HyperVGeneration is "V1" or "V2".
	HyperVGeneration string
}

// Definition reads the image definition (ErrNotFound if absent): verify
// boots a version with az.BootSecurity(d.SecurityType).
func (s *Store) Definition(ctx context.Context, image string) (Definition, error) {
	def, err := s.c.GetGalleryImage(ctx, s.image(image))
	if az.IsNotFound(err) {
		return Definition{}, fmt.Errorf("gallery %s image definition %s: %w", s.gallery, image, gallery.ErrNotFound)
	}
	if err != nil {
		return Definition{}, err
	}
	st, gen := az.DefinitionSecurity(def)
	return Definition{SecurityType: st, HyperVGeneration: gen}, nil
}

// EnsureDefinition checks that the image definition exists and can take a
// Standard build of the base's Hyper-V generation; with create it makes a
// missing one. It is EnsureDefinitionFor with a Standard build.
func (s *Store) EnsureDefinition(ctx context.Context, image, hyperVGen string, create bool, publisher, offer, sku string) (created bool, err error) {
	return s.EnsureDefinitionFor(ctx, image, az.Security{Type: az.SecurityStandard, HyperVGeneration: hyperVGen}, create, publisher, offer, sku)
}

// EnsureDefinitionFor checks that the image definition exists and matches
// the build's security (its Hyper-V generation and security type, see
// az.Security.CheckDefinition); with create it makes a missing one that
// matches (Linux, generalized, the base's generation, sec's security type).
// Call it before anything is created.
func (s *Store) EnsureDefinitionFor(ctx context.Context, image string, sec az.Security, create bool, publisher, offer, sku string) (created bool, err error) {
	what := fmt.Sprintf("gallery %s image definition %s", s.gallery, image)
	g := s.image(image)
	def, err := s.c.GetGalleryImage(ctx, g)
	if err == nil {
		st, gen := az.DefinitionSecurity(def)
		return false, sec.CheckDefinition(what, st, gen)
	}
	if !az.IsNotFound(err) {
		return false, err
	}
	if !create {
		return false, fmt.Errorf("%s does not exist: create it, or pass --create-definition: %w", what, gallery.ErrNotFound)
	}
	def = armcompute.GalleryImage{Location: to.Ptr(s.Location), Properties: &armcompute.GalleryImageProperties{
		OSType: to.Ptr(armcompute.OperatingSystemTypesLinux), OSState: to.Ptr(armcompute.OperatingSystemStateTypesGeneralized),
		HyperVGeneration: to.Ptr(armcompute.HyperVGeneration(sec.HyperVGeneration)),
		Features:         sec.DefinitionFeatures(),
		Identifier:       &armcompute.GalleryImageIdentifier{Publisher: to.Ptr(publisher), Offer: to.Ptr(offer), SKU: to.Ptr(sku)},
	}}
	if _, err := s.c.CreateGalleryImage(ctx, g, def); err != nil {
		return false, err
	}
	return true, nil
}

func convert(v *armcompute.GalleryImageVersion) gallery.ImageVersion {
	iv := gallery.ImageVersion{Name: deref(v.Name), ID: deref(v.ID), Tags: map[string]string{}}
	for k, t := range v.Tags {
		if t != nil {
			iv.Tags[k] = *t
		}
	}
	iv.RecipeHash = iv.Tags[contract.TagRecipeHash]
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
			rs := gallery.RegionStatus{Name: regionName(*r.Name), Replicas: 1, State: gallery.ReplicationUnknown}
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

// regionName turns the display name Azure answers with ("East US 2") into
// the region name recipes, flags and every other API use ("eastus2"), so
// that listings, comparisons and promote's changes speak one spelling.
func regionName(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }

// sameRegion compares "East US" and "eastus".
func sameRegion(a, b string) bool { return regionName(a) == regionName(b) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
