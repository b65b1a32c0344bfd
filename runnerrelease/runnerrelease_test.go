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
