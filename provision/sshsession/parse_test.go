package sshsession

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestParseStatusJSONReal(t *testing.T) {
	// Captured from Debian bookworm's cloud-init 22.4.2 (no recoverable_errors
	// or extended_status yet).
	b, err := os.ReadFile("testdata/status-22.4.2-not-run.json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseStatusJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "not run" || st.BootStatusCode != "enabled-by-sysvinit" || len(st.Errors) != 0 || st.Format != "json" {
		t.Errorf("%+v", st)
	}
	if err := st.Err(true); err == nil || !strings.Contains(err.Error(), `"not run"`) && !strings.Contains(err.Error(), "not run") {
		t.Errorf("Err = %v, want not-done error", err)
	}

	long, err := os.ReadFile("testdata/status-22.4.2-not-run-long.txt")
	if err != nil {
		t.Fatal(err)
	}
	lst, err := parseStatusLong(string(long))
	if err != nil {
		t.Fatal(err)
	}
	if lst.Status != st.Status || lst.Detail != st.Detail || lst.BootStatusCode != st.BootStatusCode {
		t.Errorf("long %+v disagrees with json %+v", lst, st)
	}
}

func TestParseStatusJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    CloudInitStatus
		wantErr bool
	}{
		{
			name: "24.x degraded",
			in: `{"boot_status_code":"enabled-by-generator","datasource":"azure","detail":"DataSourceAzure [seed=/dev/sr0]",
			"errors":[],"extended_status":"degraded done","last_update":"x","recoverable_errors":{"WARNING":["a","b"],"DEPRECATED":["c"]},
			"status":"done","init":{"errors":[]},"stage":null}`,
			want: CloudInitStatus{Status: "done", ExtendedStatus: "degraded done", Detail: "DataSourceAzure [seed=/dev/sr0]", Datasource: "azure",
				BootStatusCode: "enabled-by-generator", LastUpdate: "x", RecoverableErrors: map[string][]string{"WARNING": {"a", "b"}, "DEPRECATED": {"c"}}, Format: "json"},
		},
		{
			name: "error with non-string entries",
			in:   `{"status":"error","datasource":null,"errors":["boom", {"odd": 1}]}`,
			want: CloudInitStatus{Status: "error", Errors: []string{"boom", `{"odd":1}`}, Format: "json"},
		},
		{name: "usage text", in: "usage: cloud-init status [-h]", wantErr: true},
		{name: "no status", in: `{"errors":[]}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatusJSON([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatusLong(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    CloudInitStatus
		wantErr bool
	}{
		{
			name: "24.x error with recoverable",
			in: "status: error\nextended_status: error - done\nboot_status_code: enabled-by-generator\n" +
				"last_update: Thu, 01 Jan 2026 00:01:40 +0000\ndetail: DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud-net]\n" +
				"errors:\n\t- ('package_update_upgrade_install', ProcessExecutionError('apt'))\n\t- ('scripts_user', RuntimeError('runcmd'))\n" +
				"recoverable_errors:\nWARNING:\n\t- Failed to install packages: ['nope']\n\t- Running module failed\nDEPRECATED:\n\t- Key x is deprecated\n",
			want: CloudInitStatus{Status: "error", ExtendedStatus: "error - done", BootStatusCode: "enabled-by-generator",
				LastUpdate: "Thu, 01 Jan 2026 00:01:40 +0000", Detail: "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud-net]",
				Errors:            []string{"('package_update_upgrade_install', ProcessExecutionError('apt'))", "('scripts_user', RuntimeError('runcmd'))"},
				RecoverableErrors: map[string][]string{"WARNING": {"Failed to install packages: ['nope']", "Running module failed"}, "DEPRECATED": {"Key x is deprecated"}},
				Format:            "long"},
		},
		{
			name: "24.x done, nothing to report",
			in: "status: done\nextended_status: done\nboot_status_code: enabled-by-generator\nlast_update: x\n" +
				"detail: DataSourceAzure [seed=/dev/sr0]\nerrors: []\nrecoverable_errors: {}\n",
			want: CloudInitStatus{Status: "done", ExtendedStatus: "done", BootStatusCode: "enabled-by-generator", LastUpdate: "x",
				Detail: "DataSourceAzure [seed=/dev/sr0]", Format: "long"},
		},
		{
			name: "21.x error only in detail",
			in:   "status: error\ntime: Mon, 01 Jan 2024 00:00:00 +0000\ndetail:\n('users-groups', KeyError('githubrunner1'))\n",
			want: CloudInitStatus{Status: "error", LastUpdate: "Mon, 01 Jan 2024 00:00:00 +0000",
				Detail: "('users-groups', KeyError('githubrunner1'))", Errors: []string{"('users-groups', KeyError('githubrunner1'))"}, Format: "long"},
		},
		{name: "wait dots", in: "....\nstatus: done\n", want: CloudInitStatus{Status: "done", Format: "long"}},
		{name: "garbage", in: "sh: 1: cloud-init: not found\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatusLong(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCloudInitStatusErr(t *testing.T) {
	tests := []struct {
		name         string
		st           CloudInitStatus
		strict, lax  bool // want an error from Err(false), Err(true)
		wantContains string
	}{
		{"done", CloudInitStatus{Status: "done"}, false, false, ""},
		{"error", CloudInitStatus{Status: "error", Errors: []string{"boom"}}, true, true, "boom"},
		{"errors listed though done", CloudInitStatus{Status: "done", Errors: []string{"late"}}, true, true, "late"},
		{"degraded", CloudInitStatus{Status: "done", ExtendedStatus: "degraded done", RecoverableErrors: map[string][]string{"WARNING": {"w1"}}}, true, false, "WARNING: w1"},
		{"running", CloudInitStatus{Status: "running"}, true, true, "running"},
		{"disabled", CloudInitStatus{Status: "disabled"}, true, true, "disabled"},
		{"many", CloudInitStatus{Status: "error", Errors: strings.Split("a b c d e f g", " ")}, true, true, "and 2 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			strict, lax := tt.st.Err(false), tt.st.Err(true)
			if (strict != nil) != tt.strict || (lax != nil) != tt.lax {
				t.Fatalf("Err(false) = %v, Err(true) = %v", strict, lax)
			}
			if strict != nil && !strings.Contains(strict.Error(), tt.wantContains) {
				t.Errorf("Err(false) = %v, want %q in it", strict, tt.wantContains)
			}
		})
	}
}

func TestLogExcerpt(t *testing.T) {
	var lines []string
	for i := 0; i < 100; i++ {
		lines = append(lines, "2026-01-01 - util.py[DEBUG]: noise")
	}
	lines[10] = "2026-01-01 - cc_apt_configure.py[WARNING]: key missing"
	lines[20] = "2026-01-01 - util.py[ERROR]: apt failed"
	lines[30] = "Traceback (most recent call last):"
	lines[31] = `  File "/usr/lib/python3/dist-packages/cloudinit/config/modules.py", line 1, in _run_modules`
	lines[32] = "    ran, _r = cc.run(run_name, mod.handle, func_args)"
	lines[33] = "KeyError: 'githubrunner1'"
	lines[40] = "E: Unable to locate package nope"
	lines[99] = "Cloud-init v. 24.4.1 finished"
	log := strings.Join(lines, "\n") + "\n"

	got := LogExcerpt(log, 40)
	for _, want := range []string{lines[10], lines[20], lines[30], lines[31], lines[32], lines[33], lines[40], lines[99]} {
		if !slicesContains(got, want) {
			t.Errorf("excerpt misses %q", want)
		}
	}
	if len(got) != 7+10 { // 7 interesting lines and a tail of 40/4
		t.Errorf("excerpt has %d lines: %q", len(got), got)
	}
	if got[len(got)-1] != lines[99] {
		t.Error("excerpt does not end with the log's last line")
	}
	short := LogExcerpt(log, 3)
	if len(short) != 3 || short[2] != lines[99] {
		t.Errorf("LogExcerpt(3) = %q", short)
	}
	if LogExcerpt(log, 0) != nil {
		t.Error("n=0")
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestBoundedBuffer(t *testing.T) {
	tests := []struct {
		name      string
		limit     int
		writes    []string
		want      string
		truncated bool
	}{
		{"fits", 10, []string{"abc", "de"}, "abcde", false},
		{"exactly", 4, []string{"ab", "cd"}, "abcd", false},
		{"small writes", 4, []string{"a", "b", "c", "d", "e", "f"}, "ab\n…[2 bytes omitted]…\nef", true},
		{"one big write", 4, []string{"0123456789"}, "01\n…[6 bytes omitted]…\n89", true},
		{"big after small", 6, []string{"abcd", "0123456789"}, "abc\n…[8 bytes omitted]…\n789", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBoundedBuffer(tt.limit)
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := b.String(); got != tt.want || b.Truncated() != tt.truncated {
				t.Errorf("got %q (truncated %v), want %q (%v)", got, b.Truncated(), tt.want, tt.truncated)
			}
		})
	}
}
