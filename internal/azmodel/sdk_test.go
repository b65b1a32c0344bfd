package azmodel_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/imagebake/imagebake/internal/azmodel"
)

const (
	sub    = azmodel.DefaultSubscriptionID
	tenant = "11111111-2222-3333-4444-555555555555"
	client = "0a0b0c0d-0000-4000-8000-000000000001"
	secret = "s3cret-value"
	loc    = "eastus"
)

var fast = &runtime.PollUntilDoneOptions{Frequency: 10 * time.Millisecond}

// env is a served model with real SDK clients authenticated through the
// real azidentity ClientSecretCredential.
type env struct {
	srv     *azmodel.Server
	m       *azmodel.Model
	compute *armcompute.ClientFactory
	network *armnetwork.ClientFactory
	res     *armresources.ClientFactory

	mu      sync.Mutex
	created []azmodel.VMInfo
	deleted []azmodel.VMInfo
}

func newEnv(t testing.TB, opts azmodel.Options) *env {
	t.Helper()
	e := &env{}
	opts.OnVMCreated = func(vm azmodel.VMInfo) { e.mu.Lock(); e.created = append(e.created, vm); e.mu.Unlock() }
	opts.OnVMDeleted = func(vm azmodel.VMInfo) { e.mu.Lock(); e.deleted = append(e.deleted, vm); e.mu.Unlock() }
	if opts.PublicIP == nil {
		opts.PublicIP = func(azmodel.VMInfo) string { return "127.0.0.5" }
	}
	e.m = azmodel.New(opts)
	// Azure's real Retry-After cadence, waited at 1:1000.
	e.srv = azmodel.NewServer(e.m, azmodel.ServerOptions{TenantID: tenant, ClientID: client, ClientSecret: secret, RetryAfterScale: 0.001})
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.srv.Close() })
	cred, err := e.srv.Credential(tenant, client, secret)
	if err != nil {
		t.Fatal(err)
	}
	co := e.srv.ClientOptions()
	// Keep the SDK's retry semantics (MaxRetryDelay 60 s caps Retry-After)
	// but make its own back-off short so tests stay fast.
	co.Retry = policy.RetryOptions{RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 60 * time.Second}
	if e.compute, err = armcompute.NewClientFactory(sub, cred, co); err != nil {
		t.Fatal(err)
	}
	if e.network, err = armnetwork.NewClientFactory(sub, cred, co); err != nil {
		t.Fatal(err)
	}
	if e.res, err = armresources.NewClientFactory(sub, cred, co); err != nil {
		t.Fatal(err)
	}
	return e
}

func respErr(t testing.TB, err error) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("want *azcore.ResponseError, got %v", err)
	}
	return re
}

func wantErr(t testing.TB, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %d %s, got success", status, code)
	}
	re := respErr(t, err)
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("want %d %s, got %d %s: %v", status, code, re.StatusCode, re.ErrorCode, err)
	}
}

// network creates rg, vnet+subnet and nsg; it returns the subnet and NSG IDs.
func (e *env) setupNetwork(t testing.TB, ctx context.Context, rg string) (string, string) {
	t.Helper()
	if _, err := e.res.NewResourceGroupsClient().CreateOrUpdate(ctx, rg, armresources.ResourceGroup{
		Location: to(loc), Tags: map[string]*string{"imagebake": to("build"), "run": to(rg)},
	}, nil); err != nil {
		t.Fatal(err)
	}
	vp, err := e.network.NewVirtualNetworksClient().BeginCreateOrUpdate(ctx, rg, "vnet", armnetwork.VirtualNetwork{
		Location: to(loc),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{to("10.0.0.0/16")}},
			Subnets:      []*armnetwork.Subnet{{Name: to("default"), Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to("10.0.0.0/24")}}},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vnet, err := vp.PollUntilDone(ctx, fast)
	if err != nil {
		t.Fatal(err)
	}
	if got := *vnet.Properties.ProvisioningState; got != armnetwork.ProvisioningStateSucceeded {
		t.Fatalf("vnet provisioningState %s", got)
	}
	sn, err := e.network.NewSubnetsClient().Get(ctx, rg, "vnet", "default", nil)
	if err != nil {
		t.Fatal(err)
	}
	np, err := e.network.NewSecurityGroupsClient().BeginCreateOrUpdate(ctx, rg, "nsg", armnetwork.SecurityGroup{
		Location: to(loc),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: []*armnetwork.SecurityRule{{
			Name: to("ssh"),
			Properties: &armnetwork.SecurityRulePropertiesFormat{
				Protocol: to(armnetwork.SecurityRuleProtocolTCP), Access: to(armnetwork.SecurityRuleAccessAllow), Direction: to(armnetwork.SecurityRuleDirectionInbound),
				Priority: to(int32(100)), SourceAddressPrefix: to("*"), SourcePortRange: to("*"), DestinationAddressPrefix: to("*"), DestinationPortRange: to("22"),
			},
		}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	nsg, err := np.PollUntilDone(ctx, fast)
	if err != nil {
		t.Fatal(err)
	}
	if len(nsg.Properties.DefaultSecurityRules) != 6 {
		t.Fatalf("default security rules: %d", len(nsg.Properties.DefaultSecurityRules))
	}
	return *sn.ID, *nsg.ID
}

func to[T any](v T) *T { return &v }

func gzipB64(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

func buildVM(subnetID, nsgID, sku, customData string) armcompute.VirtualMachine {
	return armcompute.VirtualMachine{
		Location: to(loc),
		Tags:     map[string]*string{"imagebake": to("build")},
		Properties: &armcompute.VirtualMachineProperties{
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to(armcompute.VirtualMachineSizeTypes("Standard_D2s_v5"))},
			Priority:        to(armcompute.VirtualMachinePriorityTypesSpot),
			EvictionPolicy:  to(armcompute.VirtualMachineEvictionPolicyTypesDelete),
			StorageProfile: &armcompute.StorageProfile{
				ImageReference: &armcompute.ImageReference{Publisher: to("Canonical"), Offer: to("0001-com-ubuntu-server-focal"), SKU: to(sku), Version: to("latest")},
				OSDisk: &armcompute.OSDisk{
					CreateOption: to(armcompute.DiskCreateOptionTypesFromImage),
					DeleteOption: to(armcompute.DiskDeleteOptionTypesDelete),
					ManagedDisk:  &armcompute.ManagedDiskParameters{StorageAccountType: to(armcompute.StorageAccountTypesStandardSSDLRS)},
				},
			},
			OSProfile: &armcompute.OSProfile{
				ComputerName:  to("bake"),
				AdminUsername: to("bakeadmin"),
				CustomData:    to(customData),
				LinuxConfiguration: &armcompute.LinuxConfiguration{
					DisablePasswordAuthentication: to(true),
					SSH: &armcompute.SSHConfiguration{PublicKeys: []*armcompute.SSHPublicKey{{
						Path: to("/home/bakeadmin/.ssh/authorized_keys"), KeyData: to("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test"),
					}}},
				},
			},
			UserData: to(base64.StdEncoding.EncodeToString([]byte("user-data"))),
			NetworkProfile: &armcompute.NetworkProfile{
				NetworkAPIVersion: to(armcompute.NetworkAPIVersionTwoThousandTwenty1101),
				NetworkInterfaceConfigurations: []*armcompute.VirtualMachineNetworkInterfaceConfiguration{{
					Name: to("bake-nic"),
					Properties: &armcompute.VirtualMachineNetworkInterfaceConfigurationProperties{
						Primary:              to(true),
						DeleteOption:         to(armcompute.DeleteOptionsDelete),
						NetworkSecurityGroup: &armcompute.SubResource{ID: to(nsgID)},
						IPConfigurations: []*armcompute.VirtualMachineNetworkInterfaceIPConfiguration{{
							Name: to("ipconfig1"),
							Properties: &armcompute.VirtualMachineNetworkInterfaceIPConfigurationProperties{
								Subnet: &armcompute.SubResource{ID: to(subnetID)},
								PublicIPAddressConfiguration: &armcompute.VirtualMachinePublicIPAddressConfiguration{
									Name:       to("bake-pip"),
									SKU:        &armcompute.PublicIPAddressSKU{Name: to(armcompute.PublicIPAddressSKUNameStandard)},
									Properties: &armcompute.VirtualMachinePublicIPAddressConfigurationProperties{DeleteOption: to(armcompute.DeleteOptionsDelete), PublicIPAllocationMethod: to(armcompute.PublicIPAllocationMethodStatic)},
								},
							},
						}},
					},
				}},
			},
		},
	}
}

func (e *env) createVM(t testing.TB, ctx context.Context, rg, name string, vm armcompute.VirtualMachine) armcompute.VirtualMachine {
	t.Helper()
	p, err := e.compute.NewVirtualMachinesClient().BeginCreateOrUpdate(ctx, rg, name, vm, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.PollUntilDone(ctx, fast)
	if err != nil {
		t.Fatal(err)
	}
	return res.VirtualMachine
}

func statuses(iv *armcompute.VirtualMachineInstanceView) []string {
	var out []string
	for _, s := range iv.Statuses {
		out = append(out, *s.Code)
	}
	return out
}

func (e *env) instanceView(t testing.TB, ctx context.Context, rg, name string) []string {
	t.Helper()
	vm, err := e.compute.NewVirtualMachinesClient().Get(ctx, rg, name, &armcompute.VirtualMachinesClientGetOptions{Expand: to(armcompute.InstanceViewTypesInstanceView)})
	if err != nil {
		t.Fatal(err)
	}
	return statuses(vm.Properties.InstanceView)
}

// TestBakeFlow drives a whole bake through the real SDK: network, VM with an
// inline NIC and public IP, deallocate, generalize, gallery version from the
// VM, VM delete (NIC, IP and disk go with it), resource group delete.
func TestBakeFlow(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, azmodel.Options{})
	if err := e.m.SeedGallery(azmodel.GallerySeed{
		ResourceGroup: "images", Gallery: "bakery", Image: "runner", HyperVGeneration: "V2",
		Versions: []azmodel.VersionSeed{{Name: "1.0.0"}, {Name: "1.0.1"}, {Name: "1.0.2", ExcludeFromLatest: true}},
	}); err != nil {
		t.Fatal(err)
	}
	subnetID, nsgID := e.setupNetwork(t, ctx, "build-1")
	vms := e.compute.NewVirtualMachinesClient()

	cloudConfig := "#cloud-config\npackages: [jq]\n"
	vm := e.createVM(t, ctx, "build-1", "bake-vm", buildVM(subnetID, nsgID, "20_04-lts-gen2", gzipB64(t, cloudConfig)))
	if *vm.Properties.ProvisioningState != "Succeeded" || vm.Properties.VMID == nil {
		t.Fatalf("vm after create: %s", *vm.Properties.ProvisioningState)
	}
	if vm.Properties.OSProfile.CustomData != nil || vm.Properties.OSProfile.AdminPassword != nil || vm.Properties.UserData != nil {
		t.Fatal("the VM must not echo customData, adminPassword or userData")
	}
	if got := *vm.Properties.StorageProfile.ImageReference.ExactVersion; got != "20.04.202502110" {
		t.Fatalf("exactVersion %s", got)
	}
	if nics := vm.Properties.NetworkProfile.NetworkInterfaces; len(nics) != 1 || *nics[0].Properties.DeleteOption != armcompute.DeleteOptionsDelete {
		t.Fatalf("network interfaces %+v", nics)
	}

	// The guest hook saw the decoded customData, keys and address.
	e.mu.Lock()
	if len(e.created) != 1 {
		t.Fatalf("OnVMCreated calls: %d", len(e.created))
	}
	info := e.created[0]
	e.mu.Unlock()
	zr, err := gzip.NewReader(bytes.NewReader(info.CustomData))
	if err != nil {
		t.Fatal(err)
	}
	var plain bytes.Buffer
	_, _ = plain.ReadFrom(zr)
	if plain.String() != cloudConfig || info.AdminUsername != "bakeadmin" || len(info.SSHPublicKeys) != 1 || info.PublicIP != "127.0.0.5" || info.Tags["imagebake"] != "build" || info.Priority != "Spot" {
		t.Fatalf("guest view: %+v (customData %q)", info, plain.String())
	}
	pip, err := e.network.NewPublicIPAddressesClient().Get(ctx, "build-1", "bake-pip", nil)
	if err != nil {
		t.Fatal(err)
	}
	if *pip.Properties.IPAddress != "127.0.0.5" || pip.Properties.IPConfiguration == nil {
		t.Fatalf("public IP %+v", pip.Properties)
	}
	full, err := vms.Get(ctx, "build-1", "bake-vm", &armcompute.VirtualMachinesClientGetOptions{Expand: to(armcompute.InstanceViewTypesUserData)})
	if err != nil {
		t.Fatal(err)
	}
	if full.Properties.UserData == nil {
		t.Fatal("$expand=userData must return userData")
	}
	if got := e.instanceView(t, ctx, "build-1", "bake-vm"); strings.Join(got, ",") != "ProvisioningState/succeeded,PowerState/running" {
		t.Fatalf("running statuses %v", got)
	}

	// Generalize before deallocate is refused.
	_, err = vms.Generalize(ctx, "build-1", "bake-vm", nil)
	wantErr(t, err, http.StatusConflict, "OperationNotAllowed")

	// Deleting the subnet or NIC while the VM uses them is refused.
	_, err = e.network.NewSubnetsClient().BeginDelete(ctx, "build-1", "vnet", "default", nil)
	wantErr(t, err, http.StatusBadRequest, "InUseSubnetCannotBeDeleted")
	_, err = e.network.NewInterfacesClient().BeginDelete(ctx, "build-1", "bake-nic", nil)
	wantErr(t, err, http.StatusBadRequest, "NicInUse")

	dp, err := vms.BeginDeallocate(ctx, "build-1", "bake-vm", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(ctx, fast); err != nil {
		t.Fatal(err)
	}
	if _, err := vms.Generalize(ctx, "build-1", "bake-vm", nil); err != nil {
		t.Fatal(err)
	}
	if got := e.instanceView(t, ctx, "build-1", "bake-vm"); strings.Join(got, ",") != "ProvisioningState/succeeded,OSState/generalized,PowerState/deallocated" {
		t.Fatalf("generalized statuses %v", got)
	}
	_, err = vms.BeginStart(ctx, "build-1", "bake-vm", nil)
	wantErr(t, err, http.StatusConflict, "OperationNotAllowed")

	// Publish 1.0.3 from the VM, create-only.
	versions := e.compute.NewGalleryImageVersionsClient()
	ver := armcompute.GalleryImageVersion{
		Location: to(loc),
		Properties: &armcompute.GalleryImageVersionProperties{
			StorageProfile:    &armcompute.GalleryImageVersionStorageProfile{Source: &armcompute.GalleryArtifactVersionFullSource{VirtualMachineID: vm.ID}},
			PublishingProfile: &armcompute.GalleryImageVersionPublishingProfile{TargetRegions: []*armcompute.TargetRegion{{Name: to("East US")}, {Name: to("westeurope"), RegionalReplicaCount: to(int32(2))}}},
		},
	}
	createOnly := policy.WithHTTPHeader(ctx, http.Header{"If-None-Match": {"*"}})
	vp, err := versions.BeginCreateOrUpdate(createOnly, "images", "bakery", "runner", "1.0.3", ver, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vp.PollUntilDone(ctx, fast); err != nil {
		t.Fatal(err)
	}
	got, err := versions.Get(ctx, "images", "bakery", "runner", "1.0.3", &armcompute.GalleryImageVersionsClientGetOptions{Expand: to(armcompute.ReplicationStatusTypesReplicationStatus)})
	if err != nil {
		t.Fatal(err)
	}
	pp := got.Properties.PublishingProfile
	rs := got.Properties.ReplicationStatus
	if *got.Properties.ProvisioningState != "Succeeded" || *pp.ReplicaCount != 1 || *pp.StorageAccountType != "Standard_LRS" || pp.PublishedDate == nil ||
		*pp.TargetRegions[0].StorageAccountType != "Standard_LRS" || *pp.TargetRegions[0].ExcludeFromLatest || *pp.TargetRegions[1].RegionalReplicaCount != 2 ||
		rs == nil || *rs.AggregatedState != "Completed" || len(rs.Summary) != 2 || *rs.Summary[0].Progress != 100 {
		t.Fatalf("version 1.0.3: %+v / %+v", pp, rs)
	}
	plainGet, err := versions.Get(ctx, "images", "bakery", "runner", "1.0.3", nil)
	if err != nil {
		t.Fatal(err)
	}
	if plainGet.Properties.ReplicationStatus != nil {
		t.Fatal("replicationStatus only with $expand=ReplicationStatus")
	}
	// The same name twice: Azure ignores If-None-Match on versions and
	// answers an update (200, Updating) with the same source; a different
	// source is refused 409.
	again, err := versions.BeginCreateOrUpdate(createOnly, "images", "bakery", "runner", "1.0.3", ver, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := again.PollUntilDone(ctx, fast); err != nil || *again.Properties.ProvisioningState != "Succeeded" ||
		!strings.EqualFold(*again.Properties.StorageProfile.Source.VirtualMachineID, *vm.ID) {
		t.Fatalf("update of 1.0.3: %v %+v", err, again)
	}
	if n := *pp.TargetRegions[0].Name; n != "East US" || *pp.TargetRegions[1].Name != "West Europe" {
		t.Fatalf("targetRegions names %q %q, want display names", n, *pp.TargetRegions[1].Name)
	}
	other := ver
	other.Properties = &armcompute.GalleryImageVersionProperties{StorageProfile: &armcompute.GalleryImageVersionStorageProfile{
		Source: &armcompute.GalleryArtifactVersionFullSource{ID: to("/subscriptions/" + sub + "/resourceGroups/images/providers/Microsoft.Compute/images/other")}}}
	_, err = versions.BeginCreateOrUpdate(ctx, "images", "bakery", "runner", "1.0.3", other, nil)
	wantErr(t, err, http.StatusConflict, "PropertyChangeNotAllowed")

	// Listing pages through every version (page size 2).
	pager := versions.NewListByGalleryImagePager("images", "bakery", "runner", nil)
	var names []string
	pages := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, v := range page.Value {
			names = append(names, *v.Name)
		}
	}
	if strings.Join(names, ",") != "1.0.0,1.0.1,1.0.2,1.0.3" || pages != 2 {
		t.Fatalf("listed %v in %d pages", names, pages)
	}

	// Deleting the VM takes its NIC, public IP and OS disk along.
	diskName := *vm.Properties.StorageProfile.OSDisk.Name
	delp, err := vms.BeginDelete(ctx, "build-1", "bake-vm", &armcompute.VirtualMachinesClientBeginDeleteOptions{ForceDeletion: to(true)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := delp.PollUntilDone(ctx, fast); err != nil {
		t.Fatal(err)
	}
	_, err = e.network.NewInterfacesClient().Get(ctx, "build-1", "bake-nic", nil)
	wantErr(t, err, http.StatusNotFound, "ResourceNotFound")
	_, err = e.network.NewPublicIPAddressesClient().Get(ctx, "build-1", "bake-pip", nil)
	wantErr(t, err, http.StatusNotFound, "ResourceNotFound")
	_, err = e.compute.NewDisksClient().Get(ctx, "build-1", diskName, nil)
	wantErr(t, err, http.StatusNotFound, "ResourceNotFound")
	e.mu.Lock()
	if len(e.deleted) != 1 || e.deleted[0].Name != "bake-vm" {
		t.Fatalf("OnVMDeleted: %+v", e.deleted)
	}
	e.mu.Unlock()

	// A VM from the image definition boots its latest version: 1.0.3
	// (1.0.2 is excluded from latest).
	check := buildVM(subnetID, nsgID, "", "")
	check.Properties.StorageProfile.ImageReference = &armcompute.ImageReference{ID: to(azmodel.GalleryImageID(sub, "images", "bakery", "runner"))}
	check.Properties.NetworkProfile.NetworkInterfaceConfigurations[0].Name = to("check-nic")
	check.Properties.NetworkProfile.NetworkInterfaceConfigurations[0].Properties.IPConfigurations[0].Properties.PublicIPAddressConfiguration.Name = to("check-pip")
	e.createVM(t, ctx, "build-1", "check-vm", check)
	e.mu.Lock()
	if img := e.created[len(e.created)-1].Image; !strings.HasSuffix(img, "/versions/1.0.3") {
		t.Fatalf("check VM image %s", img)
	}
	e.mu.Unlock()

	// Tag-filtered resource-group list finds the build group; deleting it
	// removes everything inside.
	rgPager := e.res.NewResourceGroupsClient().NewListPager(&armresources.ResourceGroupsClientListOptions{Filter: to("tagName eq 'imagebake' and tagValue eq 'build'")})
	var rgs []string
	for rgPager.More() {
		page, err := rgPager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page.Value {
			rgs = append(rgs, *g.Name)
		}
	}
	if strings.Join(rgs, ",") != "build-1" {
		t.Fatalf("tagged groups %v", rgs)
	}
	gp, err := e.res.NewResourceGroupsClient().BeginDelete(ctx, "build-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gp.PollUntilDone(ctx, fast); err != nil {
		t.Fatal(err)
	}
	exists, err := e.res.NewResourceGroupsClient().CheckExistence(ctx, "build-1", nil)
	if err != nil || exists.Success {
		t.Fatalf("group still exists: %v %v", exists.Success, err)
	}
	for _, r := range e.m.Resources() {
		if strings.EqualFold(r.ResourceGroup, "build-1") || r.Tags["imagebake"] == "build" {
			t.Fatalf("leaked %s", r.ID)
		}
	}
	if n := len(e.m.Resources()); n != 7 { // images RG, gallery, definition, four versions
		t.Fatalf("left %d resources: %+v", n, e.m.Resources())
	}
	if e.m.CountRequests(azmodel.ClassPoll) == 0 || e.m.CountRequests(azmodel.ClassAuth) != 2 {
		t.Fatalf("polls %d, auth %d", e.m.CountRequests(azmodel.ClassPoll), e.m.CountRequests(azmodel.ClassAuth))
	}
}

// TestThrottling: a 429 with Retry-After ≤ 60 s is retried by the SDK after
// the wait; above the SDK's cap it comes straight back.
func TestThrottling(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, azmodel.Options{})
	rgs := e.res.NewResourceGroupsClient()
	if _, err := rgs.CreateOrUpdate(ctx, "thr", armresources.ResourceGroup{Location: to(loc)}, nil); err != nil {
		t.Fatal(err)
	}
	e.m.MustAddRule(azmodel.Throttle("GET", `/resourcegroups/thr$`, 1, 1, 1))
	e.m.ResetRequests()
	start := time.Now()
	if _, err := rgs.Get(ctx, "thr", nil); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("the SDK did not honour Retry-After: 1 (waited %s)", waited)
	}
	reqs := e.m.Requests()
	if len(reqs) != 2 || reqs[0].Status != 429 || !reqs[0].Injected || reqs[0].Code != "TooManyRequests" || reqs[1].Status != 200 {
		t.Fatalf("requests %+v", reqs)
	}

	e.m.ClearRules()
	e.m.MustAddRule(azmodel.Throttle("GET", `/virtualMachines/`, 1, -1, 1200))
	e.m.ResetRequests()
	_, err := e.compute.NewVirtualMachinesClient().Get(ctx, "thr", "vm", nil)
	wantErr(t, err, http.StatusTooManyRequests, "OperationNotAllowed")
	if re := respErr(t, err); re.RawResponse.Header.Get("Retry-After") != "1200" {
		t.Fatalf("Retry-After %q", re.RawResponse.Header.Get("Retry-After"))
	}
	if n := e.m.CountRequests(); n != 1 {
		t.Fatalf("a Retry-After above 60 s must not be retried; got %d requests", n)
	}
}

// TestInjectedFailures: a failed LRO surfaces from PollUntilDone; transient
// 5xx are retried; a dropped connection is retried.
func TestInjectedFailures(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, azmodel.Options{})
	subnetID, nsgID := e.setupNetwork(t, ctx, "f")
	vms := e.compute.NewVirtualMachinesClient()

	e.m.MustAddRule(azmodel.FailLRO("PUT", `/virtualMachines/doomed$`, 1, "OSProvisioningTimedOut", "OS Provisioning for VM 'doomed' did not finish in the allotted time."))
	p, err := vms.BeginCreateOrUpdate(ctx, "f", "doomed", buildVM(subnetID, nsgID, "20_04-lts", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.PollUntilDone(ctx, fast)
	wantErr(t, err, http.StatusOK, "OSProvisioningTimedOut") // the status body carries the error
	got, err := vms.Get(ctx, "f", "doomed", nil)
	if err != nil || *got.Properties.ProvisioningState != "Failed" {
		t.Fatalf("failed VM: %v %v", err, got.Properties)
	}

	// A 500 on the first deallocate POST and a dropped first poll are retried.
	e.m.MustAddRule(azmodel.FailNth("POST", `/deallocate$`, 1, 500, ""))
	e.m.MustAddRule(azmodel.Rule{Method: "GET", Op: "Operations_Get", Nth: 1, Drop: true})
	e.m.ResetRequests()
	vm2 := buildVM(subnetID, nsgID, "20_04-lts", "")
	vm2.Properties.NetworkProfile.NetworkInterfaceConfigurations[0].Name = to("nic2")
	vm2.Properties.NetworkProfile.NetworkInterfaceConfigurations[0].Properties.IPConfigurations[0].Properties.PublicIPAddressConfiguration.Name = to("pip2")
	e.createVM(t, ctx, "f", "ok", vm2)
	dp, err := vms.BeginDeallocate(ctx, "f", "ok", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(ctx, fast); err != nil {
		t.Fatal(err)
	}
	injected := 0
	for _, r := range e.m.Requests() {
		if r.Injected {
			injected++
		}
	}
	if injected != 2 {
		t.Fatalf("injected answers: %d", injected)
	}
	for _, rs := range e.m.Rules() {
		if rs.Fired != 1 {
			t.Fatalf("rule %d fired %d times", rs.ID, rs.Fired)
		}
	}

	// A failed resource-group delete (Location poller) surfaces too.
	e.m.MustAddRule(azmodel.FailLRO("DELETE", `/resourcegroups/f$`, 1, "ResourceGroupDeletionBlocked", "Deletion of resource group 'f' failed as resources with solution could not be deleted."))
	gp, err := e.res.NewResourceGroupsClient().BeginDelete(ctx, "f", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = gp.PollUntilDone(ctx, fast)
	wantErr(t, err, http.StatusConflict, "ResourceGroupDeletionBlocked")
}

// TestGalleryRules covers the version checks Azure makes at create time.
func TestGalleryRules(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, azmodel.Options{})
	if err := e.m.SeedGallery(azmodel.GallerySeed{ResourceGroup: "img", Gallery: "g", Image: "gen1", Versions: []azmodel.VersionSeed{{Name: "1.0.0"}}}); err != nil {
		t.Fatal(err)
	}
	subnetID, nsgID := e.setupNetwork(t, ctx, "b")
	vm := e.createVM(t, ctx, "b", "vm", buildVM(subnetID, nsgID, "20_04-lts-gen2", ""))
	versions := e.compute.NewGalleryImageVersionsClient()
	ver := armcompute.GalleryImageVersion{Location: to(loc), Properties: &armcompute.GalleryImageVersionProperties{
		StorageProfile: &armcompute.GalleryImageVersionStorageProfile{Source: &armcompute.GalleryArtifactVersionFullSource{VirtualMachineID: vm.ID}}}}

	// Not generalized: 400 BadRequest, synchronously.
	_, err := versions.BeginCreateOrUpdate(ctx, "img", "g", "gen1", "1.0.1", ver, nil)
	wantErr(t, err, http.StatusBadRequest, "BadRequest")

	dp, err := e.compute.NewVirtualMachinesClient().BeginDeallocate(ctx, "b", "vm", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(ctx, fast); err != nil {
		t.Fatal(err)
	}
	if _, err := e.compute.NewVirtualMachinesClient().Generalize(ctx, "b", "vm", nil); err != nil {
		t.Fatal(err)
	}
	// Gen2 VM into a V1 definition: accepted, then the operation fails.
	p, err := versions.BeginCreateOrUpdate(ctx, "img", "g", "gen1", "1.0.1", ver, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.PollUntilDone(ctx, fast)
	wantErr(t, err, http.StatusOK, "Conflict")
	failed, err := versions.Get(ctx, "img", "g", "gen1", "1.0.1", &armcompute.GalleryImageVersionsClientGetOptions{Expand: to(armcompute.ReplicationStatusTypesReplicationStatus)})
	if err != nil || *failed.Properties.ProvisioningState != "Failed" || *failed.Properties.ReplicationStatus.AggregatedState != "Failed" {
		t.Fatalf("failed version: %v", err)
	}
	// PATCH (promote/exclude) works on the seeded version; deleting the
	// definition with versions is refused.
	up, err := versions.BeginUpdate(ctx, "img", "g", "gen1", "1.0.0", armcompute.GalleryImageVersionUpdate{Properties: &armcompute.GalleryImageVersionProperties{
		PublishingProfile: &armcompute.GalleryImageVersionPublishingProfile{ExcludeFromLatest: to(true)}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	upd, err := up.PollUntilDone(ctx, fast)
	if err != nil || !*upd.Properties.PublishingProfile.ExcludeFromLatest || len(upd.Properties.PublishingProfile.TargetRegions) != 1 {
		t.Fatalf("update: %v %+v", err, upd.Properties)
	}
	_, err = e.compute.NewGalleryImagesClient().BeginDelete(ctx, "img", "g", "gen1", nil)
	wantErr(t, err, http.StatusConflict, "CannotDeleteResource")
	_, err = versions.Get(ctx, "img", "g", "gen1", "9.9.9", nil)
	wantErr(t, err, http.StatusNotFound, "ResourceNotFound")
	_, err = versions.BeginCreateOrUpdate(ctx, "img", "g", "nope", "1.0.0", ver, nil)
	wantErr(t, err, http.StatusNotFound, "ParentResourceNotFound")
}

// TestMarketplaceAndAuth: VirtualMachineImages List/Get, and 401 without a
// token.
func TestMarketplaceAndAuth(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, azmodel.Options{})
	imgs := e.compute.NewVirtualMachineImagesClient()
	list, err := imgs.List(ctx, loc, "Canonical", "0001-com-ubuntu-server-focal", "20_04-lts-gen2", &armcompute.VirtualMachineImagesClientListOptions{Orderby: to("name desc"), Top: to(int32(2))})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.VirtualMachineImageResourceArray) != 2 || *list.VirtualMachineImageResourceArray[0].Name != "20.04.202502110" {
		t.Fatalf("list %+v", list.VirtualMachineImageResourceArray)
	}
	img, err := imgs.Get(ctx, loc, "Canonical", "0001-com-ubuntu-server-focal", "20_04-lts-gen2", "20.04.202501010", nil)
	if err != nil || *img.Properties.HyperVGeneration != armcompute.HyperVGenerationTypesV2 {
		t.Fatalf("get: %v", err)
	}
	_, err = imgs.List(ctx, loc, "Canonical", "nope", "x", nil)
	wantErr(t, err, http.StatusNotFound, "NotFound")

	req, _ := http.NewRequest(http.MethodGet, e.srv.URL()+"/subscriptions/"+sub+"/resourcegroups?api-version=2021-04-01", nil)
	resp, err := e.srv.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("unauthenticated: %d", resp.StatusCode)
	}
	badCred, err := e.srv.Credential(tenant, client, "wrong")
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := armresources.NewResourceGroupsClient(sub, badCred, e.srv.ClientOptions())
	if _, err := bad.Get(ctx, "x", nil); err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("wrong secret: %v", err)
	}
}

// BenchmarkBake runs the VM → deallocate → generalize → version → delete
// sequence with real-world durations scaled by 1/1000 and reports the
// Resource Manager requests (and polls) one bake costs at a 10 ms poll
// frequency.
func BenchmarkBake(b *testing.B) {
	ctx := context.Background()
	t := b
	lat := azmodel.RealWorldLatency(0.001)
	delete(lat.Durations, azmodel.OpRequestRead)
	delete(lat.Durations, azmodel.OpRequestWrite)
	e := newEnv(t, azmodel.Options{InProgressPolls: -1, Latency: lat})
	if err := e.m.SeedGallery(azmodel.GallerySeed{ResourceGroup: "images", Gallery: "bakery", Image: "runner", HyperVGeneration: "V2"}); err != nil {
		b.Fatal(err)
	}
	subnetID, nsgID := e.setupNetwork(t, ctx, "bench")
	vms := e.compute.NewVirtualMachinesClient()
	versions := e.compute.NewGalleryImageVersionsClient()
	e.m.ResetRequests()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := "vm" + strconv.Itoa(i)
		spec := buildVM(subnetID, nsgID, "20_04-lts-gen2", "")
		spec.Properties.NetworkProfile.NetworkInterfaceConfigurations[0].Name = to(name + "-nic")
		spec.Properties.NetworkProfile.NetworkInterfaceConfigurations[0].Properties.IPConfigurations[0].Properties.PublicIPAddressConfiguration.Name = to(name + "-pip")
		vm := e.createVM(t, ctx, "bench", name, spec)
		if dp, err := vms.BeginDeallocate(ctx, "bench", name, nil); err != nil {
			b.Fatal(err)
		} else if _, err := dp.PollUntilDone(ctx, fast); err != nil {
			b.Fatal(err)
		}
		if _, err := vms.Generalize(ctx, "bench", name, nil); err != nil {
			b.Fatal(err)
		}
		vp, err := versions.BeginCreateOrUpdate(ctx, "images", "bakery", "runner", "1.0."+strconv.Itoa(i), armcompute.GalleryImageVersion{
			Location: to(loc), Properties: &armcompute.GalleryImageVersionProperties{StorageProfile: &armcompute.GalleryImageVersionStorageProfile{
				Source: &armcompute.GalleryArtifactVersionFullSource{VirtualMachineID: vm.ID}}}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := vp.PollUntilDone(ctx, fast); err != nil {
			b.Fatal(err)
		}
		if delp, err := vms.BeginDelete(ctx, "bench", name, nil); err != nil {
			b.Fatal(err)
		} else if _, err := delp.PollUntilDone(ctx, fast); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(e.m.CountRequests())/float64(b.N), "arm-requests/op")
	b.ReportMetric(float64(e.m.CountRequests(azmodel.ClassPoll))/float64(b.N), "polls/op")
}
