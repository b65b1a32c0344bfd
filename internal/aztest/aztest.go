// Package aztest is the test harness around the served model of Azure: the
// model on an https loopback endpoint, a gallery seeded for the shipped
// recipe, and stand-in guests for the VMs the model creates.
package aztest

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/fakevm"
	az "github.com/imagebake/imagebake/provision/azure"
)

// Subscription is the seeded subscription.
const Subscription = "00000000-0000-0000-0000-00000000abcd"

// Env is the served model of Azure plus stand-in guests: every VM the
// model creates gets an in-process SSH server on its own loopback address,
// with the host key from the VM's custom data and the admin key from its
// osProfile, answering as a VM whose cloud-init succeeded.
type Env struct {
	t      testing.TB
	Model  *azmodel.Model
	Server *azmodel.Server
	Port   int
	script fakevm.Script

	mu      sync.Mutex
	vms     map[string]*fakevm.VM
	booted  []azmodel.VMInfo
	nextIP  atomic.Int32
	VMCount atomic.Int32
}

// New starts the model and its server; both stop when the test ends.
func New(t testing.TB, opts azmodel.Options, script fakevm.Script) *Env {
	t.Helper()
	e := &Env{t: t, vms: map[string]*fakevm.VM{}, script: script}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	e.nextIP.Store(10)
	opts.PublicIP = func(azmodel.VMInfo) string { return fmt.Sprintf("127.0.0.%d", e.nextIP.Add(1)) }
	opts.OnVMCreated = e.boot
	opts.OnVMDeleted = func(vm azmodel.VMInfo) {
		e.mu.Lock()
		v := e.vms[vm.ID]
		delete(e.vms, vm.ID)
		e.mu.Unlock()
		if v != nil {
			v.Close()
		}
	}
	if opts.InProgressPolls == 0 {
		opts.InProgressPolls = 1
	}
	e.Model = azmodel.New(opts)
	// The model sends Azure's recorded Retry-After; on the wire it becomes
	// retry-after-ms at 1:1000, so clients that read it (azcore's pollers and
	// retry policy), the real binary included, wait 50 s as 50 ms. The meter
	// counts the real values.
	e.Server = azmodel.NewServer(e.Model, azmodel.ServerOptions{RetryAfterScale: ClockScale, ScaleOnWire: true})
	Isolate(t)
	if err := e.Server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Server.Close()
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, v := range e.vms {
			v.Close()
		}
	})
	if err := e.Model.SeedGallery(azmodel.GallerySeed{SubscriptionID: Subscription, ResourceGroup: "image-gallery-rg", Location: "eastus",
		Gallery: "runner_images", Image: "github-runner-focal"}); err != nil {
		t.Fatal(err)
	}
	return e
}

// boot plays the VM's guest: it reads the pinned host key from the custom
// data, as cloud-init would install it, and serves SSH.
func (e *Env) boot(vm azmodel.VMInfo) {
	e.VMCount.Add(1)
	e.mu.Lock()
	e.booted = append(e.booted, vm)
	e.mu.Unlock()
	if len(vm.CustomData) == 0 {
		return // a runner VM (imagebake launch): nothing logs in over SSH
	}
	signer, err := fakevm.HostKeyFromCloudConfig(vm.CustomData)
	if err != nil {
		e.t.Errorf("VM %s: custom data has no usable host key: %v", vm.Name, err)
		return
	}
	var keys []ssh.PublicKey
	for _, k := range vm.SSHPublicKeys {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k))
		if err != nil {
			e.t.Errorf("VM %s: bad SSH key %q: %v", vm.Name, k, err)
			return
		}
		keys = append(keys, pk)
	}
	v, err := fakevm.New(fakevm.Config{HostKey: signer, AuthorizedKeys: keys, User: vm.AdminUsername, Script: e.script})
	if err != nil {
		e.t.Errorf("VM %s: %v", vm.Name, err)
		return
	}
	if err := v.Start(net.JoinHostPort(vm.PublicIP, strconv.Itoa(e.Port))); err != nil {
		e.t.Errorf("VM %s: listen: %v", vm.Name, err)
		return
	}
	e.mu.Lock()
	e.vms[vm.ID] = v
	e.mu.Unlock()
}

// ClockScale is the factor by which tests wait the Retry-After the model
// advertises (50 s → 50 ms).
const ClockScale = 0.001

// Isolate keeps Azure credential chains in this test off the network: the
// default chain may only use the environment credential, so it never
// probes the managed-identity endpoint (169.254.169.254). It uses t.Setenv,
// so the test must not be parallel.
func Isolate(t testing.TB) {
	t.Helper()
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
	for _, k := range []string{"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// HTTPClient is the server's client (CA trusted, Retry-After scaled) behind
// LoopbackOnly: a request to a non-loopback host fails the test.
func (e *Env) HTTPClient() *http.Client {
	return &http.Client{Transport: LoopbackOnly(e.t.Errorf, e.Server.HTTPClient().Transport)}
}

// LoopbackOnly refuses, and reports through report, every request whose
// host is not a loopback address or "localhost".
func LoopbackOnly(report func(format string, args ...any), next http.RoundTripper) http.RoundTripper {
	return guard{report: report, next: next}
}

type guard struct {
	report func(format string, args ...any)
	next   http.RoundTripper
}

func (g guard) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		g.report("aztest: a request left loopback: %s %s", req.Method, req.URL.Redacted())
		return nil, fmt.Errorf("aztest: refusing %s: tests stay on loopback", req.URL.Host)
	}
	return g.next.RoundTrip(req)
}

// Clients are imagebake's Azure clients pointed at the model.
func (e *Env) Clients(t testing.TB) *az.Clients {
	t.Helper()
	cred, err := e.Server.Credential("tenant-1", "client-1", "not-a-real-secret")
	if err != nil {
		t.Fatal(err)
	}
	c, err := az.NewClients(az.Config{SubscriptionID: Subscription, ResourceManager: e.Server.URL(), Credential: cred,
		Transport: e.HTTPClient(), PollFrequency: 5 * time.Millisecond, MaxThrottleWait: time.Minute,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// BuildLeftovers lists every resource a build created that still exists:
// anything outside the gallery's resource group.
func (e *Env) BuildLeftovers() []string {
	var left []string
	for _, r := range e.Model.Resources() {
		if strings.EqualFold(r.ResourceGroup, "image-gallery-rg") {
			continue
		}
		left = append(left, r.Type+" "+r.ID)
	}
	return left
}

// Versions are the seeded image definition's versions.
func (e *Env) Versions() []azmodel.GalleryVersion {
	return e.Model.GalleryVersions(azmodel.GalleryImageID(Subscription, "image-gallery-rg", "runner_images", "github-runner-focal"))
}

// Booted lists every VM the model created, in order.
func (e *Env) Booted() []azmodel.VMInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]azmodel.VMInfo(nil), e.booted...)
}
