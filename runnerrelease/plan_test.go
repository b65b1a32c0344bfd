package runnerrelease

import (
	"errors"
	"testing"

	"github.com/imagebake/imagebake/recipes"
)

func TestPlanBump(t *testing.T) {
	const h1, h2 = "aa11", "bb22"
	pin := recipes.RunnerPin{Version: "2.337.0", SHA256: h1}
	tests := []struct {
		name      string
		old       recipes.RunnerPin
		rel       Release
		downgrade bool
		want      Verdict
		wantErr   error
	}{
		{"newer", pin, Release{Version: "2.338.0", SHA256: h2}, false, Bump, nil},
		{"same", pin, Release{Version: "2.337.0", SHA256: "AA11"}, false, Unchanged, nil},
		{"same version other hash", pin, Release{Version: "2.337.0", SHA256: h2}, false, HashMismatch, nil},
		{"downgrade", pin, Release{Version: "2.330.0", SHA256: h2}, false, Downgrade, nil},
		{"downgrade allowed", pin, Release{Version: "2.330.0", SHA256: h2}, true, Bump, nil},
		{"below minimum", pin, Release{Version: "2.328.9", SHA256: h2}, true, TooOld, nil},
		{"unparsable pin", recipes.RunnerPin{Version: "latest"}, Release{Version: "2.338.0", SHA256: h2}, false, Bump, nil},
		{"out of range", pin, Release{Version: "2.99999999999999999999.0", SHA256: h2}, false, 0, ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PlanBump(tt.old, tt.rel, tt.downgrade)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
		})
	}
}
