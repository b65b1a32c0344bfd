package bake

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/recipes"
)

// Every flow uses only contract's stage names (what build.timeouts is
// checked against), each once, and every contract name is run by a flow.
func TestFlowsUseTheContractStageNames(t *testing.T) {
	used := map[string]bool{}
	for _, f := range Flows() {
		seen := map[string]bool{}
		for _, s := range f.Stages {
			if !contract.IsStage(s) {
				t.Errorf("%s: stage %q is not in contract.Stages", f.Name, s)
			}
			if seen[s] {
				t.Errorf("%s: stage %q runs twice", f.Name, s)
			}
			seen[s], used[s] = true, true
		}
	}
	for _, s := range contract.Stages() {
		if !used[s] {
			t.Errorf("contract stage %q is run by no flow", s)
		}
	}
}

func TestStageTimeouts(t *testing.T) {
	r := &recipes.Recipe{Build: recipes.Build{Timeouts: map[string]string{"checks": "1h", "publish": "3h"}}}
	got := StageTimeouts(r)
	for stage, want := range map[string]time.Duration{"boot": 10 * time.Minute, "checks": time.Hour, "publish": 3 * time.Hour, "generalized": 5 * time.Minute} {
		if got[stage] != want {
			t.Errorf("timeout %s = %s, want %s", stage, got[stage], want)
		}
	}
	for stage := range got {
		if !contract.IsStage(stage) {
			t.Errorf("default timeout for %q, which is no stage", stage)
		}
	}
	if _, ok := got["deallocate"]; ok {
		t.Error("a stage without a default timeout got one")
	}
}

func TestSkipIsOneLine(t *testing.T) {
	var out bytes.Buffer
	p := NewPipeline(NewTextSink(&out, false), nil)
	err := Run(context.Background(), p, new(struct{}), []Stage[struct{}]{
		{"network", func(*struct{}, context.Context) error { return Skip("using the given subnet") }},
		{"vm", func(*struct{}, context.Context) error { return nil }},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(strings.TrimSpace(lines[0]), "skip network") || !strings.Contains(lines[0], "using the given subnet") ||
		!strings.HasPrefix(strings.TrimSpace(lines[1]), "ok  vm") {
		t.Errorf("output:\n%s\nwant one skip line for network, then ok vm", out.String())
	}
	if tm := p.Timings(); len(tm) != 2 || !tm[0].Skipped || tm[0].Failed || tm[1].Skipped {
		t.Errorf("timings %+v", tm)
	}
}

func TestRunStopsAtTheFirstFailureAndSaysWhichStage(t *testing.T) {
	var ran []string
	var failedAt string
	stage := func(name string, err error) Stage[struct{}] {
		return Stage[struct{}]{name, func(*struct{}, context.Context) error { ran = append(ran, name); return err }}
	}
	err := Run(context.Background(), NewPipeline(nil, nil), new(struct{}),
		[]Stage[struct{}]{stage("a", nil), stage("b", errors.New("boom")), stage("c", nil)},
		func(_ *struct{}, s string) { failedAt = s })
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "b" || failedAt != "b" || strings.Join(ran, ",") != "a,b" {
		t.Errorf("err %v, failed hook %q, ran %v", err, failedAt, ran)
	}
}

func TestForgetTakesTheHandleNotTheName(t *testing.T) {
	p := NewPipeline(nil, nil)
	var ran []string
	first := p.OnCleanup("ssh session", func(context.Context) error { ran = append(ran, "first"); return nil })
	p.OnCleanup("ssh session", func(context.Context) error { ran = append(ran, "second"); return nil })
	p.Forget(first)
	p.Forget(first) // twice is harmless
	if _, err := p.Unwind(UnwindOptions{}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ran, ",") != "second" {
		t.Errorf("ran %v; want only the cleanup not forgotten", ran)
	}
}

func TestNetworkStageSkipsWithASubnet(t *testing.T) {
	a := &azureVM{opts: AzureOptions{SubnetID: "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/build"}}
	var skip *SkipError
	if err := a.network(context.Background()); !errors.As(err, &skip) || !strings.Contains(skip.Reason, "--subnet-id") {
		t.Errorf("network with --subnet-id = %v, want a skip naming --subnet-id", err)
	}
}

func TestSettingsFlagOverRecipe(t *testing.T) {
	r := &recipes.Recipe{Build: recipes.Build{MemoryMiB: 2048, CPUs: 2, Location: "eastus", VMSize: "Standard_D2s_v5"}}
	if s := localSettings(r, LocalOptions{MemoryMiB: 4096}); s.MemoryMiB != 4096 || s.CPUs != 2 {
		t.Errorf("local settings %+v", s)
	}
	if s := azureSettings(r, AzureOptions{VMSize: "Standard_D4s_v5"}); s.VMSize != "Standard_D4s_v5" || s.Location != "eastus" {
		t.Errorf("azure settings %+v", s)
	}
	if cmd := bootCommand("/g/disk.qcow2", qemu.Base{Disk: "/b/disk.qcow2", Kernel: "/b/vmlinuz", Initrd: "/b/initrd.img"}, localSettings(r, LocalOptions{MemoryMiB: 4096}).MemoryMiB); !strings.Contains(cmd, "-m 4096 ") {
		t.Errorf("boot command %q does not use the effective memory", cmd)
	}
}

// In an existing resource group the bake prints one skip line for the
// resource-group stage and no ok line, and records the effective settings.
func TestAzureBakeInExistingGroupSkipsOnce(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	opts := options(t, e)
	if err := opts.Clients.CreateResourceGroup(context.Background(), "existing-build-rg", "eastus", nil); err != nil {
		t.Fatal(err)
	}
	opts.BuildResourceGroup = "existing-build-rg"
	opts.VMSize = "Standard_D4s_v5"
	var out bytes.Buffer
	opts.Sink = NewTextSink(&out, false)
	m, err := Azure(context.Background(), loadRunner(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.Count(text, "resource-group") != 1 || !strings.Contains(text, "skip resource-group") || !strings.Contains(text, "ok  network") {
		t.Errorf("output:\n%s", text)
	}
	if m.Settings == nil || m.Settings.VMSize != "Standard_D4s_v5" || m.Settings.Location == "" {
		t.Errorf("manifest settings %+v", m.Settings)
	}
	if vms := e.Booted(); len(vms) != 1 || vms[0].VMSize != "Standard_D4s_v5" {
		t.Errorf("booted %+v", vms)
	}
	if left := leftovers(e, true); len(left) > 0 {
		t.Errorf("leftovers %v", left)
	}
}
