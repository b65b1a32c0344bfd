package bake

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// BenchmarkLocalBake compares a real local bake of recipes/local-demo.yaml
// with the floor for the same work done directly: boot the same base with
// the same user-data under QEMU, wait for cloud-init to finish, power off
// and convert the disk. It reports the bake's overhead over that floor and
// the time from starting QEMU to the first SSH session; then it verifies
// the published version and reports that image's boot-to-ready time (QEMU
// launched to demo-agent.service running, see BootTiming) next to the
// build boot's time to first SSH: an image whose first boot is clean is
// ready about as fast as the build VM answered SSH. Each iteration boots
// three VMs (minutes under TCG): run it with -benchtime 1x and
// IMAGEBAKE_QEMU_TESTS=1 (make bench-local).
func BenchmarkLocalBake(b *testing.B) {
	if os.Getenv("IMAGEBAKE_QEMU_TESTS") != "1" {
		b.Skip("boots VMs: set IMAGEBAKE_QEMU_TESTS=1")
	}
	cache := os.Getenv("IMAGEBAKE_CACHE")
	if cache == "" {
		d, _ := os.UserCacheDir()
		cache = filepath.Join(d, "imagebake")
	}
	r, err := recipes.Load("../recipes/local-demo.yaml")
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	base, _, err := ResolveLocalBase(ctx, r, cache, nil, log)
	if err != nil {
		b.Fatal(err)
	}
	var floor, bake, toSSH time.Duration
	var buildSSH, ready float64
	for i := 0; i < b.N; i++ {
		f, ssh := directBake(b, ctx, r, base)
		floor += f
		toSSH += ssh
		start := time.Now()
		store := local.New(b.TempDir(), log)
		m, err := Local(ctx, r, LocalOptions{Store: store, CacheDir: cache, LogDir: b.TempDir(), Logger: log, CleanupTime: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		bake += time.Since(start)
		if m.Boot == nil {
			b.Fatal("the bake recorded no boot timing")
		}
		buildSSH += m.Boot.SSHSeconds
		b.StopTimer()
		v, err := store.Get(ctx, r.Gallery.Image, m.Version)
		if err != nil {
			b.Fatal(err)
		}
		vm, err := VerifyLocal(ctx, r, v, LocalOptions{CacheDir: cache, LogDir: b.TempDir(), Logger: log, CleanupTime: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		if vm.Boot == nil {
			b.Fatal("verify recorded no boot timing")
		}
		ready += vm.Boot.Seconds
		b.Logf("build boot: %s", m.Boot)
		b.Logf("published image: %s", vm.Boot)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(floor.Seconds()/n, "floor-s")
	b.ReportMetric(bake.Seconds()/n, "bake-s")
	b.ReportMetric(100*(bake.Seconds()-floor.Seconds())/floor.Seconds(), "overhead-%")
	b.ReportMetric(toSSH.Seconds()/n, "qemu-start-to-ssh-s")
	b.ReportMetric(buildSSH/n, "build-boot-to-ssh-s")
	b.ReportMetric(ready/n, "published-boot-to-ready-s")
}

// directBake is the floor: the same VM work with nothing of imagebake's
// stages around it.
func directBake(b *testing.B, ctx context.Context, r *recipes.Recipe, base qemu.Base) (total, toSSH time.Duration) {
	signer, authLine, err := sshsession.NewClientKey()
	if err != nil {
		b.Fatal(err)
	}
	hostPriv, hostLine, hostPub, err := sshsession.NewHostKey()
	if err != nil {
		b.Fatal(err)
	}
	doc, err := templates.Render(r, templates.Options{HostKeyPrivate: hostPriv, HostKeyPublic: hostLine, BuildUser: BuildUser, BuildAuthorizedKey: authLine})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	m, err := qemu.Start(ctx, qemu.MachineOptions{Base: base, UserData: doc.CloudConfig, MemoryMiB: r.Build.MemoryMiB, CPUs: r.Build.CPUs, LogDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Destroy()
	s, err := sshsession.Dial(ctx, sshsession.Config{Addr: m.SSHAddr(), User: BuildUser, Signer: signer, HostKey: hostPub})
	if err != nil {
		b.Fatal(err)
	}
	toSSH = time.Since(start)
	if _, err := s.WaitCloudInit(ctx, time.Second); err != nil {
		b.Fatal(err)
	}
	s.Close()
	if err := m.Stop(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Capture(ctx, filepath.Join(b.TempDir(), "floor.qcow2")); err != nil {
		b.Fatal(err)
	}
	return time.Since(start), toSSH
}
