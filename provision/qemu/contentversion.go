package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/imagebake/imagebake/internal/ctxio"
)

// digestCache is where ContentVersion remembers file digests, below the
// cache directory.
const digestCache = "digests"

// ContentVersion is the base version of a base given by path (base.local.path,
// with its optional kernel and initrd): "sha256-" and 16 hex digits of a
// digest over the files' SHA-256 sums. Replacing a file's content changes
// it, whatever the file or its folder is called; `bake --if-changed` relies
// on that. Empty names are skipped.
//
// Each file's SHA-256 is cached in cacheDir (none when cacheDir is empty),
// keyed by its path and checked against its size, modification and change
// times, device and inode, so a multi-gigabyte disk is hashed once, not on
// every nightly run. A rewritten file changes its change time even when its
// modification time is set back.
func ContentVersion(ctx context.Context, cacheDir string, files ...string) (string, error) {
	h := sha256.New()
	n := 0
	for _, f := range files {
		if f == "" {
			continue
		}
		sum, err := fileDigest(ctx, cacheDir, f)
		if err != nil {
			return "", fmt.Errorf("base file %s: %w", f, err)
		}
		fmt.Fprintf(h, "%s\n", sum)
		n++
	}
	if n == 0 {
		return "", errors.New("base: no file to take a version from")
	}
	return "sha256-" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// digestEntry is one cached digest and the file identity it belongs to.
type digestEntry struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtimeNs"`
	CtimeNs int64  `json:"ctimeNs"`
	Dev     uint64 `json:"dev"`
	Inode   uint64 `json:"inode"`
	SHA256  string `json:"sha256"`
}

func identity(path string, fi os.FileInfo) (digestEntry, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return digestEntry{}, false
	}
	return digestEntry{
		Path: path, Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano(),
		CtimeNs: st.Ctim.Sec*1e9 + st.Ctim.Nsec, Dev: uint64(st.Dev), Inode: st.Ino,
	}, true
}

func fileDigest(ctx context.Context, cacheDir, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	id, ok := identity(abs, fi)
	var entryPath string
	if cacheDir != "" && ok {
		key := sha256.Sum256([]byte(abs))
		entryPath = filepath.Join(cacheDir, digestCache, hex.EncodeToString(key[:16])+".json")
		if b, err := os.ReadFile(entryPath); err == nil {
			var e digestEntry
			if json.Unmarshal(b, &e) == nil && sha256Re.MatchString(e.SHA256) {
				want := id
				want.SHA256 = e.SHA256
				if e == want {
					return e.SHA256, nil
				}
			}
		}
	}
	_, sum, err := hashFile(ctx, abs)
	if err != nil {
		return "", err
	}
	// Only a file that did not change while it was read is cached: a
	// digest of a half-written disk must not outlive the write.
	if entryPath != "" {
		if after, err := os.Stat(abs); err == nil {
			if id2, ok := identity(abs, after); ok && id2 == id {
				id.SHA256 = sum
				writeDigest(entryPath, id)
			}
		}
	}
	return sum, nil
}

// writeDigest stores an entry atomically; a failure only costs a rehash.
func writeDigest(path string, e digestEntry) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".digest-*")
	if err != nil {
		return
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
}

// hashFile returns a file's size and SHA-256, stopping when ctx ends.
func hashFile(ctx context.Context, path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxio.Reader(ctx, f))
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
