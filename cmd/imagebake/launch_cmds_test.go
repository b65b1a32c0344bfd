package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/internal/ghmodel"
)

// The launch tests run the real binary against the served Azure model and
// the GitHub stand-in, with the shipped jit recipe (github-runner-noble:
// REPO_URL https://github.com/my-org/my-repo, Trusted Launch).

const (
	launchImage    = "github-runner-noble"
	launchToken    = "ghp_launchtesttokennotreal0123456789"
	runnerIdentity = "/subscriptions/" + aztest.Subscription + "/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/runner"
)

type launchEnv struct {
	az     *aztest.Env
	gh     *ghmodel.Model
	env    []string
	ghOut  string
	subnet string
	vms    *armcompute.VirtualMachinesClient
}

// newLaunchEnv seeds the noble definition (TrustedLaunch, Gen2) with 1.0.0,
// 1.0.1 and an excluded 1.0.2, a runner resource group with a subnet, and a
// GitHub stand-in that takes launchToken. ghOpts configure the stand-in.
func newLaunchEnv(t *testing.T, ghOpts ghmodel.Options) *launchEnv {
	t.Helper()
	e := aztest.New(t, azmodel.Options{}, nil)
	if err := e.Model.SeedGallery(azmodel.GallerySeed{SubscriptionID: aztest.Subscription, ResourceGroup: "image-gallery-rg", Location: "eastus",
		Gallery: "runner_images", Image: launchImage, HyperVGeneration: "V2", SecurityType: "TrustedLaunch",
		Versions: []azmodel.VersionSeed{{Name: "1.0.0"}, {Name: "1.0.1"}, {Name: "1.0.2", ExcludeFromLatest: true}}}); err != nil {
		t.Fatal(err)
	}
	c := e.Clients(t)
	ctx := context.Background()
	if err := c.CreateResourceGroup(ctx, "github-runners", "eastus", nil); err != nil {
		t.Fatal(err)
	}
	n, err := c.CreateNetwork(ctx, "github-runners", "eastus", "runners", []string{"10.0.0.0/8"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ghOpts.RunnerKeyBits, ghOpts.ReuseRunnerKey = 1024, true
	gh := ghmodel.New(ghOpts)
	t.Cleanup(gh.Close)
	gh.AddToken(launchToken)
	// One CA file for both servers: SSL_CERT_FILE names a single file.
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemData := append([]byte{}, e.Server.CACertPEM()...)
	if ghOpts.TLS {
		pemData = append(pemData, gh.CertPEM()...)
	}
	if err := os.WriteFile(ca, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	ghOut := filepath.Join(t.TempDir(), "github-output")
	env := cleanEnv("SSL_CERT_FILE="+ca, "AZURE_AUTHORITY_HOST="+e.Server.URL(), "AZURE_TENANT_ID=tenant-1",
		"AZURE_CLIENT_ID=client-1", "AZURE_CLIENT_SECRET=e2e-secret-not-real", "AZURE_SUBSCRIPTION_ID="+aztest.Subscription,
		"GITHUB_OUTPUT="+ghOut)
	cred, err := e.Server.Credential("tenant-1", "client-1", "x")
	if err != nil {
		t.Fatal(err)
	}
	vms, err := armcompute.NewVirtualMachinesClient(aztest.Subscription, cred, e.Server.ClientOptions())
	if err != nil {
		t.Fatal(err)
	}
	return &launchEnv{az: e, gh: gh, env: env, ghOut: ghOut, subnet: n.SubnetID, vms: vms}
}

// withToken is the environment with GITHUB_TOKEN set (and no other GitHub variable).
func (l *launchEnv) withToken() []string {
	return append(withoutGitHub(l.env), "GITHUB_TOKEN="+launchToken)
}

func withoutGitHub(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k != "GITHUB_TOKEN" && k != appKeyEnv {
			out = append(out, kv)
		}
	}
	return out
}

func (l *launchEnv) conn() []string {
	return []string{"--target", "azure", "--resource-manager-endpoint", l.az.Server.URL(), "--poll-interval", "10ms"}
}

func (l *launchEnv) launchArgs(extra ...string) []string {
	args := append([]string{"launch", launchImage}, l.conn()...)
	args = append(args, "--subnet-id", l.subnet, "--identity-id", runnerIdentity, "--github-api-url", l.gh.URL())
	return append(args, extra...)
}

// runnerVMs are the model's VMs in github-runners, by name.
func (l *launchEnv) runnerVMs() map[string]azmodel.VMInfo {
	out := map[string]azmodel.VMInfo{}
	for _, vm := range l.az.Model.VMs() {
		if strings.EqualFold(vm.ResourceGroup, "github-runners") {
			out[vm.Name] = vm
		}
	}
	return out
}

type launchJSON struct {
	Image, Version, VersionID, LaunchID, Cycle, Registration string
	ResolvedFrom                                             string `json:"resolvedFrom"`
	Labels                                                   []string
	Launched                                                 []struct {
		Name     string
		RunnerID int64 `json:"runnerId"`
		Error    string
		VM       *struct{ Name, ID, Power string }
	}
}

func parseLaunch(t *testing.T, res result) launchJSON {
	t.Helper()
	var out launchJSON
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("launch --output json printed no JSON: %v\nstdout:\n%s\nstderr:\n%s", err, res.stdout, res.stderr)
	}
	return out
}

func noSecrets(t *testing.T, res result, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, launchToken, "e2e-secret-not-real", "PRIVATE KEY") {
		if s != "" && (strings.Contains(res.stdout, s) || strings.Contains(res.stderr, s)) {
			t.Errorf("a secret (%.12s…) was printed:\nstdout:\n%s\nstderr:\n%s", s, res.stdout, res.stderr)
		}
	}
}

func TestLaunchThreeRunnersE2E(t *testing.T) {
	l := newLaunchEnv(t, ghmodel.Options{})
	// Debug logging: no secret may reach the log either.
	res := runBinary(t, l.withToken(), append([]string{"--log-level", "debug"}, l.launchArgs("--count", "3", "--cycle", "deallocate", "--labels", "run-42-1", "--output", "json")...)...)
	if res.code != 0 {
		t.Fatalf("launch exited %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	out := parseLaunch(t, res)
	versionID := azmodel.GalleryImageID(aztest.Subscription, "image-gallery-rg", "runner_images", launchImage) + "/versions/1.0.1"
	if out.Version != "1.0.1" || out.ResolvedFrom != "latest" || !strings.EqualFold(out.VersionID, versionID) || out.Registration != "jit" || len(out.Launched) != 3 {
		t.Fatalf("launch result: %+v", out)
	}
	if !strings.Contains(res.stderr, "launching 3 runner VMs of github-runner-noble 1.0.1 (latest)") {
		t.Errorf("the resolved version is not printed:\n%s", res.stderr)
	}
	wantLabels := []string{"self-hosted", "linux", "x64", "noble", "run-42-1"}
	mints := l.gh.Mints()
	if len(mints) != 3 {
		t.Fatalf("GitHub saw %d mints, want 3: %+v", len(mints), mints)
	}
	mintByName := map[string]ghmodel.Mint{}
	for _, m := range mints {
		mintByName[m.Name] = m
		if !slices.Equal(m.Labels, wantLabels) || m.RunnerGroupID != 1 || m.Scope != "repos/my-org/my-repo" {
			t.Errorf("mint %+v, want labels %v, group 1, scope repos/my-org/my-repo", m, wantLabels)
		}
	}
	vms := l.runnerVMs()
	if len(vms) != 3 {
		t.Fatalf("%d runner VMs in the model, want 3", len(vms))
	}
	userData := map[string]bool{}
	var names []string
	var ids []int64
	for i, ln := range out.Launched {
		want := "github-runner-noble-" + out.LaunchID + "-" + strconv.Itoa(i+1)
		if ln.Name != want || ln.VM == nil || ln.Error != "" {
			t.Errorf("launched[%d] = %+v, want %s created", i, ln, want)
			continue
		}
		names, ids = append(names, ln.Name), append(ids, ln.RunnerID)
		vm, ok := vms[ln.Name]
		if !ok {
			t.Errorf("no VM %s in the model", ln.Name)
			continue
		}
		m, ok := mintByName[ln.Name]
		if !ok || m.RunnerID != ln.RunnerID {
			t.Errorf("VM %s: runner %d, mints %+v", ln.Name, ln.RunnerID, mints)
		}
		if len(vm.UserData) == 0 || userData[string(vm.UserData)] {
			t.Errorf("VM %s: userData empty or shared with another VM", ln.Name)
		}
		userData[string(vm.UserData)] = true
		if files, err := ghmodel.DecodeJITConfig(string(vm.UserData)); err != nil || len(files) == 0 {
			t.Errorf("VM %s: userData is not a JIT config: %v", ln.Name, err)
		}
		if !strings.EqualFold(vm.Image, versionID) || vm.SecurityType != "TrustedLaunch" || vm.VMSize != "Standard_D2s_v5" || vm.PublicIP != "" {
			t.Errorf("VM %s: image %s, security %s, size %s, public IP %q", ln.Name, vm.Image, vm.SecurityType, vm.VMSize, vm.PublicIP)
		}
		wantTags := map[string]string{contract.TagLaunchedFrom: launchImage, contract.TagLaunchVersion: "1.0.1", contract.TagLaunchID: out.LaunchID,
			contract.TagRunnerID: strconv.FormatInt(ln.RunnerID, 10), contract.TagCycle: contract.CycleDeallocate}
		for k, v := range wantTags {
			if vm.Tags[k] != v {
				t.Errorf("VM %s: tag %s = %q, want %q", ln.Name, k, vm.Tags[k], v)
			}
		}
		for k, v := range vm.Tags {
			if strings.Contains(v, launchToken) || (len(v) > 40 && strings.Contains(string(vm.UserData), v)) {
				t.Errorf("VM %s: tag %s holds a secret", ln.Name, k)
			}
		}
		// Compute returns userData only when asked for it ($expand=userData).
		ctx := context.Background()
		plain, err := l.vms.Get(ctx, "github-runners", ln.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if plain.Properties.UserData != nil {
			t.Errorf("VM %s: userData came back without $expand", ln.Name)
		}
		full, err := l.vms.Get(ctx, "github-runners", ln.Name, &armcompute.VirtualMachinesClientGetOptions{Expand: to.Ptr(armcompute.InstanceViewTypesUserData)})
		if err != nil {
			t.Fatal(err)
		}
		if full.Properties.UserData == nil || *full.Properties.UserData == "" {
			t.Errorf("VM %s: no userData with $expand=userData", ln.Name)
		}
		if full.Identity == nil || full.Identity.UserAssignedIdentities[runnerIdentity] == nil {
			t.Errorf("VM %s: identity %+v, want %s", ln.Name, full.Identity, runnerIdentity)
		}
		noSecrets(t, res, string(vm.UserData))
	}
	ghOut, err := os.ReadFile(l.ghOut)
	if err != nil {
		t.Fatal(err)
	}
	vmsJSON, _ := json.Marshal(names)
	idsJSON, _ := json.Marshal(ids)
	if !strings.Contains(string(ghOut), "vms="+string(vmsJSON)+"\n") || !strings.Contains(string(ghOut), "runner-ids="+string(idsJSON)+"\n") {
		t.Errorf("GITHUB_OUTPUT = %q, want vms=%s and runner-ids=%s", ghOut, vmsJSON, idsJSON)
	}
	noSecrets(t, res)
}

// An exact version is launched as given, also one excluded from latest;
// text output lists the VMs.
func TestLaunchExactVersionText(t *testing.T) {
	l := newLaunchEnv(t, ghmodel.Options{})
	args := append([]string{"launch", launchImage + "@1.0.2"}, l.launchArgs()[2:]...)
	res := runBinary(t, l.withToken(), append(args, "--name-prefix", "ci")...)
	if res.code != 0 {
		t.Fatalf("launch exited %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "of github-runner-noble 1.0.2 (1.0.2)") || !strings.Contains(res.stdout, "1 of 1 runner VMs of github-runner-noble 1.0.2 created") {
		t.Errorf("text output:\n%s", res.stdout)
	}
	for name, vm := range l.runnerVMs() {
		if !strings.HasPrefix(name, "ci-") || !strings.HasSuffix(vm.Image, "/versions/1.0.2") || vm.Tags[contract.TagCycle] != contract.CycleDelete {
			t.Errorf("VM %s from %s, cycle %q", name, vm.Image, vm.Tags[contract.TagCycle])
		}
	}
}

func TestLaunchMintFailureCreatesNoVM(t *testing.T) {
	l := newLaunchEnv(t, ghmodel.Options{})
	// The second mint is refused (422 is not retried).
	l.gh.Inject(ghmodel.Fault{Endpoint: ghmodel.EpGenerateJIT, Nth: 2, Status: 422})
	res := runBinary(t, l.withToken(), l.launchArgs("--count", "3", "--parallel", "1", "--output", "json")...)
	if res.code != exitFailed {
		t.Fatalf("launch exited %d, want %d\n%s%s", res.code, exitFailed, res.stdout, res.stderr)
	}
	out := parseLaunch(t, res)
	if len(out.Launched) != 3 {
		t.Fatalf("launched: %+v", out.Launched)
	}
	failedName := out.Launched[1].Name
	if out.Launched[1].VM != nil || !strings.Contains(out.Launched[1].Error, "no VM created") {
		t.Errorf("the refused mint's entry: %+v", out.Launched[1])
	}
	if !strings.Contains(res.stderr, "1 of 3 runner VMs failed") || !strings.Contains(res.stderr, failedName) {
		t.Errorf("the failure is not listed:\n%s", res.stderr)
	}
	vms := l.runnerVMs()
	if _, ok := vms[failedName]; ok || len(vms) != 2 {
		t.Errorf("VMs %v: want 2, none named %s", vms, failedName)
	}
	ghOut, _ := os.ReadFile(l.ghOut)
	if strings.Contains(string(ghOut), failedName) || !strings.Contains(string(ghOut), out.Launched[0].Name) {
		t.Errorf("GITHUB_OUTPUT = %q", ghOut)
	}
}

func TestLaunchCreateFailureDeletesRegistration(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule azmodel.Rule
	}{
		{"create refused", azmodel.Rule{Op: "VirtualMachines_CreateOrUpdate", Nth: 2, Status: 409, Code: "OperationNotAllowed", Message: "quota exceeded"}},
		{"create accepted then failed", azmodel.Rule{Op: "VirtualMachines_CreateOrUpdate", Nth: 2, FailLRO: true, Code: "AllocationFailed", Message: "no capacity"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLaunchEnv(t, ghmodel.Options{})
			l.az.Model.MustAddRule(tc.rule)
			res := runBinary(t, l.withToken(), l.launchArgs("--count", "2", "--parallel", "1", "--output", "json")...)
			if res.code != exitFailed {
				t.Fatalf("launch exited %d, want %d\n%s%s", res.code, exitFailed, res.stdout, res.stderr)
			}
			out := parseLaunch(t, res)
			if len(out.Launched) != 2 || out.Launched[0].VM == nil || out.Launched[1].VM != nil {
				t.Fatalf("launched: %+v", out.Launched)
			}
			bad := out.Launched[1]
			if !strings.Contains(bad.Error, "was deleted") || !strings.Contains(res.stderr, bad.Name) {
				t.Errorf("entry %+v; stderr:\n%s", bad, res.stderr)
			}
			var deleted, live int
			for _, r := range l.gh.Runners() {
				switch {
				case r.Name == bad.Name && r.Deleted:
					deleted++
				case r.Name == out.Launched[0].Name && !r.Deleted:
					live++
				}
			}
			if deleted != 1 || live != 1 {
				t.Errorf("runners %+v: want %s deleted and %s kept", l.gh.Runners(), bad.Name, out.Launched[0].Name)
			}
			l.az.Model.Settle()
			if vms := l.runnerVMs(); len(vms) != 1 {
				t.Errorf("VMs left: %v", vms)
			}
		})
	}
}

func TestRunnersListAndPrune(t *testing.T) {
	l := newLaunchEnv(t, ghmodel.Options{})
	res := runBinary(t, l.withToken(), l.launchArgs("--count", "3", "--cycle", "deallocate", "--output", "json")...)
	if res.code != 0 {
		t.Fatalf("launch exited %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	out := parseLaunch(t, res)
	ctx := context.Background()
	c := l.az.Clients(t)
	// Two runners finished their job and were deallocated by their cycle;
	// the second recorded that GitHub refused it.
	for _, ln := range out.Launched[:2] {
		if err := c.Deallocate(ctx, "github-runners", ln.Name); err != nil {
			t.Fatal(err)
		}
	}
	refused := l.runnerVMs()[out.Launched[1].Name]
	tags := refused.Tags
	tags[contract.TagOutcome] = contract.OutcomeRefused
	if err := l.az.Model.SetTags(refused.ID, tags); err != nil {
		t.Fatal(err)
	}

	// A deallocated runner of another image: never listed or pruned here.
	if err := l.az.Model.SeedVersion(aztest.Subscription, "image-gallery-rg", "runner_images", "github-runner-focal", azmodel.VersionSeed{Name: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	other := runBinary(t, withoutGitHub(l.env), append(append([]string{"launch", "github-runner-focal"}, l.launchArgs()[2:]...), "--name-prefix", "other", "--output", "json")...)
	if other.code != 0 {
		t.Fatalf("launch of the other image exited %d\n%s%s", other.code, other.stdout, other.stderr)
	}
	otherName := parseLaunch(t, other).Launched[0].Name
	if err := c.Deallocate(ctx, "github-runners", otherName); err != nil {
		t.Fatal(err)
	}

	list := runBinary(t, l.env, append([]string{"runners", "list", launchImage}, l.conn()...)...)
	if list.code != 0 {
		t.Fatalf("runners list exited %d\n%s%s", list.code, list.stdout, list.stderr)
	}
	for _, want := range []string{"NAME", "POWER", "AGE", out.Launched[0].Name, "1.0.1", "deallocated", "running", "refused"} {
		if !strings.Contains(list.stdout, want) {
			t.Errorf("runners list has no %q:\n%s", want, list.stdout)
		}
	}
	if strings.Count(list.stdout, "deallocated") != 2 || strings.Count(list.stdout, "running") != 1 || strings.Contains(list.stdout, otherName) {
		t.Errorf("runners list:\n%s", list.stdout)
	}
	jl := runBinary(t, l.env, append([]string{"runners", "list", launchImage, "--output", "json"}, l.conn()...)...)
	var listed []struct{ Name, Power, Cycle, Version, Outcome string }
	if err := json.Unmarshal([]byte(jl.stdout), &listed); err != nil || len(listed) != 3 {
		t.Fatalf("runners list --output json: %v\n%s%s", err, jl.stdout, jl.stderr)
	}
	powers := map[string]string{}
	for _, vm := range listed {
		powers[vm.Name] = vm.Power
		if vm.Cycle != contract.CycleDeallocate || vm.Version != "1.0.1" {
			t.Errorf("listed %+v", vm)
		}
	}
	if powers[out.Launched[0].Name] != "deallocated" || powers[out.Launched[1].Name] != "deallocated" || powers[out.Launched[2].Name] != "running" {
		t.Errorf("power states %v", powers)
	}

	prune := func(extra ...string) result {
		return runBinary(t, l.env, append(append([]string{"runners", "prune", launchImage}, l.conn()...), extra...)...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string // names in the plan
	}{
		{"every deallocated", nil, []string{out.Launched[0].Name, out.Launched[1].Name}},
		{"by outcome", []string{"--outcome", "refused,crashed"}, []string{out.Launched[1].Name}},
		{"too young", []string{"--older-than", "72h"}, nil},
		{"another resource group", []string{"--resource-group", "elsewhere"}, nil},
	} {
		t.Run("plan "+tc.name, func(t *testing.T) {
			res := prune(append(tc.args, "--output", "json")...)
			if res.code != 0 {
				t.Fatalf("prune exited %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			var p struct {
				Applied bool
				Pruned  []struct {
					VM      struct{ Name string }
					Deleted bool
				}
			}
			if err := json.Unmarshal([]byte(res.stdout), &p); err != nil {
				t.Fatalf("%v\n%s", err, res.stdout)
			}
			var got []string
			for _, x := range p.Pruned {
				got = append(got, x.VM.Name)
				if x.Deleted {
					t.Errorf("a plan deleted %s", x.VM.Name)
				}
			}
			slices.Sort(got)
			if p.Applied || !slices.Equal(got, tc.want) {
				t.Errorf("plan %v (applied %v), want %v", got, p.Applied, tc.want)
			}
		})
	}
	if n := len(l.runnerVMs()); n < 3 {
		t.Fatalf("a plan deleted VMs: %d left", n)
	}
	text := prune()
	if text.code != 0 || !strings.Contains(text.stdout, "would delete 2 runner VMs") {
		t.Errorf("prune plan text: exit %d\n%s%s", text.code, text.stdout, text.stderr)
	}
	done := prune("--yes")
	if done.code != 0 || !strings.Contains(done.stdout, "deleted 2 of 2 runner VMs") {
		t.Fatalf("prune --yes: exit %d\n%s%s", done.code, done.stdout, done.stderr)
	}
	left := l.runnerVMs()
	if _, ok := left[out.Launched[2].Name]; !ok {
		t.Errorf("the running runner was deleted")
	}
	if _, ok := left[otherName]; !ok {
		t.Errorf("prune of %s deleted %s, a runner of another image", launchImage, otherName)
	}
	for _, ln := range out.Launched[:2] {
		if _, ok := left[ln.Name]; ok {
			t.Errorf("%s was not deleted", ln.Name)
		}
	}
	for _, r := range l.az.Model.Resources() {
		if strings.Contains(strings.ToLower(r.Type), "disks") && (strings.Contains(r.Name, out.Launched[0].Name) || strings.Contains(r.Name, out.Launched[1].Name)) {
			t.Errorf("an OS disk was left: %s", r.ID)
		}
	}
	again := prune("--yes")
	if again.code != 0 || !strings.Contains(again.stdout, "no runner VM to prune") {
		t.Errorf("second prune: exit %d\n%s%s", again.code, again.stdout, again.stderr)
	}
}

func TestLaunchGitHubApp(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"key in the environment", []string{appKeyEnv + "=" + string(keyPEM)}, nil},
		{"key file", nil, []string{"--github-app-key-file", keyFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLaunchEnv(t, ghmodel.Options{TLS: true})
			l.gh.RegisterApp("4242", &key.PublicKey)
			l.gh.Install("4242", "my-org/my-repo")
			env := append(withoutGitHub(l.env), tc.env...)
			res := runBinary(t, env, l.launchArgs(append(tc.args, "--count", "2", "--github-app-id", "4242")...)...)
			if res.code != 0 {
				t.Fatalf("launch exited %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			if n := len(l.gh.Mints()); n != 2 {
				t.Errorf("%d mints, want 2", n)
			}
			var jwt, inst int
			for _, r := range l.gh.Requests() {
				switch {
				case r.Endpoint == ghmodel.EpAccessToken && r.Auth == "app-jwt:4242" && r.Status == 201:
					jwt++
				case r.Endpoint == ghmodel.EpGenerateJIT && strings.HasPrefix(r.Auth, "installation:"):
					inst++
				}
			}
			if jwt != 1 || inst != 2 {
				t.Errorf("requests %+v: want one token exchange with the App's JWT and two mints as the installation", l.gh.Requests())
			}
			noSecrets(t, res, string(keyPEM))
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		l := newLaunchEnv(t, ghmodel.Options{TLS: true})
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		l.gh.RegisterApp("4242", &other.PublicKey)
		l.gh.Install("4242", "my-org/my-repo")
		res := runBinary(t, append(withoutGitHub(l.env), appKeyEnv+"="+string(keyPEM)), l.launchArgs("--github-app-id", "4242")...)
		if res.code != exitFailed || len(l.runnerVMs()) != 0 {
			t.Errorf("launch with a key GitHub does not know: exit %d, %d VMs\n%s%s", res.code, len(l.runnerVMs()), res.stdout, res.stderr)
		}
		noSecrets(t, res, string(keyPEM))
	})
}

func TestLaunchUsageErrors(t *testing.T) {
	l := newLaunchEnv(t, ghmodel.Options{})
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"ephemeral disk cannot deallocate", l.withToken(), l.launchArgs("--ephemeral-os-disk", "--cycle", "deallocate"), exitUsage, "cannot be deallocated"},
		{"count zero", l.withToken(), l.launchArgs("--count", "0"), exitUsage, "--count 0"},
		{"count too high", l.withToken(), l.launchArgs("--count", "101"), exitUsage, "want 1 to 100"},
		{"bad cycle", l.withToken(), l.launchArgs("--cycle", "stop"), exitUsage, "--cycle \"stop\""},
		{"bad label", l.withToken(), l.launchArgs("--labels", "-x"), exitUsage, "--labels"},
		{"bad prefix", l.withToken(), l.launchArgs("--name-prefix", "a_b"), exitUsage, "name prefix"},
		{"no GitHub credential", withoutGitHub(l.env), l.launchArgs(), exitUsage, "no GitHub credential"},
		{"app without key", withoutGitHub(l.env), l.launchArgs("--github-app-id", "4242"), exitUsage, appKeyEnv + " is empty"},
		{"no subnet", l.withToken(), append([]string{"launch", launchImage, "--github-api-url", l.gh.URL()}, l.conn()...), exitUsage, "--subnet-id"},
		{"no such version", l.withToken(), append([]string{"launch", launchImage + "@1.9.9"}, l.launchArgs()[2:]...), exitFailed, "1.9.9"},
		{"region without a replica", l.withToken(), l.launchArgs("--location", "westus"), exitFailed, "not replicated to westus"},
		{"local target, no such local image", l.withToken(), []string{"launch", launchImage, "--github-api-url", l.gh.URL(), "--gallery-dir", t.TempDir()}, exitFailed, "no such image"},
		{"stand-in on azure", l.withToken(), l.launchArgs("--github-stand-in"), exitUsage, "--github-stand-in is for the local target"},
		{"recipe without jit scope", l.withToken(), l.launchArgs("--recipe", "recipes/local-demo.yaml"), exitUsage, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runBinary(t, tc.env, tc.args...)
			if res.code != tc.code || !strings.Contains(res.stderr, tc.want) {
				t.Errorf("exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", res.code, tc.code, tc.want, res.stdout, res.stderr)
			}
			noSecrets(t, res)
		})
	}
	if n := len(l.runnerVMs()); n != 0 || len(l.gh.Mints()) != 0 {
		t.Errorf("bad usage created %d VMs and %d registrations", n, len(l.gh.Mints()))
	}
}

func TestRunnersUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"runners", "list"}, exitUsage, "needs IMAGE"},
		{[]string{"runners", "prune", launchImage, "--outcome", "sad"}, exitUsage, "--outcome \"sad\""},
		{[]string{"runners", "prune", launchImage, "--older-than", "soon"}, exitUsage, "--older-than"},
		{[]string{"runners", "list", launchImage, "--target", "gcp"}, exitUsage, "--target"},
	} {
		res := runBinary(t, cleanEnv(), tc.args...)
		if res.code != tc.code || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\n%s%s", tc.args, res.code, tc.code, tc.want, res.stdout, res.stderr)
		}
	}
}

// The founding runbook's keyvault-pat recipe (github-runner-focal): nothing
// is minted, no GitHub credential is needed, and the VMs get no userData.
func TestLaunchKeyVaultPATMintsNothing(t *testing.T) {
	l := newLaunchEnv(t, ghmodel.Options{})
	if err := l.az.Model.SeedVersion(aztest.Subscription, "image-gallery-rg", "runner_images", "github-runner-focal", azmodel.VersionSeed{Name: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"launch", "github-runner-focal"}, l.launchArgs()[2:]...)
	res := runBinary(t, withoutGitHub(l.env), append(args, "--count", "2", "--output", "json")...)
	if res.code != 0 {
		t.Fatalf("launch exited %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	out := parseLaunch(t, res)
	if out.Registration != contract.RegistrationKeyVaultPAT || len(out.Launched) != 2 {
		t.Errorf("result %+v", out)
	}
	vms := l.runnerVMs()
	if len(vms) != 2 {
		t.Fatalf("%d VMs, want 2", len(vms))
	}
	for name, vm := range vms {
		if len(vm.UserData) != 0 || vm.Tags[contract.TagRunnerID] != "" || vm.SecurityType == "TrustedLaunch" || vm.VMSize != "Standard_D2s_v3" {
			t.Errorf("VM %s: userData %d bytes, runner tag %q, security %q, size %s", name, len(vm.UserData), vm.Tags[contract.TagRunnerID], vm.SecurityType, vm.VMSize)
		}
	}
	if n := len(l.gh.Requests()); n != 0 {
		t.Errorf("GitHub was called %d times", n)
	}
	ghOut, _ := os.ReadFile(l.ghOut)
	if !strings.Contains(string(ghOut), "runner-ids=[]\n") {
		t.Errorf("GITHUB_OUTPUT = %q", ghOut)
	}
}

// Ctrl-C while the first VM is being created: no further VM is started,
// the one under way is removed and its registration deleted.
func TestLaunchSIGINTCleansUp(t *testing.T) {
	l := newLaunchEnv(t, ghmodel.Options{})
	// The create stays InProgress long enough for the signal to land.
	l.az.Model.SetLatency(azmodel.LatencyProfile{Durations: map[azmodel.OpKind]time.Duration{azmodel.OpVMCreate: 20 * time.Second}})
	err, out := interruptBinary(t, l.withToken(), func() bool { return len(l.runnerVMs()) > 0 }, 200*time.Millisecond,
		l.launchArgs("--count", "3", "--parallel", "1")...)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitFailed {
		t.Errorf("exit %v, want %d\n%s", err, exitFailed, out.String())
	}
	l.az.Model.Settle()
	if vms := l.runnerVMs(); len(vms) != 0 {
		t.Errorf("SIGINT left VMs %v\n%s", vms, out.String())
	}
	mints := l.gh.Mints()
	if len(mints) != 1 {
		t.Errorf("%d mints after SIGINT during the first create, want 1", len(mints))
	}
	for _, r := range l.gh.Runners() {
		if !r.Deleted {
			t.Errorf("runner %s (%d) is still registered", r.Name, r.ID)
		}
	}
	// Every VM is named in the failure list, also those never started.
	for _, m := range []string{"interrupted", "registration " + strconv.FormatInt(mints[0].RunnerID, 10) + " was deleted", "-2: not started", "-3: not started"} {
		if !strings.Contains(out.String(), m) {
			t.Errorf("output does not say %q:\n%s", m, out.String())
		}
	}
}
