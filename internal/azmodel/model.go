package azmodel

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// DefaultSubscriptionID is the subscription seeds go to when none is named.
// Requests may use any subscription ID; subscriptions exist implicitly.
const DefaultSubscriptionID = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b"

// DefaultTenantID is the tenant the served authority answers for by default.
const DefaultTenantID = "00000000-0000-4000-8000-0000000000aa"

// Resource types as ARM names them.
const (
	TypeResourceGroup        = "Microsoft.Resources/resourceGroups"
	TypeVirtualNetwork       = "Microsoft.Network/virtualNetworks"
	TypeSubnet               = "Microsoft.Network/virtualNetworks/subnets"
	TypeNetworkSecurityGroup = "Microsoft.Network/networkSecurityGroups"
	TypePublicIPAddress      = "Microsoft.Network/publicIPAddresses"
	TypeNetworkInterface     = "Microsoft.Network/networkInterfaces"
	TypeDisk                 = "Microsoft.Compute/disks"
	TypeVirtualMachine       = "Microsoft.Compute/virtualMachines"
	TypeImage                = "Microsoft.Compute/images"
	TypeGallery              = "Microsoft.Compute/galleries"
	TypeGalleryImage         = "Microsoft.Compute/galleries/images"
	TypeGalleryImageVersion  = "Microsoft.Compute/galleries/images/versions"
)

// Options configure a Model. The zero value is usable.
type Options struct {
	// Location is the region seeds use when they name none (default "eastus").
	Location string
	// PageSize is the number of items per page on every list that pages with
	// nextLink (default 2, so callers' paging loops are exercised).
	PageSize int
	// InProgressPolls is how many times an operation endpoint answers
	// InProgress before the operation may finish (default 1; -1 means none).
	// An operation also waits for its latency-profile duration.
	InProgressPolls int
	// LRORetryAfter, when > 0, is sent as Retry-After (seconds) on every
	// long-running-operation response and InProgress poll; when < 0 no
	// Retry-After is sent on them. 0 (the default) sends Azure's recorded
	// cadence per operation (RecordedCadence, overridden by Cadence). The SDK
	// waits that long instead of its poll frequency: tests scale the wait with
	// ServerOptions.RetryAfterScale rather than change what the model sends.
	LRORetryAfter int
	// Cadence overrides RecordedCadence for the kinds it names.
	Cadence map[OpKind]Cadence
	// Latency gives operation durations (see RealWorldLatency).
	Latency LatencyProfile
	// Marketplace seeds the platform images; nil means DefaultMarketplace().
	Marketplace []MarketplaceImage
	// PublicIP chooses the address of a VM's public IP. It is called under
	// the model's lock and must not call back into the Model. Default:
	// 203.0.113.N (TEST-NET-3), N counting up.
	PublicIP func(vm VMInfo) string
	// OnVMCreated runs after a VM PUT created a VM (before the response is
	// written), outside the model's lock. Tests play the guest here.
	OnVMCreated func(vm VMInfo)
	// OnVMDeleted runs when a VM is gone (VM delete or resource-group delete
	// finished), outside the model's lock.
	OnVMDeleted func(vm VMInfo)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives debug logs of requests (default: discard).
	Logger *slog.Logger
	// ExtraAPIVersions are accepted in addition to the versions the SDK
	// clients imagebake uses send (compute 2025-04-01, galleries 2025-03-03,
	// disks 2025-01-02, network 2025-01-01, resources 2021-04-01).
	ExtraAPIVersions []string
}

// MarketplaceImage is one platform image version offered in the marketplace.
type MarketplaceImage struct {
	// Location restricts the image to one region; "" offers it everywhere.
	Location         string `json:"location,omitempty"`
	Publisher        string `json:"publisher"`
	Offer            string `json:"offer"`
	SKU              string `json:"sku"`
	Version          string `json:"version"`
	HyperVGeneration string `json:"hyperVGeneration,omitempty"` // "V1" (default) or "V2"
	Architecture     string `json:"architecture,omitempty"`     // "x64" (default)
	OSDiskSizeGB     int32  `json:"osDiskSizeGB,omitempty"`     // default 30
}

// DefaultMarketplace returns the seeded platform images: Canonical's Focal
// offer in its Gen1 SKU (20_04-lts, hyperVGeneration V1, as on Azure) and its
// Gen2 SKU (20_04-lts-gen2, V2), each with three versions.
func DefaultMarketplace() []MarketplaceImage {
	var out []MarketplaceImage
	for _, v := range []string{"20.04.202412030", "20.04.202501010", "20.04.202502110"} {
		out = append(out,
			MarketplaceImage{Publisher: "Canonical", Offer: "0001-com-ubuntu-server-focal", SKU: "20_04-lts", Version: v, HyperVGeneration: "V1"},
			MarketplaceImage{Publisher: "Canonical", Offer: "0001-com-ubuntu-server-focal", SKU: "20_04-lts-gen2", Version: v, HyperVGeneration: "V2"},
		)
	}
	return out
}

// VMInfo is what a test playing a VM's guest needs to know about it.
type VMInfo struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"`
	SubscriptionID string            `json:"subscriptionId"`
	ResourceGroup  string            `json:"resourceGroup"`
	Location       string            `json:"location"`
	VMSize         string            `json:"vmSize,omitempty"`
	Priority       string            `json:"priority,omitempty"`
	ComputerName   string            `json:"computerName,omitempty"`
	AdminUsername  string            `json:"adminUsername,omitempty"`
	SSHPublicKeys  []string          `json:"sshPublicKeys,omitempty"`
	CustomData     []byte            `json:"customData,omitempty"` // decoded from base64
	UserData       []byte            `json:"userData,omitempty"`   // decoded from base64
	Tags           map[string]string `json:"tags,omitempty"`
	PublicIP       string            `json:"publicIP,omitempty"`
	PrivateIP      string            `json:"privateIP,omitempty"`
	// Image is the source: "publisher:offer:sku:exactVersion" or an image ID.
	Image            string `json:"image,omitempty"`
	HyperVGeneration string `json:"hyperVGeneration,omitempty"`
}

// Resource is one existing resource, as leak checks want to see it.
type Resource struct {
	ID                string            `json:"id"`
	Type              string            `json:"type"`
	Name              string            `json:"name"`
	SubscriptionID    string            `json:"subscriptionId"`
	ResourceGroup     string            `json:"resourceGroup"`
	Location          string            `json:"location,omitempty"`
	Tags              map[string]string `json:"tags,omitempty"`
	ProvisioningState string            `json:"provisioningState,omitempty"`
}

// Snapshot is the model's state at one moment.
type Snapshot struct {
	Resources         []Resource `json:"resources"`
	VMs               []VMInfo   `json:"vms"`
	PendingOperations int        `json:"pendingOperations"`
	Requests          int        `json:"requests"`
}

// Model is the in-memory Resource Manager. All methods are safe for
// concurrent use.
type Model struct {
	opts Options

	mu        sync.Mutex
	res       map[string]*res // lower-case ID → resource
	ops       map[string]*operation
	market    []MarketplaceImage
	rules     []*ruleEntry
	nextRule  int
	log       []Request
	callbacks []func()
	ipSeq     int
	latency   LatencyProfile
	polls     int
	pageSize  int
	apiExtra  map[string]bool
	opSeq     int
	cadences  map[OpKind]Cadence
}

// res is one stored resource. obj holds the Azure SDK model of the resource
// (so JSON shapes are the SDK's own); the extra state lives beside it.
type res struct {
	id      string // canonical casing
	typ     string
	sub     string
	rg      string
	name    string
	parent  string // lower-case ID of the parent for nested resources
	created time.Time
	obj     any
	op      *operation // the pending long-running operation, if any
	vm      *vmState
	ver     *verState
	disk    *diskState
}

type vmState struct {
	power       string // starting, running, stopping, stopped, deallocating, deallocated, "" (unknown)
	generalized bool
	customData  []byte
	userData    string // base64 as sent
	nics        []nicRef
	osDisk      string // lower-case disk ID
	osDiskDel   bool
	hyperV      string
	image       string
	info        VMInfo
}

type nicRef struct {
	id  string // lower-case
	del bool
}

type verState struct {
	failed bool
}

type diskState struct {
	managedBy string // lower-case VM ID or ""
}

// New returns a Model with opts' defaults applied and the marketplace seeded.
func New(opts Options) *Model {
	if opts.Location == "" {
		opts.Location = "eastus"
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 2
	}
	switch {
	case opts.InProgressPolls == 0:
		opts.InProgressPolls = 1
	case opts.InProgressPolls < 0:
		opts.InProgressPolls = 0
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	market := opts.Marketplace
	if market == nil {
		market = DefaultMarketplace()
	}
	m := &Model{
		opts:     opts,
		res:      map[string]*res{},
		ops:      map[string]*operation{},
		latency:  opts.Latency,
		polls:    opts.InProgressPolls,
		pageSize: opts.PageSize,
		apiExtra: map[string]bool{},
	}
	m.cadences = RecordedCadence()
	for k, v := range opts.Cadence {
		m.cadences[k] = v
	}
	for _, v := range opts.ExtraAPIVersions {
		m.apiExtra[v] = true
	}
	for _, img := range market {
		m.addMarketplaceLocked(img)
	}
	return m
}

// SetLatency replaces the latency profile for operations started from now on.
func (m *Model) SetLatency(p LatencyProfile) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.latency = p
}

// SetInProgressPolls sets how many InProgress answers operations started from
// now on give before they may finish (0 = none).
func (m *Model) SetInProgressPolls(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.polls = max(n, 0)
}

// SetPageSize sets the page size of paged lists (minimum 1).
func (m *Model) SetPageSize(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pageSize = max(n, 1)
}

// AddMarketplaceImage offers one more platform image version.
func (m *Model) AddMarketplaceImage(img MarketplaceImage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addMarketplaceLocked(img)
}

func (m *Model) addMarketplaceLocked(img MarketplaceImage) {
	if img.HyperVGeneration == "" {
		img.HyperVGeneration = "V1"
	}
	if img.Architecture == "" {
		img.Architecture = "x64"
	}
	if img.OSDiskSizeGB == 0 {
		img.OSDiskSizeGB = 30
	}
	m.market = append(m.market, img)
}

// Resources lists every existing resource (resource groups, subnets and
// nested gallery resources included), sorted by ID.
func (m *Model) Resources() []Resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.resourcesLocked()
}

func (m *Model) resourcesLocked() []Resource {
	out := make([]Resource, 0, len(m.res))
	for _, r := range m.res {
		out = append(out, Resource{
			ID:                r.id,
			Type:              r.typ,
			Name:              r.name,
			SubscriptionID:    r.sub,
			ResourceGroup:     r.rg,
			Location:          locationOf(r.obj),
			Tags:              flatTags(tagsOf(r.obj)),
			ProvisioningState: provisioningStateOf(r.obj),
		})
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(out[i].ID) < strings.ToLower(out[j].ID) })
	return out
}

// Snapshot returns the resources, VMs and counters at this moment.
func (m *Model) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	pending := 0
	for _, op := range m.ops {
		if op.status == statusInProgress {
			pending++
		}
	}
	return Snapshot{
		Resources:         m.resourcesLocked(),
		VMs:               m.vmsLocked(),
		PendingOperations: pending,
		Requests:          len(m.log),
	}
}

// VMs lists the existing VMs as the guest sees them.
func (m *Model) VMs() []VMInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vmsLocked()
}

func (m *Model) vmsLocked() []VMInfo {
	var out []VMInfo
	for _, r := range m.res {
		if r.vm != nil {
			out = append(out, r.vm.info.clone(tagsOf(r.obj)))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// VM returns one VM by ID (case-insensitive).
func (m *Model) VM(id string) (VMInfo, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.res[strings.ToLower(id)]
	if r == nil || r.vm == nil {
		return VMInfo{}, false
	}
	return r.vm.info.clone(tagsOf(r.obj)), true
}

// VMPowerState reports a VM's power state ("running", "deallocated", …) and
// whether it is generalized.
func (m *Model) VMPowerState(id string) (power string, generalized bool, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.res[strings.ToLower(id)]
	if r == nil || r.vm == nil {
		return "", false, false
	}
	return r.vm.power, r.vm.generalized, true
}

// SetTags replaces a resource's tags, as another actor (for example the
// runner's lifecycle script inside a VM) would.
func (m *Model) SetTags(id string, tags map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.res[strings.ToLower(id)]
	if r == nil {
		return fmt.Errorf("resource %s: not found", id)
	}
	setTags(r.obj, ptrTags(tags))
	return nil
}

// Settle finishes every pending long-running operation now, as if enough time
// had passed. Leak checks call it after a client stopped polling (for example
// a killed binary), because Azure finishes accepted operations on its own.
func (m *Model) Settle() {
	m.mu.Lock()
	for _, op := range m.sortedOpsLocked() {
		if op.status == statusInProgress {
			m.finishLocked(op)
		}
	}
	cbs := m.takeCallbacksLocked()
	m.mu.Unlock()
	for _, cb := range cbs {
		cb()
	}
}

func (m *Model) sortedOpsLocked() []*operation {
	ops := make([]*operation, 0, len(m.ops))
	for _, op := range m.ops {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].seq < ops[j].seq })
	return ops
}

// later queues fn to run after the model's lock is released.
func (m *Model) later(fn func()) { m.callbacks = append(m.callbacks, fn) }

func (m *Model) takeCallbacksLocked() []func() {
	cbs := m.callbacks
	m.callbacks = nil
	return cbs
}

func (m *Model) now() time.Time { return m.opts.Now() }

// get returns the resource with the given ID, or nil.
func (m *Model) get(id string) *res { return m.res[strings.ToLower(id)] }

func (m *Model) put(r *res) { m.res[strings.ToLower(r.id)] = r }

// children lists the resources whose parent is id, sorted by ID.
func (m *Model) children(id string) []*res {
	lid := strings.ToLower(id)
	var out []*res
	for _, r := range m.res {
		if r.parent == lid {
			out = append(out, r)
		}
	}
	sortRes(out)
	return out
}

// inGroup lists the resources in a resource group (the group excluded).
func (m *Model) inGroup(sub, rg string) []*res {
	var out []*res
	for _, r := range m.res {
		if r.typ != TypeResourceGroup && strings.EqualFold(r.sub, sub) && strings.EqualFold(r.rg, rg) {
			out = append(out, r)
		}
	}
	sortRes(out)
	return out
}

func (m *Model) ofType(sub, rg, typ string) []*res {
	var out []*res
	for _, r := range m.res {
		if r.typ == typ && strings.EqualFold(r.sub, sub) && (rg == "" || strings.EqualFold(r.rg, rg)) {
			out = append(out, r)
		}
	}
	sortRes(out)
	return out
}

func sortRes(rs []*res) {
	sort.Slice(rs, func(i, j int) bool { return strings.ToLower(rs[i].id) < strings.ToLower(rs[j].id) })
}

func (i VMInfo) clone(tags map[string]*string) VMInfo {
	out := i
	out.SSHPublicKeys = append([]string(nil), i.SSHPublicKeys...)
	out.CustomData = append([]byte(nil), i.CustomData...)
	out.UserData = append([]byte(nil), i.UserData...)
	out.Tags = flatTags(tags)
	return out
}

// newGUID returns a random RFC 4122 version 4 UUID.
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func newHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func ptr[T any](v T) *T { return &v }

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func flatTags(t map[string]*string) map[string]string {
	if len(t) == 0 {
		return nil
	}
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = str(v)
	}
	return out
}

func ptrTags(t map[string]string) map[string]*string {
	if t == nil {
		return nil
	}
	out := make(map[string]*string, len(t))
	for k, v := range t {
		out[k] = ptr(v)
	}
	return out
}

func tagsOf(obj any) map[string]*string {
	switch o := obj.(type) {
	case *armresources.ResourceGroup:
		return o.Tags
	case *armnetwork.VirtualNetwork:
		return o.Tags
	case *armnetwork.SecurityGroup:
		return o.Tags
	case *armnetwork.PublicIPAddress:
		return o.Tags
	case *armnetwork.Interface:
		return o.Tags
	case *armcompute.Disk:
		return o.Tags
	case *armcompute.VirtualMachine:
		return o.Tags
	case *armcompute.Image:
		return o.Tags
	case *armcompute.Gallery:
		return o.Tags
	case *armcompute.GalleryImage:
		return o.Tags
	case *armcompute.GalleryImageVersion:
		return o.Tags
	}
	return nil
}

func setTags(obj any, t map[string]*string) {
	switch o := obj.(type) {
	case *armresources.ResourceGroup:
		o.Tags = t
	case *armnetwork.VirtualNetwork:
		o.Tags = t
	case *armnetwork.SecurityGroup:
		o.Tags = t
	case *armnetwork.PublicIPAddress:
		o.Tags = t
	case *armnetwork.Interface:
		o.Tags = t
	case *armcompute.Disk:
		o.Tags = t
	case *armcompute.VirtualMachine:
		o.Tags = t
	case *armcompute.Image:
		o.Tags = t
	case *armcompute.Gallery:
		o.Tags = t
	case *armcompute.GalleryImage:
		o.Tags = t
	case *armcompute.GalleryImageVersion:
		o.Tags = t
	}
}

func locationOf(obj any) string {
	switch o := obj.(type) {
	case *armresources.ResourceGroup:
		return str(o.Location)
	case *armnetwork.VirtualNetwork:
		return str(o.Location)
	case *armnetwork.SecurityGroup:
		return str(o.Location)
	case *armnetwork.PublicIPAddress:
		return str(o.Location)
	case *armnetwork.Interface:
		return str(o.Location)
	case *armcompute.Disk:
		return str(o.Location)
	case *armcompute.VirtualMachine:
		return str(o.Location)
	case *armcompute.Image:
		return str(o.Location)
	case *armcompute.Gallery:
		return str(o.Location)
	case *armcompute.GalleryImage:
		return str(o.Location)
	case *armcompute.GalleryImageVersion:
		return str(o.Location)
	}
	return ""
}

func provisioningStateOf(obj any) string {
	switch o := obj.(type) {
	case *armresources.ResourceGroup:
		if o.Properties != nil {
			return str(o.Properties.ProvisioningState)
		}
	case *armnetwork.VirtualNetwork:
		if o.Properties != nil && o.Properties.ProvisioningState != nil {
			return string(*o.Properties.ProvisioningState)
		}
	case *armnetwork.Subnet:
		if o.Properties != nil && o.Properties.ProvisioningState != nil {
			return string(*o.Properties.ProvisioningState)
		}
	case *armnetwork.SecurityGroup:
		if o.Properties != nil && o.Properties.ProvisioningState != nil {
			return string(*o.Properties.ProvisioningState)
		}
	case *armnetwork.PublicIPAddress:
		if o.Properties != nil && o.Properties.ProvisioningState != nil {
			return string(*o.Properties.ProvisioningState)
		}
	case *armnetwork.Interface:
		if o.Properties != nil && o.Properties.ProvisioningState != nil {
			return string(*o.Properties.ProvisioningState)
		}
	case *armcompute.Disk:
		if o.Properties != nil {
			return str(o.Properties.ProvisioningState)
		}
	case *armcompute.VirtualMachine:
		if o.Properties != nil {
			return str(o.Properties.ProvisioningState)
		}
	case *armcompute.Image:
		if o.Properties != nil {
			return str(o.Properties.ProvisioningState)
		}
	case *armcompute.Gallery:
		if o.Properties != nil && o.Properties.ProvisioningState != nil {
			return string(*o.Properties.ProvisioningState)
		}
	case *armcompute.GalleryImage:
		if o.Properties != nil && o.Properties.ProvisioningState != nil {
			return string(*o.Properties.ProvisioningState)
		}
	case *armcompute.GalleryImageVersion:
		if o.Properties != nil && o.Properties.ProvisioningState != nil {
			return string(*o.Properties.ProvisioningState)
		}
	}
	return ""
}

// normLoc compares regions the way Azure does: "West US" == "westus".
func normLoc(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }

func rgID(sub, rg string) string { return "/subscriptions/" + sub + "/resourceGroups/" + rg }

func provID(sub, rg, provider, path string) string {
	return rgID(sub, rg) + "/providers/" + provider + "/" + path
}
