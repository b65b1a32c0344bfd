// Package runnerrelease asks GitHub's Releases API which actions/runner
// release is the newest (or what a given one is) and the SHA-256 of its
// linux-x64 tarball, which a recipe pins and the build VM verifies.
package runnerrelease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// DefaultBaseURL is GitHub's API; GitHub Enterprise and tests pass another.
const DefaultBaseURL = "https://api.github.com"

// maxBody bounds a release document; real ones are tens of kilobytes.
const maxBody = 4 << 20

// Release is one runner release as a recipe pins it.
type Release struct {
	Version string // 2.337.0, without the tag's "v"
	SHA256  string // of actions-runner-linux-x64-<Version>.tar.gz, lower-case hex
	// SHA256Source says where the hash came from: "assets digest" or
	// "release notes".
	SHA256Source string
	URL          string // the release's page, for humans
}

// TarballName is the linux-x64 runner archive of version v.
func TarballName(v string) string { return "actions-runner-linux-x64-" + v + ".tar.gz" }

var (
	versionRe = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	hex64Re   = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	// The notes list one "<hash>" per platform between the markers; allow
	// the surrounding whitespace and code fences GitHub's template uses.
	shaBlockRe = regexp.MustCompile(`(?s)<!--\s*BEGIN SHA linux-x64\s*-->(.*?)<!--\s*END SHA linux-x64\s*-->`)
	hexRunRe   = regexp.MustCompile(`\b[0-9a-fA-F]{64}\b`)
)

// Latest returns the newest release: GET {baseURL}/repos/actions/runner/releases/latest.
// An empty baseURL means DefaultBaseURL; a non-empty token is sent as a
// bearer token (it lifts the anonymous rate limit of 60 requests an hour).
func Latest(ctx context.Context, baseURL, token string) (Release, error) {
	return fetch(ctx, nil, baseURL, token, "latest", "latest runner release")
}

// Get returns the release tagged v<version> (a leading "v" is accepted).
func Get(ctx context.Context, baseURL, token, version string) (Release, error) {
	v := strings.TrimPrefix(version, "v")
	if err := CheckVersion(v); err != nil {
		return Release{}, fmt.Errorf("runner release %q: %w", version, err)
	}
	return fetch(ctx, nil, baseURL, token, "tags/v"+url.PathEscape(v), "runner release v"+v)
}

// CheckVersion accepts MAJOR.MINOR.PATCH as releases spell it, each part
// small enough for a version comparison (int64, as go-version reads it).
func CheckVersion(v string) error {
	if !versionRe.MatchString(v) {
		return errors.New("not a version such as 2.337.0")
	}
	for _, part := range strings.Split(v, ".") {
		if _, err := strconv.ParseInt(part, 10, 64); err != nil {
			return fmt.Errorf("version part %s is out of range", part)
		}
	}
	return nil
}

type apiRelease struct {
	TagName string `json:"tag_name"`
	HTMLURL string `json:"html_url"`
	Body    string `json:"body"`
	Draft   bool   `json:"draft"`
	Assets  []struct {
		Name   string `json:"name"`
		Digest string `json:"digest"`
	} `json:"assets"`
}

// fetch asks the API; transport is nil (http.DefaultTransport) except in
// tests, which serve TLS on 127.0.0.1.
func fetch(ctx context.Context, transport http.RoundTripper, baseURL, token, which, noun string) (Release, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/") + "/repos/actions/runner/releases/" + which)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return Release{}, fmt.Errorf("%s: API URL %q is not an http(s) URL", noun, baseURL)
	}
	if token != "" && u.Scheme == "http" && !loopback(u.Hostname()) {
		return Release{}, fmt.Errorf("%s: API URL %s is plain http: GITHUB_TOKEN is only sent over https (or to this machine)", noun, u.Redacted())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Release{}, fmt.Errorf("%s: %w", noun, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "imagebake")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// A client per call: no shared mutable state, and the timeout bounds a
	// stalled server even when ctx has no deadline.
	client := &http.Client{Timeout: 60 * time.Second, Transport: transport, CheckRedirect: sameOrigin}
	resp, err := client.Do(req)
	if err != nil {
		return Release{}, fmt.Errorf("%s: %w", noun, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return Release{}, fmt.Errorf("%s: reading %s: %w", noun, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Release{}, fmt.Errorf("%s: %s", noun, statusError(resp, body, token != ""))
	}
	if len(body) > maxBody {
		return Release{}, fmt.Errorf("%s: the API answered more than %d bytes", noun, maxBody)
	}
	var rel apiRelease
	if err := json.Unmarshal(body, &rel); err != nil {
		return Release{}, fmt.Errorf("%s: the API's answer is not a release: %w", noun, err)
	}
	return parse(rel, noun)
}

// sameOrigin follows a redirect only to the scheme and host the request
// began with. Go's client drops Authorization on a redirect to another
// domain but keeps it from https to http on the same host, and either way
// the answer would come from somewhere the caller never named.
func sameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	from := via[0].URL
	switch {
	case from.Scheme == "https" && req.URL.Scheme != "https":
		return fmt.Errorf("refusing a redirect from https to %s (%s): it would send GITHUB_TOKEN in clear text", req.URL.Scheme, req.URL.Redacted())
	case !strings.EqualFold(req.URL.Host, from.Host):
		return fmt.Errorf("refusing a redirect from %s to another host, %s", from.Host, req.URL.Host)
	}
	return nil
}

// loopback reports whether host is this machine.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// maxMessage bounds how much of the API's own text goes into an error.
const maxMessage = 300

// clean makes text from the API safe for a terminal and a log line:
// control characters (ESC sequences, BEL, CR) and bidirectional overrides
// are shown escaped, invalid UTF-8 as U+FFFD, and the length is bounded.
func clean(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if n++; n > maxMessage {
			b.WriteString("…")
			break
		}
		switch {
		case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r), r == 0x2028, r == 0x2029:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func statusError(resp *http.Response, body []byte, authed bool) error {
	var apiErr struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &apiErr)
	msg := clean(resp.Status)
	if apiErr.Message != "" {
		msg += ": " + clean(apiErr.Message)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("not found (%s); check the version against https://github.com/actions/runner/releases", msg)
	case (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests) && !authed:
		return fmt.Errorf("%s; anonymous requests are rate-limited: set GITHUB_TOKEN", msg)
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s; GITHUB_TOKEN was refused", msg)
	}
	return errors.New(msg)
}

func parse(rel apiRelease, noun string) (Release, error) {
	v := strings.TrimPrefix(rel.TagName, "v")
	if !versionRe.MatchString(v) {
		return Release{}, fmt.Errorf("%s: tag_name %q is not v<MAJOR.MINOR.PATCH>", noun, rel.TagName)
	}
	if err := CheckVersion(v); err != nil {
		return Release{}, fmt.Errorf("%s: the API's tag_name %q: %w", noun, rel.TagName, err)
	}
	noun = "runner release " + rel.TagName
	if rel.Draft {
		return Release{}, fmt.Errorf("%s: is a draft", noun)
	}
	tarball := TarballName(v)
	out := Release{Version: v, URL: pageURL(rel.HTMLURL)}
	var fromAsset, fromNotes string
	for _, a := range rel.Assets {
		if a.Name != tarball || a.Digest == "" {
			continue
		}
		h, ok := strings.CutPrefix(a.Digest, "sha256:")
		if !ok || !hex64Re.MatchString(h) {
			return Release{}, fmt.Errorf("%s: asset %s has digest %q, not sha256:<64 hex digits>", noun, tarball, a.Digest)
		}
		fromAsset = strings.ToLower(h)
	}
	if m := shaBlockRe.FindStringSubmatch(rel.Body); m != nil {
		hashes := hexRunRe.FindAllString(m[1], -1)
		if len(hashes) != 1 {
			return Release{}, fmt.Errorf("%s: the notes' linux-x64 SHA block holds %d SHA-256 values, want exactly one", noun, len(hashes))
		}
		fromNotes = strings.ToLower(hashes[0])
	}
	switch {
	case fromAsset != "" && fromNotes != "" && fromAsset != fromNotes:
		// Two sources disagreeing about a tarball we are about to trust is
		// worth stopping for.
		return Release{}, fmt.Errorf("%s: %s has digest sha256:%s but the notes' linux-x64 block says %s", noun, tarball, fromAsset, fromNotes)
	case fromAsset != "":
		out.SHA256, out.SHA256Source = fromAsset, "assets digest"
	case fromNotes != "":
		out.SHA256, out.SHA256Source = fromNotes, "release notes"
	default:
		return Release{}, fmt.Errorf("%s: no SHA-256 for %s: no assets[].digest for it and no <!-- BEGIN SHA linux-x64 --> block in the notes", noun, tarball)
	}
	return out, nil
}

// pageURL keeps the release page's address only if it is an http(s) URL:
// it is printed for humans, so it must not carry terminal escapes.
func pageURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || clean(s) != s {
		return ""
	}
	return s
}
