package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/fleet"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/internal/ghmodel"
	"github.com/imagebake/imagebake/runnerreg"
)

// fakeTarget keeps VMs in memory. fail makes Create of a name fail;
// block makes every Create wait for ctx (a slow Azure) and report
// started on the channel.
type fakeTarget struct {
	mu      sync.Mutex
	vms     map[string]fleet.VM
	specs   []fleet.VMSpec
	fail    map[string]error
	block   bool
	started chan string
	deleted []string
}

func newFake() *fakeTarget {
	return &fakeTarget{vms: map[string]fleet.VM{}, fail: map[string]error{}, started: make(chan string, 100)}
}

func (f *fakeTarget) Create(ctx context.Context, s fleet.VMSpec) (fleet.VM, error) {
	f.mu.Lock()
	f.specs = append(f.specs, s)
	err := f.fail[s.Name]
	block := f.block
	f.mu.Unlock()
	f.started <- s.Name
	if block {
		<-ctx.Done()
		return fleet.VM{}, ctx.Err()
	}
	if err != nil {
		return fleet.VM{}, err
	}
	vm := fleet.VM{Name: s.Name, ID: "fake/" + s.Name, Image: s.Image, Version: s.Version, Power: fleet.PowerRunning, Cycle: s.Cycle}
	f.mu.Lock()
	f.vms[s.Name] = vm
	f.mu.Unlock()
	return vm, nil
}

func (f *fakeTarget) List(ctx context.Context, image string) ([]fleet.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fleet.VM
	for _, vm := range f.vms {
		if image == "" || vm.Image == image {
			out = append(out, vm)
		}
	}
	return out, nil
}

func (f *fakeTarget) Delete(ctx context.Context, vm fleet.VM) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.vms, vm.Name)
	f.deleted = append(f.deleted, vm.Name)
	return nil
}

const pat = "ghp_0123456789abcdefghijABCDEFGHIJ0123"

func github(t *testing.T) (*ghmodel.Model, *runnerreg.Client) {
	t.Helper()
	m := ghmodel.New(ghmodel.Options{ReuseRunnerKey: true})
	t.Cleanup(m.Close)
	m.AddToken(pat)
	s, err := runnerreg.ParseScope("https://github.com/acme/app")
	if err != nil {
		t.Fatal(err)
	}
	c, err := runnerreg.New(runnerreg.Options{Scope: s.WithAPIBase(m.URL()), Token: runnerreg.NewSecret(pat), HTTPClient: m.Client(), RetryBase: time.Millisecond, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return m, c
}

func spec(n int) fleet.LaunchSpec {
	return fleet.LaunchSpec{Image: "github-runner-noble", Version: "1.0.3", ImageID: "/galleries/g/images/i/versions/1.0.3", Count: n,
		LaunchID: "abcd1234", Cycle: contract.CycleDelete, Registration: contract.RegistrationJIT,
		Labels: []string{"self-hosted", "linux"}, RunnerGroupID: 1, Now: func() time.Time { return time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC) }}
}

// noSecrets fails when any JIT config a VM got appears in text.
func noSecrets(t *testing.T, what, text string, specs []fleet.VMSpec) {
	t.Helper()
	for _, s := range specs {
		if v := s.UserData.Reveal(); v != "" && strings.Contains(text, v) {
			t.Errorf("%s holds VM %s's JIT config", what, s.Name)
		}
	}
}

func TestLaunchJIT(t *testing.T) {
	gh, c := github(t)
	ft := newFake()
	var logs bytes.Buffer
	out, err := fleet.Launch(context.Background(), spec(3), ft, c, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	mints := gh.Mints()
	if len(mints) != 3 || len(out) != 3 || len(ft.vms) != 3 {
		t.Fatalf("mints %d, launched %d, VMs %d", len(mints), len(out), len(ft.vms))
	}
	byName := map[string]ghmodel.Mint{}
	for _, m := range mints {
		byName[m.Name] = m
	}
	for i, l := range out {
		want := fmt.Sprintf("github-runner-noble-abcd1234-%d", i+1)
		m, ok := byName[want]
		if l.Name != want || l.VM == nil || !ok || l.RunnerID != m.RunnerID || l.VM.RunnerID != m.RunnerID {
			t.Errorf("VM %d: %+v (mint %+v)", i, l, m)
		}
		if strings.Join(m.Labels, ",") != "self-hosted,linux" || m.RunnerGroupID != 1 {
			t.Errorf("mint %s: labels %v group %d", want, m.Labels, m.RunnerGroupID)
		}
	}
	seen := map[string]bool{}
	for _, s := range ft.specs {
		files, err := ghmodel.DecodeJITConfig(s.UserData.Reveal())
		if err != nil || len(files) == 0 {
			t.Errorf("VM %s: userData is not a JIT config: %v", s.Name, err)
		}
		if seen[s.UserData.Reveal()] {
			t.Errorf("VM %s: shares its JIT config", s.Name)
		}
		seen[s.UserData.Reveal()] = true
		want := map[string]string{contract.TagLaunchedFrom: "github-runner-noble", contract.TagLaunchVersion: "1.0.3", contract.TagLaunchID: "abcd1234",
			contract.TagRunnerID: fmt.Sprint(byName[s.Name].RunnerID), contract.TagCreated: "2026-12-02T08:00:00Z", contract.TagCycle: contract.CycleDelete}
		for k, v := range want {
			if s.Tags[k] != v {
				t.Errorf("VM %s: tag %s = %q, want %q", s.Name, k, s.Tags[k], v)
			}
		}
		if len(s.Tags) != len(want) {
			t.Errorf("VM %s: tags %v", s.Name, s.Tags)
		}
		tags, _ := json.Marshal(s.Tags)
		noSecrets(t, "tags", string(tags), ft.specs)
	}
	js, _ := json.Marshal(out)
	noSecrets(t, "result", string(js), ft.specs)
	noSecrets(t, "log", logs.String(), ft.specs)
	if !strings.Contains(logs.String(), "runner VM created") {
		t.Errorf("log: %s", logs.String())
	}
}

func TestLaunchMintFailureCreatesNoVM(t *testing.T) {
	gh, c := github(t)
	ft := newFake()
	s := spec(3)
	s.Parallel = 1 // mints in order: the 2nd is the 2nd VM
	gh.Inject(ghmodel.Fault{Endpoint: ghmodel.EpGenerateJIT, Nth: 2, Status: 422, Body: `{"message":"Validation Failed"}`})
	out, err := fleet.Launch(context.Background(), s, ft, c, nil)
	if err == nil || !strings.Contains(err.Error(), "-2: registering its runner (no VM created)") {
		t.Fatalf("err %v", err)
	}
	if _, ok := ft.vms[out[1].Name]; ok || out[1].VM != nil || out[1].Error == "" {
		t.Errorf("VM 2 was created after its mint failed: %+v", out[1])
	}
	if len(ft.specs) != 2 || out[0].VM == nil || out[2].VM == nil {
		t.Errorf("creates %d, launched %+v", len(ft.specs), out)
	}
}

func TestLaunchCreateFailureDeletesRegistration(t *testing.T) {
	gh, c := github(t)
	ft := newFake()
	s := spec(2)
	ft.fail[fleet.VMName("github-runner-noble", "abcd1234", 2)] = errors.New("SkuNotAvailable")
	out, err := fleet.Launch(context.Background(), s, ft, c, nil)
	if err == nil || !strings.Contains(err.Error(), "SkuNotAvailable") || !strings.Contains(err.Error(), "was deleted") {
		t.Fatalf("err %v", err)
	}
	var failedID int64
	for _, m := range gh.Mints() {
		if m.Name == out[1].Name {
			failedID = m.RunnerID
		}
	}
	r, ok := gh.Runner(failedID)
	if !ok || !r.Deleted {
		t.Errorf("registration of the VM that failed: %+v", r)
	}
	r0, _ := gh.Runner(out[0].RunnerID)
	if out[0].VM == nil || r0.Deleted || out[1].RunnerID != 0 {
		t.Errorf("launched %+v, runner 1 %+v", out, r0)
	}
}

// Ctrl-C while the first create is under way: nothing else is minted or
// started, and the first VM's registration is deleted.
func TestLaunchCancelled(t *testing.T) {
	gh, c := github(t)
	ft := newFake()
	ft.block = true
	s := spec(3)
	s.Parallel = 1
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		<-ft.started
		cancel(errors.New("interrupted by interrupt"))
	}()
	out, err := fleet.Launch(ctx, s, ft, c, nil)
	if err == nil || !strings.Contains(err.Error(), "interrupted by interrupt") {
		t.Fatalf("err %v", err)
	}
	if n := len(gh.Mints()); n != 1 || len(ft.specs) != 1 {
		t.Errorf("mints %d, creates %d after Ctrl-C", n, len(ft.specs))
	}
	for _, r := range gh.Runners() {
		if !r.Deleted {
			t.Errorf("registration %d (%s) left", r.ID, r.Name)
		}
	}
	for _, l := range out {
		if l.VM != nil || l.Error == "" {
			t.Errorf("%+v", l)
		}
	}
}

func TestLaunchKeyVaultPAT(t *testing.T) {
	ft := newFake()
	s := spec(2)
	s.Registration = contract.RegistrationKeyVaultPAT
	out, err := fleet.Launch(context.Background(), s, ft, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range ft.specs {
		if !sp.UserData.IsZero() || sp.Tags[contract.TagRunnerID] != "" {
			t.Errorf("keyvault-pat VM %s got %v / runner tag", sp.Name, sp.UserData)
		}
	}
	if len(out) != 2 || out[0].RunnerID != 0 {
		t.Errorf("%+v", out)
	}
}

func TestLaunchSpecChecks(t *testing.T) {
	_, c := github(t)
	for _, tc := range []struct {
		name string
		mod  func(*fleet.LaunchSpec)
		want string
	}{
		{"zero count", func(s *fleet.LaunchSpec) { s.Count = 0 }, "count 0"},
		{"too many", func(s *fleet.LaunchSpec) { s.Count = fleet.MaxCount + 1 }, "count"},
		{"bad prefix", func(s *fleet.LaunchSpec) { s.NamePrefix = "a_b" }, "name prefix"},
		{"prefix ends in hyphen", func(s *fleet.LaunchSpec) { s.NamePrefix = "ab-" }, "name prefix"},
		{"bad cycle", func(s *fleet.LaunchSpec) { s.Cycle = "keep" }, "cycle"},
		{"no labels", func(s *fleet.LaunchSpec) { s.Labels = nil }, "label"},
		{"bad mode", func(s *fleet.LaunchSpec) { s.Registration = "pat" }, "registration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(1)
			tc.mod(&s)
			ft := newFake()
			if _, err := fleet.Launch(context.Background(), s, ft, c, nil); err == nil || !strings.Contains(err.Error(), tc.want) || len(ft.specs) != 0 {
				t.Errorf("err %v, creates %d", err, len(ft.specs))
			}
		})
	}
}

func TestDefaultPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"github-runner-noble": "github-runner-noble", "img_1.2": "img-1-2", "__": "runner",
		strings.Repeat("a", 60): strings.Repeat("a", 40),
	} {
		got := fleet.DefaultPrefix(in)
		if got != want || fleet.ValidatePrefix(got) != nil {
			t.Errorf("DefaultPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrunable(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	old, young := now.Add(-48*time.Hour), now.Add(-time.Hour)
	vm := func(p fleet.Power, created time.Time, outcome string) fleet.VM {
		return fleet.VM{Name: "r", Image: "img", Power: p, Created: created, Outcome: outcome}
	}
	for _, tc := range []struct {
		name string
		vm   fleet.VM
		opts fleet.PruneOptions
		want bool
	}{
		{"deallocated", vm(fleet.PowerDeallocated, old, ""), fleet.PruneOptions{}, true},
		{"running", vm(fleet.PowerRunning, old, ""), fleet.PruneOptions{}, false},
		{"starting", vm(fleet.PowerStarting, old, ""), fleet.PruneOptions{}, false},
		{"stopped", vm(fleet.PowerStopped, old, ""), fleet.PruneOptions{}, false},
		{"unknown", vm(fleet.PowerUnknown, old, ""), fleet.PruneOptions{}, false},
		{"deleting", vm(fleet.PowerDeleting, old, ""), fleet.PruneOptions{}, false},
		{"not imagebake's", fleet.VM{Name: "x", Power: fleet.PowerDeallocated}, fleet.PruneOptions{}, false},
		{"old enough", vm(fleet.PowerDeallocated, old, ""), fleet.PruneOptions{OlderThan: 24 * time.Hour}, true},
		{"too young", vm(fleet.PowerDeallocated, young, ""), fleet.PruneOptions{OlderThan: 24 * time.Hour}, false},
		{"no created tag with older-than", vm(fleet.PowerDeallocated, time.Time{}, ""), fleet.PruneOptions{OlderThan: time.Hour}, false},
		{"outcome matches", vm(fleet.PowerDeallocated, old, contract.OutcomeRefused), fleet.PruneOptions{Outcomes: []string{contract.OutcomeRefused}}, true},
		{"outcome differs", vm(fleet.PowerDeallocated, old, contract.OutcomeJobDone), fleet.PruneOptions{Outcomes: []string{contract.OutcomeRefused}}, false},
		{"no outcome", vm(fleet.PowerDeallocated, old, ""), fleet.PruneOptions{Outcomes: []string{contract.OutcomeRefused}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Now = func() time.Time { return now }
			if got, why := fleet.Prunable(tc.vm, tc.opts); got != tc.want {
				t.Errorf("Prunable = %v (%s), want %v", got, why, tc.want)
			}
		})
	}
}

func TestPrune(t *testing.T) {
	ft := newFake()
	ft.vms["a"] = fleet.VM{Name: "a", Image: "img", Power: fleet.PowerDeallocated}
	ft.vms["b"] = fleet.VM{Name: "b", Image: "img", Power: fleet.PowerRunning}
	ft.vms["c"] = fleet.VM{Name: "c", Image: "other", Power: fleet.PowerDeallocated}
	plan, err := fleet.PlanPrune(context.Background(), ft, "img", fleet.PruneOptions{})
	if err != nil || len(plan) != 1 || plan[0].VM.Name != "a" || len(ft.deleted) != 0 {
		t.Fatalf("plan %+v err %v deleted %v", plan, err, ft.deleted)
	}
	done, err := fleet.ApplyPrune(context.Background(), ft, plan)
	if err != nil || !done[0].Deleted || len(ft.vms) != 2 || ft.deleted[0] != "a" {
		t.Errorf("done %+v err %v left %v", done, err, ft.vms)
	}
}
