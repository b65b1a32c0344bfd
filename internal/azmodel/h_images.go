package azmodel

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
)

// ---- disks ----

func diskID(c *call) string {
	return provID(c.p[0], c.p[1], computeProvider, "disks/"+c.p[2])
}

func (m *Model) diskGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(diskID(c))
	if r == nil {
		return notFound("Microsoft.Compute/disks/"+c.p[2], c.p[1])
	}
	m.touchLocked(r)
	return jsonReply(http.StatusOK, r.obj)
}

func (m *Model) diskList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	var items []any
	for _, r := range m.ofType(c.p[0], c.p[1], TypeDisk) {
		items = append(items, r.obj)
	}
	return m.pageReply(c, items)
}

func (m *Model) diskDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(diskID(c))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	if r.disk != nil && r.disk.managedBy != "" {
		vm := r.disk.managedBy
		if v := m.get(vm); v != nil {
			vm = v.id
		}
		return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf("Disk %s is attached to VM %s.", r.name, vm)) // unverified wording
	}
	obj := r.obj.(*armcompute.Disk)
	obj.Properties.ProvisioningState = ptr("Deleting")
	op := m.startOp(c, OpDiskDelete, r, styleCompute, str(obj.Location))
	op.onSuccess = func() { m.removeLocked(r) }
	op.onFailure = func() { obj.Properties.ProvisioningState = ptr(statusSucceeded) }
	return m.lroHeaders(c, &reply{status: http.StatusAccepted}, op, true)
}

// ---- managed images ----

func imageID(c *call) string {
	return provID(c.p[0], c.p[1], computeProvider, "images/"+c.p[2])
}

func (m *Model) imagePut(c *call) *reply {
	if _, rep := m.rgLocked(c, true); rep != nil {
		return rep
	}
	var in armcompute.Image
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	if str(in.Location) == "" {
		return errReply(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	id := imageID(c)
	if r := m.get(id); r != nil {
		if r.op != nil {
			return errReply(http.StatusConflict, "OperationNotAllowed", "Another operation is in progress on image "+r.name+".") // unverified wording
		}
		obj := r.obj.(*armcompute.Image)
		if in.Tags != nil {
			obj.Tags = in.Tags
		}
		return jsonReply(http.StatusOK, obj)
	}
	p := in.Properties
	if p == nil {
		p = &armcompute.ImageProperties{}
		in.Properties = p
	}
	hyperV := "V1"
	if p.HyperVGeneration != nil {
		hyperV = string(*p.HyperVGeneration)
	}
	switch {
	case p.SourceVirtualMachine != nil:
		vmRes := m.get(str(p.SourceVirtualMachine.ID))
		if vmRes == nil || vmRes.vm == nil {
			rg, tn := splitForNotFound(str(p.SourceVirtualMachine.ID))
			return notFound(tn, rg)
		}
		if sec := vmRes.vm.security; sec != SecurityStandard {
			return errTarget(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
				"Creating a managed image from VM '%s' is not supported: the VM has security type '%s'. Capture it to an Azure Compute Gallery image definition of security type '%s' instead.", vmRes.name, sec, sec), "sourceVirtualMachine") // unverified wording
		}
		if !vmRes.vm.generalized {
			return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf("The operation 'Create Image' cannot be performed on VM '%s' because the VM is not generalized.", vmRes.name)) // unverified wording
		}
		vobj := vmRes.obj.(*armcompute.VirtualMachine)
		osd := vobj.Properties.StorageProfile.OSDisk
		hyperV = vmRes.vm.hyperV
		p.StorageProfile = &armcompute.ImageStorageProfile{
			OSDisk: &armcompute.ImageOSDisk{
				OSType: ptr(armcompute.OperatingSystemTypesLinux), OSState: ptr(armcompute.OperatingSystemStateTypesGeneralized),
				ManagedDisk: &armcompute.SubResource{ID: osd.ManagedDisk.ID}, Caching: osd.Caching, DiskSizeGB: osd.DiskSizeGB,
				StorageAccountType: osd.ManagedDisk.StorageAccountType,
			},
			DataDisks: []*armcompute.ImageDataDisk{}, ZoneResilient: ptr(false),
		}
	case p.StorageProfile != nil && p.StorageProfile.OSDisk != nil:
		if p.StorageProfile.DataDisks == nil {
			p.StorageProfile.DataDisks = []*armcompute.ImageDataDisk{}
		}
	default:
		return invalidParam("Required parameter 'sourceVirtualMachine' or 'storageProfile.osDisk' is missing (null).", "properties") // unverified wording
	}
	p.HyperVGeneration = ptr(armcompute.HyperVGenerationTypes(hyperV))
	p.ProvisioningState = ptr("Creating")
	in.ID, in.Name, in.Type, in.Location = ptr(id), ptr(c.p[2]), ptr(TypeImage), ptr(normLoc(str(in.Location)))
	r := &res{id: id, typ: TypeImage, sub: c.p[0], rg: c.p[1], name: c.p[2], created: m.now(), obj: &in}
	m.put(r)
	op := m.startOp(c, OpImageCreate, r, styleCompute, str(in.Location))
	op.onSuccess = func() { p.ProvisioningState = ptr(statusSucceeded) }
	op.onFailure = func() { p.ProvisioningState = ptr(statusFailed) }
	return m.lroHeaders(c, jsonReply(http.StatusCreated, &in), op, false)
}

func (m *Model) imageGet(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(imageID(c))
	if r == nil {
		return notFound("Microsoft.Compute/images/"+c.p[2], c.p[1])
	}
	m.touchLocked(r)
	if m.get(r.id) == nil {
		return notFound("Microsoft.Compute/images/"+c.p[2], c.p[1])
	}
	return jsonReply(http.StatusOK, r.obj)
}

func (m *Model) imageList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	var items []any
	for _, r := range m.ofType(c.p[0], c.p[1], TypeImage) {
		items = append(items, r.obj)
	}
	return m.pageReply(c, items)
}

func (m *Model) imageDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(imageID(c))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	if r.op != nil && r.op.kind == OpImageDelete {
		return m.lroHeaders(c, &reply{status: http.StatusAccepted}, r.op, true)
	}
	m.preemptLocked(r.op)
	obj := r.obj.(*armcompute.Image)
	obj.Properties.ProvisioningState = ptr("Deleting")
	op := m.startOp(c, OpImageDelete, r, styleCompute, str(obj.Location))
	op.onSuccess = func() { m.removeLocked(r) }
	op.onFailure = func() { obj.Properties.ProvisioningState = ptr(statusFailed) }
	return m.lroHeaders(c, &reply{status: http.StatusAccepted}, op, true)
}

// ---- marketplace images ----

func vmImageID(sub, loc string, img MarketplaceImage) string {
	return "/Subscriptions/" + sub + "/Providers/Microsoft.Compute/Locations/" + loc + "/Publishers/" + img.Publisher +
		"/ArtifactTypes/VMImage/Offers/" + img.Offer + "/Skus/" + img.SKU + "/Versions/" + img.Version
}

func (m *Model) marketMatches(c *call) []MarketplaceImage {
	loc, pub, offer, sku := c.p[1], c.p[2], c.p[3], c.p[4]
	var out []MarketplaceImage
	for _, img := range m.market {
		if strings.EqualFold(img.Publisher, pub) && strings.EqualFold(img.Offer, offer) && strings.EqualFold(img.SKU, sku) &&
			(img.Location == "" || normLoc(img.Location) == normLoc(loc)) {
			out = append(out, img)
		}
	}
	sort.Slice(out, func(i, j int) bool { return compareDotted(out[i].Version, out[j].Version) < 0 })
	return out
}

func vmImageNotFound() *reply {
	return errReply(http.StatusNotFound, "NotFound", "Artifact: VMImage was not found.")
}

// vmImageList answers VirtualMachineImages_List: a bare JSON array of
// {location, name, id}, ascending by version unless $orderby=name desc.
func (m *Model) vmImageList(c *call) *reply {
	imgs := m.marketMatches(c)
	if len(imgs) == 0 {
		return vmImageNotFound()
	}
	if strings.Contains(strings.ToLower(c.q.Get("$orderby")), "desc") {
		for i, j := 0, len(imgs)-1; i < j; i, j = i+1, j-1 {
			imgs[i], imgs[j] = imgs[j], imgs[i]
		}
	}
	if top, err := strconv.Atoi(c.q.Get("$top")); err == nil && top >= 0 && top < len(imgs) {
		imgs = imgs[:top]
	}
	loc := normLoc(c.p[1])
	out := make([]*armcompute.VirtualMachineImageResource, 0, len(imgs))
	for _, img := range imgs {
		out = append(out, &armcompute.VirtualMachineImageResource{Location: ptr(loc), Name: ptr(img.Version), ID: ptr(vmImageID(c.sub(), loc, img))})
	}
	return jsonReply(http.StatusOK, out)
}

func (m *Model) vmImageGet(c *call) *reply {
	for _, img := range m.marketMatches(c) {
		if img.Version != c.p[5] {
			continue
		}
		loc := normLoc(c.p[1])
		arch := armcompute.ArchitectureTypes(img.Architecture)
		hv := armcompute.HyperVGenerationTypes(img.HyperVGeneration)
		return jsonReply(http.StatusOK, &armcompute.VirtualMachineImage{
			Location: ptr(loc), Name: ptr(img.Version), ID: ptr(vmImageID(c.sub(), loc, img)),
			Properties: &armcompute.VirtualMachineImageProperties{
				HyperVGeneration:             &hv,
				Architecture:                 &arch,
				OSDiskImage:                  &armcompute.OSDiskImage{OperatingSystem: ptr(armcompute.OperatingSystemTypesLinux)},
				DataDiskImages:               []*armcompute.DataDiskImage{},
				AutomaticOSUpgradeProperties: &armcompute.AutomaticOSUpgradeProperties{AutomaticOSUpgradeSupported: ptr(false)},
				ImageDeprecationStatus:       &armcompute.ImageDeprecationStatus{ImageState: ptr(armcompute.ImageStateActive)},
				Disallowed:                   &armcompute.DisallowedConfiguration{VMDiskType: ptr(armcompute.VMDiskTypesUnmanaged)},
			},
		})
	}
	return vmImageNotFound()
}
