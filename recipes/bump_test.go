package recipes

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	bumpVersion = "2.340.1"
	bumpSHA     = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
)

func TestBumpRunnerKeepsEverythingElse(t *testing.T) {
	tests := []struct {
		file         string
		oldVer       string
		oldSHA       string
		changedLines int
		wantSnippets []string // the bumped values in their original style
	}{
		{"github-runner-focal.yaml", "2.337.0", "70920811a4f8ad4328818682bca5c6469c1c942fab52448868071d0063816613", 2,
			[]string{"  version: " + bumpVersion + "\n", "  sha256: " + bumpSHA + "\n"}},
		{"testdata/bump/flow.yaml", "2.330.0", strings.Repeat("1", 64), 1,
			[]string{"runner: {version: " + bumpVersion + ", sha256: " + bumpSHA + ", user: gh,", "}}   # trailing comment\n"}},
		{"testdata/bump/quoted.yaml", "2.335.1", strings.Repeat("A", 64), 2,
			[]string{"  sha256: '" + bumpSHA + "'   # single\n", "  version: \"" + bumpVersion + "\"     # double", `VERSION_NOTE: "version: 2.335.1"`}},
		{"testdata/bump/crlf.yaml", "2.331.0", strings.Repeat("2", 64), 2,
			[]string{"  version: " + bumpVersion + " # crlf\r\n", "  sha256: " + bumpSHA + "\r\n"}},
		{"testdata/bump/unicode.yaml", "2.332.0", strings.Repeat("3", 64), 1,
			[]string{`version: "` + bumpVersion + `", sha256: ` + bumpSHA + "}\n"}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			orig, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			pin, err := ReadRunner(orig)
			if err != nil {
				t.Fatalf("ReadRunner: %v", err)
			}
			if pin.Version != tt.oldVer || pin.SHA256 != tt.oldSHA {
				t.Fatalf("ReadRunner = %+v, want %s/%s", pin, tt.oldVer, tt.oldSHA)
			}
			got, err := BumpRunner(orig, bumpVersion, bumpSHA)
			if err != nil {
				t.Fatalf("BumpRunner: %v", err)
			}
			// Line by line: only the value lines change, and only by
			// swapping the old values for the new ones.
			ol := strings.SplitAfter(string(orig), "\n")
			nl := strings.SplitAfter(string(got), "\n")
			if len(ol) != len(nl) {
				t.Fatalf("line count %d → %d", len(ol), len(nl))
			}
			changed := 0
			for i := range ol {
				if ol[i] == nl[i] {
					continue
				}
				changed++
				want := strings.Replace(ol[i], tt.oldVer, bumpVersion, 1)
				want = strings.Replace(want, tt.oldSHA, bumpSHA, 1)
				if nl[i] != want {
					t.Errorf("line %d:\n got %q\nwant %q", i+1, nl[i], want)
				}
			}
			if changed != tt.changedLines {
				t.Errorf("%d lines changed, want %d\n%s", changed, tt.changedLines, got)
			}
			for _, s := range tt.wantSnippets {
				if !strings.Contains(string(got), s) {
					t.Errorf("result lacks %q:\n%s", s, got)
				}
			}
			r, err := Parse(tt.file, got)
			if err != nil {
				t.Fatalf("bumped recipe does not load: %v", err)
			}
			if r.Runner.Version != bumpVersion || r.Runner.SHA256 != bumpSHA {
				t.Errorf("loaded runner %s/%s", r.Runner.Version, r.Runner.SHA256)
			}
			// Bumping back restores the file byte for byte.
			back, err := BumpRunner(got, tt.oldVer, tt.oldSHA)
			if err != nil {
				t.Fatalf("bump back: %v", err)
			}
			if !bytes.Equal(back, orig) {
				t.Errorf("bump there and back changed the file:\n%s", back)
			}
		})
	}
}

func TestBumpRunnerRefuses(t *testing.T) {
	tests := []struct {
		name, file, version, sha, wantErr string
	}{
		{"no runner section", "testdata/bump/norunner.yaml", bumpVersion, bumpSHA, "no runner section"},
		{"block scalar", "testdata/bump/block.yaml", bumpVersion, bumpSHA, "block scalar"},
		{"tagged", "testdata/bump/tagged.yaml", bumpVersion, bumpSHA, "carries a tag"},
		{"no sha256 key", "testdata/bump/nosha.yaml", bumpVersion, bumpSHA, "runner has no sha256"},
		{"bad version", "github-runner-focal.yaml", "v2.340.1", bumpSHA, "not MAJOR.MINOR.PATCH"},
		{"bad sha", "github-runner-focal.yaml", bumpVersion, "abc", "not a SHA-256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			out, err := BumpRunner(data, tt.version, tt.sha)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("BumpRunner err = %v, want %q (out %q)", err, tt.wantErr, out)
			}
		})
	}
}

func TestBumpRunnerInline(t *testing.T) {
	tests := []struct{ name, in, want, wantErr string }{
		{"runner not a mapping", "runner: 2.330.0\n", "", "not a mapping"},
		{"null version", "runner:\n  version:\n  sha256: " + strings.Repeat("1", 64) + "\n", "", "runner.version: empty"},
		{"alias", "x: &v 2.330.0\nrunner:\n  version: *v\n  sha256: " + strings.Repeat("1", 64) + "\n", "", "runner.version"},
		{"not yaml", "runner: [\n", "", "invalid YAML"},
		{"document marker and comments",
			"---\n# c\nrunner:   # c\n  version:    2.330.0    # c\n\n  sha256: \"" + strings.Repeat("1", 64) + "\" # c\n...\n",
			"---\n# c\nrunner:   # c\n  version:    " + bumpVersion + "    # c\n\n  sha256: \"" + bumpSHA + "\" # c\n...\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BumpRunner([]byte(tt.in), bumpVersion, bumpSHA)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestReplaceFileBump(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.yaml")
	if err := os.WriteFile(real, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink("real.yaml", link); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceFile(link, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(real); string(b) != "new\n" {
		t.Errorf("target holds %q", b)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("link replaced by a file: %v %v", fi, err)
	}
	if fi, _ := os.Stat(real); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("temporary files left behind: %v", ents)
	}
	if err := ReplaceFile(filepath.Join(dir, "missing.yaml"), nil); err == nil {
		t.Error("ReplaceFile on a missing file succeeded")
	}
}
