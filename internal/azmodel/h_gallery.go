package azmodel

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
)

func galleryID(sub, rg, gallery string) string {
	return provID(sub, rg, computeProvider, "galleries/"+gallery)
}

func galleryImageID(sub, rg, gallery, image string) string {
	return galleryID(sub, rg, gallery) + "/images/" + image
}

func galleryState(s string) *armcompute.GalleryProvisioningState {
	return ptr(armcompute.GalleryProvisioningState(s))
}

var galleryNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.]{0,78}[A-Za-z0-9_]$|^[A-Za-z0-9_]$`)

func galleryBusy(name string) *reply {
	return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf("Another operation is in progress on '%s'. Please retry after it completes.", name)) // unverified wording
}

// galleryWrite starts a gallery write (PUT) operation and answers 201 for a
// create and 200 for an update, both with Azure-AsyncOperation.
func (m *Model) galleryWrite(c *call, r *res, kind OpKind, created bool, set func(string), render func() any) *reply {
	state := "Updating"
	status := http.StatusOK
	if created {
		state, status = "Creating", http.StatusCreated
	}
	set(state)
	op := m.startOp(c, kind, r, styleGallery, locationOf(r.obj))
	op.onSuccess = func() { set(statusSucceeded) }
	op.onFailure = func() { set(statusFailed) }
	return m.lroHeaders(c, jsonReply(status, render()), op, false)
}

func (m *Model) galleryDeleteOp(c *call, r *res, kind OpKind, set func(string)) *reply {
	if r.op != nil && r.op.kind == kind {
		return m.lroHeaders(c, &reply{status: http.StatusAccepted}, r.op, true)
	}
	m.preemptLocked(r.op)
	prev := provisioningStateOf(r.obj)
	set("Deleting")
	op := m.startOp(c, kind, r, styleGallery, locationOf(r.obj))
	op.onSuccess = func() { m.removeLocked(r) }
	op.onFailure = func() { set(prev) }
	return m.lroHeaders(c, &reply{status: http.StatusAccepted}, op, true)
}

func cannotDeleteNested() *reply {
	return errReply(http.StatusConflict, "CannotDeleteResource", "Can not delete resource before nested resources are deleted.")
}

// ---- galleries ----

func newGalleryObj(sub, rg, name, loc string, in *armcompute.Gallery) *armcompute.Gallery {
	obj := in
	if obj == nil {
		obj = &armcompute.Gallery{}
	}
	obj.ID, obj.Name, obj.Type, obj.Location = ptr(galleryID(sub, rg, name)), ptr(name), ptr(TypeGallery), ptr(normLoc(loc))
	if obj.Properties == nil {
		obj.Properties = &armcompute.GalleryProperties{}
	}
	obj.Properties.Identifier = &armcompute.GalleryIdentifier{UniqueName: ptr(sub + "-" + strings.ToUpper(name))}
	obj.Properties.ProvisioningState = galleryState(statusSucceeded)
	return obj
}

func (m *Model) galleryPut(c *call) *reply {
	if _, rep := m.rgLocked(c, true); rep != nil {
		return rep
	}
	var in armcompute.Gallery
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	name := c.p[2]
	if !galleryNameRE.MatchString(name) {
		return invalidParam(fmt.Sprintf("The gallery name '%s' is invalid. The name can contain only alphanumerics, underscores and periods; it cannot begin or end with a period and can be at most 80 characters long.", name), "galleryName") // unverified wording
	}
	if str(in.Location) == "" {
		return errReply(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	id := galleryID(c.p[0], c.p[1], name)
	r := m.get(id)
	if r != nil {
		if r.op != nil {
			return galleryBusy(name)
		}
		obj := r.obj.(*armcompute.Gallery)
		if in.Tags != nil {
			obj.Tags = in.Tags
		}
		if in.Properties != nil && in.Properties.Description != nil {
			obj.Properties.Description = in.Properties.Description
		}
		return m.galleryWrite(c, r, OpGalleryWrite, false, func(s string) { obj.Properties.ProvisioningState = galleryState(s) }, func() any { return obj })
	}
	obj := newGalleryObj(c.p[0], c.p[1], name, str(in.Location), &in)
	r = &res{id: id, typ: TypeGallery, sub: c.p[0], rg: c.p[1], name: name, created: m.now(), obj: obj}
	m.put(r)
	return m.galleryWrite(c, r, OpGalleryWrite, true, func(s string) { obj.Properties.ProvisioningState = galleryState(s) }, func() any { return obj })
}

func (m *Model) galleryGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(galleryID(c.p[0], c.p[1], c.p[2]))
	if r == nil {
		return notFound("Microsoft.Compute/galleries/"+c.p[2], c.p[1])
	}
	m.touchLocked(r)
	if m.get(r.id) == nil {
		return notFound("Microsoft.Compute/galleries/"+c.p[2], c.p[1])
	}
	return jsonReply(http.StatusOK, r.obj)
}

func (m *Model) galleryList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	var items []any
	for _, r := range m.ofType(c.p[0], c.p[1], TypeGallery) {
		items = append(items, r.obj)
	}
	return m.pageReply(c, items)
}

func (m *Model) galleryDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(galleryID(c.p[0], c.p[1], c.p[2]))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	if len(m.children(r.id)) > 0 {
		return cannotDeleteNested()
	}
	obj := r.obj.(*armcompute.Gallery)
	return m.galleryDeleteOp(c, r, OpGalleryDelete, func(s string) { obj.Properties.ProvisioningState = galleryState(s) })
}

// ---- gallery image definitions ----

func newGalleryImageObj(id, name, loc string, in *armcompute.GalleryImage) *armcompute.GalleryImage {
	in.ID, in.Name, in.Type, in.Location = ptr(id), ptr(name), ptr(TypeGalleryImage), ptr(normLoc(loc))
	p := in.Properties
	if p.HyperVGeneration == nil {
		p.HyperVGeneration = ptr(armcompute.HyperVGenerationV1)
	}
	if p.Architecture == nil {
		p.Architecture = ptr(armcompute.ArchitectureX64)
	}
	p.ProvisioningState = galleryState(statusSucceeded)
	return in
}

func (m *Model) gimgPut(c *call) *reply {
	if _, rep := m.rgLocked(c, true); rep != nil {
		return rep
	}
	gal := m.get(galleryID(c.p[0], c.p[1], c.p[2]))
	if gal == nil {
		return parentNotFound("write", "galleries/images", galleryID(c.p[0], c.p[1], c.p[2]))
	}
	var in armcompute.GalleryImage
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	if str(in.Location) == "" {
		return errReply(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	p := in.Properties
	switch {
	case p == nil:
		return invalidParam("Required parameter 'galleryImage.properties' is missing (null).", "galleryImage.properties")
	case p.OSType == nil:
		return invalidParam("Required parameter 'galleryImage.properties.osType' is missing (null).", "galleryImage.properties.osType")
	case p.OSState == nil:
		return invalidParam("Required parameter 'galleryImage.properties.osState' is missing (null).", "galleryImage.properties.osState")
	case p.Identifier == nil || str(p.Identifier.Publisher) == "" || str(p.Identifier.Offer) == "" || str(p.Identifier.SKU) == "":
		return invalidParam("Required parameter 'galleryImage.properties.identifier' is missing (null).", "galleryImage.properties.identifier")
	}
	id := galleryImageID(c.p[0], c.p[1], c.p[2], c.p[3])
	if r := m.get(id); r != nil {
		if r.op != nil {
			return galleryBusy(c.p[3])
		}
		old := r.obj.(*armcompute.GalleryImage)
		op := old.Properties
		hv := armcompute.HyperVGenerationV1
		if p.HyperVGeneration != nil {
			hv = *p.HyperVGeneration
		}
		for _, ch := range []struct{ prop, old, new string }{
			{"osType", string(*op.OSType), string(*p.OSType)},
			{"osState", string(*op.OSState), string(*p.OSState)},
			{"hyperVGeneration", string(*op.HyperVGeneration), string(hv)},
			{"identifier", strings.ToLower(str(op.Identifier.Publisher) + ":" + str(op.Identifier.Offer) + ":" + str(op.Identifier.SKU)),
				strings.ToLower(str(p.Identifier.Publisher) + ":" + str(p.Identifier.Offer) + ":" + str(p.Identifier.SKU))},
		} {
			if !strings.EqualFold(ch.old, ch.new) {
				return errTarget(http.StatusConflict, "PropertyChangeNotAllowed", fmt.Sprintf("Changing property 'galleryImage.properties.%s' is not allowed.", ch.prop), "galleryImage.properties."+ch.prop)
			}
		}
		obj := newGalleryImageObj(id, c.p[3], str(old.Location), &in)
		r.obj = obj
		return m.galleryWrite(c, r, OpGalleryImageWrite, false, func(s string) { obj.Properties.ProvisioningState = galleryState(s) }, func() any { return obj })
	}
	obj := newGalleryImageObj(id, c.p[3], str(in.Location), &in)
	r := &res{id: id, typ: TypeGalleryImage, sub: c.p[0], rg: c.p[1], name: c.p[3], parent: lowerID(gal.id), created: m.now(), obj: obj}
	m.put(r)
	return m.galleryWrite(c, r, OpGalleryImageWrite, true, func(s string) { obj.Properties.ProvisioningState = galleryState(s) }, func() any { return obj })
}

func gimgNotFound(c *call) *reply {
	return notFound("Microsoft.Compute/galleries/"+c.p[2]+"/images/"+c.p[3], c.p[1])
}

func (m *Model) gimgGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(galleryImageID(c.p[0], c.p[1], c.p[2], c.p[3]))
	if r == nil {
		return gimgNotFound(c)
	}
	m.touchLocked(r)
	if m.get(r.id) == nil {
		return gimgNotFound(c)
	}
	return jsonReply(http.StatusOK, r.obj)
}

func (m *Model) gimgList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	gal := m.get(galleryID(c.p[0], c.p[1], c.p[2]))
	if gal == nil {
		return notFound("Microsoft.Compute/galleries/"+c.p[2], c.p[1])
	}
	var items []any
	for _, r := range m.children(gal.id) {
		items = append(items, r.obj)
	}
	return m.pageReply(c, items)
}

func (m *Model) gimgDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(galleryImageID(c.p[0], c.p[1], c.p[2], c.p[3]))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	if len(m.children(r.id)) > 0 {
		return cannotDeleteNested()
	}
	obj := r.obj.(*armcompute.GalleryImage)
	return m.galleryDeleteOp(c, r, OpGalleryImageDelete, func(s string) { obj.Properties.ProvisioningState = galleryState(s) })
}

// ---- gallery image versions ----

var versionNameRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`)

func validVersionName(name string) bool {
	mm := versionNameRE.FindStringSubmatch(name)
	if mm == nil {
		return false
	}
	for _, p := range mm[1:] {
		if _, err := strconv.ParseInt(p, 10, 32); err != nil {
			return false
		}
	}
	return true
}

func versionID(c *call) string {
	return galleryImageID(c.p[0], c.p[1], c.p[2], c.p[3]) + "/versions/" + c.p[4]
}

func verNotFound(c *call) *reply {
	return notFound("Microsoft.Compute/galleries/"+c.p[2]+"/images/"+c.p[3]+"/versions/"+c.p[4], c.p[1])
}

func sourceKey(sp *armcompute.GalleryImageVersionStorageProfile) string {
	if sp == nil || sp.Source == nil {
		return ""
	}
	return strings.ToLower(str(sp.Source.ID) + "|" + str(sp.Source.VirtualMachineID) + "|" + str(sp.Source.CommunityGalleryImageID))
}

// fillVersionDefaults adds the values Azure fills in a version's publishing
// profile: replicaCount 1, storageAccountType Standard_LRS, excludeFromLatest
// false, and per target region the same defaults.
func fillVersionDefaults(obj *armcompute.GalleryImageVersion) {
	p := obj.Properties
	if p.PublishingProfile == nil {
		p.PublishingProfile = &armcompute.GalleryImageVersionPublishingProfile{}
	}
	pp := p.PublishingProfile
	if pp.ReplicaCount == nil {
		pp.ReplicaCount = ptr(int32(1))
	}
	if pp.StorageAccountType == nil {
		pp.StorageAccountType = ptr(armcompute.StorageAccountTypeStandardLRS)
	}
	if pp.ExcludeFromLatest == nil {
		pp.ExcludeFromLatest = ptr(false)
	}
	if len(pp.TargetRegions) == 0 {
		pp.TargetRegions = []*armcompute.TargetRegion{{Name: obj.Location}}
	}
	for _, tr := range pp.TargetRegions {
		tr.Name = ptr(regionDisplayName(str(tr.Name)))
		if tr.RegionalReplicaCount == nil {
			tr.RegionalReplicaCount = pp.ReplicaCount
		}
		if tr.StorageAccountType == nil {
			tr.StorageAccountType = pp.StorageAccountType
		}
		if tr.ExcludeFromLatest == nil {
			tr.ExcludeFromLatest = ptr(false)
		}
	}
	if p.SafetyProfile == nil {
		p.SafetyProfile = &armcompute.GalleryImageVersionSafetyProfile{}
	}
	if p.SafetyProfile.AllowDeletionOfReplicatedLocations == nil {
		p.SafetyProfile.AllowDeletionOfReplicatedLocations = ptr(false) // as recorded
	}
	if p.SafetyProfile.BlockDeletionBeforeEndOfLife == nil {
		p.SafetyProfile.BlockDeletionBeforeEndOfLife = ptr(false)
	}
	p.SafetyProfile.ReportedForPolicyViolation = ptr(false)
	if p.StorageProfile.DataDiskImages == nil {
		p.StorageProfile.DataDiskImages = []*armcompute.GalleryDataDiskImage{}
	}
}

func (m *Model) verPut(c *call) *reply {
	if _, rep := m.rgLocked(c, true); rep != nil {
		return rep
	}
	imgID := galleryImageID(c.p[0], c.p[1], c.p[2], c.p[3])
	img := m.get(imgID)
	if img == nil {
		if m.get(galleryID(c.p[0], c.p[1], c.p[2])) == nil {
			return parentNotFound("write", "galleries/images/versions", galleryID(c.p[0], c.p[1], c.p[2]))
		}
		return parentNotFound("write", "galleries/images/versions", imgID)
	}
	name := c.p[4]
	if !validVersionName(name) {
		return invalidParam(fmt.Sprintf("The gallery image version name '%s' is invalid. It must follow the format of <MajorVersion>.<MinorVersion>.<Patch>, where each part is a non-negative 32-bit integer.", name), "galleryImageVersionName") // unverified wording
	}
	var in armcompute.GalleryImageVersion
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	if str(in.Location) == "" {
		return errReply(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	def := img.obj.(*armcompute.GalleryImage)
	if normLoc(str(in.Location)) != normLoc(str(def.Location)) {
		return invalidParam(fmt.Sprintf("The location '%s' of the gallery image version must be the location '%s' of its gallery image.", str(in.Location), str(def.Location)), "location") // unverified wording
	}
	if in.Properties == nil {
		in.Properties = &armcompute.GalleryImageVersionProperties{}
	}
	noSource := sourceKey(in.Properties.StorageProfile) == "" || sourceKey(in.Properties.StorageProfile) == "||"
	id := versionID(c)
	existing := m.get(id)
	// Galleries have no If-None-Match (armcompute sends none for versions):
	// a PUT on an existing version is an update, as recorded.
	if existing == nil && c.r.Header.Get("If-Match") != "" {
		return errReply(http.StatusPreconditionFailed, "PreconditionFailed", "The condition specified using HTTP conditional header(s) is not met.")
	}
	if existing == nil && noSource {
		return invalidParam("Required parameter 'galleryImageVersion.properties.storageProfile.source' is missing (null).", "galleryImageVersion.properties.storageProfile.source") // unverified wording
	}
	if existing != nil {
		if existing.op != nil {
			return galleryBusy(name)
		}
		old := existing.obj.(*armcompute.GalleryImageVersion)
		// An update that omits the source keeps it; a different source is
		// refused.
		if !noSource && sourceKey(old.Properties.StorageProfile) != sourceKey(in.Properties.StorageProfile) {
			return propChangeSource()
		}
		in.Properties.StorageProfile = old.Properties.StorageProfile
		in.ID, in.Name, in.Type, in.Location = old.ID, old.Name, old.Type, old.Location
		in.Properties.ReplicationStatus = nil
		fillVersionDefaults(&in)
		in.Properties.PublishingProfile.PublishedDate = old.Properties.PublishingProfile.PublishedDate
		existing.obj = &in
		return m.versionOp(c, existing, OpVersionUpdate, http.StatusOK, nil)
	}

	// Resolve and check the source.
	src := in.Properties.StorageProfile.Source
	srcID := firstNonEmpty(str(src.VirtualMachineID), str(src.ID))
	srcRes := m.get(srcID)
	var hyperVFail *armError
	caching := armcompute.HostCachingReadOnly
	var sizeGB int32 = 30
	if srcRes == nil {
		return errTarget(http.StatusBadRequest, "InvalidParameter", fmt.Sprintf("The resource with id '%s' was not found.", srcID), "galleryImageVersion.properties.storageProfile.source") // unverified wording
	}
	defState := string(*def.Properties.OSState)
	defHV := string(*def.Properties.HyperVGeneration)
	var srcState, srcHV string
	switch srcRes.typ {
	case TypeVirtualMachine:
		srcState, srcHV = "Specialized", srcRes.vm.hyperV
		if srcRes.vm.generalized {
			srcState = "Generalized"
		}
		osd := srcRes.obj.(*armcompute.VirtualMachine).Properties.StorageProfile.OSDisk
		caching, sizeGB = armcompute.HostCaching(*osd.Caching), *osd.DiskSizeGB
	case TypeImage:
		iobj := srcRes.obj.(*armcompute.Image)
		srcState, srcHV = "Generalized", string(*iobj.Properties.HyperVGeneration)
		if od := iobj.Properties.StorageProfile.OSDisk; od != nil {
			if od.OSState != nil {
				srcState = string(*od.OSState)
			}
			if od.DiskSizeGB != nil {
				sizeGB = *od.DiskSizeGB
			}
		}
	case TypeGalleryImageVersion:
		parent := m.get(srcRes.parent).obj.(*armcompute.GalleryImage)
		srcState, srcHV = string(*parent.Properties.OSState), string(*parent.Properties.HyperVGeneration)
	default:
		srcState, srcHV = defState, defHV
	}
	if !strings.EqualFold(srcState, defState) {
		return errReply(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
			"The resource with id '%s' has a different OS state ['%s'] than the parent gallery image OS state ['%s'].", srcRes.id, srcState, defState))
	}
	if !strings.EqualFold(srcHV, defHV) {
		// Azure accepts the PUT and fails the operation (seen as
		// "Long running operation failed with status 'Failed'", code Conflict).
		hyperVFail = &armError{Code: "Conflict", Message: fmt.Sprintf(
			"The resource with id '%s' has a different Hypervisor generation ['%s'] than the parent gallery image Hypervisor generation ['%s'].", srcRes.id, srcHV, defHV)}
	}
	in.ID, in.Name, in.Type, in.Location = ptr(id), ptr(name), ptr(TypeGalleryImageVersion), ptr(str(def.Location))
	in.Properties.StorageProfile.OSDiskImage = &armcompute.GalleryOSDiskImage{SizeInGB: ptr(sizeGB), HostCaching: &caching}
	in.Properties.ReplicationStatus = nil
	fillVersionDefaults(&in)
	in.Properties.PublishingProfile.PublishedDate = ptr(m.now().UTC())
	r := &res{id: id, typ: TypeGalleryImageVersion, sub: c.p[0], rg: c.p[1], name: name, parent: lowerID(img.id), created: m.now(), obj: &in, ver: &verState{}}
	m.put(r)
	return m.versionOp(c, r, OpVersionCreate, http.StatusCreated, hyperVFail)
}

func propChangeSource() *reply {
	return errTarget(http.StatusConflict, "PropertyChangeNotAllowed",
		"Changing property 'galleryImageVersion.properties.storageProfile.source' is not allowed.", "galleryImageVersion.properties.storageProfile.source")
}

// versionOp starts a version create/update operation: Creating (201) or
// Updating (200), then Succeeded, or Failed when injected or fail is set.
func (m *Model) versionOp(c *call, r *res, kind OpKind, status int, fail *armError) *reply {
	obj := r.obj.(*armcompute.GalleryImageVersion)
	state := "Updating"
	if status == http.StatusCreated {
		state = "Creating"
	}
	obj.Properties.ProvisioningState = galleryState(state)
	r.ver.failed = false
	op := m.startOp(c, kind, r, styleGallery, str(obj.Location))
	if fail != nil && op.fail == nil {
		op.fail = fail
	}
	op.onSuccess = func() { obj.Properties.ProvisioningState = galleryState(statusSucceeded) }
	op.onFailure = func() {
		obj.Properties.ProvisioningState = galleryState(statusFailed)
		r.ver.failed = true
	}
	return m.lroHeaders(c, jsonReply(status, m.renderVersion(r, false)), op, false)
}

// renderVersion returns the version as Azure shows it; replicationStatus only
// with $expand=ReplicationStatus.
func (m *Model) renderVersion(r *res, withReplication bool) *armcompute.GalleryImageVersion {
	in := r.obj.(*armcompute.GalleryImageVersion)
	out := *in
	props := *in.Properties
	props.ReplicationStatus = nil
	if withReplication {
		props.ReplicationStatus = m.replication(r)
	}
	out.Properties = &props
	return &out
}

// replication reports per-region progress: Replicating while the create or
// update runs (progress from elapsed time or polls), Completed after, Failed
// when the operation failed.
func (m *Model) replication(r *res) *armcompute.ReplicationStatus {
	obj := r.obj.(*armcompute.GalleryImageVersion)
	agg, state, progress, details := armcompute.AggregatedReplicationStateCompleted, armcompute.ReplicationStateCompleted, int32(100), ""
	if op := r.op; op != nil && (op.kind == OpVersionCreate || op.kind == OpVersionUpdate) {
		frac := 0.0
		switch {
		case op.dur > 0:
			frac = float64(m.now().Sub(op.start)) / float64(op.dur)
		case op.need > 0:
			frac = float64(op.polls) / float64(op.need+1)
		}
		progress = int32(min(max(frac, 0), 0.99) * 100)
		agg, state = armcompute.AggregatedReplicationStateInProgress, armcompute.ReplicationStateReplicating
	} else if r.ver != nil && r.ver.failed {
		agg, state, progress = armcompute.AggregatedReplicationStateFailed, armcompute.ReplicationStateFailed, 0
		if op := m.lastFailedOp(r); op != nil {
			details = op.fail.Message
		}
	}
	rs := &armcompute.ReplicationStatus{AggregatedState: &agg, Summary: []*armcompute.RegionalReplicationStatus{}}
	for _, tr := range obj.Properties.PublishingProfile.TargetRegions {
		st := state
		rs.Summary = append(rs.Summary, &armcompute.RegionalReplicationStatus{Region: tr.Name, State: &st, Details: ptr(details), Progress: ptr(progress)})
	}
	return rs
}

func (m *Model) verGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(versionID(c))
	if r == nil {
		return verNotFound(c)
	}
	m.touchLocked(r)
	if m.get(r.id) == nil {
		return verNotFound(c)
	}
	return jsonReply(http.StatusOK, m.renderVersion(r, c.wantsExpand("ReplicationStatus")))
}

func (m *Model) verList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	img := m.get(galleryImageID(c.p[0], c.p[1], c.p[2], c.p[3]))
	if img == nil {
		return gimgNotFound(c)
	}
	var items []any
	for _, r := range m.children(img.id) {
		items = append(items, m.renderVersion(r, false))
	}
	return m.pageReply(c, items)
}

// verPatch applies a GalleryImageVersionUpdate as a JSON merge patch: objects
// merge, arrays and scalars replace. The source may not change.
func (m *Model) verPatch(c *call) *reply {
	if _, rep := m.rgLocked(c, true); rep != nil {
		return rep
	}
	r := m.get(versionID(c))
	if r == nil {
		return verNotFound(c)
	}
	var upd armcompute.GalleryImageVersionUpdate
	if rep := c.decode(&upd); rep != nil {
		return rep
	}
	if r.op != nil {
		return galleryBusy(r.name)
	}
	old := r.obj.(*armcompute.GalleryImageVersion)
	if upd.Properties != nil && upd.Properties.StorageProfile != nil && upd.Properties.StorageProfile.Source != nil &&
		sourceKey(upd.Properties.StorageProfile) != sourceKey(old.Properties.StorageProfile) {
		return propChangeSource()
	}
	var patch map[string]any
	if err := json.Unmarshal(c.body, &patch); err != nil {
		return errReply(http.StatusBadRequest, "InvalidRequestContent", fmt.Sprintf("The request content was invalid and could not be deserialized: '%v'.", err))
	}
	cur, err := json.Marshal(old)
	if err != nil {
		return errReply(http.StatusInternalServerError, "InternalServerError", err.Error())
	}
	var doc map[string]any
	_ = json.Unmarshal(cur, &doc)
	for _, k := range []string{"properties", "tags"} {
		if v, ok := patch[k]; ok {
			doc[k] = mergePatch(doc[k], v)
		}
	}
	merged, _ := json.Marshal(doc)
	var next armcompute.GalleryImageVersion
	if err := json.Unmarshal(merged, &next); err != nil {
		return errReply(http.StatusBadRequest, "InvalidRequestContent", fmt.Sprintf("The request content was invalid and could not be deserialized: '%v'.", err))
	}
	next.Properties.StorageProfile = old.Properties.StorageProfile
	next.Properties.ReplicationStatus = nil
	fillVersionDefaults(&next)
	next.Properties.PublishingProfile.PublishedDate = old.Properties.PublishingProfile.PublishedDate
	r.obj = &next
	return m.versionOp(c, r, OpVersionUpdate, http.StatusOK, nil)
}

// mergePatch is RFC 7386: null deletes, objects merge, everything else
// replaces.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

func (m *Model) verDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(versionID(c))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	obj := r.obj.(*armcompute.GalleryImageVersion)
	if sp := obj.Properties.SafetyProfile; sp != nil && boolv(sp.BlockDeletionBeforeEndOfLife) {
		if eol := obj.Properties.PublishingProfile.EndOfLifeDate; eol != nil && eol.After(m.now()) {
			return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf(
				"The gallery image version '%s' cannot be deleted before its end of life date %s because blockDeletionBeforeEndOfLife is set.", r.name, eol.UTC().Format(time.RFC3339))) // unverified wording
		}
	}
	return m.galleryDeleteOp(c, r, OpVersionDelete, func(s string) { obj.Properties.ProvisioningState = galleryState(s) })
}
