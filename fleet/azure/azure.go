// Package azure is fleet's Azure target: runner VMs made from a gallery
// image version, with a user-assigned identity, imagebake's tags and the
// JIT config in userData, on an existing subnet without a public address.
// Every call goes through provision/azure's one Resource Manager transport.
package azure

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"golang.org/x/crypto/ssh"

	"github.com/imagebake/imagebake/fleet"
	"github.com/imagebake/imagebake/internal/contract"
	az "github.com/imagebake/imagebake/provision/azure"
)

// AdminUser is the runner VM's admin account. Azure requires one on a VM
// from a generalized image; its only key is one nobody holds (see New).
const AdminUser = "imagebake"

// DefaultVMSize is the runner VM size when neither flag nor recipe names one.
const DefaultVMSize = "Standard_D2s_v5"

// Options are what every runner VM of a target shares.
type Options struct {
	ResourceGroup string // where the VMs are created (required for Create)
	Location      string // required for Create
	VMSize        string // default DefaultVMSize
	SubnetID      string // an existing subnet (required for Create); the VMs get no public IP
	// IdentityID is a user-assigned identity's resource ID: the cycle
	// script (and keyvault-pat's Key Vault read) act through it.
	IdentityID string
	Spot       bool
	// EphemeralOSDisk puts the OS disk on the host (diffDiskSettings Local;
	// Azure's default placement). Such a VM cannot be deallocated.
	EphemeralOSDisk bool
	// SecurityType is the VMs' (az.Security*): what the image definition
	// needs (az.BootSecurity of its security type); "" is Standard.
	SecurityType string
	// CleanupTime bounds the delete of a VM whose create failed or was
	// interrupted (default fleet.DefaultCleanupTimeout).
	CleanupTime time.Duration
	Logger      *slog.Logger
}

// Target is fleet.Target on Azure.
type Target struct {
	c    *az.Clients
	o    Options
	log  *slog.Logger
	once sync.Once
	key  string
	kerr error
}

// New returns a target over c; it makes no call.
func New(c *az.Clients, o Options) *Target {
	if o.VMSize == "" {
		o.VMSize = DefaultVMSize
	}
	if o.CleanupTime <= 0 {
		o.CleanupTime = fleet.DefaultCleanupTimeout
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Target{c: c, o: o, log: log}
}

var _ fleet.Target = (*Target)(nil)

// lockedKey is an SSH public key whose private half is dropped at once:
// Azure wants some way in for the admin user, and runner VMs must have
// none (RSA, which every Azure region and image accepts).
func (t *Target) lockedKey() (string, error) {
	t.once.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			t.kerr = err
			return
		}
		pub, err := ssh.NewPublicKey(&k.PublicKey)
		if err != nil {
			t.kerr = err
			return
		}
		t.key = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	})
	return t.key, t.kerr
}

// Body is the VM that Create PUTs for spec (exported for tests).
func (t *Target) Body(spec fleet.VMSpec) (armcompute.VirtualMachine, error) {
	if t.o.ResourceGroup == "" || t.o.Location == "" || t.o.SubnetID == "" {
		return armcompute.VirtualMachine{}, errors.New("runner VMs need a resource group, a location and a subnet")
	}
	if spec.ImageID == "" {
		return armcompute.VirtualMachine{}, errors.New("no image version ID")
	}
	key, err := t.lockedKey()
	if err != nil {
		return armcompute.VirtualMachine{}, fmt.Errorf("admin key: %w", err)
	}
	tags := map[string]*string{}
	for k, v := range spec.Tags {
		tags[k] = to.Ptr(v)
	}
	if spec.Cycle != "" {
		tags[contract.TagCycle] = to.Ptr(spec.Cycle)
	}
	osDisk := &armcompute.OSDisk{Name: to.Ptr(spec.Name + "-osdisk"), CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage),
		DeleteOption: to.Ptr(armcompute.DiskDeleteOptionTypesDelete)}
	if t.o.EphemeralOSDisk {
		// Compute places it (cache disk, else resource disk) and refuses a
		// size without room; ReadOnly caching is the only kind allowed.
		osDisk.Caching = to.Ptr(armcompute.CachingTypesReadOnly)
		osDisk.DiffDiskSettings = &armcompute.DiffDiskSettings{Option: to.Ptr(armcompute.DiffDiskOptionsLocal)}
	} else {
		osDisk.ManagedDisk = &armcompute.ManagedDiskParameters{StorageAccountType: to.Ptr(armcompute.StorageAccountTypesStandardSSDLRS)}
	}
	del := to.Ptr(armcompute.DeleteOptionsDelete)
	vm := armcompute.VirtualMachine{
		Location: to.Ptr(t.o.Location), Tags: tags,
		Properties: &armcompute.VirtualMachineProperties{
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypes(t.o.VMSize))},
			StorageProfile:  &armcompute.StorageProfile{ImageReference: &armcompute.ImageReference{ID: to.Ptr(spec.ImageID)}, OSDisk: osDisk},
			OSProfile: &armcompute.OSProfile{ComputerName: to.Ptr(spec.Name), AdminUsername: to.Ptr(AdminUser),
				LinuxConfiguration: &armcompute.LinuxConfiguration{DisablePasswordAuthentication: to.Ptr(true),
					SSH: &armcompute.SSHConfiguration{PublicKeys: []*armcompute.SSHPublicKey{{
						Path: to.Ptr("/home/" + AdminUser + "/.ssh/authorized_keys"), KeyData: to.Ptr(key)}}}}},
			NetworkProfile: &armcompute.NetworkProfile{NetworkAPIVersion: to.Ptr(armcompute.NetworkAPIVersionTwoThousandTwenty1101),
				NetworkInterfaceConfigurations: []*armcompute.VirtualMachineNetworkInterfaceConfiguration{{Name: to.Ptr(spec.Name + "-nic"),
					Properties: &armcompute.VirtualMachineNetworkInterfaceConfigurationProperties{Primary: to.Ptr(true), DeleteOption: del,
						IPConfigurations: []*armcompute.VirtualMachineNetworkInterfaceIPConfiguration{{Name: to.Ptr("ipconfig"),
							Properties: &armcompute.VirtualMachineNetworkInterfaceIPConfigurationProperties{
								Subnet: &armcompute.SubResource{ID: to.Ptr(t.o.SubnetID)}, Primary: to.Ptr(true)}}}}}}},
		},
	}
	if !spec.UserData.IsZero() {
		// The one place the JIT config leaves the process: the VM's
		// userData, which start_runner.sh reads from IMDS.
		vm.Properties.UserData = to.Ptr(base64.StdEncoding.EncodeToString([]byte(spec.UserData.Reveal())))
	}
	switch t.o.SecurityType {
	case "", az.SecurityStandard:
	case az.SecurityTrustedLaunch, az.SecurityConfidentialVM:
		st := armcompute.SecurityTypesTrustedLaunch
		if t.o.SecurityType == az.SecurityConfidentialVM {
			st = armcompute.SecurityTypesConfidentialVM
			if osDisk.ManagedDisk == nil {
				osDisk.ManagedDisk = &armcompute.ManagedDiskParameters{}
			}
			osDisk.ManagedDisk.SecurityProfile = &armcompute.VMDiskSecurityProfile{SecurityEncryptionType: to.Ptr(armcompute.SecurityEncryptionTypesVMGuestStateOnly)}
		}
		vm.Properties.SecurityProfile = &armcompute.SecurityProfile{SecurityType: to.Ptr(st),
			UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)}}
	default:
		return armcompute.VirtualMachine{}, fmt.Errorf("security type %q: use Standard, TrustedLaunch or ConfidentialVM", t.o.SecurityType)
	}
	if t.o.Spot {
		vm.Properties.Priority = to.Ptr(armcompute.VirtualMachinePriorityTypesSpot)
		// Evicted runners are deallocated (prune removes them); an
		// ephemeral OS disk cannot be deallocated, so those are deleted.
		ev := armcompute.VirtualMachineEvictionPolicyTypesDeallocate
		if t.o.EphemeralOSDisk {
			ev = armcompute.VirtualMachineEvictionPolicyTypesDelete
		}
		vm.Properties.EvictionPolicy = to.Ptr(ev)
		vm.Properties.BillingProfile = &armcompute.BillingProfile{MaxPrice: to.Ptr[float64](-1)}
	}
	if t.o.IdentityID != "" {
		vm.Identity = &armcompute.VirtualMachineIdentity{Type: to.Ptr(armcompute.ResourceIdentityTypeUserAssigned),
			UserAssignedIdentities: map[string]*armcompute.UserAssignedIdentitiesValue{t.o.IdentityID: {}}}
	}
	return vm, nil
}

// Create creates the VM and waits until it is provisioned. If the create
// fails or ctx ends after Azure accepted it, the VM (with its NIC and OS
// disk) is deleted with a fresh context bounded by CleanupTime.
func (t *Target) Create(ctx context.Context, spec fleet.VMSpec) (fleet.VM, error) {
	body, err := t.Body(spec)
	if err != nil {
		return fleet.VM{}, fmt.Errorf("virtual machine %s: %w", spec.Name, err)
	}
	res, accepted, err := t.c.CreateVMOnly(ctx, t.o.ResourceGroup, spec.Name, body)
	if err != nil {
		if !accepted && !mayExist(err) {
			return fleet.VM{}, err
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.o.CleanupTime)
		defer cancel()
		if derr := t.c.DeleteVM(cctx, t.o.ResourceGroup, spec.Name); derr != nil {
			return fleet.VM{}, errors.Join(err, fmt.Errorf("virtual machine %s is left in %s: %w", spec.Name, t.o.ResourceGroup, derr))
		}
		t.log.Info("runner VM removed after a failed create", "vm", spec.Name)
		return fleet.VM{}, err
	}
	vm := convert(&res, nil)
	vm.Power = fleet.PowerRunning // provisioned: Compute started it
	if vm.ResourceGroup == "" {
		vm.ResourceGroup = t.o.ResourceGroup
	}
	return vm, nil
}

// mayExist reports whether a failed PUT may still have created the VM: no
// answer came back (dropped, ctx ended in flight). A 4xx/5xx answer
// created nothing; a 412 means another VM of that name exists, which is
// not ours to delete.
func mayExist(err error) bool {
	var ae *az.Error
	return errors.As(err, &ae) && ae.Status == 0
}

// List returns every VM carrying contract.TagLaunchedFrom (= image unless
// image is ""), in the subscription, with its power state from the
// instance view.
func (t *Target) List(ctx context.Context, image string) ([]fleet.VM, error) {
	tagged, err := t.c.ResourcesTagged(ctx, contract.TagLaunchedFrom)
	if err != nil {
		return nil, err
	}
	var out []fleet.VM
	for _, r := range tagged {
		if r == nil || r.Type == nil || !strings.EqualFold(*r.Type, "Microsoft.Compute/virtualMachines") || r.ID == nil {
			continue
		}
		if v := r.Tags[contract.TagLaunchedFrom]; v == nil || (image != "" && *v != image) {
			continue
		}
		rg, name, ok := rgAndName(*r.ID)
		if !ok {
			continue
		}
		vm, err := t.c.GetVM(ctx, rg, name, true)
		if az.IsNotFound(err) {
			continue // deleted since the list
		}
		if err != nil {
			return nil, err
		}
		out = append(out, convert(&vm, vm.Properties))
	}
	return out, nil
}

// Delete deletes the VM (NIC and OS disk go with it by their
// DeleteOption); an OS disk still there afterwards is deleted too.
func (t *Target) Delete(ctx context.Context, vm fleet.VM) error {
	rg, name := vm.ResourceGroup, vm.Name
	if r, n, ok := rgAndName(vm.ID); ok {
		rg, name = r, n
	}
	cur, err := t.c.GetVM(ctx, rg, name, false)
	if az.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	disk := ""
	if p := cur.Properties; p != nil && p.StorageProfile != nil && p.StorageProfile.OSDisk != nil && p.StorageProfile.OSDisk.ManagedDisk != nil {
		disk = deref(p.StorageProfile.OSDisk.ManagedDisk.ID)
	}
	if err := t.c.DeleteVM(ctx, rg, name); err != nil {
		return err
	}
	if disk == "" {
		return nil
	}
	left, err := t.c.DiskExists(ctx, disk)
	if err != nil || !left {
		return err
	}
	t.log.Info("deleting the OS disk the VM left", "vm", name, "disk", disk)
	return t.c.DeleteDiskByID(ctx, disk)
}

// rgAndName reads the resource group and name from a VM's resource ID.
func rgAndName(id string) (rg, name string, ok bool) {
	p := strings.Split(strings.Trim(id, "/"), "/")
	for i := 0; i+1 < len(p); i++ {
		if strings.EqualFold(p[i], "resourceGroups") {
			rg = p[i+1]
		}
	}
	if rg == "" || len(p) < 2 || !strings.EqualFold(p[len(p)-2], "virtualMachines") {
		return "", "", false
	}
	return rg, p[len(p)-1], true
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// convert reads a VM's imagebake tags and, with props holding an instance
// view, its power state.
func convert(v *armcompute.VirtualMachine, props *armcompute.VirtualMachineProperties) fleet.VM {
	tag := func(k string) string {
		for name, val := range v.Tags {
			if strings.EqualFold(name, k) && val != nil {
				return *val
			}
		}
		return ""
	}
	vm := fleet.VM{Name: deref(v.Name), ID: deref(v.ID), Image: tag(contract.TagLaunchedFrom), Version: tag(contract.TagLaunchVersion),
		Cycle: tag(contract.TagCycle), Outcome: tag(contract.TagOutcome), LaunchID: tag(contract.TagLaunchID), Power: fleet.PowerUnknown}
	if rg, _, ok := rgAndName(vm.ID); ok {
		vm.ResourceGroup = rg
	}
	vm.RunnerID, _ = strconv.ParseInt(tag(contract.TagRunnerID), 10, 64)
	if t, err := time.Parse(time.RFC3339, tag(contract.TagCreated)); err == nil {
		vm.Created = t
	}
	if props != nil {
		vm.Power = power(props)
	}
	return vm
}

// power maps the instance view's PowerState/* (and a VM being created or
// deleted) to fleet.Power.
func power(p *armcompute.VirtualMachineProperties) fleet.Power {
	switch strings.ToLower(deref(p.ProvisioningState)) {
	case "deleting":
		return fleet.PowerDeleting
	case "creating":
		return fleet.PowerStarting
	}
	if p.InstanceView == nil {
		return fleet.PowerUnknown
	}
	for _, s := range p.InstanceView.Statuses {
		code, ok := strings.CutPrefix(deref(s.Code), "PowerState/")
		if !ok {
			continue
		}
		switch strings.ToLower(code) {
		case "starting":
			return fleet.PowerStarting
		case "running":
			return fleet.PowerRunning
		case "stopping":
			return fleet.PowerStopping
		case "stopped":
			return fleet.PowerStopped
		case "deallocating":
			return fleet.PowerDeallocating
		case "deallocated":
			return fleet.PowerDeallocated
		}
	}
	return fleet.PowerUnknown
}
