package bake

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/internal/fakevm"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/recipes"
)

func options(t testing.TB, e *aztest.Env) AzureOptions {
	return AzureOptions{Clients: e.Clients(t), SSHPort: e.Port, LogDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
		CleanupTime: time.Minute, Timeouts: map[string]time.Duration{"ssh": 20 * time.Second}}
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
	e := aztest.New(t, azmodel.Options{}, nil)
	r := loadRunner(t)
	for i, want := range []string{"1.0.0", "1.0.1"} {
		m, err := Azure(context.Background(), r, options(t, e))
		if err != nil {
			t.Fatalf("bake %d: %v", i, err)
		}
		if m.Version != want {
			t.Fatalf("bake %d published %s, want %s", i, m.Version, want)
		}
		if left := e.BuildLeftovers(); len(left) > 0 {
			t.Fatalf("bake %d left build resources: %v", i, left)
		}
		if m.BaseVersion != "20.04.202502110" {
			t.Errorf("base version %q: latest was not resolved to the highest", m.BaseVersion)
		}
		if len(m.Checks) == 0 {
			t.Error("no checks ran")
		}
	}
	vs := e.Versions()
	if len(vs) != 2 {
		t.Fatalf("gallery holds %d versions, want 2", len(vs))
	}
	v := vs[1]
	for k, want := range map[string]string{
		contract.TagRecipe: "github-runner-focal", contract.TagRecipeHash: r.Hash(), contract.TagRunner: "2.337.0",
		contract.TagBaseVersion: "20.04.202502110", "team": "platform",
	} {
		if v.Tags[k] != want {
			t.Errorf("version %s tag %s = %q, want %q", v.Name, k, v.Tags[k], want)
		}
	}
	if e.VMCount.Load() != 2 {
		t.Errorf("%d VMs created, want 2", e.VMCount.Load())
	}
}

func TestAzureConcurrentBakesGetDistinctVersions(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	r := loadRunner(t)
	const n = 8
	var wg sync.WaitGroup
	got := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m, err := Azure(context.Background(), r, options(t, e))
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
	vs := e.Versions()
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
	if left := e.BuildLeftovers(); len(left) > 0 {
		t.Errorf("leftovers: %v", left)
	}
}

func TestAzureThrottlingIsWaitedOut(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	// Compute throttles the VM create for 4 minutes: above the SDK's 60 s
	// cap, so the SDK hands the 429 back and imagebake must wait.
	e.Model.MustAddRule(azmodel.Rule{Op: "VirtualMachines_CreateOrUpdate", Nth: 1, Times: 2, Status: 429, RetryAfter: 240})
	var mu sync.Mutex
	var waits []time.Duration
	opts := options(t, e)
	cred, _ := e.Server.Credential("tenant-1", "client-1", "s")
	c, err := az.NewClients(az.Config{SubscriptionID: aztest.Subscription, ResourceManager: e.Server.URL(), Credential: cred, Transport: e.Server.HTTPClient(),
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
	e := aztest.New(t, azmodel.Options{}, script)
	m, err := Azure(context.Background(), loadRunner(t), options(t, e))
	if err == nil {
		t.Fatal("the bake succeeded with a failing check")
	}
	if m.FailedStage != "checks" || !strings.Contains(err.Error(), "docker: not found") || !strings.Contains(err.Error(), `check "docker client installed" failed (exit 127)`) {
		t.Errorf("error does not show the failing check and its output: stage %q: %v", m.FailedStage, err)
	}
	if len(e.Versions()) != 0 || len(e.BuildLeftovers()) != 0 {
		t.Errorf("versions %d, leftovers %v", len(e.Versions()), e.BuildLeftovers())
	}
}

func TestAzureKeepOnFailureKeepsTheVM(t *testing.T) {
	script := fakevm.Script{fakevm.Exact("sh -c 'docker --version'", fakevm.Reply{ExitCode: 1})}
	e := aztest.New(t, azmodel.Options{}, script)
	opts := options(t, e)
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
	if len(e.BuildLeftovers()) == 0 || len(m.Left) == 0 {
		t.Fatal("--keep-on-failure removed the build VM")
	}
	joined := strings.Join(notes, "\n")
	if !strings.Contains(joined, "ssh -p") || !strings.Contains(joined, m.Resources["resourceGroup"]) {
		t.Errorf("no SSH command and resource group printed: %s", joined)
	}
}

type sinkFunc func(Event)

func (f sinkFunc) Event(e Event) { f(e) }

func TestAzureImageDefinitionMissing(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	r := loadRunner(t)
	r.Gallery.Azure.Image = "brand-new"
	r.Gallery.Image = "brand-new"
	_, err := Azure(context.Background(), r, options(t, e))
	if err == nil || !strings.Contains(err.Error(), "--create-definition") {
		t.Fatalf("want a hint to pass --create-definition, got %v", err)
	}
	if left := e.BuildLeftovers(); len(left) > 0 {
		t.Fatalf("a failed definition check created %v", left)
	}
	opts := options(t, e)
	opts.CreateDefinition = true
	m, err := Azure(context.Background(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "1.0.0" {
		t.Errorf("version %s", m.Version)
	}
	vs := e.Model.GalleryVersions(azmodel.GalleryImageID(aztest.Subscription, "image-gallery-rg", "runner_images", "brand-new"))
	if len(vs) != 1 {
		t.Errorf("the new definition holds %d versions", len(vs))
	}
}

func TestAzureNoWaitStillLeavesNothing(t *testing.T) {
	// --no-wait skips waiting for every region's replica, but not for the
	// home region's copy: the source VM is deleted only after it exists.
	e := aztest.New(t, azmodel.Options{InProgressPolls: 5}, nil)
	opts := options(t, e)
	opts.NoWait = true
	m, err := Azure(context.Background(), loadRunner(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	vs := e.Versions()
	if len(vs) != 1 || vs[0].ProvisioningState == "Failed" || m.Version != "1.0.0" {
		t.Errorf("--no-wait: versions %+v, manifest version %s", vs, m.Version)
	}
	if left := e.BuildLeftovers(); len(left) > 0 {
		t.Errorf("leftovers %v", left)
	}
}

func TestAzureVerifyBootsTheVersionAndCleansUp(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	r := loadRunner(t)
	if _, err := Azure(context.Background(), r, options(t, e)); err != nil {
		t.Fatal(err)
	}
	m, err := VerifyAzure(context.Background(), r, "", options(t, e))
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if m.Version != "1.0.0" || m.Result != "verified" || len(m.Checks) == 0 {
		t.Errorf("manifest %+v", m)
	}
	if left := e.BuildLeftovers(); len(left) > 0 {
		t.Errorf("verify left %v", left)
	}
	booted := e.Booted()
	if len(booted) != 2 {
		t.Fatalf("booted %d VMs", len(booted))
	}
	vm := booted[1]
	if !strings.HasSuffix(strings.ToLower(vm.Image), "/versions/1.0.0") || vm.Tags["cycle"] != "delete" {
		t.Errorf("the verify VM booted %q with tags %v; want the gallery version and cycle=delete", vm.Image, vm.Tags)
	}
	if e.VMCount.Load() != 2 {
		t.Errorf("%d VMs created, want the build's and the verify's", e.VMCount.Load())
	}
}

func TestAzureManagedImageWhenAsked(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	opts := options(t, e)
	opts.ManagedImage = true
	m, err := Azure(context.Background(), loadRunner(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	vs := e.Versions()
	if len(vs) != 1 || !strings.Contains(strings.ToLower(vs[0].Source), "/providers/microsoft.compute/images/") || m.Resources["managedImage"] == "" {
		t.Errorf("version source %+v, want the managed image", vs)
	}
	if left := e.BuildLeftovers(); len(left) > 0 {
		t.Errorf("leftovers %v", left)
	}
}
