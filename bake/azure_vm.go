package bake

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/imagebake/imagebake/internal/contract"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/provision/sshsession"
)

// azureVM is a VM on Azure reached over SSH: the resource-group, network,
// vm and ssh stages that bake and verify share, and what they leave for
// the stages after them.
type azureVM struct {
	guest
	c       *az.Clients
	opts    AzureOptions
	buildID string
	// tags go on everything the build creates; vmTags are added on the VM.
	tags, vmTags map[string]string
	// base is the marketplace image to boot; imageID, when set, a gallery
	// version to boot instead.
	base    az.Image
	imageID string
	// securityType is the VM's (az.Security*): the build's choice, or
	// what the version's image definition needs.
	securityType string
	// customData renders the VM's custom data for the pinned host key.
	customData func(hostPriv, hostLine string) (string, error)

	// Set by the stages.
	rg        string
	tempGroup bool
	subnetID  string
	vmName    string
	vmID      string
	address   string
	port      int
	signer    ssh.Signer
	hostPub   ssh.PublicKey
}

func newAzureVM(g guest, opts AzureOptions, buildID string, created string) azureVM {
	port := opts.SSHPort
	if port == 0 {
		port = 22
	}
	return azureVM{guest: g, c: opts.Clients, opts: opts, buildID: buildID, port: port,
		rg: opts.BuildResourceGroup, tempGroup: opts.BuildResourceGroup == "", subnetID: opts.SubnetID,
		vmName: contract.ResourceName(buildID, contract.KindVM),
		tags:   map[string]string{contract.TagBuildID: buildID, contract.TagRecipe: g.r.Name, contract.TagCreated: created}}
}

func (a *azureVM) credentials(ctx context.Context) error { return a.c.CheckCredentials(ctx) }

func (a *azureVM) resourceGroup(ctx context.Context) error {
	if !a.tempGroup {
		a.m.Resources["resourceGroup"] = a.rg
		return Skip("building in existing resource group " + a.rg + " (only what this build creates is deleted)")
	}
	a.rg = contract.BuildResourceGroup(a.r.Name, a.buildID)
	a.m.Resources["resourceGroup"] = a.rg
	// Register first: a create that fails half-way may still leave the
	// group behind.
	rg := a.rg
	a.p.OnCleanupKeepable("resource group "+rg, func(ctx context.Context) error { return a.c.DeleteResourceGroup(ctx, rg) })
	return a.c.CreateResourceGroup(ctx, rg, a.set.Location, a.tags)
}

func (a *azureVM) network(ctx context.Context) error {
	if a.opts.SubnetID != "" {
		return Skip("using the given subnet " + a.opts.SubnetID + " (--subnet-id); the VM gets only a private address")
	}
	prefix := contract.NetworkPrefix(a.buildID)
	if !a.tempGroup {
		a.p.OnCleanupKeepable("network "+prefix, func(ctx context.Context) error { return a.c.DeleteNetwork(ctx, a.rg, prefix) })
	}
	sources := a.opts.SSHSources
	if len(sources) == 0 {
		sources = []string{"*"}
		a.p.Note(contract.StageNetwork, "SSH is open to any address (the host key is pinned and only a throwaway key logs in); restrict it with --ssh-source CIDR")
	}
	n, err := a.c.CreateNetwork(ctx, a.rg, a.set.Location, prefix, sources, a.tags)
	a.subnetID = n.SubnetID
	a.m.Resources["subnet"] = a.subnetID
	return err
}

func (a *azureVM) createVM(ctx context.Context) error {
	k, err := newBootKeys()
	if err != nil {
		return err
	}
	a.signer, a.hostPub = k.signer, k.hostPub
	custom, err := a.customData(k.hostPriv, k.hostLine)
	if err != nil {
		return err
	}
	if !a.tempGroup {
		a.p.OnCleanupKeepable("virtual machine "+a.vmName, func(ctx context.Context) error { return a.c.DeleteVM(ctx, a.rg, a.vmName) })
	}
	tags := map[string]string{}
	for k, v := range a.tags {
		tags[k] = v
	}
	for k, v := range a.vmTags {
		tags[k] = v
	}
	spec := az.VMSpec{ResourceGroup: a.rg, Name: a.vmName, Location: a.set.Location, Size: a.set.VMSize,
		Image: a.base, ImageID: a.imageID, SubnetID: a.subnetID, PublicIP: a.opts.SubnetID == "", AdminUser: AdminUser, AuthorizedKey: k.authLine,
		CustomData: custom, Spot: a.set.Spot, Identity: a.set.Identity, SecurityType: a.securityType, Tags: tags}
	id, addr, err := a.c.CreateVM(ctx, spec)
	a.vmID, a.address = id, addr
	a.m.Resources["vm"] = id
	return err
}

func (a *azureVM) dial(ctx context.Context) error {
	s, err := sshsession.Dial(ctx, sshsession.Config{Addr: net.JoinHostPort(a.address, strconv.Itoa(a.port)), User: AdminUser,
		Signer: a.signer, HostKey: a.hostPub, Logger: a.log})
	if err != nil {
		return err
	}
	a.opened(s)
	return nil
}

// hintKept says how to reach the kept VM after a stage failed, with
// --keep-on-failure. hintStages maps a failed stage to the stage the hint
// is shown under.
func (a *azureVM) hintKept(failed string, hintStages map[string]string) {
	if !a.opts.KeepOnFail {
		return
	}
	if as, ok := hintStages[failed]; ok {
		a.p.Note(as, azureKeepHint(a.rg, a.vmName, a.address, a.port))
	}
}

func azureKeepHint(rg, vm, address string, port int) string {
	if address == "" {
		return fmt.Sprintf("kept (--keep-on-failure): resource group %s, VM %s; delete with: az group delete -n %s", rg, vm, rg)
	}
	return fmt.Sprintf("kept (--keep-on-failure): ssh -p %d %s@%s (the build key was in memory only: add yours with `az vm user update -g %s -n %s -u you --ssh-key-value ~/.ssh/id_ed25519.pub`); resource group %s, VM %s; delete with: az group delete -n %s",
		port, AdminUser, address, rg, vm, rg, vm, rg)
}
