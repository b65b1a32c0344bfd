package runnerrelease

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

type asset struct {
	Name   string `json:"name"`
	Digest string `json:"digest,omitempty"`
}

func release(tag, body string, assets ...asset) map[string]any {
	return map[string]any{"tag_name": tag, "html_url": "https://github.com/actions/runner/releases/tag/" + tag, "body": body, "assets": assets}
}

func notes(v, sha string) string {
	return "## Changes\n...\n## SHA-256 Checksums\n\nThe SHA-256 checksums for the packages included in this build are shown below:\n\n" +
		"- actions-runner-win-x64-" + v + ".zip <!-- BEGIN SHA win-x64 -->" + shaB + "<!-- END SHA win-x64 -->\n" +
		"- actions-runner-linux-x64-" + v + ".tar.gz <!-- BEGIN SHA linux-x64 -->" + sha + "<!-- END SHA linux-x64 -->\n" +
		"- actions-runner-linux-arm64-" + v + ".tar.gz <!-- BEGIN SHA linux-arm64 -->" + shaB + "<!-- END SHA linux-arm64 -->\n"
}

// server plays the Releases API: path → JSON document; anything else 404s.
func server(t *testing.T, docs map[string]any, seenAuth *string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seenAuth != nil {
			*seenAuth = r.Header.Get("Authorization")
		}
		doc, ok := docs[r.URL.Path]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"Not Found"}`))
			return
		}
		if code, ok := doc.(int); ok {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(`{"message":"API rate limit exceeded"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestReleaseLatestAndGet(t *testing.T) {
	const base = "/repos/actions/runner/releases/"
	tests := []struct {
		name    string
		doc     any
		tag     string // "" → Latest
		token   string
		want    Release
		wantErr string
	}{
		{name: "assets digest", doc: release("v2.338.0", "no block", asset{"actions-runner-win-x64-2.338.0.zip", "sha256:" + shaB}, asset{"actions-runner-linux-x64-2.338.0.tar.gz", "sha256:" + strings.ToUpper(shaA)}),
			want: Release{Version: "2.338.0", SHA256: shaA, SHA256Source: "assets digest"}},
		{name: "body block only", doc: release("v2.338.0", notes("2.338.0", shaA), asset{Name: "actions-runner-linux-x64-2.338.0.tar.gz"}),
			want: Release{Version: "2.338.0", SHA256: shaA, SHA256Source: "release notes"}},
		{name: "both agree", doc: release("v2.338.0", notes("2.338.0", shaA), asset{"actions-runner-linux-x64-2.338.0.tar.gz", "sha256:" + shaA}),
			want: Release{Version: "2.338.0", SHA256: shaA, SHA256Source: "assets digest"}},
		{name: "both disagree", doc: release("v2.338.0", notes("2.338.0", shaB), asset{"actions-runner-linux-x64-2.338.0.tar.gz", "sha256:" + shaA}),
			wantErr: "runner release v2.338.0: actions-runner-linux-x64-2.338.0.tar.gz has digest sha256:" + shaA + " but the notes"},
		{name: "no hash anywhere", doc: release("v2.338.0", "just notes", asset{Name: "actions-runner-linux-x64-2.338.0.tar.gz"}),
			wantErr: "runner release v2.338.0: no SHA-256 for actions-runner-linux-x64-2.338.0.tar.gz"},
		{name: "bad digest", doc: release("v2.338.0", "", asset{"actions-runner-linux-x64-2.338.0.tar.gz", "md5:abc"}),
			wantErr: `digest "md5:abc"`},
		{name: "bad tag", doc: release("nightly", ""), wantErr: `latest runner release: tag_name "nightly"`},
		{name: "not json", doc: "just a string", wantErr: "not a release"},
		{name: "rate limited", doc: http.StatusForbidden, wantErr: "set GITHUB_TOKEN"},
		{name: "get by tag", tag: "2.339.1", doc: release("v2.339.1", notes("2.339.1", shaA)),
			want: Release{Version: "2.339.1", SHA256: shaA, SHA256Source: "release notes"}},
		{name: "get with v", tag: "v2.339.1", token: "s3cret", doc: release("v2.339.1", notes("2.339.1", shaA)),
			want: Release{Version: "2.339.1", SHA256: shaA, SHA256Source: "release notes"}},
		{name: "get 404", tag: "2.999.0", wantErr: "runner release v2.999.0: not found (404 Not Found: Not Found)"},
		{name: "get bad version", tag: "2.999", wantErr: `runner release "2.999": not a version`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs := map[string]any{}
			path := base + "latest"
			if tt.tag != "" {
				path = base + "tags/v" + strings.TrimPrefix(tt.tag, "v")
			}
			if tt.doc != nil && tt.tag != "2.999.0" {
				docs[path] = tt.doc
			}
			var auth string
			srv := server(t, docs, &auth)
			var got Release
			var err error
			if tt.tag == "" {
				got, err = Latest(context.Background(), srv.URL, tt.token)
			} else {
				got, err = Get(context.Background(), srv.URL+"/", tt.token, tt.tag)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.URL = ""
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			wantAuth := ""
			if tt.token != "" {
				wantAuth = "Bearer " + tt.token
			}
			if auth != wantAuth {
				t.Errorf("Authorization %q, want %q", auth, wantAuth)
			}
		})
	}
}

func TestReleaseErrorsNeverHoldToken(t *testing.T) {
	srv := server(t, map[string]any{"/repos/actions/runner/releases/latest": http.StatusUnauthorized}, nil)
	_, err := Latest(context.Background(), srv.URL, "ghp_verysecret")
	if err == nil || !strings.Contains(err.Error(), "GITHUB_TOKEN was refused") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "verysecret") {
		t.Errorf("error leaks the token: %v", err)
	}
}

func TestReleaseBadBaseURL(t *testing.T) {
	for _, u := range []string{"ftp://example.com", "not a url", "http://"} {
		if _, err := Latest(context.Background(), u, ""); err == nil || !strings.Contains(err.Error(), "not an http(s) URL") {
			t.Errorf("Latest(%q) err = %v", u, err)
		}
	}
}

// Issue 12 item 6: a redirect is followed only to the scheme and host the
// request began with; GITHUB_TOKEN never reaches another host or plain http.
func TestReleaseRedirects(t *testing.T) {
	const latest = "/repos/actions/runner/releases/latest"
	doc := release("v2.338.0", notes("2.338.0", shaA))
	// elsewhere counts what reaches another host, with or without a token.
	var elsewhereHits int
	var elsewhereAuth string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhereHits++
		elsewhereAuth = r.Header.Get("Authorization")
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(elsewhere.Close)

	tests := []struct {
		name    string
		tls     bool
		target  func(self string) string // where latest redirects to
		wantErr string
	}{
		{name: "same host", target: func(self string) string { return self + "/moved" }},
		{name: "same host over https", tls: true, target: func(self string) string { return self + "/moved" }},
		{name: "another host", target: func(string) string { return elsewhere.URL + latest }, wantErr: "refusing a redirect from 127.0.0.1:"},
		{name: "https to another host over http", tls: true, target: func(string) string { return elsewhere.URL + latest }, wantErr: "refusing a redirect from https to http"},
		{name: "https to http on the same host", tls: true, target: func(self string) string { return "http://" + strings.TrimPrefix(self, "https://") + "/moved" }, wantErr: "refusing a redirect from https to http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			elsewhereHits, elsewhereAuth = 0, ""
			var sawAuth []string
			var self string
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sawAuth = append(sawAuth, r.Header.Get("Authorization"))
				switch r.URL.Path {
				case latest:
					http.Redirect(w, r, tt.target(self), http.StatusFound)
				case "/moved":
					_ = json.NewEncoder(w).Encode(doc)
				default:
					http.NotFound(w, r)
				}
			})
			var srv *httptest.Server
			if tt.tls {
				srv = httptest.NewTLSServer(h)
			} else {
				srv = httptest.NewServer(h)
			}
			t.Cleanup(srv.Close)
			self = srv.URL
			got, err := fetch(context.Background(), srv.Client().Transport, srv.URL, "ghp_secret", "latest", "latest runner release")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if elsewhereHits != 0 || elsewhereAuth != "" {
					t.Errorf("the other host got %d requests (Authorization %q)", elsewhereHits, elsewhereAuth)
				}
				if len(sawAuth) != 1 {
					t.Errorf("the API server got %d requests, want only the first", len(sawAuth))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != "2.338.0" || len(sawAuth) != 2 || sawAuth[1] != "Bearer ghp_secret" {
				t.Errorf("got %+v after requests with Authorization %q", got, sawAuth)
			}
		})
	}
}

// The token is never sent over plain http to another machine in the first
// place (a mistyped --api-url); refused before any connection.
func TestReleaseTokenNeedsHTTPS(t *testing.T) {
	_, err := Latest(context.Background(), "http://github.example.invalid/api/v3", "ghp_secret")
	if err == nil || !strings.Contains(err.Error(), "only sent over https") || strings.Contains(err.Error(), "ghp_secret") {
		t.Errorf("err = %v", err)
	}
	// Loopback with a token stays possible: TestReleaseLatestAndGet sends
	// one to its http server on 127.0.0.1.
}

// Issue 12 item 26: a version the API returns out of range is an error
// about the API's value (bump blamed a --to flag that was never given).
func TestReleaseVersionOutOfRange(t *testing.T) {
	srv := server(t, map[string]any{"/repos/actions/runner/releases/latest": release("v2.99999999999999999999.0", notes("2.99999999999999999999.0", shaA))}, nil)
	_, err := Latest(context.Background(), srv.URL, "")
	if err == nil || !strings.Contains(err.Error(), `latest runner release: the API's tag_name "v2.99999999999999999999.0": version part 99999999999999999999 is out of range`) {
		t.Errorf("err = %v", err)
	}
	if _, err := Get(context.Background(), srv.URL, "", "2.99999999999999999999.0"); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("Get: err = %v", err)
	}
}

// Issue 12 item 26: the API's error text reaches the terminal escaped.
func TestReleaseAPIErrorSanitised(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`{"message":"\u001b]0;pwned\u0007\u001b[2Jgone\r\u202eevil` + strings.Repeat("x", 1000) + `"}`))
	}))
	t.Cleanup(srv.Close)
	_, err := Latest(context.Background(), srv.URL, "")
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, r := range msg {
		if r < 0x20 || r == 0x7f || r == 0x202e {
			t.Fatalf("error holds %U raw: %q", r, msg)
		}
	}
	if !strings.Contains(msg, `\x1b]0;pwned\a\x1b[2Jgone\r\u202eevil`) || len(msg) > 500 {
		t.Errorf("error = %q (%d bytes), want the message escaped and bounded", msg, len(msg))
	}
}

func TestReleasePageURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://github.com/actions/runner/releases/tag/v2.338.0": "https://github.com/actions/runner/releases/tag/v2.338.0",
		"javascript:alert(1)":              "",
		"https://github.com/\u001b[31mred": "",
		"":                                 "",
	} {
		if got := pageURL(in); got != want {
			t.Errorf("pageURL(%q) = %q, want %q", in, got, want)
		}
	}
}
