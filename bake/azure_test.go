package bake

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/fakevm"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/recipes"
)

const testSub = "00000000-0000-0000-0000-00000000abcd"

// azEnv is the served model of Azure plus stand-in guests: every VM the
// model creates gets an in-process SSH server on its own loopback address,
// with the host key from the VM's custom data and the admin key from its
// osProfile, answering as a VM whose cloud-init succeeded.
type azEnv struct {
	t      testing.TB
	model  *azmodel.Model
	srv    *azmodel.Server
	port   int
	script fakevm.Script

	mu      sync.Mutex
	vms     map[string]*fakevm.VM
	nextIP  atomic.Int32
	vmCount atomic.Int32
}

func newAzEnv(t testing.TB, opts azmodel.Options, script fakevm.Script) *azEnv {
	t.Helper()
	e := &azEnv{t: t, vms: map[string]*fakevm.VM{}, script: script}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = l.Addr().(*net.TCPAddr).Port
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
	e.model = azmodel.New(opts)
	e.srv = azmodel.NewServer(e.model, azmodel.ServerOptions{})
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.srv.Close()
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, v := range e.vms {
			v.Close()
		}
	})
	if err := e.model.SeedGallery(azmodel.GallerySeed{SubscriptionID: testSub, ResourceGroup: "image-gallery-rg", Location: "eastus",
		Gallery: "runner_images", Image: "github-runner-focal"}); err != nil {
		t.Fatal(err)
	}
	return e
}

// boot plays the VM's guest: it reads the pinned host key from the custom
// data, as cloud-init would install it, and serves SSH.
func (e *azEnv) boot(vm azmodel.VMInfo) {
	e.vmCount.Add(1)
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
	if err := v.Start(net.JoinHostPort(vm.PublicIP, strconv.Itoa(e.port))); err != nil {
		e.t.Errorf("VM %s: listen: %v", vm.Name, err)
		return
	}
	e.mu.Lock()
	e.vms[vm.ID] = v
	e.mu.Unlock()
}

func (e *azEnv) clients(t testing.TB) *az.Clients {
	t.Helper()
	cred, err := e.srv.Credential("tenant-1", "client-1", "not-a-real-secret")
	if err != nil {
		t.Fatal(err)
	}
	c, err := az.NewClients(az.Config{SubscriptionID: testSub, ResourceManager: e.srv.URL(), Credential: cred,
		Transport: e.srv.HTTPClient(), PollFrequency: 5 * time.Millisecond, MaxThrottleWait: time.Minute,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *azEnv) options(t testing.TB) AzureOptions {
	return AzureOptions{Clients: e.clients(t), SSHPort: e.port, LogDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		CleanupTime: time.Minute, Timeouts: map[string]time.Duration{"ssh": 20 * time.Second}}
}

// buildLeftovers lists every resource a build created that still exists:
// anything outside the gallery's resource group.
func (e *azEnv) buildLeftovers() []string {
	var left []string
	for _, r := range e.model.Resources() {
		if strings.EqualFold(r.ResourceGroup, "image-gallery-rg") {
			continue
		}
		left = append(left, r.Type+" "+r.ID)
	}
	return left
}

func (e *azEnv) versions() []azmodel.GalleryVersion {
	return e.model.GalleryVersions(azmodel.GalleryImageID(testSub, "image-gallery-rg", "runner_images", "github-runner-focal"))
}

func loadRunner(t testing.TB) *recipes.Recipe {
	t.Helper()
	r, err := recipes.Load("../recipes/github-runner-focal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAzureBakeTwiceGivesNextVersionsAndLeavesNothing(t *testing.T) {
	e := newAzEnv(t, azmodel.Options{}, nil)
	r := loadRunner(t)
	for i, want := range []string{"1.0.0", "1.0.1"} {
		m, err := Azure(context.Background(), r, e.options(t))
		if err != nil {
			t.Fatalf("bake %d: %v", i, err)
		}
		if m.Version != want {
			t.Fatalf("bake %d published %s, want %s", i, m.Version, want)
		}
		if left := e.buildLeftovers(); len(left) > 0 {
			t.Fatalf("bake %d left build resources: %v", i, left)
		}
		if m.BaseVersion != "20.04.202502110" {
			t.Errorf("base version %q: latest was not resolved to the highest", m.BaseVersion)
		}
		if len(m.Checks) == 0 {
			t.Error("no checks ran")
		}
	}
	vs := e.versions()
	if len(vs) != 2 {
		t.Fatalf("gallery holds %d versions, want 2", len(vs))
	}
	v := vs[1]
	for k, want := range map[string]string{
		gallery.TagRecipe: "github-runner-focal", gallery.TagRecipeHash: r.Hash(), gallery.TagRunner: "2.337.0",
		gallery.TagBaseVersion: "20.04.202502110", "team": "platform",
	} {
		if v.Tags[k] != want {
			t.Errorf("version %s tag %s = %q, want %q", v.Name, k, v.Tags[k], want)
		}
	}
	if e.vmCount.Load() != 2 {
		t.Errorf("%d VMs created, want 2", e.vmCount.Load())
	}
}

func TestAzureConcurrentBakesGetDistinctVersions(t *testing.T) {
	e := newAzEnv(t, azmodel.Options{}, nil)
	r := loadRunner(t)
	const n = 8
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m, err := Azure(context.Background(), r, e.options(t))
			got[i], errs[i] = m.Version, err
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range got {
		if errs[i] != nil {
			t.Fatalf("bake %d: %v", i, errs[i])
		}
		if seen[got[i]] {
			t.Errorf("version %s published twice", got[i])
		}
		seen[got[i]] = true
	}
	vs := e.versions()
	if len(vs) != n {
		t.Fatalf("gallery holds %d versions, want %d", len(vs), n)
	}
	// None overwritten: each version's source is a distinct build VM.
	sources := map[string]bool{}
	for _, v := range vs {
		if sources[v.Source] {
			t.Errorf("two versions share source %s: one was overwritten", v.Source)
		}
		sources[v.Source] = true
		if v.ProvisioningState != "Succeeded" {
			t.Errorf("version %s is %s", v.Name, v.ProvisioningState)
		}
	}
	if left := e.buildLeftovers(); len(left) > 0 {
		t.Errorf("leftovers: %v", left)
	}
}

func TestAzureThrottlingIsWaitedOut(t *testing.T) {
	e := newAzEnv(t, azmodel.Options{}, nil)
	// Compute throttles the VM create for 4 minutes: above the SDK's 60 s
	// cap, so the SDK hands the 429 back and imagebake must wait.
	e.model.MustAddRule(azmodel.Rule{Op: "VirtualMachines_CreateOrUpdate", Nth: 1, Times: 2, Status: 429, RetryAfter: 240})
	var mu sync.Mutex
	var waits []time.Duration
	opts := e.options(t)
	cred, _ := e.srv.Credential("tenant-1", "client-1", "s")
	c, err := az.NewClients(az.Config{SubscriptionID: testSub, ResourceManager: e.srv.URL(), Credential: cred, Transport: e.srv.HTTPClient(),
		PollFrequency: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		// Time scaled 1:10000: the wait is recorded at full length.
		Sleep: func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			waits = append(waits, d)
			mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d / 10000):
				return nil
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	opts.Clients = c
	m, err := Azure(context.Background(), loadRunner(t), opts)
	if err != nil {
		t.Fatalf("a throttled bake failed instead of waiting: %v", err)
	}
	throttleWaits := 0
	for _, w := range waits {
		if w == 240*time.Second {
			throttleWaits++
		}
	}
	if throttleWaits != 2 {
		t.Errorf("waited %v; want two waits of the full 240 s Retry-After", waits)
	}
	if m.Version != "1.0.0" {
		t.Errorf("published %q", m.Version)
	}
}

func TestAzureFailingCheckFailsBakeWithOutput(t *testing.T) {
	script := fakevm.Script{fakevm.Exact("sh -c 'docker --version'", fakevm.Reply{Stderr: "sh: 1: docker: not found\n", ExitCode: 127})}
	e := newAzEnv(t, azmodel.Options{}, script)
	m, err := Azure(context.Background(), loadRunner(t), e.options(t))
	if err == nil {
		t.Fatal("the bake succeeded with a failing check")
	}
	if m.FailedStage != "checks" || !strings.Contains(err.Error(), "docker: not found") || !strings.Contains(err.Error(), `check "docker client installed" failed (exit 127)`) {
		t.Errorf("error does not show the failing check and its output: stage %q: %v", m.FailedStage, err)
	}
	if len(e.versions()) != 0 || len(e.buildLeftovers()) != 0 {
		t.Errorf("versions %d, leftovers %v", len(e.versions()), e.buildLeftovers())
	}
}

func TestAzureKeepOnFailureKeepsTheVM(t *testing.T) {
	script := fakevm.Script{fakevm.Exact("sh -c 'docker --version'", fakevm.Reply{ExitCode: 1})}
	e := newAzEnv(t, azmodel.Options{}, script)
	opts := e.options(t)
	opts.KeepOnFail = true
	var notes []string
	var mu sync.Mutex
	opts.Sink = sinkFunc(func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Kind == Info || ev.Kind == CleanupLeft {
			notes = append(notes, ev.Message)
		}
	})
	m, err := Azure(context.Background(), loadRunner(t), opts)
	if err == nil {
		t.Fatal("want a failed bake")
	}
	if len(e.buildLeftovers()) == 0 || len(m.Left) == 0 {
		t.Fatal("--keep-on-failure removed the build VM")
	}
	joined := strings.Join(notes, "\n")
	if !strings.Contains(joined, "ssh -p") || !strings.Contains(joined, m.Resources["resourceGroup"]) {
		t.Errorf("no SSH command and resource group printed: %s", joined)
	}
}

type sinkFunc func(Event)

func (f sinkFunc) Event(e Event) { f(e) }
