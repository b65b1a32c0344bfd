package qemu

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestProbeKVM(t *testing.T) {
	tests := []struct {
		name    string
		cpuinfo string
		dev     string
		wantErr string // empty: KVM usable
	}{
		{"no virtualization flags", "testdata/cpuinfo-novirt", "/dev/null", "neither vmx nor svm"},
		{"vmx but no device", "testdata/cpuinfo-vmx", "testdata/no-such-kvm", "no such file"},
		{"svm but not a kvm device", "testdata/cpuinfo-svm", "/dev/null", "KVM_GET_API_VERSION"},
		{"no cpuinfo", "testdata/missing", "/dev/null", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := probeKVM(tc.dev, filepath.FromSlash(tc.cpuinfo))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("probeKVM = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestHasVirtFlag(t *testing.T) {
	for file, want := range map[string]bool{
		"testdata/cpuinfo-vmx":    true,
		"testdata/cpuinfo-svm":    true,
		"testdata/cpuinfo-novirt": false, // a "vmx flags" line is not the flags line
	} {
		if got := hasVirtFlag(file) == nil; got != want {
			t.Errorf("hasVirtFlag(%s) usable = %v, want %v", file, got, want)
		}
	}
}
