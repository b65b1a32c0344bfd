package sshsession

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/fakevm"
)

// failedNetworkdStatus is what `systemctl status` printed for the unit
// that held the old base's first boot (trimmed).
const failedNetworkdStatus = `× systemd-networkd-wait-online.service - Wait for Network to be Configured
     Loaded: loaded (/lib/systemd/system/systemd-networkd-wait-online.service; enabled; preset: disabled)
     Active: failed (Result: exit-code) since Tue 2026-12-01 21:39:01 UTC; 1min ago
    Process: 402 ExecStart=/lib/systemd/systemd-networkd-wait-online (code=exited, status=1/FAILURE)
Dec 01 21:39:01 local-demo-verify systemd-networkd-wait-online[402]: Timeout occurred while waiting for network connectivity.
`

func TestSystemHealth(t *testing.T) {
	tests := []struct {
		name       string
		script     fakevm.Script
		wantState  string
		wantFailed []string
		wantErr    []string // substrings of Health.Err; none: a clean boot
	}{
		{
			name: "clean boot",
			script: fakevm.Script{
				fakevm.Prefix("systemctl is-system-running", fakevm.Reply{Stdout: "running\n"}),
				fakevm.Prefix("systemctl --failed", fakevm.Reply{}),
			},
			wantState: "running",
		},
		{
			name: "degraded by a failed unit, whose status is shown",
			script: fakevm.Script{
				fakevm.Prefix("systemctl is-system-running", fakevm.Reply{Stdout: "degraded\n"}),
				fakevm.Prefix("systemctl --failed", fakevm.Reply{Stdout: "systemd-networkd-wait-online.service loaded failed failed Wait for Network to be Configured\n"}),
				fakevm.Exact("sudo -n systemctl status --no-pager --full --lines=15 'systemd-networkd-wait-online.service' 2>&1 || true", fakevm.Reply{Stdout: failedNetworkdStatus}),
			},
			wantState:  "degraded",
			wantFailed: []string{"systemd-networkd-wait-online.service"},
			wantErr:    []string{"system is degraded", "1 failed unit(s): systemd-networkd-wait-online.service", "Timeout occurred while waiting for network connectivity"},
		},
		{
			name: "starting, then degraded: the late failure is seen",
			script: fakevm.Script{
				fakevm.Prefix("systemctl is-system-running", fakevm.Reply{Stdout: "starting\n"}).Times(1),
				fakevm.Prefix("systemctl is-system-running", fakevm.Reply{Stdout: "degraded\n"}),
				fakevm.Prefix("systemctl --failed", fakevm.Reply{Stdout: "● demo-agent.service loaded failed failed Demo agent\n"}),
				fakevm.Regexp(`^sudo -n systemctl status .*'demo-agent\.service'`, fakevm.Reply{Stdout: "× demo-agent.service\n  Active: failed\n"}),
			},
			wantState:  "degraded",
			wantFailed: []string{"demo-agent.service"},
			wantErr:    []string{"demo-agent.service", "Active: failed"},
		},
		{
			name: "a failed unit fails even when the system is still starting",
			script: fakevm.Script{
				fakevm.Prefix("systemctl is-system-running", fakevm.Reply{Stdout: "starting\n"}),
				fakevm.Prefix("systemctl --failed", fakevm.Reply{Stdout: "bad.service loaded failed failed Bad\n"}),
				fakevm.Regexp(`^sudo -n systemctl status `, fakevm.Reply{Stdout: "× bad.service\n"}),
			},
			wantState:  "starting",
			wantFailed: []string{"bad.service"},
			wantErr:    []string{"system is starting", "bad.service"},
		},
		{
			name: "a unit name that is not one never reaches a command",
			script: fakevm.Script{
				fakevm.Prefix("systemctl is-system-running", fakevm.Reply{Stdout: "running\n"}),
				fakevm.Prefix("systemctl --failed", fakevm.Reply{Stdout: "$(reboot);x loaded failed failed Evil\n"}),
			},
			wantState: "running",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, cfg := fakeVM(t, tt.script)
			s := dialT(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			h, err := s.SystemHealth(ctx, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if h.State != tt.wantState {
				t.Errorf("state %q, want %q", h.State, tt.wantState)
			}
			var names []string
			for _, u := range h.Failed {
				names = append(names, u.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.wantFailed, ",") {
				t.Errorf("failed units %v, want %v", names, tt.wantFailed)
			}
			herr := h.Err()
			if len(tt.wantErr) == 0 {
				if herr != nil {
					t.Errorf("a clean boot fails: %v", herr)
				}
			} else if herr == nil {
				t.Errorf("no error for %+v", h)
			} else {
				for _, w := range tt.wantErr {
					if !strings.Contains(herr.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, herr)
					}
				}
			}
			for _, c := range vm.Commands() {
				if strings.Contains(c, "reboot") {
					t.Errorf("a unit name from the guest reached a command: %q", c)
				}
			}
		})
	}
}

func TestParseBootClock(t *testing.T) {
	// Real `cat /proc/uptime && systemctl show --property=…` output from a
	// bookworm guest: a oneshot unit that ran (never "active") and a target.
	out := "212.47 380.12\n" +
		"ExecMainStartTimestampMonotonic=61234567\nId=demo-agent.service\nActiveEnterTimestampMonotonic=0\n" +
		"\n" +
		"ExecMainStartTimestampMonotonic=0\nId=multi-user.target\nActiveEnterTimestampMonotonic=60100000\n" +
		"\n" +
		"ExecMainStartTimestampMonotonic=0\nId=never.service\nActiveEnterTimestampMonotonic=0\n"
	var c BootClock
	if err := parseBootClock(out, &c); err != nil {
		t.Fatal(err)
	}
	if c.Uptime != 212470*time.Millisecond {
		t.Errorf("uptime %v", c.Uptime)
	}
	want := map[string]time.Duration{"demo-agent.service": 61234567 * time.Microsecond, "multi-user.target": 60100 * time.Millisecond}
	if len(c.Units) != len(want) {
		t.Errorf("units %v, want %v", c.Units, want)
	}
	for u, d := range want {
		if c.Units[u] != d {
			t.Errorf("%s: %v, want %v", u, c.Units[u], d)
		}
	}
	if err := parseBootClock("", &c); err == nil {
		t.Error("empty output parsed")
	}
}

func TestReadBootClockRefusesBadUnitNames(t *testing.T) {
	vm, cfg := fakeVM(t, nil)
	s := dialT(t, cfg)
	if _, err := s.ReadBootClock(context.Background(), "x; reboot"); err == nil {
		t.Error("a bad unit name was accepted")
	}
	if n := len(vm.Commands()); n != 0 {
		t.Errorf("%d commands sent", n)
	}
}
