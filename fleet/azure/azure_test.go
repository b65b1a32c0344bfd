package azure_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"

	"github.com/imagebake/imagebake/fleet"
	fleetazure "github.com/imagebake/imagebake/fleet/azure"
	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	"github.com/imagebake/imagebake/internal/contract"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/runnerreg"
)

const identity = "/subscriptions/" + aztest.Subscription + "/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/runner"

type env struct {
	e         *aztest.Env
	c         *az.Clients
	vms       *armcompute.VirtualMachinesClient
	subnet    string
	versionID string
}

func newEnv(t *testing.T, seed azmodel.GallerySeed) env {
	t.Helper()
	e := aztest.New(t, azmodel.Options{}, nil)
	if seed.Image != "" {
		seed.SubscriptionID, seed.ResourceGroup, seed.Gallery, seed.Location = aztest.Subscription, "image-gallery-rg", "runner_images", "eastus"
		if err := e.Model.SeedGallery(seed); err != nil {
			t.Fatal(err)
		}
	}
	image := seed.Image
	if image == "" {
		image = "github-runner-focal"
		if err := e.Model.SeedVersion(aztest.Subscription, "image-gallery-rg", "runner_images", image, azmodel.VersionSeed{Name: "1.0.0"}); err != nil {
			t.Fatal(err)
		}
	}
	c := e.Clients(t)
	ctx := context.Background()
	if err := c.CreateResourceGroup(ctx, "github-runners", "eastus", nil); err != nil {
		t.Fatal(err)
	}
	n, err := c.CreateNetwork(ctx, "github-runners", "eastus", "runners", []string{"10.0.0.0/8"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := e.Server.Credential("tenant-1", "client-1", "x")
	if err != nil {
		t.Fatal(err)
	}
	vms, err := armcompute.NewVirtualMachinesClient(aztest.Subscription, cred, e.Server.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	return env{e: e, c: c, vms: vms, subnet: n.SubnetID,
		versionID: azmodel.GalleryImageID(aztest.Subscription, "image-gallery-rg", "runner_images", image) + "/versions/1.0.0"}
}

func (v env) target(o fleetazure.Options) *fleetazure.Target {
	o.ResourceGroup, o.Location, o.SubnetID = "github-runners", "eastus", v.subnet
	if o.IdentityID == "" {
		o.IdentityID = identity
	}
	return fleetazure.New(v.c, o)
}

func vmSpec(v env, name, jit string) fleet.VMSpec {
	return fleet.VMSpec{Name: name, Image: "github-runner-focal", Version: "1.0.0", ImageID: v.versionID, Cycle: contract.CycleDeallocate,
		UserData: runnerreg.NewSecret(jit), Tags: map[string]string{contract.TagLaunchedFrom: "github-runner-focal", contract.TagLaunchVersion: "1.0.0",
			contract.TagLaunchID: "abcd1234", contract.TagRunnerID: "23", contract.TagCreated: "2026-12-02T08:00:00Z"}}
}

func TestCreateListDelete(t *testing.T) {
	v := newEnv(t, azmodel.GallerySeed{})
	ctx := context.Background()
	tg := v.target(fleetazure.Options{})
	vm, err := tg.Create(ctx, vmSpec(v, "runner-1", "jit-config-one"))
	if err != nil {
		t.Fatal(err)
	}
	if vm.Name != "runner-1" || vm.ResourceGroup != "github-runners" || vm.RunnerID != 23 || vm.Power != fleet.PowerRunning || vm.Version != "1.0.0" {
		t.Errorf("created %+v", vm)
	}
	got, err := v.vms.Get(ctx, "github-runners", "runner-1", &armcompute.VirtualMachinesClientGetOptions{Expand: to.Ptr(armcompute.InstanceViewTypesUserData)})
	if err != nil {
		t.Fatal(err)
	}
	p := got.Properties
	if ud, _ := base64.StdEncoding.DecodeString(deref(p.UserData)); string(ud) != "jit-config-one" {
		t.Errorf("userData %q", deref(p.UserData))
	}
	if deref(p.StorageProfile.ImageReference.ID) != v.versionID {
		t.Errorf("image %v", deref(p.StorageProfile.ImageReference.ID))
	}
	if got.Identity == nil || got.Identity.UserAssignedIdentities[identity] == nil || *got.Identity.Type != armcompute.ResourceIdentityTypeUserAssigned {
		t.Errorf("identity %+v", got.Identity)
	}
	if deref(got.Tags[contract.TagCycle]) != contract.CycleDeallocate || deref(got.Tags[contract.TagLaunchedFrom]) != "github-runner-focal" {
		t.Errorf("tags %v", got.Tags)
	}
	for _, r := range v.e.Model.Resources() {
		if strings.Contains(strings.ToLower(r.Type), "publicipaddresses") {
			t.Errorf("a public IP was made: %s", r.ID)
		}
	}
	// Another VM, not imagebake's, and one deallocated runner.
	if _, err := tg.Create(ctx, vmSpec(v, "runner-2", "jit-config-two")); err != nil {
		t.Fatal(err)
	}
	if err := v.c.Deallocate(ctx, "github-runners", "runner-2"); err != nil {
		t.Fatal(err)
	}
	list, err := tg.List(ctx, "github-runner-focal")
	if err != nil {
		t.Fatal(err)
	}
	power := map[string]fleet.Power{}
	for _, vm := range list {
		power[vm.Name] = vm.Power
	}
	if len(list) != 2 || power["runner-1"] != fleet.PowerRunning || power["runner-2"] != fleet.PowerDeallocated {
		t.Errorf("list %+v", list)
	}
	if other, _ := tg.List(ctx, "other-image"); len(other) != 0 {
		t.Errorf("another image lists %+v", other)
	}
	for _, vm := range list {
		if vm.Name == "runner-2" {
			if err := tg.Delete(ctx, vm); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, r := range v.e.Model.Resources() {
		if strings.Contains(r.ID, "runner-2") {
			t.Errorf("left after delete: %s %s", r.Type, r.ID)
		}
	}
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	v := newEnv(t, azmodel.GallerySeed{})
	v.e.Model.MustAddRule(azmodel.Rule{Op: "VirtualMachines_CreateOrUpdate", FailLRO: true, Code: "AllocationFailed", Message: "no capacity"})
	_, err := v.target(fleetazure.Options{}).Create(context.Background(), vmSpec(v, "runner-1", "jit"))
	if err == nil || !strings.Contains(err.Error(), "AllocationFailed") {
		t.Fatalf("err %v", err)
	}
	v.e.Model.Settle()
	for _, r := range v.e.Model.Resources() {
		if strings.Contains(r.ID, "runner-1") {
			t.Errorf("left: %s", r.ID)
		}
	}
}

func TestBody(t *testing.T) {
	v := newEnv(t, azmodel.GallerySeed{})
	for _, tc := range []struct {
		name  string
		o     fleetazure.Options
		check func(t *testing.T, vm armcompute.VirtualMachine)
	}{
		{"spot", fleetazure.Options{Spot: true}, func(t *testing.T, vm armcompute.VirtualMachine) {
			if *vm.Properties.Priority != armcompute.VirtualMachinePriorityTypesSpot || *vm.Properties.EvictionPolicy != armcompute.VirtualMachineEvictionPolicyTypesDeallocate {
				t.Errorf("priority %v eviction %v", *vm.Properties.Priority, *vm.Properties.EvictionPolicy)
			}
		}},
		{"spot ephemeral is evicted by delete", fleetazure.Options{Spot: true, EphemeralOSDisk: true, VMSize: "Standard_D2ds_v5"}, func(t *testing.T, vm armcompute.VirtualMachine) {
			osd := vm.Properties.StorageProfile.OSDisk
			if *vm.Properties.EvictionPolicy != armcompute.VirtualMachineEvictionPolicyTypesDelete || osd.DiffDiskSettings == nil || *osd.Caching != armcompute.CachingTypesReadOnly {
				t.Errorf("eviction %v disk %+v", *vm.Properties.EvictionPolicy, osd)
			}
		}},
		{"trusted launch", fleetazure.Options{SecurityType: az.SecurityTrustedLaunch}, func(t *testing.T, vm armcompute.VirtualMachine) {
			if sp := vm.Properties.SecurityProfile; sp == nil || *sp.SecurityType != armcompute.SecurityTypesTrustedLaunch {
				t.Errorf("security %+v", sp)
			}
		}},
		{"nic and disk go with the VM, no public IP", fleetazure.Options{}, func(t *testing.T, vm armcompute.VirtualMachine) {
			nic := vm.Properties.NetworkProfile.NetworkInterfaceConfigurations[0].Properties
			if *nic.DeleteOption != armcompute.DeleteOptionsDelete || nic.IPConfigurations[0].Properties.PublicIPAddressConfiguration != nil ||
				*vm.Properties.StorageProfile.OSDisk.DeleteOption != armcompute.DiskDeleteOptionTypesDelete || vm.Properties.SecurityProfile != nil {
				t.Errorf("nic %+v", nic)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vm, err := v.target(tc.o).Body(vmSpec(v, "r", "jit"))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, vm)
		})
	}
	if _, err := fleetazure.New(v.c, fleetazure.Options{}).Body(vmSpec(v, "r", "jit")); err == nil {
		t.Error("a body without resource group, location and subnet")
	}
}

// An ephemeral OS disk on a size with room, from a Trusted Launch
// definition: the model's placement and security rules accept it.
func TestCreateEphemeralTrustedLaunch(t *testing.T) {
	v := newEnv(t, azmodel.GallerySeed{Image: "github-runner-noble", HyperVGeneration: "V2", SecurityType: "TrustedLaunch",
		Versions: []azmodel.VersionSeed{{Name: "1.0.0"}}})
	s := vmSpec(v, "runner-e", "jit")
	tg := v.target(fleetazure.Options{EphemeralOSDisk: true, VMSize: "Standard_D2ds_v5", SecurityType: az.SecurityTrustedLaunch})
	if _, err := tg.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	// Standard on a TrustedLaunch definition is refused by the model.
	if _, err := v.target(fleetazure.Options{}).Create(context.Background(), vmSpec(v, "runner-s", "jit")); err == nil {
		t.Error("a Standard VM from a TrustedLaunch definition was created")
	}
	// And an ephemeral disk on a size without local storage.
	tg = v.target(fleetazure.Options{EphemeralOSDisk: true, VMSize: "Standard_D2s_v5", SecurityType: az.SecurityTrustedLaunch})
	if _, err := tg.Create(context.Background(), vmSpec(v, "runner-x", "jit")); err == nil || !strings.Contains(err.Error(), "ephemeral") {
		t.Errorf("err %v", err)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
