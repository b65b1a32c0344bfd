package gc

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	"github.com/imagebake/imagebake/provision/qemu"
)

func groupNames(e *aztest.Env) []string {
	var names []string
	for _, r := range e.Model.Resources() {
		if r.Type == azmodel.TypeResourceGroup {
			names = append(names, r.Name)
		}
	}
	return names
}

func TestGCAzure(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	c := e.Clients(t)
	ctx := context.Background()
	now := time.Now().UTC()
	seed := map[string]map[string]string{
		"imagebake-old-abc": {TagBuildID: "abc", TagRecipe: "demo", TagCreated: now.Add(-7 * time.Hour).Format(time.RFC3339)},
		"imagebake-new-def": {TagBuildID: "def", TagRecipe: "demo", TagCreated: now.Add(-time.Hour).Format(time.RFC3339)},
		"untagged-rg":       nil,
		"packer-rg":         {"createdBy": "packer", "created": now.Add(-48 * time.Hour).Format(time.RFC3339)},
		"imagebake-nodate":  {TagBuildID: "ghi"},
	}
	for name, tags := range seed {
		if err := c.CreateResourceGroup(ctx, name, "eastus", tags); err != nil {
			t.Fatal(err)
		}
	}
	opts := Options{TTL: 6 * time.Hour, Now: now}

	plan, err := Azure(ctx, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	var planned, seen []string
	for _, it := range plan {
		seen = append(seen, it.Name)
		if it.Action == ActionDelete {
			planned = append(planned, it.Name)
		}
		if it.Done {
			t.Errorf("plan carried out %s", it.Name)
		}
	}
	if !slices.Equal(planned, []string{"imagebake-old-abc"}) {
		t.Errorf("planned %v, want only imagebake-old-abc (all items: %+v)", planned, plan)
	}
	for _, other := range []string{"untagged-rg", "packer-rg", "image-gallery-rg"} {
		if slices.Contains(seen, other) {
			t.Errorf("gc looked at %s, which imagebake did not tag", other)
		}
	}
	if !slices.Contains(groupNames(e), "imagebake-old-abc") {
		t.Fatal("planning deleted a group")
	}

	opts.Delete = true
	done, err := Azure(ctx, c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if Failed(done) != 0 {
		t.Fatalf("failures: %+v", done)
	}
	left := groupNames(e)
	if slices.Contains(left, "imagebake-old-abc") {
		t.Errorf("old tagged group not deleted; groups: %v", left)
	}
	for _, keep := range []string{"imagebake-new-def", "untagged-rg", "packer-rg", "imagebake-nodate", "image-gallery-rg"} {
		if !slices.Contains(left, keep) {
			t.Errorf("%s was deleted; groups left: %v", keep, left)
		}
	}
}

func TestGCLocal(t *testing.T) {
	tmp := t.TempDir()
	now := time.Now()
	mk := func(name string, age time.Duration) string {
		dir := filepath.Join(tmp, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, "serial.log")
		if err := os.WriteFile(f, []byte("boot\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(name, DirPrefix) {
			markDead(t, dir)
		}
		for _, p := range []string{f, filepath.Join(dir, qemu.MarkerFile), dir} {
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	oldGone := mk("imagebake-qemu-111", 8*time.Hour)
	fresh := mk("imagebake-qemu-222", time.Hour)
	oldRunningYoung := mk("imagebake-qemu-333", 8*time.Hour)
	oldRunningOld := mk("imagebake-qemu-444", 9*time.Hour)
	unrelated := mk("other-tool-555", 48*time.Hour)
	// A recent write inside an old folder means the build is alive.
	oldButWritten := mk("imagebake-qemu-666", 8*time.Hour)
	if err := os.WriteFile(filepath.Join(oldButWritten, "serial.log"), []byte("more\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	uid := os.Getuid()
	procs := []Process{
		{PID: 1001, Args: []string{"/usr/bin/qemu-system-x86_64", "-drive", "file=" + oldRunningYoung + "/overlay.qcow2,if=virtio"}, Started: now.Add(-time.Hour), UID: uid, Exe: fakeQEMU},
		{PID: 1002, Args: []string{"qemu-system-x86_64", "-qmp", "unix:" + oldRunningOld + "/qmp.sock,server"}, Started: now.Add(-9 * time.Hour), UID: uid, Exe: fakeQEMU},
		// QEMU of an unrelated folder.
		{PID: 1004, Args: []string{"qemu-system-x86_64", "-drive", "file=" + unrelated + "/disk.qcow2"}, Started: now.Add(-10 * time.Hour), UID: uid, Exe: fakeQEMU},
	}
	var killed []int
	opts := LocalOptions{Options: Options{TTL: 6 * time.Hour, Now: now}, TempDir: tmp, QEMU: fakeQEMU,
		Processes: func() ([]Process, error) { return procs, nil },
		Kill:      func(_ context.Context, pid int) error { killed = append(killed, pid); return nil }}

	plan, err := Local(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]string{}
	for _, it := range plan {
		actions[it.Name] = it.Action
	}
	want := map[string]string{
		oldGone: ActionDelete, fresh: ActionKeep, oldRunningYoung: ActionKeep, oldRunningOld: ActionDelete, oldButWritten: ActionKeep,
		"1001": ActionKeep, "1002": ActionKill,
	}
	for name, action := range want {
		if actions[name] != action {
			t.Errorf("%s: action %q, want %q", name, actions[name], action)
		}
	}
	for _, never := range []string{unrelated, "1004"} {
		if _, ok := actions[never]; ok {
			t.Errorf("gc considered %s", never)
		}
	}
	if len(killed) != 0 {
		t.Fatalf("planning killed %v", killed)
	}

	opts.Delete = true
	done, err := Local(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if Failed(done) != 0 {
		t.Fatalf("failures: %+v", done)
	}
	if !slices.Equal(killed, []int{1002}) {
		t.Errorf("killed %v, want [1002]", killed)
	}
	for _, gone := range []string{oldGone, oldRunningOld} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s still exists (%v)", gone, err)
		}
	}
	for _, kept := range []string{fresh, oldRunningYoung, oldButWritten, unrelated} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
}

func TestGCLocalKillFailureKeepsFolder(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "imagebake-qemu-9")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	markDead(t, dir)
	old := time.Now().Add(-10 * time.Hour)
	for _, p := range []string{filepath.Join(dir, qemu.MarkerFile), dir} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	opts := LocalOptions{Options: Options{TTL: time.Hour, Delete: true}, TempDir: tmp, QEMU: fakeQEMU,
		Processes: func() ([]Process, error) {
			return []Process{{PID: 7, Args: []string{"qemu-system-x86_64", "-drive", "file=" + dir + "/overlay.qcow2"}, Started: old, UID: os.Getuid(), Exe: fakeQEMU}}, nil
		},
		Kill: func(context.Context, int) error { return os.ErrPermission }}
	items, err := Local(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if Failed(items) != 2 {
		t.Errorf("want the kill and the removal to fail, got %+v", items)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("folder of a QEMU that could not be killed was removed: %v", err)
	}
}

func TestProcProcessesFindsSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	procs, err := ProcProcesses("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	for _, p := range procs {
		if strconv.Itoa(p.PID) != self {
			continue
		}
		if len(p.Args) == 0 || !strings.Contains(p.Args[0], "gc.test") {
			t.Errorf("own args %q", p.Args)
		}
		if p.Started.IsZero() || p.Started.After(time.Now().Add(time.Second)) || time.Since(p.Started) > 24*time.Hour {
			t.Errorf("own start time %s is implausible", p.Started)
		}
		return
	}
	t.Fatalf("own PID %s not listed", self)
}

func TestStartTime(t *testing.T) {
	boot := time.Unix(1000, 0)
	// The command name holds spaces and a ')'.
	stat := "42 (qemu (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 250 1000 10"
	if got := startTime(stat, boot); !got.Equal(boot.Add(2500 * time.Millisecond)) {
		t.Errorf("startTime = %s, want boot+2.5s", got)
	}
}

// A bake killed in an existing --build-resource-group leaves tagged
// resources in a group gc must not delete: it removes them one by one, VM
// first, and leaves the group and its other resources alone.
func TestGCAzureLooseResourcesInExistingGroup(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	c := e.Clients(t)
	ctx := context.Background()
	if err := c.CreateResourceGroup(ctx, "shared-builds", "eastus", nil); err != nil {
		t.Fatal(err)
	}
	old := time.Now().UTC().Add(-30 * time.Hour).Format(time.RFC3339)
	tags := map[string]string{TagBuildID: "kill1", TagRecipe: "demo", TagCreated: old}
	n, err := c.CreateNetwork(ctx, "shared-builds", "eastus", "ib-kill1", []string{"*"}, tags)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, "shared-builds", "eastus", "someone-else", []string{"10.0.0.0/8"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.CreateVM(ctx, azVMSpec(t, n.SubnetID, tags)); err != nil {
		t.Fatal(err)
	}
	items, err := Azure(ctx, c, Options{TTL: 6 * time.Hour, Delete: true})
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, it := range items {
		if it.Action == ActionDelete {
			if !it.Done {
				t.Errorf("%s not deleted: %s", it.Name, it.Error)
			}
			deleted = append(deleted, it.Kind)
		}
	}
	want := []string{"microsoft.compute/virtualmachines", "microsoft.network/virtualnetworks", "microsoft.network/networksecuritygroups"}
	if !slices.Equal(deleted, want) {
		t.Errorf("deleted %v, want %v (VM first)", deleted, want)
	}
	var left []string
	for _, r := range e.Model.Resources() {
		if strings.EqualFold(r.ResourceGroup, "shared-builds") {
			left = append(left, r.Name)
		}
	}
	for _, keep := range []string{"shared-builds", "someone-else-vnet", "someone-else-nsg"} {
		if !slices.Contains(left, keep) {
			t.Errorf("%s was removed; left %v", keep, left)
		}
	}
	for _, gone := range []string{"ib-kill1-vnet", "ib-kill1-nsg", "ib-kill1-vm"} {
		if slices.Contains(left, gone) {
			t.Errorf("%s is still there", gone)
		}
	}
}
