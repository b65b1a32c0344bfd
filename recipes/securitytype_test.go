package recipes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEveryShippedRecipeIsValid(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("shipped recipes: %v %v", files, err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestBuildSecurityType(t *testing.T) {
	data, err := os.ReadFile("github-runner-noble.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse("noble.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if r.Build.SecurityType != "TrustedLaunch" {
		t.Errorf("noble's build.securityType = %q, want TrustedLaunch", r.Build.SecurityType)
	}
	for _, tc := range []struct {
		value string
		ok    bool
	}{
		{"Standard", true}, {"TrustedLaunch", true}, {"ConfidentialVM", true},
		{"trustedlaunch", false}, {"TrustedLaunchSupported", false}, {"Gen2", false},
	} {
		src := strings.Replace(string(data), "securityType: TrustedLaunch", "securityType: "+tc.value, 1)
		_, err := Parse("noble.yaml", []byte(src))
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.value, err)
			}
			continue
		}
		var list *ErrorList
		if !errors.As(err, &list) || len(list.Errors) != 1 {
			t.Fatalf("%s: want one error, got %v", tc.value, err)
		}
		fe := list.Errors[0]
		line := 1 + strings.Count(src[:strings.Index(src, "securityType: "+tc.value)], "\n")
		if fe.Field != "build.securityType" || fe.Line != line || !strings.Contains(fe.Message, "TrustedLaunch") {
			t.Errorf("%s: error %+v, want build.securityType at line %d naming the allowed values", tc.value, fe, line)
		}
	}
}
