package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	shippedRecipe = "../../recipes/github-runner-focal.yaml"
	shippedVer    = "2.337.0"
	shippedSHA    = "70920811a4f8ad4328818682bca5c6469c1c942fab52448868071d0063816613"
	newSHA        = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988"
	testToken     = "ghp_bumptesttoken0123456789"
)

// runBump runs the real run() with debug logging.
func runBump(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLI(t, append([]string{"--log-level", "debug"}, args...)...)
}

// fakeGitHub plays api.github.com's releases endpoints for actions/runner.
type fakeGitHub struct {
	mu    sync.Mutex
	docs  map[string]any // path → release JSON
	auths []string
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	doc, ok := f.docs[r.URL.Path]
	f.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}`))
		return
	}
	_ = json.NewEncoder(w).Encode(doc)
}

func ghRelease(v, sha string, inAssets bool) map[string]any {
	tarball := "actions-runner-linux-x64-" + v + ".tar.gz"
	a := map[string]any{"name": tarball}
	body := "## What's Changed\n- things\n"
	if inAssets {
		a["digest"] = "sha256:" + sha
	} else {
		body += "- " + tarball + " <!-- BEGIN SHA linux-x64 -->" + sha + "<!-- END SHA linux-x64 -->\n"
	}
	return map[string]any{"tag_name": "v" + v, "html_url": "https://github.com/actions/runner/releases/tag/v" + v, "body": body, "assets": []any{a}}
}

func copyRecipe(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(shippedRecipe)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "runner.yaml")
	if err := os.WriteFile(p, data, 0o640); err != nil {
		t.Fatal(err)
	}
	return p
}

// changedLines lists the lines that differ between two same-length files.
func changedLines(t *testing.T, a, b string) []string {
	t.Helper()
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(al) != len(bl) {
		t.Fatalf("line count changed %d → %d", len(al), len(bl))
	}
	var d []string
	for i := range al {
		if al[i] != bl[i] {
			d = append(d, bl[i])
		}
	}
	return d
}

func TestBumpRunnerCommand(t *testing.T) {
	const rel = "/repos/actions/runner/releases/"
	orig, err := os.ReadFile(shippedRecipe)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		docs       map[string]any
		args       []string // after the recipe path
		wantCode   int
		wantOut    string
		wantErr    string
		wantVer    string // "" → file unchanged
		wantSHA    string
		wantNoAuth bool
	}{
		{name: "latest from assets digest", docs: map[string]any{rel + "latest": ghRelease("2.338.0", newSHA, true)},
			args: []string{"--latest"}, wantOut: "runner 2.337.0 → 2.338.0", wantVer: "2.338.0", wantSHA: newSHA},
		{name: "latest from notes block", docs: map[string]any{rel + "latest": ghRelease("2.339.2", newSHA, false)},
			args: []string{"--latest"}, wantOut: "runner 2.337.0 → 2.339.2", wantVer: "2.339.2", wantSHA: newSHA},
		{name: "to looks up the tag", docs: map[string]any{rel + "tags/v2.338.1": ghRelease("2.338.1", newSHA, false)},
			args: []string{"--to", "2.338.1"}, wantOut: "2.337.0 → 2.338.1", wantVer: "2.338.1", wantSHA: newSHA},
		{name: "tag not found", args: []string{"--to", "2.400.0"}, wantCode: exitFailed,
			wantErr: "runner release v2.400.0: not found (404 Not Found: Not Found)"},
		{name: "latest not found", args: []string{"--latest"}, wantCode: exitFailed, wantErr: "latest runner release: not found"},
		{name: "downgrade refused", docs: map[string]any{rel + "latest": ghRelease("2.336.0", newSHA, true)},
			args: []string{"--latest"}, wantCode: exitFailed, wantErr: "2.336.0 would downgrade the runner from 2.337.0; pass --allow-downgrade"},
		{name: "downgrade by hand refused", args: []string{"--to", "2.330.0", "--sha256", newSHA}, wantCode: exitFailed,
			wantErr: "would downgrade", wantNoAuth: true},
		{name: "downgrade allowed", args: []string{"--to", "2.330.0", "--sha256", newSHA, "--allow-downgrade"},
			wantOut: "2.337.0 → 2.330.0", wantVer: "2.330.0", wantSHA: newSHA, wantNoAuth: true},
		{name: "below minimum even with allow-downgrade", args: []string{"--to", "2.328.9", "--sha256", newSHA, "--allow-downgrade"},
			wantCode: exitFailed, wantErr: "older than 2.329.0"},
		{name: "already there", docs: map[string]any{rel + "latest": ghRelease(shippedVer, strings.ToUpper(shippedSHA), true)},
			args: []string{"--latest"}, wantOut: "runner already at 2.337.0"},
		{name: "same version other hash", args: []string{"--to", shippedVer, "--sha256", newSHA}, wantCode: exitFailed,
			wantErr: "is pinned with sha256 " + shippedSHA + ", but --sha256 says " + newSHA},
		{name: "dry run", docs: map[string]any{rel + "latest": ghRelease("2.338.0", newSHA, true)},
			args: []string{"--latest", "--dry-run"}, wantOut: "2.337.0 → 2.338.0 (dry run, not written)"},
		{name: "flags before the recipe", args: []string{"--to", "2.338.0", "--sha256", newSHA}, wantOut: "→ 2.338.0", wantVer: "2.338.0", wantSHA: newSHA},
		{name: "latest with to", args: []string{"--latest", "--to", "2.338.0"}, wantCode: exitUsage, wantErr: "drop --to and --sha256"},
		{name: "nothing asked", args: nil, wantCode: exitUsage, wantErr: "say which version"},
		{name: "bad sha", args: []string{"--to", "2.338.0", "--sha256", "xyz"}, wantCode: exitUsage, wantErr: "not a SHA-256"},
		{name: "bad version", args: []string{"--to", "2.338", "--sha256", newSHA}, wantCode: exitUsage, wantErr: "not MAJOR.MINOR.PATCH"},
		// Found probing the CLI: a --to that is no version is bad usage
		// before any API call, not a failed lookup.
		{name: "bad version for the API", args: []string{"--to", "banana"}, wantCode: exitUsage, wantErr: `--to "banana": not a version`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gh := &fakeGitHub{docs: tt.docs}
			srv := httptest.NewServer(gh)
			defer srv.Close()
			t.Setenv("GITHUB_TOKEN", testToken)
			path := copyRecipe(t)
			args := append([]string{"bump", "runner", path, "--api-url", srv.URL}, tt.args...)
			if tt.name == "flags before the recipe" {
				// A flag between the subcommand and the recipe (value
				// flags there are covered by TestInterspersed).
				args = append([]string{"bump", "runner", "--allow-downgrade", path, "--api-url", srv.URL}, tt.args...)
			}
			code, out, errOut := runBump(t, args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout %q lacks %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErr)
			}
			if strings.Contains(out+errOut, testToken) {
				t.Errorf("the token was printed:\n%s\n%s", out, errOut)
			}
			for _, a := range gh.auths {
				if a != "Bearer "+testToken {
					t.Errorf("Authorization header %q, want the GITHUB_TOKEN bearer", a)
				}
			}
			if tt.wantNoAuth && len(gh.auths) != 0 {
				t.Errorf("--sha256 given, yet the API was called %d times", len(gh.auths))
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantVer == "" {
				if !bytes.Equal(got, orig) {
					t.Errorf("recipe changed:\n%s", got)
				}
				return
			}
			want := []string{"  version: " + tt.wantVer, "  sha256: " + tt.wantSHA}
			if d := changedLines(t, string(orig), string(got)); strings.Join(d, "\n") != strings.Join(want, "\n") {
				t.Errorf("changed lines %q, want %q", d, want)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("mode after bump: %v %v, want 0640", fi, err)
			}
			if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
				t.Errorf("temporary files left: %v", ents)
			}
			// A second run is a no-op.
			if tt.wantSHA != "" && strings.Contains(strings.Join(tt.args, " "), "--sha256") {
				code, out, _ := runBump(t, append([]string{"bump", "runner", path}, tt.args...)...)
				if code != 0 || !strings.Contains(out, "already at "+tt.wantVer) {
					t.Errorf("second run: exit %d, %q", code, out)
				}
			}
		})
	}
}

func TestBumpRunnerCommandRescuesStaleRecipe(t *testing.T) {
	// A recipe pinned below the minimum fails validation; bumping it is
	// how it gets fixed, so bump must not insist the old one loads.
	data, err := os.ReadFile(shippedRecipe)
	if err != nil {
		t.Fatal(err)
	}
	stale := strings.Replace(string(data), "version: "+shippedVer, "version: 2.283.2", 1)
	p := filepath.Join(t.TempDir(), "stale.yaml")
	if err := os.WriteFile(p, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runBump(t, "bump", "runner", p, "--to", "2.338.0", "--sha256", newSHA)
	if code != 0 || !strings.Contains(out, "2.283.2 → 2.338.0") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestBumpRunnerCommandNoRunner(t *testing.T) {
	code, _, errOut := runBump(t, "bump", "runner", "../../recipes/testdata/bump/norunner.yaml", "--to", "2.338.0", "--sha256", newSHA)
	if code != exitFailed || !strings.Contains(errOut, "no runner section") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
