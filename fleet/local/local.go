// Package local is the local fleet.Target: runner VMs are QEMU guests booted
// from a published local version, served by the platform stand-in (IMDS with
// tags and userData, identity tokens, Resource Manager's deallocate and
// delete), so the image's scripts run as they do on Azure.
//
// A local runner VM lives only while the process that launched it serves its
// platform: Close powers off the VMs still running. What outlives the process
// is each VM's record (DIR/IMAGE/NAME.json) and, for a VM that was
// deallocated or stopped, its disk (NAME.qcow2), so that `runners list`
// shows what happened and `runners prune` removes what was kept.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/imagebake/imagebake/fleet"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/platform"
	"github.com/imagebake/imagebake/provision/qemu"
	"go.yaml.in/yaml/v3"
)

// DefaultResourceGroup is the resource group local runner VMs claim to be
// in (their IMDS resourceId and the cycle script's Resource Manager calls).
const DefaultResourceGroup = "imagebake-local"

// Options configure a Target.
type Options struct {
	// Dir holds the records and kept disks, one folder per image.
	Dir string
	// Base supplies the kernel, initrd and command line for images that boot
	// that way (the Debian base); its Disk is ignored: a VM boots the
	// version's disk (VMSpec.ImageID).
	Base     qemu.Base
	Platform *platform.Platform
	// Relay is how QEMU reaches the platform's loopback listeners
	// (platform.SelfRelay of this binary, or platform.SocatRelay).
	Relay         platform.RelayCommand
	ResourceGroup string // default DefaultResourceGroup
	// IdentityID is the user-assigned identity every VM gets (the cycle
	// script's credential); empty: New creates one.
	IdentityID  string
	MemoryMiB   int // per VM; default 1024
	CPUs        int // per VM; default 1
	StopTimeout time.Duration
	// AuthorizedKey, when set, lets this public key log in as
	// "imagebake-debug" (for examining a runner VM; never set by verify).
	AuthorizedKey string
	// KeepLogs keeps a deleted VM's console log (verify --runtime reads
	// them afterwards); otherwise a delete removes them with the record.
	KeepLogs bool
	Logger   *slog.Logger
}

// Target runs local runner VMs. It is safe for concurrent use.
type Target struct {
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	vms    map[string]*runnerVM // by name, created by this process
	closed bool
	wg     sync.WaitGroup
}

// runnerVM is one VM this process created.
type runnerVM struct {
	rec     Record
	pvm     *platform.VM
	machine *qemu.Machine
	done    chan struct{} // closed when the VM reached its final state
}

// Record is what a VM leaves in Dir: enough for `runners list` and prune
// after the launching process is gone. It holds no secret (no userData).
type Record struct {
	fleet.VM
	Disk      string            `json:"disk,omitempty"` // kept disk, "" once deleted
	LogDir    string            `json:"logDir"`
	PID       int               `json:"pid,omitempty"`
	Started   time.Time         `json:"started"`         // QEMU launched
	Ended     time.Time         `json:"ended,omitzero"`  // final state reached
	State     platform.State    `json:"state"`           // the platform's last state
	Tags      map[string]string `json:"tags,omitempty"`  // as the VM last had them
	Error     string            `json:"error,omitempty"` // the hypervisor's failure
	UserDataN int               `json:"userDataBytes"`   // its size only
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$`)

// New checks opts and returns a Target. It creates the identity when
// opts.IdentityID is empty. Without a Platform the target only lists and
// deletes what earlier launches left (runners list and prune).
func New(opts Options) (*Target, error) {
	if opts.Dir == "" {
		return nil, errors.New("local runner VMs: no directory")
	}
	if opts.Platform != nil && opts.Relay == nil {
		return nil, errors.New("local runner VMs: no relay command for the platform")
	}
	if opts.ResourceGroup == "" {
		opts.ResourceGroup = DefaultResourceGroup
	}
	if opts.MemoryMiB == 0 {
		opts.MemoryMiB = 1024
	}
	if opts.CPUs == 0 {
		opts.CPUs = 1
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.IdentityID == "" && opts.Platform != nil {
		id, err := opts.Platform.AddIdentity(platform.Identity{Name: "imagebake-runners", ResourceGroup: opts.ResourceGroup})
		if err != nil {
			return nil, fmt.Errorf("local runner VMs: identity: %w", err)
		}
		opts.IdentityID = id.ID
	}
	return &Target{opts: opts, log: opts.Logger, vms: map[string]*runnerVM{}}, nil
}

// IdentityID is the identity every VM gets.
func (t *Target) IdentityID() string { return t.opts.IdentityID }

// Platform is the platform the VMs are served by.
func (t *Target) Platform() *platform.Platform { return t.opts.Platform }

func (t *Target) imageDir(image string) string { return filepath.Join(t.opts.Dir, image) }

// machine adapts a qemu.Machine to the platform's deallocate and delete:
// deallocate powers the guest off and keeps its disk, delete destroys both.
type machine struct {
	m    *qemu.Machine
	disk string
}

func (a machine) PowerOff(ctx context.Context) error {
	err := a.m.Stop(ctx)
	if derr := a.m.Destroy(); err == nil {
		err = derr
	}
	if errors.Is(err, qemu.ErrForcedStop) {
		// Azure's deallocate does not wait for the guest forever either.
		err = nil
	}
	return err
}

func (a machine) Destroy(ctx context.Context) error {
	err := a.m.Destroy()
	if rerr := os.Remove(a.disk); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// Create boots one runner VM: the platform VM (tags, userData, identity),
// then QEMU from the version's disk with the platform's network and the
// platform's per-boot cloud-config (its host names and CA).
func (t *Target) Create(ctx context.Context, spec fleet.VMSpec) (fleet.VM, error) {
	if !nameRe.MatchString(spec.Name) || !nameRe.MatchString(spec.Image) {
		return fleet.VM{}, fmt.Errorf("local runner VM %q of %q: not a valid name", spec.Name, spec.Image)
	}
	if t.opts.Platform == nil {
		return fleet.VM{}, fmt.Errorf("local runner VM %s: this target only lists and deletes (no platform)", spec.Name)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fleet.VM{}, fmt.Errorf("local runner VM %s: target closed", spec.Name)
	}
	if _, dup := t.vms[spec.Name]; dup {
		t.mu.Unlock()
		return fleet.VM{}, fmt.Errorf("local runner VM %s: already exists", spec.Name)
	}
	t.vms[spec.Name] = nil // reserved
	t.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			t.mu.Lock()
			delete(t.vms, spec.Name)
			t.mu.Unlock()
		}
	}()

	dir := t.imageDir(spec.Image)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fleet.VM{}, fmt.Errorf("local runner VM %s: %w", spec.Name, err)
	}
	recPath := filepath.Join(dir, spec.Name+".json")
	if _, err := os.Lstat(recPath); err == nil {
		return fleet.VM{}, fmt.Errorf("local runner VM %s: a VM of that name exists (%s)", spec.Name, recPath)
	}
	tags := maps.Clone(spec.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	if spec.Cycle != "" {
		tags[contract.TagCycle] = spec.Cycle
	}
	var userData []byte
	if !spec.UserData.IsZero() {
		userData = []byte(spec.UserData.Reveal())
	}
	p := t.opts.Platform
	pvm, err := p.CreateVM(platform.VMSpec{Name: spec.Name, ResourceGroup: t.opts.ResourceGroup, Tags: tags,
		UserData: userData, Identities: []string{t.opts.IdentityID}})
	if err != nil {
		return fleet.VM{}, fmt.Errorf("local runner VM %s: %w", spec.Name, err)
	}
	netdev, err := pvm.NetdevOptions(t.opts.Relay)
	if err != nil {
		p.RemoveVM(pvm)
		return fleet.VM{}, fmt.Errorf("local runner VM %s: %w", spec.Name, err)
	}
	boot, err := t.bootConfig()
	if err != nil {
		p.RemoveVM(pvm)
		return fleet.VM{}, fmt.Errorf("local runner VM %s: %w", spec.Name, err)
	}
	disk := filepath.Join(dir, spec.Name+".qcow2")
	logDir := filepath.Join(dir, spec.Name+".logs")
	base := t.opts.Base
	base.Disk = spec.ImageID
	m, err := qemu.Start(ctx, qemu.MachineOptions{Base: base, UserData: boot, Hostname: spec.Name,
		MemoryMiB: t.opts.MemoryMiB, CPUs: t.opts.CPUs, LogDir: logDir, Netdev: netdev, Disk: disk,
		StopTimeout: t.opts.StopTimeout, BuildID: spec.Name, Logger: t.log})
	if err != nil {
		p.RemoveVM(pvm)
		os.RemoveAll(logDir)
		return fleet.VM{}, fmt.Errorf("local runner VM %s: %w", spec.Name, err)
	}
	pvm.SetMachine(machine{m: m, disk: disk})
	now := time.Now().UTC()
	rv := &runnerVM{pvm: pvm, machine: m, done: make(chan struct{})}
	rv.rec = Record{
		VM: fleet.VM{Name: spec.Name, ResourceGroup: t.opts.ResourceGroup, ID: pvm.ResourceID(), Image: spec.Image,
			Version: spec.Version, Power: fleet.PowerRunning, Cycle: spec.Cycle, RunnerID: runnerIDOf(tags),
			LaunchID: tags[contract.TagLaunchID], Created: now},
		Disk: disk, LogDir: logDir, PID: m.PID(), Started: m.Started(), State: platform.StateRunning,
		Tags: tags, UserDataN: len(userData),
	}
	if err := writeRecord(recPath, rv.rec); err != nil {
		_ = m.Destroy()
		os.Remove(disk)
		p.RemoveVM(pvm)
		return fleet.VM{}, fmt.Errorf("local runner VM %s: %w", spec.Name, err)
	}
	t.mu.Lock()
	t.vms[spec.Name] = rv
	t.mu.Unlock()
	ok = true
	t.wg.Add(1)
	go t.watch(rv, recPath)
	t.log.Info("runner VM started", "vm", spec.Name, "image", spec.Image, "version", spec.Version, "cycle", orNone(spec.Cycle), "pid", m.PID())
	return rv.rec.VM, nil
}

// bootConfig is the per-boot cloud-config a platform guest needs (and, for
// debugging, one login); the image itself is not changed.
func (t *Target) bootConfig() ([]byte, error) {
	cc := t.opts.Platform.GuestCloudConfig().Map()
	if t.opts.AuthorizedKey != "" {
		if strings.ContainsAny(t.opts.AuthorizedKey, "\r\n") {
			return nil, errors.New("authorized key: more than one line")
		}
		cc["users"] = []any{"default", map[string]any{"name": "imagebake-debug", "sudo": "ALL=(ALL) NOPASSWD:ALL",
			"shell": "/bin/bash", "ssh_authorized_keys": []string{t.opts.AuthorizedKey}}}
	}
	b, err := yaml.Marshal(cc)
	if err != nil {
		return nil, fmt.Errorf("boot cloud-config: %w", err)
	}
	return append([]byte("#cloud-config\n"), b...), nil
}

// watch follows one VM to its final state: deallocated or deleted by its
// cycle, QEMU gone by itself (the guest powered off or crashed), or the
// target closing. Each change is written to the VM's record.
func (t *Target) watch(rv *runnerVM, recPath string) {
	defer t.wg.Done()
	defer close(rv.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-rv.machine.Exited():
		case <-ctx.Done():
			return
		}
		// QEMU exited: give the platform a moment to say why (its hook
		// powers QEMU off before it marks the VM deallocated).
		select {
		case <-time.After(5 * time.Second):
			cancel()
		case <-ctx.Done():
		}
	}()
	st, err := rv.pvm.Wait(ctx, platform.StateDeallocated, platform.StateDeleted)
	t.mu.Lock()
	rec := &rv.rec
	rec.State, rec.Tags, rec.Ended = st.State, st.Tags, time.Now().UTC()
	rec.Outcome = st.Outcome
	switch {
	case err == nil && st.State == platform.StateDeleted:
		rec.Power, rec.Disk = fleet.PowerDeleting, ""
	case err == nil:
		rec.Power = fleet.PowerDeallocated
	case st.State == platform.StateFailed:
		rec.Power, rec.Error = fleet.PowerUnknown, err.Error()
	default:
		// QEMU ended without a deallocate or delete: powered off from
		// inside, crashed, or stopped by Close. The disk is kept.
		rec.Power = fleet.PowerStopped
		_ = rv.machine.Destroy()
	}
	recCopy := *rec
	t.mu.Unlock()
	if st.State == platform.StateDeleted {
		// Deleted: the record goes too (a deleted Azure VM is not listed).
		if err := os.Remove(recPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.log.Warn("runner VM record", "vm", recCopy.Name, "err", err)
		}
		if !t.opts.KeepLogs {
			os.RemoveAll(recCopy.LogDir)
		}
	} else if err := writeRecord(recPath, recCopy); err != nil {
		t.log.Warn("runner VM record", "vm", recCopy.Name, "err", err)
	}
	t.log.Info("runner VM finished", "vm", recCopy.Name, "state", recCopy.State, "power", recCopy.Power, "outcome", orNone(recCopy.Outcome))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func runnerIDOf(tags map[string]string) int64 {
	var id int64
	_, _ = fmt.Sscan(tags[contract.TagRunnerID], &id)
	return id
}

// Served returns this process's record of a VM it created, and whether it
// has reached its final state (deallocated, deleted, stopped).
func (t *Target) Served(name string) (Record, bool, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rv := t.vms[name]
	if rv == nil {
		return Record{}, false, false
	}
	select {
	case <-rv.done:
		return rv.rec, true, true
	default:
	}
	r := rv.rec
	st := rv.pvm.Status()
	r.State, r.Tags, r.Outcome = st.State, st.Tags, st.Outcome
	return r, false, true
}

// Done is closed when the named VM (created by this process) reached its
// final state; nil for an unknown name.
func (t *Target) Done(name string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rv := t.vms[name]; rv != nil {
		return rv.done
	}
	return nil
}

// Machine is the QEMU machine of a VM this process created (nil if none).
func (t *Target) Machine(name string) *qemu.Machine {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rv := t.vms[name]; rv != nil {
		return rv.machine
	}
	return nil
}

// List returns the VMs of image ("" for all) from their records, with the
// live state of those this process serves.
func (t *Target) List(ctx context.Context, image string) ([]fleet.VM, error) {
	recs, err := t.records(image)
	if err != nil {
		return nil, err
	}
	out := make([]fleet.VM, 0, len(recs))
	for _, r := range recs {
		vm := r.VM
		if live, final, ok := t.Served(r.Name); ok && !final {
			vm.Outcome = live.Outcome
			vm.Power = powerOf(live.State)
		} else if vm.Power == fleet.PowerRunning {
			// Recorded as running by a process that is gone: its
			// platform (and so the VM) ended with it.
			vm.Power = fleet.PowerStopped
		}
		out = append(out, vm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func powerOf(s platform.State) fleet.Power {
	switch s {
	case platform.StateRunning:
		return fleet.PowerRunning
	case platform.StateDeallocating:
		return fleet.PowerDeallocating
	case platform.StateDeallocated:
		return fleet.PowerDeallocated
	case platform.StateDeleting, platform.StateDeleted:
		return fleet.PowerDeleting
	}
	return fleet.PowerUnknown
}

// records reads the records of image ("" for every image folder).
func (t *Target) records(image string) ([]Record, error) {
	var dirs []string
	if image != "" {
		if !nameRe.MatchString(image) {
			return nil, fmt.Errorf("local runner VMs of %q: not a valid image name", image)
		}
		dirs = []string{t.imageDir(image)}
	} else {
		ents, err := os.ReadDir(t.opts.Dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("local runner VMs: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() && nameRe.MatchString(e.Name()) {
				dirs = append(dirs, filepath.Join(t.opts.Dir, e.Name()))
			}
		}
	}
	var out []Record
	for _, d := range dirs {
		files, err := filepath.Glob(filepath.Join(d, "*.json"))
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			r, err := readRecord(f)
			if err != nil {
				t.log.Warn("runner VM record skipped", "file", f, "err", err)
				continue
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// Delete removes a VM that is not running: its disk, logs and record.
func (t *Target) Delete(ctx context.Context, vm fleet.VM) error {
	if !nameRe.MatchString(vm.Name) || !nameRe.MatchString(vm.Image) {
		return fmt.Errorf("local runner VM %q: not a valid name", vm.Name)
	}
	if live, final, ok := t.Served(vm.Name); ok && !final && live.State == platform.StateRunning {
		return fmt.Errorf("local runner VM %s: running", vm.Name)
	}
	recPath := filepath.Join(t.imageDir(vm.Image), vm.Name+".json")
	r, err := readRecord(recPath)
	if err != nil {
		return fmt.Errorf("local runner VM %s: %w", vm.Name, err)
	}
	// Only files this target names inside its own folder, never a path a
	// record could point elsewhere.
	disk := filepath.Join(t.imageDir(vm.Image), vm.Name+".qcow2")
	if err := os.Remove(disk); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("local runner VM %s: disk: %w", vm.Name, err)
	}
	_ = os.RemoveAll(filepath.Join(t.imageDir(vm.Image), vm.Name+".logs"))
	if err := os.Remove(recPath); err != nil {
		return fmt.Errorf("local runner VM %s: %w", vm.Name, err)
	}
	t.log.Info("runner VM deleted", "vm", r.Name, "disk", disk)
	return nil
}

// Wait waits until every VM this process created reached its final state;
// a VM whose cycle keeps it running keeps Wait waiting until ctx ends.
func (t *Target) Wait(ctx context.Context) error {
	t.mu.Lock()
	var dones []<-chan struct{}
	for _, rv := range t.vms {
		if rv != nil {
			dones = append(dones, rv.done)
		}
	}
	t.mu.Unlock()
	for _, d := range dones {
		select {
		case <-d:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close powers off the VMs still running (their disks are kept, their
// records say stopped) and waits for every watcher.
func (t *Target) Close(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	var live []*runnerVM
	for _, rv := range t.vms {
		if rv != nil {
			live = append(live, rv)
		}
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, rv := range live {
		select {
		case <-rv.done:
			continue
		default:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rv.machine.Stop(ctx); err != nil {
				t.log.Warn("runner VM power-off", "vm", rv.rec.Name, "err", err)
			}
		}()
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("local runner VMs: closing: %w", ctx.Err())
	}
}

func writeRecord(path string, r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readRecord(path string) (Record, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return Record{}, err
	}
	if !fi.Mode().IsRegular() {
		return Record{}, fmt.Errorf("%s: not a regular file", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%s: %w", path, err)
	}
	want := strings.TrimSuffix(filepath.Base(path), ".json")
	if r.Name != want {
		return Record{}, fmt.Errorf("%s: names VM %q", path, r.Name)
	}
	return r, nil
}
