package azure

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// The verbs fleet/azure needs for runner VMs: the VM body is fleet's (it
// knows what a runner VM is); these only carry it through the one
// transport, so throttling and errors are handled as everywhere else.

// CreateVMOnly PUTs a new VM with If-None-Match: * (an existing VM of that
// name is refused 412, never updated) and waits until it is provisioned.
// accepted reports whether Azure took the PUT: then the VM exists (or
// existed) even when err is set, and the caller must delete it.
func (c *Clients) CreateVMOnly(ctx context.Context, rg, name string, vm armcompute.VirtualMachine) (res armcompute.VirtualMachine, accepted bool, err error) {
	o, err := begin(ctx, c, "create virtual machine "+name, func(ctx context.Context) (*runtime.Poller[armcompute.VirtualMachinesClientCreateOrUpdateResponse], error) {
		return c.vms.BeginCreateOrUpdate(ctx, rg, name, vm, &armcompute.VirtualMachinesClientBeginCreateOrUpdateOptions{IfNoneMatch: to.Ptr("*")})
	})
	if err != nil {
		return armcompute.VirtualMachine{}, false, err
	}
	r, err := o.Wait(ctx, nil)
	return r.VirtualMachine, true, err
}

// GetVM reads a VM; with instanceView its power state too.
func (c *Clients) GetVM(ctx context.Context, rg, name string, instanceView bool) (armcompute.VirtualMachine, error) {
	var opts *armcompute.VirtualMachinesClientGetOptions
	if instanceView {
		opts = &armcompute.VirtualMachinesClientGetOptions{Expand: to.Ptr(armcompute.InstanceViewTypesInstanceView)}
	}
	var res armcompute.VirtualMachinesClientGetResponse
	err := c.call(ctx, "get virtual machine "+name, func(ctx context.Context) error {
		var err error
		res, err = c.vms.Get(ctx, rg, name, opts)
		return err
	})
	return res.VirtualMachine, err
}

// diskAPIVersion is the Disks API version armcompute v7.3.0 sends.
const diskAPIVersion = "2025-01-02"

// DeleteDiskByID deletes a managed disk (an OS disk a VM left behind) and
// waits; one already gone is fine.
func (c *Clients) DeleteDiskByID(ctx context.Context, id string) error {
	return runOrGone(ctx, c, "delete disk "+id, func(ctx context.Context) (*runtime.Poller[armresources.ClientDeleteByIDResponse], error) {
		return c.resources.BeginDeleteByID(ctx, id, diskAPIVersion, nil)
	})
}

// DiskExists reports whether the managed disk id exists.
func (c *Clients) DiskExists(ctx context.Context, id string) (bool, error) {
	err := c.call(ctx, "get disk "+id, func(ctx context.Context) error {
		_, err := c.resources.GetByID(ctx, id, diskAPIVersion, nil)
		return err
	})
	if IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
