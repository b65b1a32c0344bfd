// Package fakerunner builds a stand-in for the GitHub Actions runner
// tarball (actions-runner-linux-x64-<V>.tar.gz) that honours the parts of
// the real runner's contract imagebake's rendered scripts use: config.sh
// and run.sh with their flags and ACTIONS_RUNNER_INPUT_* variables, JIT
// configs, the exit codes and run.sh's mapping of them, bin/installdependencies.sh
// and env.sh. Its listener (python3, standard library only) talks to
// internal/ghmodel instead of GitHub, and while it runs its one job it
// looks for the secrets it was given in every process's command line and
// the journal.
package fakerunner

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

//go:embed layout
var layout embed.FS

// The listener's exit codes (actions/runner Constants.Runner.ReturnCode),
// and the stand-in's own code for a leaked secret.
const (
	ExitSuccess      = 0
	ExitTerminated   = 1 // refused, bad credentials; run.sh turns it into 0
	ExitRetryable    = 2
	ExitDeprecated   = 7 // only with ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1
	ExitSecretLeaked = 66
)

// Options configure a stand-in tarball.
type Options struct {
	Version string // the runner version it claims, such as 2.336.0
	// RegisterURL, when set, is where config.sh registers whatever its
	// --url (ghmodel's RunnerURL() + "register"). By default config.sh
	// derives it from --url as the real runner derives its API:
	// https://github.com/OWNER[/REPO] registers at
	// https://api.github.com/_standin/runner/register, a GitHub Enterprise
	// Server URL https://HOST/OWNER/REPO at
	// https://HOST/api/v3/_standin/runner/register. A JIT runner needs
	// neither: its .runner names the service.
	RegisterURL string
	// CACertPEM, when set, is the only CA the listener trusts for https
	// (a TLS ghmodel's CertPEM); otherwise the system's.
	CACertPEM []byte
}

// Tarball is a built stand-in runner archive.
type Tarball struct {
	Version string
	Name    string // actions-runner-linux-x64-<Version>.tar.gz
	Data    []byte
	SHA256  string // lower-case hex, as a recipe pins it
}

var versionRe = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)

// epoch dates every entry, so equal options give equal bytes (and hash).
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Build makes the tarball.
func Build(o Options) (Tarball, error) {
	if !versionRe.MatchString(o.Version) {
		return Tarball{}, fmt.Errorf("stand-in runner: version %q is not N.N.N", o.Version)
	}
	if o.RegisterURL != "" {
		u, err := url.Parse(o.RegisterURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Tarball{}, fmt.Errorf("stand-in runner %s: register URL %q is not http(s)", o.Version, o.RegisterURL)
		}
	}
	conf := map[string]string{"version": o.Version}
	if o.RegisterURL != "" {
		conf["registerUrl"] = o.RegisterURL
	}
	if len(o.CACertPEM) > 0 {
		conf["caFile"] = "bin/standin-ca.pem"
	}
	confJSON, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return Tarball{}, err
	}
	type entry struct {
		name string
		mode int64
		data []byte
	}
	var files []entry
	err = fs.WalkDir(layout, "layout", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := layout.ReadFile(p)
		if err != nil {
			return err
		}
		mode := int64(0o644)
		if bytes.HasPrefix(b, []byte("#!")) {
			mode = 0o755
		}
		// layout/binfiles holds the archive's bin/: the repository's
		// .gitignore ignores every directory named bin.
		name := strings.TrimPrefix(p, "layout/")
		if rest, ok := strings.CutPrefix(name, "binfiles/"); ok {
			name = "bin/" + rest
		}
		files = append(files, entry{name, mode, b})
		return nil
	})
	if err != nil {
		return Tarball{}, fmt.Errorf("stand-in runner %s: %w", o.Version, err)
	}
	files = append(files, entry{"bin/standin.json", 0o644, append(confJSON, '\n')})
	if len(o.CACertPEM) > 0 {
		files = append(files, entry{"bin/standin-ca.pem", 0o644, o.CACertPEM})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })

	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	dirs := map[string]bool{}
	addDir := func(d string) error {
		if dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	if err := addDir("./"); err != nil {
		return Tarball{}, err
	}
	for _, f := range files {
		if dir := path.Dir(f.name); dir != "." {
			if err := addDir("./" + dir + "/"); err != nil {
				return Tarball{}, err
			}
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: "./" + f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return Tarball{}, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return Tarball{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Tarball{}, err
	}
	if err := gz.Close(); err != nil {
		return Tarball{}, err
	}
	sum := sha256.Sum256(buf.Bytes())
	return Tarball{Version: o.Version, Name: TarballName(o.Version), Data: buf.Bytes(), SHA256: hex.EncodeToString(sum[:])}, nil
}

// TarballName is the real runner's archive name for version v.
func TarballName(v string) string { return "actions-runner-linux-x64-" + v + ".tar.gz" }

// WriteFile writes the tarball into dir and returns its path.
func (t Tarball) WriteFile(dir string) (string, error) {
	p := filepath.Join(dir, t.Name)
	if err := os.WriteFile(p, t.Data, 0o644); err != nil {
		return "", fmt.Errorf("stand-in runner %s: %w", t.Version, err)
	}
	return p, nil
}

// Mirror serves tarballs for a recipe's runner.url: GET or HEAD of
// /<name> or GitHub's layout /actions/runner/releases/download/v<V>/<name>.
func Mirror(tarballs ...Tarball) http.Handler {
	byPath := map[string]Tarball{}
	for _, t := range tarballs {
		byPath["/"+t.Name] = t
		byPath["/actions/runner/releases/download/v"+t.Version+"/"+t.Name] = t
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		t, ok := byPath[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		http.ServeContent(w, r, t.Name, epoch, bytes.NewReader(t.Data))
	})
}
