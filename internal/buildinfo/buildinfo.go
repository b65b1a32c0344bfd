// Package buildinfo reports imagebake's own version and commit, which are
// recorded on every image version it publishes.
package buildinfo

import "runtime/debug"

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
