package qemu

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// Ubuntu Focal cloud image defaults for PullUbuntuFocal.
const (
	DefaultFocalURL = "https://cloud-images.ubuntu.com/focal/current/"
	FocalImage      = "focal-server-cloudimg-amd64.img"
)

// FetchOptions configures Fetch.
type FetchOptions struct {
	URL      string
	SHA256   string // required: the download is verified against it
	CacheDir string
	// Name is the file name in the cache; the URL's last path element
	// when empty.
	Name string
	// Progress receives a progress bar; nil for none. On a terminal one
	// line is redrawn with \r, otherwise a line is written periodically.
	Progress io.Writer
	Client   *http.Client // http.DefaultClient when nil
}

var sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Fetch downloads opts.URL into the cache once and returns its path. A
// cached file is reused after its sha256 is checked again; a download lands
// under a temporary name and is renamed into place only once verified, so
// the cache never holds a partial or wrong file.
func Fetch(ctx context.Context, opts FetchOptions) (string, error) {
	want := strings.ToLower(strings.TrimSpace(opts.SHA256))
	if !sha256Re.MatchString(want) {
		return "", fmt.Errorf("fetch %s: invalid or missing sha256 %q", opts.URL, opts.SHA256)
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("fetch %q: not an http(s) URL", opts.URL)
	}
	name := opts.Name
	if name == "" {
		name = path.Base(u.Path)
	}
	if name == "" || name == "." || name == ".." || name == "/" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("fetch %s: cannot derive a cache file name (got %q)", opts.URL, name)
	}
	if opts.CacheDir == "" {
		return "", fmt.Errorf("fetch %s: no cache directory", opts.URL)
	}
	dir := filepath.Join(opts.CacheDir, "downloads")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("fetch %s: %w", opts.URL, err)
	}
	// The checksum is part of the name: two versions of "current" never
	// overwrite each other.
	file := want[:16] + "-" + name
	dst := filepath.Join(dir, file)

	if ok, err := verifyFile(dst, want); ok {
		return dst, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("fetch %s: cached %s: %w", opts.URL, dst, err)
	}

	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", opts.URL, err)
	}
	defer unlock()
	if ok, _ := verifyFile(dst, want); ok {
		return dst, nil
	}
	// Holding the lock, any temporary file for this name is from a killed
	// download.
	stale, _ := filepath.Glob(filepath.Join(dir, "."+file+".part-*"))
	for _, s := range stale {
		os.Remove(s)
	}
	os.Remove(dst) // present but wrong

	if err := download(ctx, opts, dir, file, name, want); err != nil {
		return "", fmt.Errorf("fetch %s: %w", opts.URL, err)
	}
	return dst, nil
}

// download writes the URL to dir/file, verified, via a temporary file.
func download(ctx context.Context, opts FetchOptions, dir, file, name, want string) error {
	client := opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.URL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET: %s", resp.Status)
	}

	tmp, err := os.CreateTemp(dir, "."+file+".part-*")
	if err != nil {
		return err
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	var w io.Writer = io.MultiWriter(tmp, h)
	var bar *progressBar
	if opts.Progress != nil {
		bar = newProgressBar(opts.Progress, name, resp.ContentLength)
		w = io.MultiWriter(w, bar)
	}
	n, err := io.Copy(w, resp.Body)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("download: got %d of %d bytes", n, resp.ContentLength)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("sha256 mismatch: got %s, want %s (download discarded)", got, want)
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, file)); err != nil {
		return err
	}
	keep = true
	return nil
}

// verifyFile reports whether path exists with the wanted sha256.
func verifyFile(path, want string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == want, nil
}

// PullUbuntuFocal downloads the Focal cloud image from baseURL
// (DefaultFocalURL when empty) into cacheDir, verified against the
// SHA256SUMS file published beside it, and returns its path. progress may
// be nil. (SHA256SUMS.gpg is not checked: trust rests on HTTPS.)
func PullUbuntuFocal(ctx context.Context, baseURL, cacheDir string, progress io.Writer) (string, error) {
	if baseURL == "" {
		baseURL = DefaultFocalURL
	}
	if !strings.HasSuffix(baseURL, "/") {
		baseURL += "/"
	}
	sum, err := publishedSHA256(ctx, baseURL+"SHA256SUMS", FocalImage)
	if err != nil {
		return "", fmt.Errorf("ubuntu focal image: %w", err)
	}
	p, err := Fetch(ctx, FetchOptions{URL: baseURL + FocalImage, SHA256: sum, CacheDir: cacheDir, Progress: progress})
	if err != nil {
		return "", fmt.Errorf("ubuntu focal image: %w", err)
	}
	return p, nil
}

// publishedSHA256 reads a SHA256SUMS file ("<hex> *<name>" or "<hex>  <name>"
// per line) and returns the sum for name.
func publishedSHA256(ctx context.Context, sumsURL, name string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sumsURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("SHA256SUMS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("SHA256SUMS %s: %s", sumsURL, resp.Status)
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		if strings.TrimPrefix(fields[1], "*") == name {
			sum := strings.ToLower(fields[0])
			if !sha256Re.MatchString(sum) {
				return "", fmt.Errorf("SHA256SUMS %s: malformed sum for %s", sumsURL, name)
			}
			return sum, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("SHA256SUMS %s: %w", sumsURL, err)
	}
	return "", fmt.Errorf("SHA256SUMS %s: no entry for %s", sumsURL, name)
}

// progressBar reports download progress: on a terminal one line redrawn
// with \r several times a second, otherwise one line every few seconds so
// CI logs stay short.
type progressBar struct {
	w        io.Writer
	name     string
	total    int64
	n        int64
	tty      bool
	interval time.Duration
	start    time.Time
	last     time.Time
}

func newProgressBar(w io.Writer, name string, total int64) *progressBar {
	p := &progressBar{w: w, name: name, total: total, tty: isTerminal(w), start: time.Now()}
	p.interval = 5 * time.Second
	if p.tty {
		p.interval = 200 * time.Millisecond
	}
	p.last = p.start
	return p
}

func (p *progressBar) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if now := time.Now(); now.Sub(p.last) >= p.interval {
		p.last = now
		p.print(false)
	}
	return len(b), nil
}

func (p *progressBar) finish() { p.print(true) }

func (p *progressBar) print(final bool) {
	line := p.name + ": " + formatBytes(p.n)
	if p.total > 0 {
		line += fmt.Sprintf(" / %s (%d%%)", formatBytes(p.total), p.n*100/p.total)
	}
	if secs := time.Since(p.start).Seconds(); secs > 0 {
		line += fmt.Sprintf(" %s/s", formatBytes(int64(float64(p.n)/secs)))
	}
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r%-70s\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r%-70s", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// isTerminal reports whether w is a terminal (TCGETS succeeds on it).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}
