// Package fleet is the operator's side of runner images: runner VMs made
// from a published version, each registered once with GitHub through its own
// just-in-time configuration, then listed and pruned. The policy lives here
// (one JIT mint per VM, nothing half-launched, prune only what imagebake
// launched and is deallocated); a Target does what one platform needs
// (Azure: Compute VMs from a gallery version; local: QEMU guests served by
// the platform stand-in).
package fleet

import (
	"context"
	"time"

	"github.com/imagebake/imagebake/runnerreg"
)

// Power is a runner VM's power state as `runners list` shows it.
type Power string

const (
	PowerStarting     Power = "starting"
	PowerRunning      Power = "running"
	PowerStopping     Power = "stopping"
	PowerStopped      Power = "stopped" // powered off but still billed (Azure) / process ended without deallocate (local)
	PowerDeallocating Power = "deallocating"
	PowerDeallocated  Power = "deallocated"
	PowerDeleting     Power = "deleting"
	PowerUnknown      Power = "unknown"
)

// VM is one runner VM.
type VM struct {
	Name          string    `json:"name"`
	ResourceGroup string    `json:"resourceGroup,omitempty"`
	ID            string    `json:"id"` // Azure resource ID, or the local target's ID
	Image         string    `json:"image"`
	Version       string    `json:"version"`
	Power         Power     `json:"power"`
	Cycle         string    `json:"cycle"`             // the cycle tag ("" when unset)
	Outcome       string    `json:"outcome,omitempty"` // contract.Outcome* as the VM recorded it ("" while its runner runs)
	RunnerID      int64     `json:"runnerId,omitempty"`
	LaunchID      string    `json:"launchId,omitempty"`
	Created       time.Time `json:"created"`
}

// VMSpec is what a Target needs to create one runner VM. Launch fills it.
type VMSpec struct {
	Name    string
	Image   string // gallery image name
	Version string // resolved X.Y.Z
	// ImageID is where the version is: the gallery version's resource ID on
	// Azure, the published disk's path locally.
	ImageID string
	Cycle   string // "" leaves the VM without a cycle tag
	// UserData is the VM's userData, raw (a target base64-encodes it where
	// the platform wants that): for jit exactly the encoded JIT config
	// (contract: UserData for jit); nil for keyvault-pat.
	UserData runnerreg.Secret
	// Tags are imagebake's marks (contract.TagLaunchedFrom, TagLaunchVersion,
	// TagLaunchID, TagRunnerID, TagCreated) plus the cycle tag.
	Tags map[string]string
}

// Target creates, lists and deletes runner VMs on one platform.
type Target interface {
	// Create creates and starts one VM. On error nothing of that VM is
	// left behind, or the error says what is.
	Create(ctx context.Context, spec VMSpec) (VM, error)
	// List returns every VM carrying contract.TagLaunchedFrom = image
	// ("" for every image), with power state and outcome.
	List(ctx context.Context, image string) ([]VM, error)
	// Delete deletes a VM and its OS disk. The caller checked it is
	// imagebake's and not running.
	Delete(ctx context.Context, vm VM) error
}

// Waiter is a Target whose VMs live only while this process serves their
// platform (the local target): launch waits on it until every VM it
// created has finished its cycle (or ctx ends).
type Waiter interface {
	Wait(ctx context.Context) error
}

// Registrar mints and deletes runner registrations; *runnerreg.Client is
// one, pointed at GitHub or at a stand-in.
type Registrar interface {
	MintJIT(ctx context.Context, name string, labels []string, runnerGroupID int64, workFolder string) (runnerreg.JITConfig, error)
	DeleteRunner(ctx context.Context, id int64) error
}
