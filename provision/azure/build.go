package azure

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	goversion "github.com/hashicorp/go-version"

	"github.com/imagebake/imagebake/internal/contract"
)

// Image is a resolved marketplace image.
type Image struct {
	Publisher, Offer, SKU, Version string
	HyperVGeneration               string
}

// URN is publisher:offer:sku:version.
func (i Image) URN() string {
	return strings.Join([]string{i.Publisher, i.Offer, i.SKU, i.Version}, ":")
}

// ResolveImage turns a URN into a concrete version: "latest" becomes the
// highest version Azure lists, so the manifest records what was really used.
func (c *Clients) ResolveImage(ctx context.Context, location, urn string) (Image, error) {
	p := strings.Split(urn, ":")
	if len(p) != 4 {
		return Image{}, fmt.Errorf("base image %q: not publisher:offer:sku:version", urn)
	}
	img := Image{Publisher: p[0], Offer: p[1], SKU: p[2], Version: p[3]}
	if strings.EqualFold(img.Version, "latest") {
		var list armcompute.VirtualMachineImagesClientListResponse
		if err := c.call(ctx, "list versions of base image "+urn, func(ctx context.Context) error {
			var err error
			list, err = c.images.List(ctx, location, img.Publisher, img.Offer, img.SKU, nil)
			return err
		}); err != nil {
			return Image{}, err
		}
		var names []string
		for _, it := range list.VirtualMachineImageResourceArray {
			if it != nil && it.Name != nil {
				names = append(names, *it.Name)
			}
		}
		if len(names) == 0 {
			return Image{}, fmt.Errorf("base image %s: no versions in %s", urn, location)
		}
		sort.Slice(names, func(i, j int) bool { return lessVersion(names[i], names[j]) })
		img.Version = names[len(names)-1]
	}
	var got armcompute.VirtualMachineImagesClientGetResponse
	if err := c.call(ctx, "get base image "+img.URN(), func(ctx context.Context) error {
		var err error
		got, err = c.images.Get(ctx, location, img.Publisher, img.Offer, img.SKU, img.Version, nil)
		return err
	}); err != nil {
		return Image{}, err
	}
	img.HyperVGeneration = "V1"
	if got.Properties != nil && got.Properties.HyperVGeneration != nil {
		img.HyperVGeneration = string(*got.Properties.HyperVGeneration)
	}
	return img, nil
}

func lessVersion(a, b string) bool {
	va, ea := goversion.NewVersion(a)
	vb, eb := goversion.NewVersion(b)
	if ea != nil || eb != nil {
		return a < b
	}
	return va.LessThan(vb)
}

// CreateResourceGroup creates (or adopts, if it exists with our build tag)
// the build's resource group.
func (c *Clients) CreateResourceGroup(ctx context.Context, name, location string, tags map[string]string) error {
	return c.call(ctx, "create resource group "+name, func(ctx context.Context) error {
		_, err := c.groups.CreateOrUpdate(ctx, name, armresources.ResourceGroup{Location: to.Ptr(location), Tags: buildTags(tags)}, nil)
		return err
	})
}

// DeleteResourceGroup deletes a resource group and everything in it, and
// waits. A group already gone is not an error.
func (c *Clients) DeleteResourceGroup(ctx context.Context, name string) error {
	return runOrGone(ctx, c, "delete resource group "+name, func(ctx context.Context) (*runtime.Poller[armresources.ResourceGroupsClientDeleteResponse], error) {
		return c.groups.BeginDelete(ctx, name, nil)
	})
}

// Network is what CreateNetwork made.
type Network struct {
	VNetID, SubnetID, NSGID string
}

// CreateNetwork makes an NSG that admits SSH only from sources, and a VNet
// with one subnet behind it.
func (c *Clients) CreateNetwork(ctx context.Context, rg, location, prefix string, sources []string, tags map[string]string) (Network, error) {
	var n Network
	rule := &armnetwork.SecurityRule{Name: to.Ptr("imagebake-ssh"), Properties: &armnetwork.SecurityRulePropertiesFormat{
		Protocol: to.Ptr(armnetwork.SecurityRuleProtocolTCP), Access: to.Ptr(armnetwork.SecurityRuleAccessAllow),
		Direction: to.Ptr(armnetwork.SecurityRuleDirectionInbound), Priority: to.Ptr[int32](100),
		SourcePortRange: to.Ptr("*"), DestinationAddressPrefix: to.Ptr("*"), DestinationPortRange: to.Ptr("22"),
	}}
	if len(sources) == 1 {
		rule.Properties.SourceAddressPrefix = to.Ptr(sources[0])
	} else {
		rule.Properties.SourceAddressPrefixes = to.SliceOfPtrs(sources...)
	}
	nsgName := prefix + "-" + string(contract.KindNSG)
	nsg, err := run(ctx, c, "create network security group "+nsgName, func(ctx context.Context) (*runtime.Poller[armnetwork.SecurityGroupsClientCreateOrUpdateResponse], error) {
		return c.nsgs.BeginCreateOrUpdate(ctx, rg, nsgName, armnetwork.SecurityGroup{Location: to.Ptr(location), Tags: buildTags(tags),
			Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: []*armnetwork.SecurityRule{rule}}}, nil)
	})
	if err != nil {
		return n, err
	}
	n.NSGID = deref(nsg.ID)
	vnetName := prefix + "-" + string(contract.KindVNet)
	vnet, err := run(ctx, c, "create virtual network "+vnetName, func(ctx context.Context) (*runtime.Poller[armnetwork.VirtualNetworksClientCreateOrUpdateResponse], error) {
		return c.vnets.BeginCreateOrUpdate(ctx, rg, vnetName, armnetwork.VirtualNetwork{Location: to.Ptr(location), Tags: buildTags(tags),
			Properties: &armnetwork.VirtualNetworkPropertiesFormat{
				AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: to.SliceOfPtrs("10.200.0.0/24")},
				Subnets: []*armnetwork.Subnet{{Name: to.Ptr("build"), Properties: &armnetwork.SubnetPropertiesFormat{
					AddressPrefix: to.Ptr("10.200.0.0/26"), NetworkSecurityGroup: &armnetwork.SecurityGroup{ID: nsg.ID}}}},
			}}, nil)
	})
	if err != nil {
		return n, err
	}
	n.VNetID = deref(vnet.ID)
	if vnet.Properties != nil && len(vnet.Properties.Subnets) > 0 {
		n.SubnetID = deref(vnet.Properties.Subnets[0].ID)
	}
	if n.SubnetID == "" {
		n.SubnetID = n.VNetID + "/subnets/build"
	}
	return n, nil
}

// DeleteNetwork removes what CreateNetwork made (in an existing resource
// group; a temporary group is deleted whole instead).
func (c *Clients) DeleteNetwork(ctx context.Context, rg, prefix string) error {
	if err := c.DeleteVNet(ctx, rg, prefix+"-"+string(contract.KindVNet)); err != nil {
		return err
	}
	return c.DeleteNSG(ctx, rg, prefix+"-"+string(contract.KindNSG))
}

// DeleteVNet deletes a virtual network; one already gone is fine.
func (c *Clients) DeleteVNet(ctx context.Context, rg, name string) error {
	return runOrGone(ctx, c, "delete virtual network "+name, func(ctx context.Context) (*runtime.Poller[armnetwork.VirtualNetworksClientDeleteResponse], error) {
		return c.vnets.BeginDelete(ctx, rg, name, nil)
	})
}

// DeleteNSG deletes a network security group; one already gone is fine.
func (c *Clients) DeleteNSG(ctx context.Context, rg, name string) error {
	return runOrGone(ctx, c, "delete network security group "+name, func(ctx context.Context) (*runtime.Poller[armnetwork.SecurityGroupsClientDeleteResponse], error) {
		return c.nsgs.BeginDelete(ctx, rg, name, nil)
	})
}

// VMSpec describes the build VM.
type VMSpec struct {
	ResourceGroup, Name, Location, Size string
	Image                               Image
	// ImageID, when set, boots a gallery image version or managed image
	// instead of the marketplace Image.
	ImageID                  string
	SubnetID                 string
	PublicIP                 bool
	AdminUser, AuthorizedKey string
	CustomData               string
	Spot                     bool
	Identity                 string // user-assigned identity resource ID
	// SecurityType is Security.Type for a build, BootSecurity of the
	// definition for a verify; "" is Standard.
	SecurityType string
	Tags         map[string]string
}

// CreateVM creates the build VM with its NIC and public IP inline (deleted
// with it) and waits until it is provisioned. It returns the VM's ID and
// the address to reach it on.
func (c *Clients) CreateVM(ctx context.Context, s VMSpec) (id, address string, err error) {
	del := to.Ptr(armcompute.DeleteOptionsDelete)
	ipCfg := &armcompute.VirtualMachineNetworkInterfaceIPConfiguration{Name: to.Ptr("ipconfig"),
		Properties: &armcompute.VirtualMachineNetworkInterfaceIPConfigurationProperties{
			Subnet: &armcompute.SubResource{ID: to.Ptr(s.SubnetID)}, Primary: to.Ptr(true)}}
	if s.PublicIP {
		ipCfg.Properties.PublicIPAddressConfiguration = &armcompute.VirtualMachinePublicIPAddressConfiguration{
			Name: to.Ptr(s.Name + "-pip"), SKU: &armcompute.PublicIPAddressSKU{Name: to.Ptr(armcompute.PublicIPAddressSKUNameStandard)},
			Properties: &armcompute.VirtualMachinePublicIPAddressConfigurationProperties{DeleteOption: del,
				PublicIPAllocationMethod: to.Ptr(armcompute.PublicIPAllocationMethodStatic)}}
	}
	vm := armcompute.VirtualMachine{
		Location: to.Ptr(s.Location), Tags: buildTags(s.Tags),
		Properties: &armcompute.VirtualMachineProperties{
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes(s.Size))},
			StorageProfile: &armcompute.StorageProfile{
				ImageReference: imageReference(s),
				OSDisk: &armcompute.OSDisk{Name: to.Ptr(s.Name + "-osdisk"), CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
					DeleteOption: to.Ptr(armcompute.DiskDeleteOptionTypesDelete), ManagedDisk: &armcompute.ManagedDiskParameters{StorageAccountType: to.Ptr(armcompute.StorageAccountTypesStandardSSDLRS)}},
			},
			OSProfile: &armcompute.OSProfile{ComputerName: to.Ptr(s.Name), AdminUsername: to.Ptr(s.AdminUser), CustomData: to.Ptr(s.CustomData),
				LinuxConfiguration: &armcompute.LinuxConfiguration{DisablePasswordAuthentication: to.Ptr(true),
					SSH: &armcompute.SSHConfiguration{PublicKeys: []*armcompute.SSHPublicKey{{
						Path: to.Ptr("/home/" + s.AdminUser + "/.ssh/authorized_keys"), KeyData: to.Ptr(s.AuthorizedKey)}}}}},
			NetworkProfile: &armcompute.NetworkProfile{NetworkAPIVersion: to.Ptr(armcompute.NetworkAPIVersionTwoThousandTwenty1101),
				NetworkInterfaceConfigurations: []*armcompute.VirtualMachineNetworkInterfaceConfiguration{{Name: to.Ptr(s.Name + "-nic"),
					Properties: &armcompute.VirtualMachineNetworkInterfaceConfigurationProperties{Primary: to.Ptr(true), DeleteOption: del,
						IPConfigurations: []*armcompute.VirtualMachineNetworkInterfaceIPConfiguration{ipCfg}}}}},
		},
	}
	vm.Properties.SecurityProfile = securityProfile(s.SecurityType)
	if s.SecurityType == SecurityConfidentialVM {
		// A confidential VM's OS disk must say how its guest state is
		// encrypted; VMGuestStateOnly needs no disk encryption set.
		vm.Properties.StorageProfile.OSDisk.ManagedDisk.SecurityProfile = &armcompute.VMDiskSecurityProfile{
			SecurityEncryptionType: to.Ptr(armcompute.SecurityEncryptionTypesVMGuestStateOnly)}
	}
	if s.Spot {
		vm.Properties.Priority = to.Ptr(armcompute.VirtualMachinePriorityTypesSpot)
		vm.Properties.EvictionPolicy = to.Ptr(armcompute.VirtualMachineEvictionPolicyTypesDelete)
		vm.Properties.BillingProfile = &armcompute.BillingProfile{MaxPrice: to.Ptr[float64](-1)}
	}
	if s.Identity != "" {
		vm.Identity = &armcompute.VirtualMachineIdentity{Type: to.Ptr(armcompute.ResourceIdentityTypeUserAssigned),
			UserAssignedIdentities: map[string]*armcompute.UserAssignedIdentitiesValue{s.Identity: {}}}
	}
	res, err := run(ctx, c, "create virtual machine "+s.Name, func(ctx context.Context) (*runtime.Poller[armcompute.VirtualMachinesClientCreateOrUpdateResponse], error) {
		return c.vms.BeginCreateOrUpdate(ctx, s.ResourceGroup, s.Name, vm, nil)
	})
	if err != nil {
		return "", "", err
	}
	id = deref(res.ID)
	if s.PublicIP {
		var ip armnetwork.PublicIPAddressesClientGetResponse
		if err := c.call(ctx, "get public IP "+s.Name+"-pip", func(ctx context.Context) error {
			var err error
			ip, err = c.publicIPs.Get(ctx, s.ResourceGroup, s.Name+"-pip", nil)
			return err
		}); err != nil {
			return id, "", err
		}
		if ip.Properties != nil {
			address = deref(ip.Properties.IPAddress)
		}
	} else {
		var nic armnetwork.InterfacesClientGetResponse
		if err := c.call(ctx, "get network interface "+s.Name+"-nic", func(ctx context.Context) error {
			var err error
			nic, err = c.nics.Get(ctx, s.ResourceGroup, s.Name+"-nic", nil)
			return err
		}); err != nil {
			return id, "", err
		}
		if nic.Properties != nil && len(nic.Properties.IPConfigurations) > 0 && nic.Properties.IPConfigurations[0].Properties != nil {
			address = deref(nic.Properties.IPConfigurations[0].Properties.PrivateIPAddress)
		}
	}
	if address == "" {
		return id, "", fmt.Errorf("virtual machine %s: no IP address", s.Name)
	}
	return id, address, nil
}

func imageReference(s VMSpec) *armcompute.ImageReference {
	if s.ImageID != "" {
		return &armcompute.ImageReference{ID: to.Ptr(s.ImageID)}
	}
	return &armcompute.ImageReference{Publisher: to.Ptr(s.Image.Publisher), Offer: to.Ptr(s.Image.Offer), SKU: to.Ptr(s.Image.SKU), Version: to.Ptr(s.Image.Version)}
}

// DeleteVM force-deletes the VM (its NIC, IP and OS disk go with it).
func (c *Clients) DeleteVM(ctx context.Context, rg, name string) error {
	return runOrGone(ctx, c, "delete virtual machine "+name, func(ctx context.Context) (*runtime.Poller[armcompute.VirtualMachinesClientDeleteResponse], error) {
		return c.vms.BeginDelete(ctx, rg, name, &armcompute.VirtualMachinesClientBeginDeleteOptions{ForceDeletion: to.Ptr(true)})
	})
}

// Deallocate stops the VM and releases its compute; generalize needs it.
func (c *Clients) Deallocate(ctx context.Context, rg, name string) error {
	_, err := run(ctx, c, "deallocate virtual machine "+name, func(ctx context.Context) (*runtime.Poller[armcompute.VirtualMachinesClientDeallocateResponse], error) {
		return c.vms.BeginDeallocate(ctx, rg, name, nil)
	})
	return err
}

// Generalize marks the deallocated VM generalized: it can never start again.
func (c *Clients) Generalize(ctx context.Context, rg, name string) error {
	return c.call(ctx, "generalize virtual machine "+name, func(ctx context.Context) error {
		_, err := c.vms.Generalize(ctx, rg, name, nil)
		return err
	})
}

// buildTags are the tags for a build resource: when tags name a build but
// not when it made the resource, imagebake.created is added, so gc can
// judge its age (a managed image in an existing resource group was once
// made without it and kept forever).
func buildTags(tags map[string]string) map[string]*string {
	if _, ok := tags[contract.TagBuildID]; ok {
		if _, ok := tags[contract.TagCreated]; !ok {
			tags = maps.Clone(tags)
			tags[contract.TagCreated] = time.Now().UTC().Format(time.RFC3339)
		}
	}
	return ptrMap(tags)
}

func ptrMap(m map[string]string) map[string]*string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = to.Ptr(v)
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// CreateManagedImage captures a generalized VM into a managed image (for
// gallery versions that must come from one, or for consumers of images).
func (c *Clients) CreateManagedImage(ctx context.Context, rg, name, location, vmID, hyperVGen string, tags map[string]string) (string, error) {
	img := armcompute.Image{Location: to.Ptr(location), Tags: buildTags(tags), Properties: &armcompute.ImageProperties{
		SourceVirtualMachine: &armcompute.SubResource{ID: to.Ptr(vmID)},
		HyperVGeneration:     to.Ptr(armcompute.HyperVGenerationTypes(hyperVGen)),
	}}
	res, err := run(ctx, c, "create managed image "+name, func(ctx context.Context) (*runtime.Poller[armcompute.ImagesClientCreateOrUpdateResponse], error) {
		return c.managedImages.BeginCreateOrUpdate(ctx, rg, name, img, nil)
	})
	return deref(res.ID), err
}

// DeleteManagedImage removes a managed image; one already gone is fine.
func (c *Clients) DeleteManagedImage(ctx context.Context, rg, name string) error {
	return runOrGone(ctx, c, "delete managed image "+name, func(ctx context.Context) (*runtime.Poller[armcompute.ImagesClientDeleteResponse], error) {
		return c.managedImages.BeginDelete(ctx, rg, name, nil)
	})
}
