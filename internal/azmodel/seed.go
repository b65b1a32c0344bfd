package azmodel

import (
	"fmt"
	"sort"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// GallerySeed describes a resource group, gallery and image definition (and
// optionally versions) for a test to start from. Empty fields take defaults.
type GallerySeed struct {
	SubscriptionID   string            `json:"subscriptionId,omitempty"` // default DefaultSubscriptionID
	ResourceGroup    string            `json:"resourceGroup"`
	Location         string            `json:"location,omitempty"` // default Options.Location
	Gallery          string            `json:"gallery"`
	Image            string            `json:"image"`
	Publisher        string            `json:"publisher,omitempty"`        // default "imagebake"
	Offer            string            `json:"offer,omitempty"`            // default Image
	SKU              string            `json:"sku,omitempty"`              // default Image
	OSType           string            `json:"osType,omitempty"`           // default "Linux"
	OSState          string            `json:"osState,omitempty"`          // default "Generalized"
	HyperVGeneration string            `json:"hyperVGeneration,omitempty"` // default "V1", Azure's default
	Tags             map[string]string `json:"tags,omitempty"`             // on the gallery and definition
	Versions         []VersionSeed     `json:"versions,omitempty"`
}

// VersionSeed is an existing gallery image version.
type VersionSeed struct {
	Name              string            `json:"name"`
	ExcludeFromLatest bool              `json:"excludeFromLatest,omitempty"`
	PublishedDate     time.Time         `json:"publishedDate,omitempty"` // default now
	EndOfLifeDate     *time.Time        `json:"endOfLifeDate,omitempty"`
	Regions           []string          `json:"regions,omitempty"` // default the gallery's location
	Tags              map[string]string `json:"tags,omitempty"`
	Failed            bool              `json:"failed,omitempty"` // provisioningState Failed
}

// SeedGallery creates (or completes) the resource group, gallery, image
// definition and versions of s, all Succeeded.
func (m *Model) SeedGallery(s GallerySeed) error {
	if s.ResourceGroup == "" || s.Gallery == "" || s.Image == "" {
		return fmt.Errorf("seed gallery: resource group, gallery and image are required")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.SubscriptionID == "" {
		s.SubscriptionID = DefaultSubscriptionID
	}
	if s.Location == "" {
		s.Location = m.opts.Location
	}
	loc := normLoc(s.Location)
	sub, rg := s.SubscriptionID, s.ResourceGroup
	if m.get(rgID(sub, rg)) == nil {
		m.put(&res{id: rgID(sub, rg), typ: TypeResourceGroup, sub: sub, rg: rg, name: rg, created: m.now(), obj: &armresources.ResourceGroup{
			ID: ptr(rgID(sub, rg)), Name: ptr(rg), Type: ptr(TypeResourceGroup), Location: ptr(loc),
			Properties: &armresources.ResourceGroupProperties{ProvisioningState: ptr(statusSucceeded)},
		}})
	}
	gid := galleryID(sub, rg, s.Gallery)
	if m.get(gid) == nil {
		obj := newGalleryObj(sub, rg, s.Gallery, loc, &armcompute.Gallery{Tags: ptrTags(s.Tags)})
		m.put(&res{id: gid, typ: TypeGallery, sub: sub, rg: rg, name: s.Gallery, created: m.now(), obj: obj})
	}
	iid := galleryImageID(sub, rg, s.Gallery, s.Image)
	if m.get(iid) == nil {
		def := func(v, d string) string {
			if v == "" {
				return d
			}
			return v
		}
		in := &armcompute.GalleryImage{Tags: ptrTags(s.Tags), Properties: &armcompute.GalleryImageProperties{
			OSType:           ptr(armcompute.OperatingSystemTypes(def(s.OSType, "Linux"))),
			OSState:          ptr(armcompute.OperatingSystemStateTypes(def(s.OSState, "Generalized"))),
			HyperVGeneration: ptr(armcompute.HyperVGeneration(def(s.HyperVGeneration, "V1"))),
			Identifier: &armcompute.GalleryImageIdentifier{
				Publisher: ptr(def(s.Publisher, "imagebake")), Offer: ptr(def(s.Offer, s.Image)), SKU: ptr(def(s.SKU, s.Image)),
			},
		}}
		obj := newGalleryImageObj(iid, s.Image, loc, in)
		m.put(&res{id: iid, typ: TypeGalleryImage, sub: sub, rg: rg, name: s.Image, parent: lowerID(gid), created: m.now(), obj: obj})
	}
	for _, v := range s.Versions {
		if err := m.seedVersionLocked(sub, rg, s.Gallery, s.Image, v); err != nil {
			return err
		}
	}
	return nil
}

// SeedVersion adds one existing version to a seeded image definition.
func (m *Model) SeedVersion(subscriptionID, resourceGroup, gallery, image string, v VersionSeed) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if subscriptionID == "" {
		subscriptionID = DefaultSubscriptionID
	}
	return m.seedVersionLocked(subscriptionID, resourceGroup, gallery, image, v)
}

func (m *Model) seedVersionLocked(sub, rg, gallery, image string, v VersionSeed) error {
	iid := galleryImageID(sub, rg, gallery, image)
	img := m.get(iid)
	if img == nil {
		return fmt.Errorf("seed version %s: image definition %s not found", v.Name, iid)
	}
	if !validVersionName(v.Name) {
		return fmt.Errorf("seed version %s: name is not Major.Minor.Patch", v.Name)
	}
	id := iid + "/versions/" + v.Name
	if m.get(id) != nil {
		return fmt.Errorf("seed version %s: already exists", v.Name)
	}
	loc := locationOf(img.obj)
	published := v.PublishedDate
	if published.IsZero() {
		published = m.now().UTC()
	}
	regions := v.Regions
	if len(regions) == 0 {
		regions = []string{loc}
	}
	var trs []*armcompute.TargetRegion
	for _, r := range regions {
		trs = append(trs, &armcompute.TargetRegion{Name: ptr(r)})
	}
	state := statusSucceeded
	if v.Failed {
		state = statusFailed
	}
	obj := &armcompute.GalleryImageVersion{
		ID: ptr(id), Name: ptr(v.Name), Type: ptr(TypeGalleryImageVersion), Location: ptr(loc), Tags: ptrTags(v.Tags),
		Properties: &armcompute.GalleryImageVersionProperties{
			PublishingProfile: &armcompute.GalleryImageVersionPublishingProfile{
				TargetRegions: trs, ExcludeFromLatest: ptr(v.ExcludeFromLatest), EndOfLifeDate: v.EndOfLifeDate, PublishedDate: ptr(published),
			},
			StorageProfile: &armcompute.GalleryImageVersionStorageProfile{
				Source:      &armcompute.GalleryArtifactVersionFullSource{ID: ptr(provID(sub, rg, computeProvider, "images/seed-"+image+"-"+v.Name))},
				OSDiskImage: &armcompute.GalleryOSDiskImage{SizeInGB: ptr(int32(30)), HostCaching: ptr(armcompute.HostCachingReadWrite)},
			},
			ProvisioningState: galleryState(state),
		},
	}
	fillVersionDefaults(obj)
	m.put(&res{id: id, typ: TypeGalleryImageVersion, sub: sub, rg: rg, name: v.Name, parent: lowerID(iid), created: m.now(), obj: obj, ver: &verState{failed: v.Failed}})
	return nil
}

// GalleryVersion is a gallery image version as tests inspect it.
type GalleryVersion struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	ProvisioningState string            `json:"provisioningState"`
	ExcludeFromLatest bool              `json:"excludeFromLatest"`
	Regions           []string          `json:"regions"`
	Source            string            `json:"source"`
	PublishedDate     time.Time         `json:"publishedDate"`
	EndOfLifeDate     *time.Time        `json:"endOfLifeDate,omitempty"`
	Tags              map[string]string `json:"tags,omitempty"`
}

// GalleryVersions lists the versions of an image definition (by its ID),
// sorted by version number.
func (m *Model) GalleryVersions(imageID string) []GalleryVersion {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []GalleryVersion
	for _, r := range m.children(imageID) {
		obj := r.obj.(*armcompute.GalleryImageVersion)
		pp := obj.Properties.PublishingProfile
		v := GalleryVersion{ID: r.id, Name: r.name, ProvisioningState: provisioningStateOf(obj), ExcludeFromLatest: boolv(pp.ExcludeFromLatest),
			EndOfLifeDate: pp.EndOfLifeDate, Tags: flatTags(obj.Tags)}
		if src := obj.Properties.StorageProfile.Source; src != nil {
			v.Source = firstNonEmpty(str(src.VirtualMachineID), firstNonEmpty(str(src.ID), str(src.CommunityGalleryImageID)))
		}
		if pp.PublishedDate != nil {
			v.PublishedDate = *pp.PublishedDate
		}
		for _, tr := range pp.TargetRegions {
			v.Regions = append(v.Regions, normLoc(str(tr.Name))) // Azure answers display names ("East US")
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return compareDotted(out[i].Name, out[j].Name) < 0 })
	return out
}

// GalleryImageID returns the ID of an image definition.
func GalleryImageID(subscriptionID, resourceGroup, gallery, image string) string {
	if subscriptionID == "" {
		subscriptionID = DefaultSubscriptionID
	}
	return galleryImageID(subscriptionID, resourceGroup, gallery, image)
}
