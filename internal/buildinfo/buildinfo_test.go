package buildinfo

import (
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSourceCommit(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	branch := t.TempDir()
	write(t, filepath.Join(branch, ".git", "HEAD"), "ref: refs/heads/main\n")
	write(t, filepath.Join(branch, ".git", "refs", "heads", "main"), sha+"\n")
	detached := t.TempDir()
	write(t, filepath.Join(detached, ".git", "HEAD"), sha+"\n")
	broken := t.TempDir()
	write(t, filepath.Join(broken, ".git", "HEAD"), "ref: refs/heads/gone\n")
	tests := []struct {
		name, file, want string
	}{
		{"branch, recipe in a subfolder", filepath.Join(branch, "recipes", "r.yaml"), sha},
		{"branch, recipe at the top", filepath.Join(branch, "r.yaml"), sha},
		{"detached head", filepath.Join(detached, "a", "b", "r.yaml"), sha},
		{"unreadable ref", filepath.Join(broken, "r.yaml"), ""},
		{"no work tree", filepath.Join(t.TempDir(), "r.yaml"), ""},
	}
	for _, tt := range tests {
		if got := SourceCommit(tt.file); got != tt.want {
			t.Errorf("%s: SourceCommit(%s) = %q, want %q", tt.name, tt.file, got, tt.want)
		}
	}
}

func TestGet(t *testing.T) {
	if info := Get(); info.Version != Version || info.Go == "" {
		t.Errorf("Get() = %+v", info)
	}
}
