package platform

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Machine is the hypervisor side of one VM: what deallocate and delete do to
// it. The local QEMU target implements it; Resource Manager calls it from a
// hook after answering 202, as Azure does.
type Machine interface {
	// PowerOff stops the VM and keeps its disk (deallocate).
	PowerOff(ctx context.Context) error
	// Destroy stops the VM and removes its disk (force delete).
	Destroy(ctx context.Context) error
}

// State is a VM's life as Resource Manager reports it.
type State string

const (
	StateRunning      State = "running"
	StateDeallocating State = "deallocating"
	StateDeallocated  State = "deallocated" // powered off, disk kept
	StateDeleting     State = "deleting"
	StateDeleted      State = "deleted" // VM and disk gone
	StateFailed       State = "failed"  // the Machine hook returned an error
)

// Identity is a user-assigned managed identity.
type Identity struct {
	Name          string
	ResourceGroup string
	ClientID      string // default: a random GUID
	PrincipalID   string // object ID; default: a random GUID
	// Scopes are resource IDs (a VM, a resource group, a subscription) the
	// identity may manage on Resource Manager, beyond the VMs it is attached
	// to (which it always may: the runner VM acts on itself).
	Scopes []string
	ID     string // resource ID, set by AddIdentity
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// AddIdentity registers a user-assigned identity and returns it with its
// IDs filled in.
func (p *Platform) AddIdentity(id Identity) (Identity, error) {
	if !nameRe.MatchString(id.Name) || !nameRe.MatchString(id.ResourceGroup) {
		return Identity{}, fmt.Errorf("identity %q in %q: bad name", id.Name, id.ResourceGroup)
	}
	if id.ClientID == "" {
		id.ClientID = newGUID()
	}
	if id.PrincipalID == "" {
		id.PrincipalID = newGUID()
	}
	id.ID = fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ManagedIdentity/userAssignedIdentities/%s",
		p.cfg.SubscriptionID, id.ResourceGroup, id.Name)
	id.Scopes = append([]string(nil), id.Scopes...)
	p.mu.Lock()
	defer p.mu.Unlock()
	key := strings.ToLower(id.ID)
	if _, dup := p.identities[key]; dup {
		return Identity{}, fmt.Errorf("identity %s: already exists", id.ID)
	}
	for _, other := range p.identities {
		if other.PrincipalID == id.PrincipalID || other.ClientID == id.ClientID {
			return Identity{}, fmt.Errorf("identity %s: client or principal ID already used", id.ID)
		}
	}
	stored := id
	p.identities[key] = &stored
	return id, nil
}

// VMSpec describes a VM to the platform.
type VMSpec struct {
	Name          string
	ResourceGroup string
	Tags          map[string]string
	UserData      []byte   // served base64-encoded, as Azure stores it
	Identities    []string // resource IDs of user-assigned identities (AddIdentity)
	VMSize        string   // default "Standard_D2s_v5"
	AdminUsername string
	// PrivateIP is what IMDS reports as the VM's address; default
	// GuestDHCPAddr, what slirp's DHCP gives the guest.
	PrivateIP string
	Machine   Machine // may be nil and attached later with SetMachine
}

// VM is one VM the platform serves.
type VM struct {
	p          *Platform
	name       string
	rg         string
	id         string // resource ID
	vmID       string
	size       string
	admin      string
	privateIP  string
	userData   []byte
	identities []*Identity
	created    time.Time

	imds   *http.Server
	imdsLn net.Listener

	// guarded by p.mu
	tags    map[string]string
	state   State
	lastErr error
	machine Machine
	changed chan struct{} // closed and replaced on every state change
}

// VMStatus is a snapshot of a VM.
type VMStatus struct {
	Name       string
	ResourceID string
	State      State
	Tags       map[string]string
	Outcome    string // the value of the outcome tag, "" if unset
	Err        error  // the Machine hook's error when State is StateFailed
}

// CreateVM registers a VM and starts its IMDS listener on 127.0.0.1.
func (p *Platform) CreateVM(spec VMSpec) (*VM, error) {
	if !nameRe.MatchString(spec.Name) || !nameRe.MatchString(spec.ResourceGroup) {
		return nil, fmt.Errorf("vm %q in %q: bad name", spec.Name, spec.ResourceGroup)
	}
	if spec.VMSize == "" {
		spec.VMSize = "Standard_D2s_v5"
	}
	if spec.PrivateIP == "" {
		spec.PrivateIP = GuestDHCPAddr
	}
	if spec.AdminUsername == "" {
		spec.AdminUsername = "azureuser"
	}
	vm := &VM{
		p: p, name: spec.Name, rg: spec.ResourceGroup,
		id: fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines/%s",
			p.cfg.SubscriptionID, spec.ResourceGroup, spec.Name),
		vmID: newGUID(), size: spec.VMSize, admin: spec.AdminUsername, privateIP: spec.PrivateIP,
		userData: append([]byte(nil), spec.UserData...),
		created:  p.cfg.Now(),
		tags:     maps.Clone(spec.Tags),
		state:    StateRunning,
		machine:  spec.Machine,
		changed:  make(chan struct{}),
	}
	if vm.tags == nil {
		vm.tags = map[string]string{}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("vm %s: imds listener: %w", spec.Name, err)
	}
	if err := p.addVM(vm, spec.Identities, ln); err != nil {
		_ = ln.Close()
		return nil, err
	}
	p.event(vm.name, "platform", "created, imds on "+ln.Addr().String())
	return vm, nil
}

func (p *Platform) addVM(vm *VM, identities []string, ln net.Listener) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("vm %s: platform closed", vm.name)
	}
	key := strings.ToLower(vm.id)
	if old, dup := p.vms[key]; dup && old.state != StateDeleted {
		return fmt.Errorf("vm %s: already exists", vm.id)
	}
	for _, ref := range identities {
		id, ok := p.identities[strings.ToLower(ref)]
		if !ok {
			return fmt.Errorf("vm %s: identity %s: not found", vm.name, ref)
		}
		vm.identities = append(vm.identities, id)
	}
	vm.imdsLn = ln
	vm.imds = &http.Server{
		Handler:           http.HandlerFunc(vm.serveIMDS),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slogErrorLog(p.log),
	}
	p.vms[key] = vm
	p.serve(func() error { return vm.imds.Serve(ln) })
	return nil
}

// VM returns a VM by name and resource group.
func (p *Platform) VM(resourceGroup, name string) (*VM, bool) {
	id := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines/%s",
		p.cfg.SubscriptionID, resourceGroup, name)
	p.mu.Lock()
	defer p.mu.Unlock()
	vm, ok := p.vms[strings.ToLower(id)]
	return vm, ok
}

// VMs returns a snapshot of every VM, in no particular order.
func (p *Platform) VMs() []VMStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]VMStatus, 0, len(p.vms))
	for _, vm := range p.vms {
		out = append(out, vm.statusLocked())
	}
	return out
}

func (vm *VM) Name() string       { return vm.name }
func (vm *VM) ResourceID() string { return vm.id }

// IMDSAddr is the host:port (127.0.0.1) of this VM's metadata listener.
func (vm *VM) IMDSAddr() string { return vm.imdsLn.Addr().String() }

// SetMachine attaches the hypervisor side, for a VM whose QEMU process is
// started after CreateVM (it needs IMDSAddr for its -netdev).
func (vm *VM) SetMachine(m Machine) {
	vm.p.mu.Lock()
	defer vm.p.mu.Unlock()
	vm.machine = m
}

// Status returns a snapshot of the VM.
func (vm *VM) Status() VMStatus {
	vm.p.mu.Lock()
	defer vm.p.mu.Unlock()
	return vm.statusLocked()
}

func (vm *VM) statusLocked() VMStatus {
	return VMStatus{
		Name: vm.name, ResourceID: vm.id, State: vm.state,
		Tags: maps.Clone(vm.tags), Outcome: vm.tags[vm.p.cfg.OutcomeTag], Err: vm.lastErr,
	}
}

// Wait blocks until the VM is in one of states (or failed), and returns its
// status then.
func (vm *VM) Wait(ctx context.Context, states ...State) (VMStatus, error) {
	for {
		vm.p.mu.Lock()
		st := vm.statusLocked()
		ch := vm.changed
		vm.p.mu.Unlock()
		for _, s := range states {
			if st.State == s {
				return st, nil
			}
		}
		if st.State == StateFailed {
			return st, fmt.Errorf("vm %s: %w", vm.name, st.Err)
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("vm %s: waiting for %v (now %s): %w", vm.name, states, st.State, ctx.Err())
		case <-ch:
		}
	}
}

// setStateLocked changes state and wakes waiters; p.mu must be held.
func (vm *VM) setStateLocked(s State, err error) {
	vm.state = s
	vm.lastErr = err
	close(vm.changed)
	vm.changed = make(chan struct{})
}

var errNoMachine = errors.New("no machine attached")

// runHook drives the Machine for deallocate or delete in the background, as
// Azure's 202 promises, and moves the VM to its final state.
func (vm *VM) runHook(op *operation, deleting bool) {
	p := vm.p
	p.mu.Lock()
	m := vm.machine
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var err error
		what := "power off"
		if deleting {
			what = "destroy"
		}
		switch {
		case m == nil:
			err = nil // nothing to stop: the state alone changes
			p.event(vm.name, "platform", what+": "+errNoMachine.Error()+", state only")
		case deleting:
			err = m.Destroy(p.ctx)
		default:
			err = m.PowerOff(p.ctx)
		}
		if deleting && err == nil {
			// A deleted VM has no metadata service any more; closed before
			// the state says deleted, so a waiter never sees it answer.
			_ = vm.imds.Close()
		}
		p.mu.Lock()
		final := StateDeallocated
		if deleting {
			final = StateDeleted
		}
		if err != nil {
			final = StateFailed
			err = fmt.Errorf("%s: %w", what, err)
		}
		vm.setStateLocked(final, err)
		op.finishLocked(p.cfg.Now(), err)
		p.mu.Unlock()
		if err != nil {
			p.event(vm.name, "platform", fmt.Sprintf("%s failed: %v", what, err))
		} else {
			p.event(vm.name, "platform", "state "+string(final))
		}
	}()
}

// RemoveVM forgets a VM whose machine never started (its creation failed
// half-way): its metadata service closes and its name is free again.
func (p *Platform) RemoveVM(vm *VM) {
	_ = vm.imds.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.vms[strings.ToLower(vm.id)]; cur == vm {
		delete(p.vms, strings.ToLower(vm.id))
	}
	p.event(vm.name, "platform", "removed")
}
