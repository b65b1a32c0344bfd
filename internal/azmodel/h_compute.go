package azmodel

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

const computeProvider = "Microsoft.Compute"

// maxCustomDataChars is Compute's limit on base64 customData (65,535 bytes
// decoded).
const maxCustomDataChars = 87380

// disallowedAdminNames are the admin user names Azure refuses on Linux VMs
// (read-only after initialisation).
var disallowedAdminNames = func() map[string]bool {
	set := map[string]bool{}
	for _, n := range strings.Fields(`administrator admin user user1 test user2 test1 user3 admin1 1 123 a actuser adm admin2
		aspnet backup console david guest john owner root server sql support support_388945a0 sys test2 test3 user4 user5`) {
		set[n] = true
	}
	return set
}()

func vmID(c *call) string {
	return provID(c.p[0], c.p[1], computeProvider, "virtualMachines/"+c.p[2])
}

func invalidParam(msg, target string) *reply {
	return errTarget(http.StatusBadRequest, "InvalidParameter", msg, target)
}

// computeBusy is Compute's answer while another operation runs on a VM
// (message shape unverified).
func computeBusy(op, vm string) *reply {
	return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf(
		"Operation '%s' is not allowed on VM '%s' since another operation is in progress.", op, vm))
}

// imageSource is a resolved storageProfile.imageReference.
type imageSource struct {
	desc       string // publisher:offer:sku:version, or the image ID
	exact      string // marketplace exact version
	hyperV     string
	osDiskGB   int32
	platformID string // ID of the platform image version, for the disk's creationData
}

func (m *Model) resolveImage(ref *armcompute.ImageReference, loc string, sub string) (*imageSource, *reply) {
	if ref == nil {
		return nil, invalidParam("Required parameter 'imageReference' is missing (null).", "imageReference")
	}
	if id := str(ref.ID); id != "" {
		return m.resolveImageID(id, loc)
	}
	pub, offer, sku, ver := str(ref.Publisher), str(ref.Offer), str(ref.SKU), str(ref.Version)
	if ver == "" {
		ver = "latest"
	}
	var best *MarketplaceImage
	for i := range m.market {
		img := &m.market[i]
		if !strings.EqualFold(img.Publisher, pub) || !strings.EqualFold(img.Offer, offer) || !strings.EqualFold(img.SKU, sku) {
			continue
		}
		if img.Location != "" && normLoc(img.Location) != normLoc(loc) {
			continue
		}
		if strings.EqualFold(ver, "latest") {
			if best == nil || compareDotted(img.Version, best.Version) > 0 {
				best = img
			}
		} else if img.Version == ver {
			best = img
		}
	}
	if best == nil {
		return nil, errTarget(http.StatusNotFound, "PlatformImageNotFound", fmt.Sprintf(
			"The platform image '%s:%s:%s:%s' is not available. Verify that all fields in the storage profile are correct. For more details about storage profile information, please refer to https://aka.ms/storageprofile", pub, offer, sku, ver), "imageReference")
	}
	return &imageSource{
		desc:       best.Publisher + ":" + best.Offer + ":" + best.SKU + ":" + best.Version,
		exact:      best.Version,
		hyperV:     best.HyperVGeneration,
		osDiskGB:   best.OSDiskSizeGB,
		platformID: vmImageID(sub, normLoc(loc), *best),
	}, nil
}

// resolveImageID resolves a gallery image version, a gallery image
// definition (its latest version) or a managed image.
func (m *Model) resolveImageID(id, loc string) (*imageSource, *reply) {
	r := m.get(id)
	if r == nil {
		rg, typeName := splitForNotFound(id)
		return nil, notFound(typeName, rg)
	}
	notInRegion := func(vid string) *reply {
		return errTarget(http.StatusNotFound, "GalleryImageNotFound", fmt.Sprintf(
			"The gallery image %s is not available in %s region. Please contact image owner to replicate to this region, or change your requested region.", vid, normLoc(loc)), "imageReference")
	}
	switch r.typ {
	case TypeImage:
		img := r.obj.(*armcompute.Image)
		src := &imageSource{desc: r.id, hyperV: "V1", osDiskGB: 30}
		if img.Properties.HyperVGeneration != nil {
			src.hyperV = string(*img.Properties.HyperVGeneration)
		}
		if os := img.Properties.StorageProfile.OSDisk; os != nil && os.DiskSizeGB != nil {
			src.osDiskGB = *os.DiskSizeGB
		}
		return src, nil
	case TypeGalleryImage:
		var latest *res
		for _, v := range m.children(r.id) {
			if !m.versionUsable(v, loc) || excludedFromLatest(v.obj.(*armcompute.GalleryImageVersion), loc) {
				continue
			}
			if latest == nil || compareDotted(v.name, latest.name) > 0 {
				latest = v
			}
		}
		if latest == nil {
			return nil, notInRegion(r.id)
		}
		r = latest
		fallthrough
	case TypeGalleryImageVersion:
		if !m.versionUsable(r, loc) {
			return nil, notInRegion(r.id)
		}
		def := m.get(r.parent).obj.(*armcompute.GalleryImage)
		src := &imageSource{desc: r.id, hyperV: "V1", osDiskGB: 30}
		if def.Properties.HyperVGeneration != nil {
			src.hyperV = string(*def.Properties.HyperVGeneration)
		}
		v := r.obj.(*armcompute.GalleryImageVersion)
		if sp := v.Properties.StorageProfile; sp != nil && sp.OSDiskImage != nil && sp.OSDiskImage.SizeInGB != nil {
			src.osDiskGB = *sp.OSDiskImage.SizeInGB
		}
		return src, nil
	}
	return nil, invalidParam(fmt.Sprintf("The image reference '%s' is not a supported image.", id), "imageReference")
}

// excludedFromLatest: the version, or its replica in loc, is excluded from
// "latest".
func excludedFromLatest(v *armcompute.GalleryImageVersion, loc string) bool {
	pp := v.Properties.PublishingProfile
	if boolv(pp.ExcludeFromLatest) {
		return true
	}
	for _, tr := range pp.TargetRegions {
		if normLoc(str(tr.Name)) == normLoc(loc) && boolv(tr.ExcludeFromLatest) {
			return true
		}
	}
	return false
}

// versionUsable: succeeded and replicated to loc.
func (m *Model) versionUsable(v *res, loc string) bool {
	obj := v.obj.(*armcompute.GalleryImageVersion)
	if provisioningStateOf(obj) != statusSucceeded {
		return false
	}
	for _, tr := range obj.Properties.PublishingProfile.TargetRegions {
		if normLoc(str(tr.Name)) == normLoc(loc) {
			return true
		}
	}
	return false
}

// splitForNotFound turns an ID into ARM's "under resource group" wording.
func splitForNotFound(id string) (rg, typeName string) {
	segs := strings.Split(strings.Trim(id, "/"), "/")
	for i := 0; i+1 < len(segs); i++ {
		if strings.EqualFold(segs[i], "resourceGroups") {
			rg = segs[i+1]
		}
		if strings.EqualFold(segs[i], "providers") {
			typeName = strings.Join(segs[i+1:], "/")
			break
		}
	}
	return rg, typeName
}

func boolv(b *bool) bool { return b != nil && *b }

// compareDotted compares dotted numeric versions ("20.04.202502110").
func compareDotted(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int64
		if i < len(as) {
			x, _ = strconv.ParseInt(as[i], 10, 64)
		}
		if i < len(bs) {
			y, _ = strconv.ParseInt(bs[i], 10, 64)
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return strings.Compare(a, b)
}

// plannedNIC is a NIC the VM PUT will create inline.
type plannedNIC struct {
	cfg     *armcompute.VirtualMachineNetworkInterfaceConfiguration
	id      string
	subnets []*res
	nsg     string
}

func (m *Model) vmPut(c *call) *reply {
	if _, rep := m.rgLocked(c, true); rep != nil {
		return rep
	}
	var in armcompute.VirtualMachine
	if rep := c.decode(&in); rep != nil {
		return rep
	}
	if str(in.Location) == "" {
		return errReply(http.StatusBadRequest, "LocationRequired", "The location property is required for this definition.")
	}
	id := vmID(c)
	if r := m.get(id); r != nil {
		return m.vmUpdate(c, r, &in)
	}
	if c.r.Header.Get("If-Match") != "" {
		return errReply(http.StatusPreconditionFailed, "PreconditionFailed", "The condition specified using HTTP conditional header(s) is not met.")
	}
	loc := normLoc(str(in.Location))
	p := in.Properties
	if p == nil || p.HardwareProfile == nil || p.HardwareProfile.VMSize == nil {
		return invalidParam("Required parameter 'hardwareProfile' is missing (null).", "hardwareProfile")
	}
	if p.StorageProfile == nil {
		return invalidParam("Required parameter 'storageProfile' is missing (null).", "storageProfile")
	}
	src, rep := m.resolveImage(p.StorageProfile.ImageReference, loc, c.sub())
	if rep != nil {
		return rep
	}

	// osProfile.
	osp := p.OSProfile
	if osp == nil {
		return invalidParam("Required parameter 'osProfile' is missing (null).", "osProfile")
	}
	admin := str(osp.AdminUsername)
	if admin == "" {
		return invalidParam("Required parameter 'adminUsername' is missing (null).", "adminUsername")
	}
	if disallowedAdminNames[strings.ToLower(admin)] {
		return invalidParam("The Admin Username specified is not allowed.", "adminUsername")
	}
	if osp.ComputerName == nil {
		osp.ComputerName = ptr(c.p[2])
	}
	var keys []string
	lc := osp.LinuxConfiguration
	if lc != nil && lc.SSH != nil {
		for _, k := range lc.SSH.PublicKeys {
			if path := str(k.Path); path != "" && path != "/home/"+admin+"/.ssh/authorized_keys" {
				return invalidParam("Destination path for SSH public keys is currently limited to its default value /home/"+admin+"/.ssh/authorized_keys  due to a known issue in Linux provisioning agent.", "linuxConfiguration.ssh.publicKeys.path")
			}
			keys = append(keys, str(k.KeyData))
		}
	}
	if len(keys) == 0 && (str(osp.AdminPassword) == "" || (lc != nil && boolv(lc.DisablePasswordAuthentication))) {
		return invalidParam("Authentication using either SSH or by user name and password must be enabled in Linux profile.", "linuxConfiguration")
	}
	var customData []byte
	if cd := str(osp.CustomData); cd != "" {
		dec, err := base64.StdEncoding.DecodeString(cd)
		if err != nil || len(cd) > maxCustomDataChars {
			return invalidParam(fmt.Sprintf("Custom data in OSProfile must be in Base64 encoding and with a maximum length of %d characters.", maxCustomDataChars), "customData")
		}
		customData = dec
	}
	var userData []byte
	if ud := str(p.UserData); ud != "" {
		dec, err := base64.StdEncoding.DecodeString(ud)
		if err != nil || len(ud) > maxCustomDataChars {
			return invalidParam(fmt.Sprintf("User data must be in Base64 encoding and with a maximum length of %d characters.", maxCustomDataChars), "userData") // unverified wording
		}
		userData = dec
	}

	// networkProfile: validate everything before creating anything.
	np := p.NetworkProfile
	if np == nil || len(np.NetworkInterfaces)+len(np.NetworkInterfaceConfigurations) == 0 {
		return invalidParam("Required parameter 'networkProfile' is missing (null).", "networkProfile")
	}
	if len(np.NetworkInterfaceConfigurations) > 0 && np.NetworkAPIVersion == nil {
		return invalidParam("networkApiVersion must be specified when networkInterfaceConfigurations are used.", "networkProfile.networkApiVersion") // unverified wording
	}
	var planned []plannedNIC
	seen := map[string]bool{} // NICs and public IPs this PUT will create
	for _, cfg := range np.NetworkInterfaceConfigurations {
		name := str(cfg.Name)
		nid := provID(c.p[0], c.p[1], netProvider, "networkInterfaces/"+name)
		if seen[lowerID(nid)] {
			return invalidParam(fmt.Sprintf("Network interface configuration name '%s' is used more than once.", name), "networkInterfaceConfigurations") // unverified
		}
		seen[lowerID(nid)] = true
		if name == "" || cfg.Properties == nil || len(cfg.Properties.IPConfigurations) == 0 {
			return invalidParam("Required parameter 'networkInterfaceConfigurations.ipConfigurations' is missing (null).", "networkInterfaceConfigurations")
		}
		if existing := m.get(nid); existing != nil {
			if vm := existing.obj.(*armnetwork.Interface).Properties.VirtualMachine; vm != nil {
				return nicInUse(existing.id, str(vm.ID))
			}
			return errReply(http.StatusConflict, "Conflict", fmt.Sprintf("Network interface %s already exists.", existing.id)) // unverified
		}
		pn := plannedNIC{cfg: cfg, id: nid}
		for _, ipc := range cfg.Properties.IPConfigurations {
			if ipc.Properties == nil || ipc.Properties.Subnet == nil {
				return invalidParam("Required parameter 'ipConfigurations.subnet' is missing (null).", "subnet")
			}
			if rep := m.refExists(str(ipc.Properties.Subnet.ID), nid); rep != nil {
				return rep
			}
			pn.subnets = append(pn.subnets, m.get(str(ipc.Properties.Subnet.ID)))
			if pc := ipc.Properties.PublicIPAddressConfiguration; pc != nil {
				pid := provID(c.p[0], c.p[1], netProvider, "publicIPAddresses/"+str(pc.Name))
				switch {
				case str(pc.Name) == "":
					return invalidParam("Required parameter 'publicIPAddressConfiguration.name' is missing (null).", "publicIPAddressConfiguration.name")
				case m.get(pid) != nil || seen[lowerID(pid)]:
					return errReply(http.StatusConflict, "Conflict", fmt.Sprintf("Public IP address %s already exists.", pid)) // unverified
				}
				seen[lowerID(pid)] = true
			}
		}
		if cfg.Properties.NetworkSecurityGroup != nil {
			pn.nsg = str(cfg.Properties.NetworkSecurityGroup.ID)
			if rep := m.refExists(pn.nsg, nid); rep != nil {
				return rep
			}
		}
		planned = append(planned, pn)
	}
	var attach []*res
	for _, ref := range np.NetworkInterfaces {
		nic := m.get(str(ref.ID))
		if nic == nil {
			return errReply(http.StatusNotFound, "NotFound", fmt.Sprintf("Resource %s not found.", str(ref.ID))) // unverified wording
		}
		if vm := nic.obj.(*armnetwork.Interface).Properties.VirtualMachine; vm != nil {
			return nicInUse(nic.id, str(vm.ID))
		}
		attach = append(attach, nic)
	}

	// Build the VM.
	vmid := newGUID()
	obj := &in
	obj.ID, obj.Name, obj.Type, obj.Location = ptr(id), ptr(c.p[2]), ptr(TypeVirtualMachine), ptr(loc)
	obj.Etag = ptr(`"1"`)
	if obj.Identity != nil && obj.Identity.Type != nil && strings.Contains(strings.ToLower(string(*obj.Identity.Type)), "systemassigned") {
		obj.Identity.PrincipalID, obj.Identity.TenantID = ptr(newGUID()), ptr(DefaultTenantID)
	}
	p.VMID, p.TimeCreated, p.ProvisioningState = ptr(vmid), ptr(m.now().UTC()), ptr("Creating")
	p.InstanceView = nil
	osp.CustomData, osp.AdminPassword = nil, nil
	if osp.Secrets == nil {
		osp.Secrets = []*armcompute.VaultSecretGroup{}
	}
	osp.AllowExtensionOperations = ptr(true)
	osp.RequireGuestProvisionSignal = ptr(true)
	if lc == nil {
		lc = &armcompute.LinuxConfiguration{}
		osp.LinuxConfiguration = lc
	}
	if lc.DisablePasswordAuthentication == nil {
		lc.DisablePasswordAuthentication = ptr(false)
	}
	if lc.ProvisionVMAgent == nil {
		lc.ProvisionVMAgent = ptr(true)
	}
	if lc.PatchSettings == nil {
		lc.PatchSettings = &armcompute.LinuxPatchSettings{
			PatchMode:      ptr(armcompute.LinuxVMGuestPatchModeImageDefault),
			AssessmentMode: ptr(armcompute.LinuxPatchAssessmentModeImageDefault),
		}
	}
	if lc.EnableVMAgentPlatformUpdates == nil {
		lc.EnableVMAgentPlatformUpdates = ptr(false)
	}
	p.UserData = nil

	// OS disk.
	sp := p.StorageProfile
	if sp.ImageReference != nil && src.exact != "" {
		sp.ImageReference.ExactVersion = ptr(src.exact)
	}
	osd := sp.OSDisk
	if osd == nil {
		osd = &armcompute.OSDisk{}
		sp.OSDisk = osd
	}
	if osd.Name == nil {
		osd.Name = ptr(c.p[2] + "_OsDisk_1_" + newHex(16))
	}
	if osd.CreateOption == nil {
		osd.CreateOption = ptr(armcompute.DiskCreateOptionTypesFromImage)
	}
	if osd.Caching == nil {
		osd.Caching = ptr(armcompute.CachingTypesReadWrite)
	}
	if osd.DeleteOption == nil {
		osd.DeleteOption = ptr(armcompute.DiskDeleteOptionTypesDetach)
	}
	if osd.DiskSizeGB == nil {
		osd.DiskSizeGB = ptr(src.osDiskGB)
	}
	osd.OSType = ptr(armcompute.OperatingSystemTypesLinux)
	if osd.ManagedDisk == nil {
		osd.ManagedDisk = &armcompute.ManagedDiskParameters{}
	}
	if osd.ManagedDisk.StorageAccountType == nil {
		osd.ManagedDisk.StorageAccountType = ptr(armcompute.StorageAccountTypesStandardLRS)
	}
	diskID := provID(c.p[0], c.p[1], computeProvider, "disks/"+str(osd.Name))
	osd.ManagedDisk.ID = ptr(diskID)
	if sp.DataDisks == nil {
		sp.DataDisks = []*armcompute.DataDisk{}
	}

	info := VMInfo{
		ID: id, Name: c.p[2], SubscriptionID: c.p[0], ResourceGroup: c.p[1], Location: loc,
		VMSize: string(*p.HardwareProfile.VMSize), ComputerName: str(osp.ComputerName), AdminUsername: admin,
		SSHPublicKeys: keys, CustomData: customData, UserData: userData, Tags: flatTags(obj.Tags),
		Image: src.desc, HyperVGeneration: src.hyperV,
	}
	if p.Priority != nil {
		info.Priority = string(*p.Priority)
	}
	st := &vmState{power: "starting", customData: customData, hyperV: src.hyperV, image: src.desc, osDisk: lowerID(diskID), osDiskDel: *osd.DeleteOption == armcompute.DiskDeleteOptionTypesDelete}
	if len(userData) > 0 {
		st.userData = base64.StdEncoding.EncodeToString(userData)
	}

	// Network interfaces: inline ones are created now, existing ones attached.
	origRefs := np.NetworkInterfaces
	np.NetworkInterfaces = nil
	for i, pn := range planned {
		nic := m.createInlineNIC(pn, obj, &info, i == 0)
		del := pn.cfg.Properties.DeleteOption != nil && *pn.cfg.Properties.DeleteOption == armcompute.DeleteOptionsDelete
		if pn.cfg.Properties.DeleteOption == nil {
			pn.cfg.Properties.DeleteOption = ptr(armcompute.DeleteOptionsDetach)
		}
		primary := pn.cfg.Properties.Primary
		if primary == nil {
			primary = ptr(i == 0)
		}
		np.NetworkInterfaces = append(np.NetworkInterfaces, &armcompute.NetworkInterfaceReference{
			ID:         ptr(nic.id),
			Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: primary, DeleteOption: pn.cfg.Properties.DeleteOption},
		})
		st.nics = append(st.nics, nicRef{id: lowerID(nic.id), del: del})
	}
	for i, nic := range attach {
		nobj := nic.obj.(*armnetwork.Interface)
		nobj.Properties.VirtualMachine = &armnetwork.SubResource{ID: ptr(id)}
		ref := &armcompute.NetworkInterfaceReference{ID: ptr(nic.id), Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: ptr(len(planned) == 0 && i == 0), DeleteOption: ptr(armcompute.DeleteOptionsDetach)}}
		if o := origRefs[i].Properties; o != nil {
			if o.DeleteOption != nil {
				ref.Properties.DeleteOption = o.DeleteOption
			}
			if o.Primary != nil {
				ref.Properties.Primary = o.Primary
			}
		}
		np.NetworkInterfaces = append(np.NetworkInterfaces, ref)
		st.nics = append(st.nics, nicRef{id: lowerID(nic.id), del: *ref.Properties.DeleteOption == armcompute.DeleteOptionsDelete})
		if info.PrivateIP == "" {
			for _, ipc := range nobj.Properties.IPConfigurations {
				info.PrivateIP = str(ipc.Properties.PrivateIPAddress)
				if ipc.Properties.PublicIPAddress != nil {
					if pr := m.get(str(ipc.Properties.PublicIPAddress.ID)); pr != nil {
						info.PublicIP = str(pr.obj.(*armnetwork.PublicIPAddress).Properties.IPAddress)
					}
				}
				break
			}
		}
	}

	// The OS disk resource.
	disk := &armcompute.Disk{
		ID: ptr(diskID), Name: osd.Name, Type: ptr(TypeDisk), Location: ptr(loc), ManagedBy: ptr(id),
		SKU: &armcompute.DiskSKU{Name: ptr(armcompute.DiskStorageAccountTypes(*osd.ManagedDisk.StorageAccountType))},
		Properties: &armcompute.DiskProperties{
			OSType: ptr(armcompute.OperatingSystemTypesLinux), HyperVGeneration: ptr(armcompute.HyperVGeneration(src.hyperV)),
			CreationData: &armcompute.CreationData{CreateOption: ptr(armcompute.DiskCreateOptionFromImage), ImageReference: &armcompute.ImageDiskReference{ID: ptr(firstNonEmpty(src.platformID, src.desc))}},
			DiskSizeGB:   osd.DiskSizeGB, DiskState: ptr(armcompute.DiskStateAttached), ProvisioningState: ptr(statusSucceeded),
			TimeCreated: ptr(m.now().UTC()), UniqueID: ptr(newGUID()),
		},
	}
	m.put(&res{id: diskID, typ: TypeDisk, sub: c.p[0], rg: c.p[1], name: str(osd.Name), created: m.now(), obj: disk, disk: &diskState{managedBy: lowerID(id)}})

	st.info = info
	r := &res{id: id, typ: TypeVirtualMachine, sub: c.p[0], rg: c.p[1], name: c.p[2], created: m.now(), obj: obj, vm: st}
	m.put(r)
	op := m.startOp(c, OpVMCreate, r, styleCompute, loc)
	op.onSuccess = func() { p.ProvisioningState, st.power = ptr(statusSucceeded), "running" }
	op.onFailure = func() { p.ProvisioningState, st.power = ptr(statusFailed), "" }
	if hook := m.opts.OnVMCreated; hook != nil {
		vmInfo := info.clone(obj.Tags)
		m.later(func() { hook(vmInfo) })
	}
	return m.lroHeaders(c, jsonReply(http.StatusCreated, m.renderVM(r, false, false)), op, false)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// createInlineNIC creates the NIC (and public IP) of one
// networkInterfaceConfiguration, as Compute does for networkApiVersion
// 2020-11-01, and records the addresses in info.
func (m *Model) createInlineNIC(pn plannedNIC, vm *armcompute.VirtualMachine, info *VMInfo, first bool) *res {
	cfg := pn.cfg
	loc := str(vm.Location)
	nicObj := &armnetwork.Interface{
		ID: ptr(pn.id), Name: cfg.Name, Type: ptr(TypeNetworkInterface), Location: ptr(loc), Tags: cfg.Tags, Etag: etag(),
		Properties: &armnetwork.InterfacePropertiesFormat{
			VirtualMachine:              &armnetwork.SubResource{ID: vm.ID},
			MacAddress:                  ptr(strings.ToUpper(fmt.Sprintf("00-0D-3A-%s-%s-%s", newHex(1), newHex(1), newHex(1)))),
			Primary:                     ptr(first),
			EnableAcceleratedNetworking: ptr(boolv(cfg.Properties.EnableAcceleratedNetworking)),
			EnableIPForwarding:          ptr(boolv(cfg.Properties.EnableIPForwarding)),
			NicType:                     ptr(armnetwork.NetworkInterfaceNicTypeStandard),
			ProvisioningState:           netState(statusSucceeded),
			ResourceGUID:                ptr(newGUID()),
		},
	}
	if pn.nsg != "" {
		nicObj.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: ptr(m.get(pn.nsg).id)}
	}
	for i, ipc := range cfg.Properties.IPConfigurations {
		subnet := pn.subnets[i]
		ipName := str(ipc.Name)
		if ipName == "" {
			ipName = "ipconfig" + strconv.Itoa(i+1)
		}
		priv := m.nextPrivateIP(subnet)
		props := &armnetwork.InterfaceIPConfigurationPropertiesFormat{
			PrivateIPAddress: ptr(priv), PrivateIPAllocationMethod: ptr(armnetwork.IPAllocationMethodDynamic),
			PrivateIPAddressVersion: ptr(armnetwork.IPVersionIPv4), Subnet: &armnetwork.Subnet{ID: ptr(subnet.id)},
			Primary: ptr(i == 0), ProvisioningState: netState(statusSucceeded),
		}
		nicObj.Properties.IPConfigurations = append(nicObj.Properties.IPConfigurations, &armnetwork.InterfaceIPConfiguration{
			ID: ptr(pn.id + "/ipConfigurations/" + ipName), Name: ptr(ipName), Type: ptr("Microsoft.Network/networkInterfaces/ipConfigurations"), Etag: nicObj.Etag, Properties: props,
		})
		if first && info.PrivateIP == "" {
			info.PrivateIP = priv
		}
		pc := ipc.Properties.PublicIPAddressConfiguration
		if pc == nil {
			continue
		}
		pipID := provID(info.SubscriptionID, info.ResourceGroup, netProvider, "publicIPAddresses/"+str(pc.Name))
		addr := m.choosePublicIP(*info)
		sku := &armnetwork.PublicIPAddressSKU{Name: ptr(armnetwork.PublicIPAddressSKUNameStandard), Tier: ptr(armnetwork.PublicIPAddressSKUTierRegional)}
		if pc.SKU != nil && pc.SKU.Name != nil {
			sku.Name = ptr(armnetwork.PublicIPAddressSKUName(*pc.SKU.Name))
			if pc.SKU.Tier != nil {
				sku.Tier = ptr(armnetwork.PublicIPAddressSKUTier(*pc.SKU.Tier))
			}
		}
		alloc := armnetwork.IPAllocationMethodStatic
		del := armnetwork.DeleteOptionsDetach
		if pc.Properties != nil {
			if pc.Properties.PublicIPAllocationMethod != nil {
				alloc = armnetwork.IPAllocationMethod(*pc.Properties.PublicIPAllocationMethod)
			}
			if pc.Properties.DeleteOption != nil {
				del = armnetwork.DeleteOptions(*pc.Properties.DeleteOption)
			} else {
				pc.Properties.DeleteOption = ptr(armcompute.DeleteOptionsDetach)
			}
		}
		pip := &armnetwork.PublicIPAddress{
			ID: ptr(pipID), Name: pc.Name, Type: ptr(TypePublicIPAddress), Location: ptr(loc), Tags: pc.Tags, SKU: sku, Etag: etag(),
			Properties: &armnetwork.PublicIPAddressPropertiesFormat{
				IPAddress: ptr(addr), PublicIPAllocationMethod: &alloc, PublicIPAddressVersion: ptr(armnetwork.IPVersionIPv4),
				IdleTimeoutInMinutes: ptr(int32(4)), DeleteOption: &del, ProvisioningState: netState(statusSucceeded), ResourceGUID: ptr(newGUID()),
			},
		}
		m.put(&res{id: pipID, typ: TypePublicIPAddress, sub: info.SubscriptionID, rg: info.ResourceGroup, name: str(pc.Name), created: m.now(), obj: pip})
		props.PublicIPAddress = &armnetwork.PublicIPAddress{ID: ptr(pipID)}
		if first && info.PublicIP == "" {
			info.PublicIP = addr
		}
	}
	nic := &res{id: pn.id, typ: TypeNetworkInterface, sub: info.SubscriptionID, rg: info.ResourceGroup, name: str(cfg.Name), created: m.now(), obj: nicObj}
	m.put(nic)
	return nic
}

func (m *Model) choosePublicIP(info VMInfo) string {
	if m.opts.PublicIP != nil {
		if a := m.opts.PublicIP(info); a != "" {
			return a
		}
	}
	m.ipSeq++
	return fmt.Sprintf("203.0.113.%d", (m.ipSeq-1)%254+1)
}

// vmUpdate handles a PUT on an existing VM: tags and a few mutable settings
// change; identity-defining osProfile settings may not.
func (m *Model) vmUpdate(c *call, r *res, in *armcompute.VirtualMachine) *reply {
	if c.r.Header.Get("If-None-Match") == "*" {
		return errReply(http.StatusPreconditionFailed, "PreconditionFailed", "The condition specified using HTTP conditional header(s) is not met.")
	}
	if r.op != nil {
		return computeBusy("Update VM", r.name)
	}
	if r.vm.generalized {
		return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf("Operation 'Update VM' is not allowed on VM '%s' since the VM is generalized.", r.name)) // unverified wording
	}
	obj := r.obj.(*armcompute.VirtualMachine)
	if in.Properties != nil && in.Properties.OSProfile != nil {
		o, n := obj.Properties.OSProfile, in.Properties.OSProfile
		for _, ch := range []struct{ prop, old, new string }{
			{"osProfile.adminUsername", str(o.AdminUsername), str(n.AdminUsername)},
			{"osProfile.computerName", str(o.ComputerName), str(n.ComputerName)},
		} {
			if ch.new != "" && ch.new != ch.old {
				return errTarget(http.StatusConflict, "PropertyChangeNotAllowed", fmt.Sprintf("Changing property '%s' is not allowed.", ch.prop), ch.prop)
			}
		}
		if n.CustomData != nil && !strings.EqualFold(base64.StdEncoding.EncodeToString(r.vm.customData), str(n.CustomData)) {
			return errTarget(http.StatusConflict, "PropertyChangeNotAllowed", "Changing property 'customData' is not allowed.", "customData")
		}
	}
	if in.Tags != nil {
		obj.Tags = in.Tags
	}
	obj.Properties.ProvisioningState = ptr("Updating")
	op := m.startOp(c, OpVMUpdate, r, styleCompute, str(obj.Location))
	op.onSuccess = func() { obj.Properties.ProvisioningState = ptr(statusSucceeded) }
	op.onFailure = func() { obj.Properties.ProvisioningState = ptr(statusFailed) }
	return m.lroHeaders(c, jsonReply(http.StatusOK, m.renderVM(r, false, false)), op, false)
}

func (m *Model) renderVM(r *res, instanceView, userData bool) *armcompute.VirtualMachine {
	in := r.obj.(*armcompute.VirtualMachine)
	out := *in
	props := *in.Properties
	if instanceView {
		props.InstanceView = m.instanceView(r)
	}
	if userData && r.vm.userData != "" {
		props.UserData = ptr(r.vm.userData)
	}
	out.Properties = &props
	return &out
}

var powerDisplay = map[string]string{
	"starting": "VM starting", "running": "VM running", "stopping": "VM stopping", "stopped": "VM stopped",
	"deallocating": "VM deallocating", "deallocated": "VM deallocated",
}

func (m *Model) instanceView(r *res) *armcompute.VirtualMachineInstanceView {
	obj := r.obj.(*armcompute.VirtualMachine)
	ps := str(obj.Properties.ProvisioningState)
	info := ptr(armcompute.StatusLevelTypesInfo)
	prov := &armcompute.InstanceViewStatus{Code: ptr("ProvisioningState/" + strings.ToLower(ps)), Level: info, DisplayStatus: ptr(ps)}
	switch ps {
	case statusSucceeded:
		prov.DisplayStatus, prov.Time = ptr("Provisioning succeeded"), ptr(m.now().UTC())
	case statusFailed:
		prov.DisplayStatus, prov.Level = ptr("Provisioning failed"), ptr(armcompute.StatusLevelTypesError)
		if op := m.lastFailedOp(r); op != nil {
			prov.Code = ptr("ProvisioningState/failed/" + op.fail.Code)
			prov.Message = ptr(op.fail.Message)
		}
	}
	iv := &armcompute.VirtualMachineInstanceView{
		ComputerName:     obj.Properties.OSProfile.ComputerName,
		OSName:           ptr("ubuntu"),
		OSVersion:        ptr("20.04"),
		HyperVGeneration: ptr(armcompute.HyperVGenerationType(r.vm.hyperV)),
		Statuses:         []*armcompute.InstanceViewStatus{prov},
	}
	if r.vm.generalized {
		iv.Statuses = append(iv.Statuses, &armcompute.InstanceViewStatus{Code: ptr("OSState/generalized"), Level: info, DisplayStatus: ptr("VM generalized")})
	}
	if d, ok := powerDisplay[r.vm.power]; ok {
		iv.Statuses = append(iv.Statuses, &armcompute.InstanceViewStatus{Code: ptr("PowerState/" + r.vm.power), Level: info, DisplayStatus: ptr(d)})
	}
	if r.vm.power == "running" {
		iv.VMAgent = &armcompute.VirtualMachineAgentInstanceView{
			VMAgentVersion: ptr("2.13.1.1"),
			Statuses: []*armcompute.InstanceViewStatus{{
				Code: ptr("ProvisioningState/succeeded"), Level: info, DisplayStatus: ptr("Ready"),
				Message: ptr("Guest Agent is running"), Time: ptr(m.now().UTC()),
			}},
			ExtensionHandlers: []*armcompute.VirtualMachineExtensionHandlerInstanceView{},
		}
	}
	if osd := obj.Properties.StorageProfile.OSDisk; osd != nil {
		iv.Disks = []*armcompute.DiskInstanceView{{Name: osd.Name, Statuses: []*armcompute.InstanceViewStatus{{
			Code: ptr("ProvisioningState/succeeded"), Level: info, DisplayStatus: ptr("Provisioning succeeded"), Time: ptr(m.now().UTC()),
		}}}}
	}
	return iv
}

func (m *Model) lastFailedOp(r *res) *operation {
	var last *operation
	for _, op := range m.ops {
		if op.target == lowerID(r.id) && op.status == statusFailed && op.fail != nil && (last == nil || op.seq > last.seq) {
			last = op
		}
	}
	return last
}

func (m *Model) vmLocked(c *call) (*res, *reply) {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return nil, rep
	}
	r := m.get(vmID(c))
	if r == nil {
		return nil, notFound("Microsoft.Compute/virtualMachines/"+c.p[2], c.p[1])
	}
	return r, nil
}

func (m *Model) vmGet(c *call) *reply {
	r, rep := m.vmLocked(c)
	if rep != nil {
		return rep
	}
	m.touchLocked(r)
	if m.get(r.id) == nil {
		return notFound("Microsoft.Compute/virtualMachines/"+c.p[2], c.p[1])
	}
	return jsonReply(http.StatusOK, m.renderVM(r, c.wantsExpand("instanceView"), c.wantsExpand("userData")))
}

func (m *Model) vmInstanceView(c *call) *reply {
	r, rep := m.vmLocked(c)
	if rep != nil {
		return rep
	}
	m.touchLocked(r)
	if m.get(r.id) == nil {
		return notFound("Microsoft.Compute/virtualMachines/"+c.p[2], c.p[1])
	}
	return jsonReply(http.StatusOK, m.instanceView(r))
}

func (m *Model) vmList(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	return m.vmPage(c, m.ofType(c.p[0], c.p[1], TypeVirtualMachine))
}

func (m *Model) vmListAll(c *call) *reply {
	return m.vmPage(c, m.ofType(c.p[0], "", TypeVirtualMachine))
}

func (m *Model) vmPage(c *call, rs []*res) *reply {
	var items []any
	for _, r := range rs {
		items = append(items, m.renderVM(r, c.wantsExpand("instanceView"), false))
	}
	return m.pageReply(c, items)
}

// vmAction starts a power operation: the VM shows `during` until it ends in
// `after` (or back in its previous power state on failure).
func (m *Model) vmAction(c *call, kind OpKind, opName, during, after string) *reply {
	r, rep := m.vmLocked(c)
	if rep != nil {
		return rep
	}
	if r.op != nil {
		if r.op.kind == kind {
			return m.lroHeaders(c, &reply{status: http.StatusAccepted}, r.op, true)
		}
		return computeBusy(opName, r.name)
	}
	st := r.vm
	switch {
	case st.generalized && (kind == OpVMStart || kind == OpVMPowerOff || kind == OpVMRestart):
		return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf("Operation '%s' is not allowed on VM '%s' since the VM is generalized.", opName, r.name))
	case kind == OpVMPowerOff && (st.power == "deallocated" || st.power == "deallocating"):
		return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf("Operation 'powerOff' is not allowed on VM '%s' since the VM is either deallocated or marked to be deallocated.", r.name))
	case kind == OpVMRestart && st.power != "running":
		return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf("Operation 'restart' is not allowed on VM '%s' since the VM is %s.", r.name, st.power)) // unverified wording
	}
	obj := r.obj.(*armcompute.VirtualMachine)
	prevPower := st.power
	st.power = during
	obj.Properties.ProvisioningState = ptr("Updating")
	op := m.startOp(c, kind, r, styleCompute, str(obj.Location))
	op.onSuccess = func() { st.power, obj.Properties.ProvisioningState = after, ptr(statusSucceeded) }
	op.onFailure = func() { st.power, obj.Properties.ProvisioningState = prevPower, ptr(statusFailed) }
	return m.lroHeaders(c, &reply{status: http.StatusAccepted}, op, true)
}

func (m *Model) vmDeallocate(c *call) *reply {
	return m.vmAction(c, OpVMDeallocate, "deallocate", "deallocating", "deallocated")
}
func (m *Model) vmPowerOff(c *call) *reply {
	return m.vmAction(c, OpVMPowerOff, "powerOff", "stopping", "stopped")
}
func (m *Model) vmStart(c *call) *reply {
	return m.vmAction(c, OpVMStart, "start", "starting", "running")
}
func (m *Model) vmRestart(c *call) *reply {
	return m.vmAction(c, OpVMRestart, "restart", "starting", "running")
}

// vmGeneralize marks a stopped or deallocated VM generalized: synchronous,
// 200 with no body (recorded on a powered-off VM: Azure CLI
// test_vm_generalize). A running VM is refused. Generalized is forever: the VM
// can never be started again.
func (m *Model) vmGeneralize(c *call) *reply {
	r, rep := m.vmLocked(c)
	if rep != nil {
		return rep
	}
	if r.op != nil {
		return computeBusy("generalize", r.name)
	}
	if r.vm.power != "deallocated" && r.vm.power != "stopped" {
		state := r.vm.power
		if state == "" || state == "starting" {
			state = "running"
		}
		return errReply(http.StatusConflict, "OperationNotAllowed", fmt.Sprintf("Operation 'generalize' is not allowed on VM '%s' since the VM is %s.", r.name, state))
	}
	r.vm.generalized = true
	return &reply{status: http.StatusOK}
}

func (m *Model) vmDelete(c *call) *reply {
	if _, rep := m.rgLocked(c, false); rep != nil {
		return rep
	}
	r := m.get(vmID(c))
	if r == nil {
		return &reply{status: http.StatusNoContent}
	}
	if r.op != nil {
		if r.op.kind == OpVMDelete {
			return m.lroHeaders(c, &reply{status: http.StatusAccepted}, r.op, true)
		}
		m.preemptLocked(r.op) // a delete preempts a running create or power operation
	}
	obj := r.obj.(*armcompute.VirtualMachine)
	obj.Properties.ProvisioningState = ptr("Deleting")
	op := m.startOp(c, OpVMDelete, r, styleCompute, str(obj.Location))
	op.onSuccess = func() { m.deleteVMLocked(r) }
	op.onFailure = func() { obj.Properties.ProvisioningState = ptr(statusFailed) }
	return m.lroHeaders(c, &reply{status: http.StatusAccepted}, op, true)
}

// deleteVMLocked removes a VM and, per deleteOption, its NICs, public IPs and
// OS disk; what is kept is detached.
func (m *Model) deleteVMLocked(r *res) {
	for _, ref := range r.vm.nics {
		nic := m.get(ref.id)
		if nic == nil {
			continue
		}
		nobj := nic.obj.(*armnetwork.Interface)
		for _, ipc := range nobj.Properties.IPConfigurations {
			if ipc.Properties.PublicIPAddress == nil {
				continue
			}
			pip := m.get(str(ipc.Properties.PublicIPAddress.ID))
			if pip == nil {
				continue
			}
			pobj := pip.obj.(*armnetwork.PublicIPAddress)
			if pobj.Properties.DeleteOption != nil && *pobj.Properties.DeleteOption == armnetwork.DeleteOptionsDelete {
				m.removeLocked(pip)
				ipc.Properties.PublicIPAddress = nil
			}
		}
		if ref.del {
			m.removeLocked(nic)
		} else {
			nobj.Properties.VirtualMachine = nil
		}
	}
	if d := m.get(r.vm.osDisk); d != nil {
		if r.vm.osDiskDel {
			m.removeLocked(d)
		} else {
			dobj := d.obj.(*armcompute.Disk)
			dobj.ManagedBy = nil
			dobj.Properties.DiskState = ptr(armcompute.DiskStateUnattached)
			d.disk.managedBy = ""
		}
	}
	m.removeLocked(r)
}
