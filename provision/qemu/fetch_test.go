package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// imageServer serves files from a map on 127.0.0.1 and counts GETs per path.
type imageServer struct {
	*httptest.Server
	files map[string][]byte
	gets  map[string]*atomic.Int32
}

func newImageServer(t *testing.T, files map[string][]byte) *imageServer {
	t.Helper()
	s := &imageServer{files: files, gets: map[string]*atomic.Int32{}}
	for p := range files {
		s.gets[p] = new(atomic.Int32)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := s.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		s.gets[r.URL.Path].Add(1)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	}))
	t.Cleanup(s.Close)
	return s
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// cacheFiles lists the regular files below dir, relative to it.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestFetch(t *testing.T) {
	img := bytes.Repeat([]byte("imagebake"), 200_000) // ~1.7 MiB
	srv := newImageServer(t, map[string][]byte{"/images/disk.img": img})
	cache := t.TempDir()
	var progress bytes.Buffer
	opts := FetchOptions{URL: srv.URL + "/images/disk.img", SHA256: sum(img), CacheDir: cache, Progress: &progress}

	p, err := Fetch(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, img) {
		t.Fatalf("cached file %s differs from served image", p)
	}
	if !strings.HasPrefix(p, cache) {
		t.Errorf("path %s not under cache %s", p, cache)
	}
	// A buffer is not a terminal: whole lines, no \r, ending at 100%.
	if out := progress.String(); strings.Contains(out, "\r") || !strings.Contains(out, "disk.img: 1.7 MiB / 1.7 MiB (100%)") {
		t.Errorf("progress output %q", out)
	}

	// Second fetch: served from the cache, verified, no download.
	p2, err := Fetch(context.Background(), opts)
	if err != nil || p2 != p {
		t.Fatalf("second fetch = %q, %v", p2, err)
	}
	if n := srv.gets["/images/disk.img"].Load(); n != 1 {
		t.Errorf("server saw %d downloads, want 1", n)
	}

	// A corrupted cache entry is replaced.
	if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, img) {
		t.Error("corrupted cache entry was not replaced")
	}
	if n := srv.gets["/images/disk.img"].Load(); n != 2 {
		t.Errorf("server saw %d downloads, want 2", n)
	}
	if files := cacheFiles(t, cache); len(files) != 1 {
		t.Errorf("cache holds %v, want just the image", files)
	}
}

func TestFetchErrors(t *testing.T) {
	img := []byte("the real image")
	srv := newImageServer(t, map[string][]byte{"/disk.img": img})
	tests := []struct {
		name    string
		opts    FetchOptions
		wantErr string
	}{
		{"checksum mismatch", FetchOptions{URL: srv.URL + "/disk.img", SHA256: sum([]byte("another image"))}, "sha256 mismatch"},
		{"not found", FetchOptions{URL: srv.URL + "/missing.img", SHA256: sum(img)}, "404"},
		{"no checksum", FetchOptions{URL: srv.URL + "/disk.img"}, "sha256"},
		{"bad checksum", FetchOptions{URL: srv.URL + "/disk.img", SHA256: "abc"}, "sha256"},
		{"not http", FetchOptions{URL: "file:///etc/passwd", SHA256: sum(img)}, "not an http"},
		{"no file name", FetchOptions{URL: srv.URL + "/", SHA256: sum(img)}, "file name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			tc.opts.CacheDir = cache
			_, err := Fetch(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Fetch = %v, want error containing %q", err, tc.wantErr)
			}
			if files := cacheFiles(t, cache); len(files) != 0 {
				t.Errorf("cache not empty after failure: %v", files)
			}
		})
	}
}

func TestPullUbuntuFocal(t *testing.T) {
	img := bytes.Repeat([]byte{0xab}, 64*1024)
	sums := fmt.Sprintf("%s *focal-server-cloudimg-amd64-disk-kvm.img\n%s *%s\n%s *focal-server-cloudimg-arm64.img\n",
		sum([]byte("kvm")), sum(img), FocalImage, sum([]byte("arm")))
	tests := []struct {
		name    string
		files   map[string][]byte
		wantErr string
	}{
		{"verified", map[string][]byte{"/focal/current/SHA256SUMS": []byte(sums), "/focal/current/" + FocalImage: img}, ""},
		{"image differs from SHA256SUMS", map[string][]byte{
			"/focal/current/SHA256SUMS": []byte(sums), "/focal/current/" + FocalImage: []byte("tampered"),
		}, "sha256 mismatch"},
		{"no entry in SHA256SUMS", map[string][]byte{
			"/focal/current/SHA256SUMS": []byte("0000 *other.img\n"), "/focal/current/" + FocalImage: img,
		}, "no entry for " + FocalImage},
		{"no SHA256SUMS", map[string][]byte{"/focal/current/" + FocalImage: img}, "404"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t, tc.files)
			cache := t.TempDir()
			// No trailing slash: PullUbuntuFocal adds it.
			p, err := PullUbuntuFocal(context.Background(), srv.URL+"/focal/current", cache, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("PullUbuntuFocal = %v, want error containing %q", err, tc.wantErr)
				}
				if files := cacheFiles(t, cache); len(files) != 0 {
					t.Errorf("cache not empty after failure: %v", files)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, img) || !strings.HasSuffix(p, FocalImage) {
				t.Errorf("pulled %s does not hold the image", p)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 600 << 20: "600.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestProgressBarTerminal(t *testing.T) {
	var out bytes.Buffer
	p := newProgressBar(&out, "disk.img", 2048)
	p.tty, p.interval = true, 0 // as on a terminal, redrawing on every write
	p.Write(make([]byte, 1024))
	p.Write(make([]byte, 1024))
	p.finish()
	s := out.String()
	if strings.Count(s, "\r") != 3 || strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
		t.Errorf("terminal progress %q: want 3 redraws of one line and a final newline", s)
	}
	if !strings.Contains(s, "disk.img: 1.0 KiB / 2.0 KiB (50%)") || !strings.Contains(s, "2.0 KiB / 2.0 KiB (100%)") {
		t.Errorf("terminal progress %q lacks the byte counts", s)
	}
	if isTerminal(&out) {
		t.Error("a buffer counted as a terminal")
	}
}
