// Package buildinfo reports imagebake's own version and commit, which are
// recorded on every image version it publishes.
package buildinfo

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// Version is set at link time by the Makefile (-X); "dev" otherwise.
var Version = "dev"

// Info is the version, the VCS revision and whether the tree was modified.
type Info struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

// Get reads the build's VCS stamp.
func Get() Info {
	info := Info{Version: Version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.Go = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	return info
}

// SourceCommit is the commit checked out in the git work tree that holds
// file (a recipe), read from .git/HEAD without running git; "" when file
// is not in a work tree or the ref cannot be read. It looks at most ten
// folders up.
func SourceCommit(file string) string {
	dir := filepath.Dir(file)
	for i := 0; i < 10; i++ {
		head, err := os.ReadFile(filepath.Join(dir, ".git", "HEAD"))
		if err == nil {
			ref := strings.TrimSpace(string(head))
			if name, ok := strings.CutPrefix(ref, "ref: "); ok {
				b, err := os.ReadFile(filepath.Join(dir, ".git", name))
				if err != nil {
					return ""
				}
				return strings.TrimSpace(string(b))
			}
			return ref
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return ""
}
