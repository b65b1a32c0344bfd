package bake

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagebake/imagebake/checks"
	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/internal/fakevm"
	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/recipes"
)

func TestMainUnit(t *testing.T) {
	tests := []struct {
		name string
		r    recipes.Recipe
		want string
	}{
		{"runner unit first, whatever the order", recipes.Recipe{Runner: &recipes.Runner{},
			Systemd: []recipes.Unit{{Name: "docker-prune.service", Enable: true}, {Name: "github-runner.service", Template: "github-runner.service", Enable: true}}}, "github-runner.service"},
		{"the first enabled unit", recipes.Recipe{Systemd: []recipes.Unit{{Name: "off.service"}, {Name: "demo-agent.service", Enable: true}, {Name: "b.service", Enable: true}}}, "demo-agent.service"},
		{"none enabled", recipes.Recipe{Systemd: []recipes.Unit{{Name: "off.service"}}}, ""},
		{"no units", recipes.Recipe{}, ""},
	}
	for _, tt := range tests {
		if got := mainUnit(&tt.r); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// fakeGuest is a qemuVM whose session is a fake VM running script, booted
// (as far as the host knows) at launched.
func fakeGuest(t *testing.T, r *recipes.Recipe, script fakevm.Script, launched time.Time) (qemuVM, *[]string) {
	t.Helper()
	signer, _, err := sshsession.NewClientKey()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := fakevm.New(fakevm.Config{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}, Script: script})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	s, err := sshsession.Dial(context.Background(), sshsession.Config{Addr: vm.Addr(), User: VerifyUser, Signer: signer, HostKey: vm.HostKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var mu sync.Mutex
	notes := &[]string{}
	p := NewPipeline(sinkFunc(func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.Kind == Info || e.Kind == StageFailed {
			*notes = append(*notes, e.Stage+": "+e.Message)
		}
	}), nil)
	m := &Manifest{Resources: map[string]string{}}
	q := qemuVM{guest: guest{job: job{r: r, p: p, m: m, log: loggerOr(nil)}, phase: checks.Verify, session: s},
		launched: launched, sshReady: launched.Add(40 * time.Second)}
	return q, notes
}

// uptimeScript answers the boot clock as a guest whose kernel started
// kernelAfter after launched, with the given units started (monotonic µs
// since the kernel's start). Zero µs: the unit did not run.
func uptimeScript(launched time.Time, kernelAfter time.Duration, units map[string]int64) fakevm.Rule {
	out := fmt.Sprintf("%.2f 1.00\n", (time.Since(launched) - kernelAfter).Seconds())
	for u, us := range units {
		out += fmt.Sprintf("ExecMainStartTimestampMonotonic=%d\nId=%s\nActiveEnterTimestampMonotonic=0\n\n", us, u)
	}
	return fakevm.Prefix("cat /proc/uptime", fakevm.Reply{Stdout: out})
}

func near(got, want float64) bool { return math.Abs(got-want) < 0.5 }

func TestMeasureBoot(t *testing.T) {
	demo := &recipes.Recipe{Systemd: []recipes.Unit{{Name: "demo-agent.service", Enable: true}}}
	tests := []struct {
		name      string
		r         *recipes.Recipe
		units     map[string]int64
		wantReady string
		wantSecs  float64 // launched (120 s ago) → ready; kernel started 2 s after launch
		wantNote  bool
	}{
		{"the main unit ran", demo, map[string]int64{"demo-agent.service": 31_000_000, "multi-user.target": 30_000_000}, "demo-agent.service", 33, false},
		{"the main unit did not run (a build boot)", demo, map[string]int64{"demo-agent.service": 0, "multi-user.target": 50_000_000}, "multi-user.target", 52, true},
		{"no unit: multi-user.target", &recipes.Recipe{}, map[string]int64{"multi-user.target": 20_000_000}, "multi-user.target", 22, false},
		{"nothing known: first ssh", &recipes.Recipe{}, map[string]int64{"multi-user.target": 0}, "ssh", 40, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			launched := time.Now().Add(-120 * time.Second)
			q, _ := fakeGuest(t, tt.r, fakevm.Script{uptimeScript(launched, 2*time.Second, tt.units)}, launched)
			got, err := q.measureBoot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got.Ready != tt.wantReady || !near(got.Seconds, tt.wantSecs) || !near(got.QEMUToKernelSeconds, 2) || !near(got.SSHSeconds, 40) {
				t.Errorf("%+v; want ready %s at %.0fs, qemu→kernel 2s, ssh 40s", got, tt.wantReady, tt.wantSecs)
			}
			if (got.Note != "") != tt.wantNote {
				t.Errorf("note %q", got.Note)
			}
			if q.m.Boot == nil || *q.m.Boot != got {
				t.Errorf("manifest boot %+v", q.m.Boot)
			}
			if !strings.HasPrefix(got.String(), fmt.Sprintf("boot-to-ready %.1fs (%s;", got.Seconds, got.Ready)) {
				t.Errorf("printed %q", got.String())
			}
		})
	}
}

// TestVerifyFirstBootFailsOnFailedUnit runs verify's first-boot stage
// against a guest whose boot left a failed unit: verify fails in that
// stage with the unit's status, and the boot-to-ready time is still
// reported.
func TestVerifyFirstBootFailsOnFailedUnit(t *testing.T) {
	launched := time.Now().Add(-200 * time.Second)
	demo := &recipes.Recipe{Name: "local-demo", Gallery: recipes.Gallery{Image: "local-demo"},
		Systemd: []recipes.Unit{{Name: "demo-agent.service", Enable: true}}}
	tests := []struct {
		name    string
		state   string
		failed  string
		wantErr []string
	}{
		{"clean", "running", "", nil},
		{"failed unit", "degraded", "systemd-networkd-wait-online.service loaded failed failed Wait for Network to be Configured\n",
			[]string{"first boot of local-demo 1.0.1", "system is degraded", "systemd-networkd-wait-online.service", "Timeout occurred"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := fakevm.Script{
				fakevm.Prefix("systemctl is-system-running", fakevm.Reply{Stdout: tt.state + "\n"}),
				fakevm.Prefix("systemctl --failed", fakevm.Reply{Stdout: tt.failed}),
				fakevm.Regexp(`^sudo -n systemctl status .*systemd-networkd-wait-online`, fakevm.Reply{Stdout: "× systemd-networkd-wait-online.service\n  Timeout occurred while waiting for network connectivity.\n"}),
				uptimeScript(launched, time.Second, map[string]int64{"demo-agent.service": 150_000_000, "multi-user.target": 149_000_000}),
			}
			q, notes := fakeGuest(t, demo, script, launched)
			b := &localVerify{qemuVM: q, version: gallery.ImageVersion{Name: "1.0.1"}}
			err := Run(context.Background(), q.p, b, []Stage[localVerify]{{contract.StageFirstBoot, (*localVerify).firstBoot}}, nil)
			m, err := finish(q.p, q.m, err, UnwindOptions{Timeout: time.Second}, "verified")
			joined := strings.Join(*notes, "\n")
			if !strings.Contains(joined, "first-boot: boot-to-ready 151.") {
				t.Errorf("no boot-to-ready line:\n%s", joined)
			}
			if tt.wantErr == nil {
				if err != nil || m.Result != "verified" {
					t.Fatalf("a clean first boot failed: %v", err)
				}
				return
			}
			if err == nil || m.FailedStage != contract.StageFirstBoot {
				t.Fatalf("verify passed a boot with a failed unit (stage %q): %v", m.FailedStage, err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
