package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
)

// TestExitCodes checks the exit-code mapping of the real run(): 0 done, 1
// the work failed, 2 bad usage.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"version", []string{"version"}, 0},
		{"help", []string{"help"}, 0},
		{"help of a command", []string{"help", "versions"}, 0},
		{"command without its subcommand shows help", []string{"versions"}, 0},
		{"valid recipe", []string{"validate", "../../recipes/local-demo.yaml"}, 0},
		{"invalid recipe fails", []string{"validate", "../../recipes/testdata/bump/norunner.yaml", "no-such-file.yaml"}, exitFailed},
		{"missing argument", []string{"validate"}, exitUsage},
		{"unknown flag", []string{"validate", "--nosuch", "../../recipes/local-demo.yaml"}, exitUsage},
		{"bad log level", []string{"--log-level", "loud", "version"}, exitUsage},
		{"bad output", []string{"version", "-o", "yaml"}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, out, errOut := runCLI(t, tt.args...); code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
		})
	}
}

// TestUnknownCommandIsUsage is issue 12 item 24: an unknown command,
// subcommand or help topic is bad usage (exit 2), as README promises; cli's
// own answer was exit 3.
func TestUnknownCommandIsUsage(t *testing.T) {
	for _, args := range [][]string{{"nosuch"}, {"versions", "nosuch"}, {"help", "nosuch"}, {"bump", "nosuch"}, {"base", "nosuch"}} {
		code, out, errOut := runCLI(t, args...)
		if code != exitUsage || !strings.Contains(errOut, `"nosuch"`) {
			t.Errorf("%q: exit %d, want %d naming the command\nstdout: %s\nstderr: %s", args, code, exitUsage, out, errOut)
		}
		if out != "" {
			t.Errorf("%q: printed on stdout:\n%s", args, out)
		}
	}
}

// TestUsageErrorKeepsJSONClean is issue 12 item 25: with -o json a usage
// error (unknown flag, bad value) writes nothing on stdout, never help text.
func TestUsageErrorKeepsJSONClean(t *testing.T) {
	for _, args := range [][]string{
		{"validate", "-o", "json", "--nosuch", "../../recipes/local-demo.yaml"},
		{"validate", "../../recipes/local-demo.yaml", "-o", "json", "--nosuch"},
		{"bake", "../../recipes/local-demo.yaml", "-o", "json", "--memory", "lots"},
		{"gc", "-o", "json", "--ttl", "6h", "--yes=maybe"},
		{"versions", "list", "demo", "-o", "json", "--nosuch"},
		{"prune", "demo", "-o", "json", "--keep", "many"},
	} {
		code, out, errOut := runCLI(t, args...)
		if code != exitUsage || out != "" {
			t.Errorf("%q: exit %d, want %d and nothing on stdout\nstdout: %s\nstderr: %s", args, code, exitUsage, out, errOut)
		}
		if strings.Contains(errOut, "USAGE:") || !strings.Contains(errOut, "imagebake: ") {
			t.Errorf("%q: stderr is help text, not the error:\n%s", args, errOut)
		}
	}
}

// TestFlagMissingValueAtEnd: a value flag that ends the line is a usage
// error naming it; it must not take the positional argument as its value
// (which made `validate r.yaml --output` complain about --output
// "r.yaml", and `bake r.yaml --log-dir` about a missing recipe).
func TestFlagMissingValueAtEnd(t *testing.T) {
	for _, tt := range []struct {
		args []string
		flag string
	}{
		{[]string{"validate", "../../recipes/local-demo.yaml", "--output"}, "--output"},
		{[]string{"validate", "../../recipes/local-demo.yaml", "-o"}, "-o"},
		{[]string{"bake", "../../recipes/local-demo.yaml", "--log-dir"}, "--log-dir"},
		{[]string{"versions", "list", "demo", "--gallery-dir"}, "--gallery-dir"},
		{[]string{"--log-level"}, "--log-level"},
	} {
		code, out, errOut := runCLI(t, tt.args...)
		if code != exitUsage || !strings.Contains(errOut, "flag "+tt.flag+" needs a value") {
			t.Errorf("%q: exit %d, want %d naming %s\nstdout: %s\nstderr: %s", tt.args, code, exitUsage, tt.flag, out, errOut)
		}
	}
	app := (&app{stdout: io.Discard, stderr: io.Discard}).cli()
	if got, err := interspersed(app, []string{"ib", "validate", "a.yaml", "--output"}); err == nil {
		t.Errorf("interspersed took a value for --output: %q", got)
	}
}

// TestGCAzureListFailureReported is issue 12 item 12: when gc cannot list,
// the JSON says so ("error") and the text does not claim nothing was found.
func TestGCAzureListFailureReported(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	e.Model.MustAddRule(azmodel.Rule{Op: "ResourceGroups_List", Times: -1, Status: http.StatusForbidden, Code: "AuthorizationFailed", Message: "no list for you"})
	env := azureEnv(t, e)
	args := []string{"gc", "--target=azure", "--resource-manager-endpoint=" + e.Server.URL(), "--poll-interval=10ms"}

	res := runBinary(t, env, append(args, "--output=json")...)
	if res.code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s%s", res.code, exitFailed, res.stdout, res.stderr)
	}
	var out struct {
		Applied bool
		Items   []any
		Error   string
	}
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, res.stdout)
	}
	if !strings.Contains(out.Error, "AuthorizationFailed") {
		t.Errorf("JSON does not report the failed list: %s", res.stdout)
	}

	res = runBinary(t, env, args...)
	if res.code != exitFailed || strings.Contains(res.stdout, "nothing of imagebake's found") || !strings.Contains(res.stderr, "AuthorizationFailed") {
		t.Errorf("text: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
}

// TestVersionsListMissingGallery is issue 12 item 13: a gallery that does
// not exist is an error (exit 1), as in prune and rollback, not "[]".
func TestVersionsListMissingGallery(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	env := azureEnv(t, e)
	az := []string{"--target", "azure", "--resource-manager-endpoint", e.Server.URL(), "--poll-interval", "10ms", "--gallery-resource-group", "image-gallery-rg"}
	for _, out := range []string{"text", "json"} {
		res := runBinary(t, env, append([]string{"versions", "list", "github-runner-focal", "--gallery", "typo", "-o", out}, az...)...)
		if res.code != exitFailed || !strings.Contains(res.stderr, "not found") || strings.TrimSpace(res.stdout) == "[]" {
			t.Errorf("-o %s: exit %d, want %d with not found\nstdout: %s\nstderr: %s", out, res.code, exitFailed, res.stdout, res.stderr)
		}
	}
	// The real gallery still lists.
	res := runBinary(t, env, append([]string{"versions", "list", "github-runner-focal", "--gallery", "runner_images", "-o", "json"}, az...)...)
	if res.code != 0 || strings.TrimSpace(res.stdout) != "[]" {
		t.Errorf("existing empty image: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

// TestVersionsListMissingLocalImage is item 13's local sibling: a misspelt
// image or --gallery-dir fails with not found instead of listing [].
func TestVersionsListMissingLocalImage(t *testing.T) {
	dir := t.TempDir()
	for _, out := range []string{"text", "json"} {
		res := runBinary(t, nil, "versions", "list", "local-dmo", "--gallery-dir", dir, "-o", out)
		if res.code != exitFailed || !strings.Contains(res.stderr, "not found") || strings.TrimSpace(res.stdout) == "[]" {
			t.Errorf("-o %s: exit %d, want %d with not found\nstdout: %s\nstderr: %s", out, res.code, exitFailed, res.stdout, res.stderr)
		}
	}
}

// TestFailedReleaseCommandAppliedNothing: a rollback or promote that fails
// before any change says applied false in JSON and prints no "0 changes:"
// heading in text (found probing the CLI as a new user).
func TestFailedReleaseCommandAppliedNothing(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"rollback", "demo", "--to", "1.0.0"}, {"promote", "demo@1.0.0", "--live"}} {
		args = append(args, "--gallery-dir", dir)
		res := runBinary(t, nil, append(args, "-o", "json")...)
		if res.code != exitFailed || !strings.Contains(res.stdout, `"applied": false`) || !strings.Contains(res.stdout, `"error"`) {
			t.Errorf("%v -o json: exit %d\n%s%s", args, res.code, res.stdout, res.stderr)
		}
		if res := runBinary(t, nil, args...); res.code != exitFailed || strings.Contains(res.stdout, "changes:") {
			t.Errorf("%v: exit %d, stdout %q", args, res.code, res.stdout)
		}
	}
}

// TestAzureNameFlagsValidated is issue 12 item 14: gallery, resource group
// and subscription flags are checked with the recipe's name rules before
// any request, so ".." cannot path-join into another resource type.
func TestAzureNameFlagsValidated(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	env := azureEnv(t, e)
	conn := []string{"--target", "azure", "--resource-manager-endpoint", e.Server.URL(), "--poll-interval", "10ms"}
	gal := []string{"--gallery-resource-group", "image-gallery-rg", "--gallery", "runner_images"}
	tests := []struct {
		name string
		args []string
		flag string
	}{
		{"gallery", []string{"versions", "list", "github-runner-focal", "--gallery-resource-group", "image-gallery-rg", "--gallery", ".."}, "--gallery:"},
		{"gallery resource group", []string{"rollback", "github-runner-focal", "--to", "1.0.0", "--gallery-resource-group", "..", "--gallery", "runner_images"}, "--gallery-resource-group:"},
		{"gallery with a slash", []string{"prune", "github-runner-focal", "--keep", "1", "--gallery-resource-group", "image-gallery-rg", "--gallery", "runner_images/images"}, "--gallery:"},
		{"copy-to gallery", append([]string{"promote", "github-runner-focal@1.0.0", "--live", "--copy-to", "x", "--copy-to-gallery", ".."}, gal...), "--copy-to-gallery:"},
		{"copy-to resource group", append([]string{"promote", "github-runner-focal@1.0.0", "--live", "--copy-to", "x", "--copy-to-gallery", "other", "--copy-to-resource-group", ".."}, gal...), "--copy-to-resource-group:"},
		{"subscription", append([]string{"versions", "list", "github-runner-focal", "--subscription", ".."}, gal...), "--subscription:"},
		{"location", []string{"bake", "recipes/github-runner-focal.yaml", "--location", "..", "--if-changed", "--cache-dir", t.TempDir()}, "--location:"},
		{"build resource group", []string{"bake", "recipes/github-runner-focal.yaml", "--build-resource-group", "..", "--cache-dir", t.TempDir()}, "--build-resource-group:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.Model.Snapshot().Requests
			res := runBinary(t, env, append(tt.args, conn...)...)
			if res.code != exitUsage || !strings.Contains(res.stderr, tt.flag) {
				t.Errorf("exit %d, want %d naming %s\nstdout: %s\nstderr: %s", res.code, exitUsage, tt.flag, res.stdout, res.stderr)
			}
			if n := e.Model.Snapshot().Requests - before; n != 0 {
				t.Errorf("%d requests reached Resource Manager", n)
			}
		})
	}
}

// TestBumpRunnerAPIVersionOutOfRange is issue 12 item 26: a version the API
// returns that no number holds fails (exit 1) without blaming a --to that
// was never given, and an API's escape codes never reach the terminal raw.
func TestBumpRunnerAPIVersionOutOfRange(t *testing.T) {
	const rel = "/repos/actions/runner/releases/"
	const huge = "2.99999999999999999999.0"
	gh := &fakeGitHub{docs: map[string]any{rel + "latest": ghRelease(huge, newSHA, true)}}
	srv := httptest.NewServer(gh)
	defer srv.Close()
	path := copyRecipe(t)
	code, out, errOut := runBump(t, "bump", "runner", path, "--latest", "--api-url", srv.URL)
	if code != exitFailed || strings.Contains(errOut, "--to") || !strings.Contains(errOut, huge) {
		t.Errorf("exit %d, want %d naming %s and not --to\nstdout: %s\nstderr: %s", code, exitFailed, huge, out, errOut)
	}
	// By hand, --to is what was given, and it is bad usage.
	code, _, errOut = runBump(t, "bump", "runner", path, "--to", huge, "--sha256", newSHA)
	if code != exitUsage || !strings.Contains(errOut, "--to") {
		t.Errorf("--to %s: exit %d, stderr %q", huge, code, errOut)
	}
}

func TestBumpRunnerAPIEscapeCodes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"\u001b[2J\u001b[31mrate limited\rgone\u009b"}`))
	}))
	defer srv.Close()
	code, out, errOut := runBump(t, "bump", "runner", copyRecipe(t), "--latest", "--api-url", srv.URL)
	if code != exitFailed || !strings.Contains(errOut, "rate limited") {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %q", code, out, errOut)
	}
	if strings.ContainsAny(out+errOut, "\x1b\r\u009b") {
		t.Errorf("control characters reached the terminal: %q", errOut)
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain\nlines\tand tabs", "plain\nlines\tand tabs"},
		{"\x1b[31mred", `\x1b[31mred`},
		{"over\rwrite", `over\rwrite`},
		{"c1 \u009b csi", `c1 \u009b csi`},
		{"naïve ✓", "naïve ✓"},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestGitHubOutputRefusesLineBreaks(t *testing.T) {
	t.Setenv("GITHUB_OUTPUT", t.TempDir()+"/out")
	if err := writeGitHubOutput([2]string{"version", "1.0.0\nversion=6.6.6"}); err == nil {
		t.Error("a value with a line break was written")
	}
	if err := writeGitHubOutput([2]string{"version", "1.0.0"}, [2]string{"image", "demo"}); err != nil {
		t.Fatal(err)
	}
}
