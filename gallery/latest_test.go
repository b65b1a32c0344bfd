package gallery

import (
	"testing"
	"time"
)

func TestLatest(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 1, d, 0, 0, 0, 0, time.UTC) }
	ok := func(name string, published time.Time) ImageVersion {
		return ImageVersion{Name: name, ProvisioningState: StateSucceeded, PublishedAt: published}
	}
	excluded := func(iv ImageVersion) ImageVersion { iv.ExcludeFromLatest = true; return iv }
	state := func(iv ImageVersion, s string) ImageVersion { iv.ProvisioningState = s; return iv }

	tests := []struct {
		name     string
		versions []ImageVersion
		want     string // "" means none
	}{
		{name: "none", want: ""},
		{name: "highest non-excluded", versions: []ImageVersion{ok("1.0.0", day(1)), ok("1.0.2", day(2)), ok("1.0.1", day(3))}, want: "1.0.2"},
		{name: "excluded highest skipped", versions: []ImageVersion{ok("1.0.0", day(1)), ok("1.0.1", day(2)), excluded(ok("1.0.2", day(3)))}, want: "1.0.1"},
		{name: "all excluded", versions: []ImageVersion{excluded(ok("1.0.0", day(1))), excluded(ok("1.0.1", day(2)))}, want: ""},
		{name: "numeric not lexicographic", versions: []ImageVersion{ok("1.0.9", day(1)), ok("1.0.10", day(2)), ok("1.0.2", day(3))}, want: "1.0.10"},
		{name: "version not date", versions: []ImageVersion{ok("2.0.0", day(1)), ok("1.5.0", day(9))}, want: "2.0.0"},
		{name: "minor beats patch", versions: []ImageVersion{ok("1.10.0", day(1)), ok("1.9.99", day(2))}, want: "1.10.0"},
		{
			name: "not succeeded ignored",
			versions: []ImageVersion{
				ok("1.0.0", day(1)), state(ok("1.0.1", day(2)), StateFailed), state(ok("1.0.2", day(3)), StateCreating),
				state(ok("1.0.3", day(4)), ""), state(ok("1.0.4", day(4)), StateDeleting),
			},
			want: "1.0.0",
		},
		{name: "updating is not succeeded", versions: []ImageVersion{ok("1.0.0", day(1)), state(ok("1.0.1", day(2)), StateUpdating)}, want: "1.0.0"},
		{name: "unparsable name ignored", versions: []ImageVersion{ok("1.0.0", day(1)), ok("9.9.9-rc", day(2))}, want: "1.0.0"},
		{name: "end of life does not matter", versions: []ImageVersion{ok("1.0.0", day(1)), func() ImageVersion { v := ok("1.0.1", day(2)); e := day(1); v.EndOfLife = &e; return v }()}, want: "1.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := Latest(tt.versions)
			if tt.want == "" {
				if found {
					t.Fatalf("Latest = %s, want none", got.Name)
				}
				return
			}
			if !found || got.Name != tt.want {
				t.Fatalf("Latest = %q (%v), want %s", got.Name, found, tt.want)
			}
		})
	}
}

func TestValidateImageName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"github-runner-focal", true},
		{"a", true},
		{"img_1.2", true},
		{"a..b", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/b", false},
		{"/abs", false},
		{`a\b`, false},
		{".hidden", false},
		{"trailing-", false},
		{"a\x00b", false},
		{"spa ce", false},
		{string(make([]byte, 81)), false},
	}
	for _, tt := range tests {
		if err := ValidateImageName(tt.name); (err == nil) != tt.ok {
			t.Errorf("ValidateImageName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	long := make([]byte, 80)
	for i := range long {
		long[i] = 'a'
	}
	if err := ValidateImageName(string(long)); err != nil {
		t.Errorf("80 characters: %v", err)
	}
	if err := ValidateImageName(string(long) + "a"); err == nil {
		t.Error("81 characters accepted")
	}
}
