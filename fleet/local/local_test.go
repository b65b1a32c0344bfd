package local

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imagebake/imagebake/fleet"
	"github.com/imagebake/imagebake/platform"
)

func newTarget(t *testing.T) *Target {
	t.Helper()
	p, err := platform.New(platform.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	tg, err := New(Options{Dir: t.TempDir(), Platform: p, Relay: platform.SocatRelay()})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func put(t *testing.T, tg *Target, r Record, disk bool) {
	t.Helper()
	dir := tg.imageDir(r.Image)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(filepath.Join(dir, r.Name+".json"), r); err != nil {
		t.Fatal(err)
	}
	if disk {
		if err := os.WriteFile(filepath.Join(dir, r.Name+".qcow2"), []byte("disk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestListAndDeleteFromRecords: what outlives the launching process is the
// records and kept disks; List reads them and Delete removes only what the
// target names in its own folder.
func TestListAndDeleteFromRecords(t *testing.T) {
	tg := newTarget(t)
	created := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	put(t, tg, Record{VM: fleet.VM{Name: "img-a-1", Image: "img", Version: "1.0.1", Power: fleet.PowerDeallocated, Cycle: "deallocate", Outcome: "job-done", Created: created}, State: platform.StateDeallocated}, true)
	put(t, tg, Record{VM: fleet.VM{Name: "img-a-2", Image: "img", Version: "1.0.1", Power: fleet.PowerRunning, Created: created}, State: platform.StateRunning}, true)
	put(t, tg, Record{VM: fleet.VM{Name: "other-b-1", Image: "other", Version: "2.0.0", Power: fleet.PowerDeallocated, Created: created}}, false)
	// A record whose name does not match its file is not listed.
	put(t, tg, Record{VM: fleet.VM{Name: "img-forged", Image: "img"}}, false)
	if err := os.Rename(filepath.Join(tg.imageDir("img"), "img-forged.json"), filepath.Join(tg.imageDir("img"), "img-x-9.json")); err != nil {
		t.Fatal(err)
	}
	// A symlinked record is not read.
	if err := os.Symlink(filepath.Join(tg.imageDir("img"), "img-a-1.json"), filepath.Join(tg.imageDir("img"), "img-link-1.json")); err != nil {
		t.Fatal(err)
	}

	vms, err := tg.List(context.Background(), "img")
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != 2 || vms[0].Name != "img-a-1" || vms[1].Name != "img-a-2" {
		t.Fatalf("listed %+v", vms)
	}
	if vms[0].Power != fleet.PowerDeallocated || vms[0].Outcome != "job-done" {
		t.Errorf("deallocated VM listed as %+v", vms[0])
	}
	// Recorded running by a process that is gone: its platform ended too.
	if vms[1].Power != fleet.PowerStopped {
		t.Errorf("orphaned running record listed as %s, want stopped", vms[1].Power)
	}
	all, err := tg.List(context.Background(), "")
	if err != nil || len(all) != 3 {
		t.Fatalf("all images: %v %+v", err, all)
	}
	if _, err := tg.List(context.Background(), "../etc"); err == nil {
		t.Error("an image name with a path was accepted")
	}

	if err := tg.Delete(context.Background(), vms[0]); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"img-a-1.json", "img-a-1.qcow2"} {
		if _, err := os.Lstat(filepath.Join(tg.imageDir("img"), f)); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", f, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(tg.imageDir("img"), "img-a-2.qcow2")); err != nil {
		t.Errorf("another VM's disk went too: %v", err)
	}
	if err := tg.Delete(context.Background(), fleet.VM{Name: "img-a-7", Image: "img"}); err == nil {
		t.Error("deleting a VM without a record succeeded")
	}
}

func TestBootConfig(t *testing.T) {
	tg := newTarget(t)
	b, err := tg.bootConfig()
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:14]) != "#cloud-config\n" {
		t.Errorf("not a cloud-config: %q", b[:20])
	}
	tg.opts.AuthorizedKey = "ssh-ed25519 AAAA x\nruncmd: [reboot]"
	if _, err := tg.bootConfig(); err == nil {
		t.Error("a multi-line authorized key was accepted")
	}
}
