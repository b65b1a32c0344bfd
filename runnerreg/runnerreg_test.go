package runnerreg_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/imagebake/imagebake/internal/ghmodel"
	"github.com/imagebake/imagebake/runnerreg"
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		in                  string
		api, owner, repo, p string
		wantErr             bool
	}{
		{in: "https://github.com/acme/app", api: "https://api.github.com", owner: "acme", repo: "app", p: "/repos/acme/app"},
		{in: "https://github.com/acme/app.git/", api: "https://api.github.com", owner: "acme", repo: "app", p: "/repos/acme/app"},
		{in: "https://github.com/acme", api: "https://api.github.com", owner: "acme", p: "/orgs/acme"},
		{in: "https://ghes.example.com/acme/app", api: "https://ghes.example.com/api/v3", owner: "acme", repo: "app", p: "/repos/acme/app"},
		{in: "https://ghes.example.com/acme", api: "https://ghes.example.com/api/v3", owner: "acme", p: "/orgs/acme"},
		{in: "https://octo.ghe.com/acme/app", api: "https://api.octo.ghe.com", owner: "acme", repo: "app", p: "/repos/acme/app"},
		{in: "http://github.com/acme/app", wantErr: true},
		{in: "https://github.com/", wantErr: true},
		{in: "https://github.com/a/b/c", wantErr: true},
		{in: "https://github.com/-bad/app", wantErr: true},
		{in: "https://github.com/acme/a b", wantErr: true},
		{in: "https://user:pw@github.com/acme/app", wantErr: true},
		{in: "https://github.com/acme/..", wantErr: true},
	}
	for _, tt := range tests {
		s, err := runnerreg.ParseScope(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseScope(%q) = %+v, want an error", tt.in, s)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseScope(%q): %v", tt.in, err)
			continue
		}
		if s.APIBase != tt.api || s.Owner != tt.owner || s.Repo != tt.repo || s.Path() != tt.p {
			t.Errorf("ParseScope(%q) = %+v path %s, want %s %s/%s %s", tt.in, s, s.Path(), tt.api, tt.owner, tt.repo, tt.p)
		}
	}
}

func TestSecretRedacts(t *testing.T) {
	s := runnerreg.NewSecret("ghp_supersecretvalue1234567890")
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "s", s, "j", runnerreg.JITConfig{RunnerID: 1, EncodedJITConfig: s})
	js, _ := json.Marshal(struct{ S runnerreg.Secret }{s})
	for _, out := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q %x", s, s, s, s, s, s),
		fmt.Sprintf("%+v", runnerreg.JITConfig{EncodedJITConfig: s}), string(js), logs.String()} {
		if strings.Contains(out, "supersecret") {
			t.Errorf("secret printed: %s", out)
		}
	}
	if s.Reveal() != "ghp_supersecretvalue1234567890" {
		t.Errorf("Reveal = %q", s.Reveal())
	}
}

// env is a client against a fresh model, with captured logs.
type env struct {
	m    *ghmodel.Model
	c    *runnerreg.Client
	logs *bytes.Buffer
}

const pat = "ghp_0123456789abcdefghijABCDEFGHIJ0123"

func newTokenEnv(t *testing.T, tls bool, scopeURL string) env {
	t.Helper()
	m := ghmodel.New(ghmodel.Options{TLS: tls, RunnerKeyBits: 1024})
	t.Cleanup(m.Close)
	m.AddToken(pat)
	return env{m: m, c: newClient(t, m, scopeURL, runnerreg.Options{Token: runnerreg.NewSecret(pat)}), logs: nil}
}

func newClient(t *testing.T, m *ghmodel.Model, scopeURL string, o runnerreg.Options) *runnerreg.Client {
	t.Helper()
	s, err := runnerreg.ParseScope(scopeURL)
	if err != nil {
		t.Fatal(err)
	}
	o.Scope = s.WithAPIBase(m.URL())
	o.HTTPClient = m.Client()
	o.RetryBase = time.Millisecond
	c, err := runnerreg.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOperationsWithToken(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tls   bool
		scope string
	}{{"repo-tls", true, "https://github.com/acme/app"}, {"org-plain", false, "https://github.com/acme"}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTokenEnv(t, tc.tls, tc.scope)
			ctx := context.Background()
			j, err := e.c.MintJIT(ctx, "vm-1", []string{"imagebake", "linux"}, 1, "")
			if err != nil {
				t.Fatal(err)
			}
			if j.RunnerID == 0 || j.RunnerName != "vm-1" || j.EncodedJITConfig.IsZero() {
				t.Fatalf("MintJIT = %+v", j)
			}
			files, err := ghmodel.DecodeJITConfig(j.EncodedJITConfig.Reveal())
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{".runner", ".credentials", ".credentials_rsaparams"} {
				if len(files[f]) == 0 {
					t.Errorf("JIT config lacks %s", f)
				}
			}
			var settings struct {
				AgentID   int64  `json:"agentId"`
				AgentName string `json:"agentName"`
				ServerURL string `json:"serverUrl"`
			}
			if err := json.Unmarshal(files[".runner"], &settings); err != nil || settings.AgentID != j.RunnerID || settings.AgentName != "vm-1" || !strings.HasPrefix(settings.ServerURL, e.m.ServerURL()) {
				t.Errorf(".runner = %s (%v)", files[".runner"], err)
			}
			mints := e.m.Mints()
			if len(mints) != 1 || mints[0].Name != "vm-1" || strings.Join(mints[0].Labels, ",") != "imagebake,linux" || mints[0].RunnerGroupID != 1 || mints[0].WorkFolder != "_work" {
				t.Errorf("mints = %+v", mints)
			}
			if _, err := e.c.MintJIT(ctx, "vm-1", []string{"x"}, 1, ""); runnerreg.StatusCode(err) != http.StatusConflict {
				t.Errorf("second mint of vm-1: %v, want 409", err)
			}
			rt, err := e.c.RegistrationToken(ctx)
			if err != nil || rt.Token.IsZero() || rt.ExpiresAt.Before(time.Now()) {
				t.Fatalf("RegistrationToken = %+v, %v", rt, err)
			}
			rs, err := e.c.ListRunners(ctx)
			if err != nil || len(rs) != 1 || rs[0].ID != j.RunnerID || rs[0].Status != "offline" || strings.Join(rs[0].Labels, ",") != "self-hosted,imagebake,linux" {
				t.Fatalf("ListRunners = %+v, %v", rs, err)
			}
			if err := e.c.DeleteRunner(ctx, j.RunnerID); err != nil {
				t.Fatal(err)
			}
			if err := e.c.DeleteRunner(ctx, j.RunnerID); err != nil {
				t.Errorf("deleting a deleted runner: %v, want nil (404 tolerated)", err)
			}
			if rs, err := e.c.ListRunners(ctx); err != nil || len(rs) != 0 {
				t.Errorf("after delete: %+v, %v", rs, err)
			}
			for _, r := range e.m.Requests() {
				if r.Endpoint == ghmodel.EpGenerateJIT && r.Auth != "token:"+ghmodel.Fingerprint(pat) {
					t.Errorf("request auth %q", r.Auth)
				}
				if r.Accept != "application/vnd.github+json" || r.APIVersion != "2022-11-28" || r.UserAgent != "imagebake-runnerreg" {
					t.Errorf("request headers: %+v", r)
				}
			}
		})
	}
}

func TestListRunnersPages(t *testing.T) {
	m := ghmodel.New(ghmodel.Options{ReuseRunnerKey: true})
	t.Cleanup(m.Close)
	m.AddToken(pat)
	e := env{m: m, c: newClient(t, m, "https://github.com/acme/app", runnerreg.Options{Token: runnerreg.NewSecret(pat)})}
	ctx := context.Background()
	for i := range 205 {
		if _, err := e.c.MintJIT(ctx, fmt.Sprintf("r-%03d", i), []string{"l"}, 1, ""); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := e.c.ListRunners(ctx)
	if err != nil || len(rs) != 205 || rs[204].Name != "r-204" {
		t.Fatalf("ListRunners: %d runners, %v", len(rs), err)
	}
	if n := e.m.Calls(ghmodel.EpListRunners); n != 3 {
		t.Errorf("list calls = %d, want 3 pages", n)
	}
}

func TestMintValidation(t *testing.T) {
	e := newTokenEnv(t, false, "https://github.com/acme/app")
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		labels []string
		group  int64
	}{{"bad name", []string{"l"}, 1}, {"ok", nil, 1}, {"ok", []string{"a,b"}, 1}, {"ok", []string{"l"}, 0}} {
		if _, err := e.c.MintJIT(ctx, tc.name, tc.labels, tc.group, ""); err == nil {
			t.Errorf("MintJIT(%q, %q, %d) succeeded", tc.name, tc.labels, tc.group)
		}
	}
	if _, err := e.c.MintJIT(ctx, "vm", []string{"l"}, 7, ""); runnerreg.StatusCode(err) != http.StatusNotFound {
		t.Errorf("unknown group: %v, want 404", err)
	}
	if len(e.m.Runners()) != 0 {
		t.Errorf("runners created: %+v", e.m.Runners())
	}
}

func TestInjectedFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("mint failure creates no runner", func(t *testing.T) {
		e := newTokenEnv(t, false, "https://github.com/acme/app")
		e.m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpGenerateJIT, Status: 422, Body: `{"message":"Validation Failed\u001b[31m` + pat + `"}`})
		_, err := e.c.MintJIT(ctx, "vm-1", []string{"l"}, 1, "")
		if runnerreg.StatusCode(err) != 422 || len(e.m.Runners()) != 0 {
			t.Fatalf("err %v, runners %+v", err, e.m.Runners())
		}
		if strings.Contains(err.Error(), pat) || strings.ContainsRune(err.Error(), 0x1b) || !strings.Contains(err.Error(), "Validation Failed") {
			t.Errorf("error not sanitised: %q", err)
		}
		if e.m.Calls(ghmodel.EpGenerateJIT) != 1 {
			t.Errorf("422 was retried")
		}
	})
	t.Run("5xx retried", func(t *testing.T) {
		e := newTokenEnv(t, false, "https://github.com/acme/app")
		e.m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpGenerateJIT, Nth: 1, Status: 502})
		e.m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpGenerateJIT, Nth: 2, Status: 503, Header: http.Header{"Retry-After": {"0"}}})
		if _, err := e.c.MintJIT(ctx, "vm-1", []string{"l"}, 1, ""); err != nil {
			t.Fatal(err)
		}
		if n := e.m.Calls(ghmodel.EpGenerateJIT); n != 3 {
			t.Errorf("calls = %d, want 3", n)
		}
	})
	t.Run("5xx bounded", func(t *testing.T) {
		e := newTokenEnv(t, false, "https://github.com/acme/app")
		e.m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpDeleteRunner, Status: 500})
		if err := e.c.DeleteRunner(ctx, 23); runnerreg.StatusCode(err) != 500 {
			t.Fatalf("err = %v", err)
		}
		if n := e.m.Calls(ghmodel.EpDeleteRunner); n != 4 {
			t.Errorf("calls = %d, want 1 + 3 retries", n)
		}
	})
	t.Run("secondary rate limit", func(t *testing.T) {
		e := newTokenEnv(t, false, "https://github.com/acme/app")
		e.m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpRegToken, Nth: 1, Status: 403, Header: http.Header{"Retry-After": {"0"}},
			Body: `{"message":"You have exceeded a secondary rate limit."}`})
		e.m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpRegToken, Nth: 2, Status: 429, Header: http.Header{"Retry-After": {"0"}}})
		if _, err := e.c.RegistrationToken(ctx); err != nil {
			t.Fatal(err)
		}
		if n := e.m.Calls(ghmodel.EpRegToken); n != 3 {
			t.Errorf("calls = %d, want 3", n)
		}
	})
	t.Run("long Retry-After not waited", func(t *testing.T) {
		e := newTokenEnv(t, false, "https://github.com/acme/app")
		e.m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpRegToken, Status: 429, Header: http.Header{"Retry-After": {"1200"}}})
		if _, err := e.c.RegistrationToken(ctx); runnerreg.StatusCode(err) != 429 || e.m.Calls(ghmodel.EpRegToken) != 1 {
			t.Fatalf("err %v calls %d", err, e.m.Calls(ghmodel.EpRegToken))
		}
	})
	t.Run("plain 403 not retried", func(t *testing.T) {
		e := newTokenEnv(t, false, "https://github.com/acme/app")
		e.m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpRegToken, Status: 403})
		if _, err := e.c.RegistrationToken(ctx); runnerreg.StatusCode(err) != 403 || e.m.Calls(ghmodel.EpRegToken) != 1 {
			t.Fatalf("err %v calls %d", err, e.m.Calls(ghmodel.EpRegToken))
		}
	})
	t.Run("context cancelled during backoff", func(t *testing.T) {
		m := ghmodel.New(ghmodel.Options{})
		t.Cleanup(m.Close)
		m.AddToken(pat)
		c := newClient(t, m, "https://github.com/acme/app", runnerreg.Options{Token: runnerreg.NewSecret(pat)})
		m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpRegToken, Status: 503, Header: http.Header{"Retry-After": {"30"}}})
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := c.RegistrationToken(cctx); err == nil || cctx.Err() == nil {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestBadToken(t *testing.T) {
	e := newTokenEnv(t, false, "https://github.com/acme/app")
	c := newClient(t, e.m, "https://github.com/acme/app", runnerreg.Options{Token: runnerreg.NewSecret("ghp_notknownnotknownnotknown000000")})
	_, err := c.MintJIT(context.Background(), "vm", []string{"l"}, 1, "")
	if runnerreg.StatusCode(err) != 401 || strings.Contains(err.Error(), "notknown") {
		t.Fatalf("err = %v", err)
	}
}

func TestRedirects(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("credential sent to the redirect target")
		}
		w.WriteHeader(201)
	}))
	defer other.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/repos/acme/app/actions/runners/registration-token":
			http.Redirect(w, r, other.URL+"/x", http.StatusTemporaryRedirect)
		default:
			http.Redirect(w, r, "http://"+r.Host+"/repos/acme/app/actions/runners/registration-token", http.StatusTemporaryRedirect)
		}
	}))
	defer tlsSrv.Close()
	s, _ := runnerreg.ParseScope("https://github.com/acme/app")
	c, err := runnerreg.New(runnerreg.Options{Scope: s.WithAPIBase(tlsSrv.URL), HTTPClient: tlsSrv.Client(), Token: runnerreg.NewSecret(pat)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegistrationToken(context.Background()); err == nil || !strings.Contains(err.Error(), "another host") {
		t.Errorf("cross-host redirect: %v", err)
	}
	if _, err := c.MintJIT(context.Background(), "vm", []string{"l"}, 1, ""); err == nil || !strings.Contains(err.Error(), "https to http") {
		t.Errorf("downgrade redirect: %v", err)
	}
}

// App auth.

func newKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func TestAppAuth(t *testing.T) {
	ctx := context.Background()
	key, keyPEM := newKey(t)
	for _, tc := range []struct {
		name, scope, installOn string
	}{{"repo", "https://github.com/acme/app", "acme/app"}, {"org", "https://github.com/acme", "acme"}, {"org covers repo", "https://github.com/acme/app", "acme"}} {
		t.Run(tc.name, func(t *testing.T) {
			m := ghmodel.New(ghmodel.Options{TLS: true, RunnerKeyBits: 1024})
			defer m.Close()
			m.RegisterApp("4242", &key.PublicKey)
			m.Install("4242", tc.installOn)
			var logs bytes.Buffer
			c := newClient(t, m, tc.scope, runnerreg.Options{
				App:    &runnerreg.AppCredentials{AppID: "4242", PrivateKey: runnerreg.NewSecret(string(keyPEM))},
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			if _, err := c.MintJIT(ctx, "vm-1", []string{"l"}, 1, ""); err != nil {
				t.Fatal(err)
			}
			if _, err := c.MintJIT(ctx, "vm-2", []string{"l"}, 1, ""); err != nil {
				t.Fatal(err)
			}
			if n := m.Calls(ghmodel.EpAccessToken); n != 1 {
				t.Errorf("access token minted %d times, want 1 (cached)", n)
			}
			if n := m.Calls(ghmodel.EpInstallation); n != 1 {
				t.Errorf("installation looked up %d times", n)
			}
			for _, r := range m.Requests() {
				if r.Endpoint == ghmodel.EpGenerateJIT && !strings.HasPrefix(r.Auth, "installation:") {
					t.Errorf("mint auth %q", r.Auth)
				}
				if r.Endpoint == ghmodel.EpAccessToken && r.Auth != "app-jwt:4242" {
					t.Errorf("token exchange auth %q", r.Auth)
				}
			}
			if strings.Contains(logs.String(), "ghs_") || strings.Contains(logs.String(), "eyJ") || strings.Contains(logs.String(), "PRIVATE") {
				t.Errorf("secret in logs: %s", logs.String())
			}
		})
	}
}

func TestAppNotInstalled(t *testing.T) {
	key, keyPEM := newKey(t)
	m := ghmodel.New(ghmodel.Options{})
	defer m.Close()
	m.RegisterApp("4242", &key.PublicKey)
	m.Install("4242", "other/app")
	c := newClient(t, m, "https://github.com/acme/app", runnerreg.Options{
		App: &runnerreg.AppCredentials{AppID: "4242", PrivateKey: runnerreg.NewSecret(string(keyPEM))},
	})
	_, err := c.MintJIT(context.Background(), "vm-1", []string{"l"}, 1, "")
	if runnerreg.StatusCode(err) != 404 || !strings.Contains(err.Error(), "installation on acme/app") || len(m.Mints()) != 0 {
		t.Fatalf("err = %v, want the installation lookup's 404", err)
	}
}

func TestAppTokenSharedByParallelCalls(t *testing.T) {
	key, keyPEM := newKey(t)
	m := ghmodel.New(ghmodel.Options{RunnerKeyBits: 1024})
	defer m.Close()
	m.RegisterApp("5", &key.PublicKey)
	m.Install("5", "acme")
	c := newClient(t, m, "https://github.com/acme", runnerreg.Options{
		App: &runnerreg.AppCredentials{AppID: "5", PrivateKey: runnerreg.NewSecret(string(keyPEM))},
	})
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			_, err := c.MintJIT(context.Background(), fmt.Sprintf("vm-%d", i), []string{"l"}, 1, "")
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := m.Calls(ghmodel.EpAccessToken); n != 1 {
		t.Errorf("token exchanges = %d, want 1", n)
	}
	if n := len(m.Mints()); n != 8 {
		t.Errorf("mints = %d", n)
	}
}

func TestAppTokenRefresh(t *testing.T) {
	ctx := context.Background()
	key, keyPEM := newKey(t)
	m := ghmodel.New(ghmodel.Options{InstallationTokenTTL: 10 * time.Minute, RunnerKeyBits: 1024})
	defer m.Close()
	m.RegisterApp("7", &key.PublicKey)
	id := m.Install("7", "acme/app")
	now := time.Now()
	clock := func() time.Time { return now }
	m.SetNow(func() time.Time { return clock() })
	c := newClient(t, m, "https://github.com/acme/app", runnerreg.Options{
		App: &runnerreg.AppCredentials{AppID: "7", PrivateKey: runnerreg.NewSecret(string(keyPEM)), InstallationID: id},
		Now: func() time.Time { return clock() },
	})
	if _, err := c.RegistrationToken(ctx); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Minute) // within refreshBefore of a 10 min token
	if _, err := c.RegistrationToken(ctx); err != nil {
		t.Fatal(err)
	}
	if n := m.Calls(ghmodel.EpAccessToken); n != 2 {
		t.Errorf("token exchanges = %d, want 2 (refresh near expiry)", n)
	}
	if n := m.Calls(ghmodel.EpInstallation); n != 0 {
		t.Errorf("installation lookups = %d with a known installation ID", n)
	}
}

// TestModelRejectsBadJWTs sends hand-made JWTs to the model's token
// exchange, as GitHub would receive them.
func TestModelRejectsBadJWTs(t *testing.T) {
	key, _ := newKey(t)
	other, _ := newKey(t)
	m := ghmodel.New(ghmodel.Options{})
	defer m.Close()
	m.RegisterApp("4242", &key.PublicKey)
	id := m.Install("4242", "acme/app")
	now := time.Now()
	sign := func(method jwt.SigningMethod, k any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(method, claims).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := jwt.MapClaims{"iss": "4242", "iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for a, b := range good {
			c[a] = b
		}
		c[k] = v
		return c
	}
	tests := []struct {
		name string
		tok  string
		want int
	}{
		{"good", sign(jwt.SigningMethodRS256, key, good), 201},
		{"numeric iss", sign(jwt.SigningMethodRS256, key, with("iss", 4242)), 201},
		{"wrong key", sign(jwt.SigningMethodRS256, other, good), 401},
		{"wrong iss", sign(jwt.SigningMethodRS256, key, with("iss", "999")), 401},
		{"expired", sign(jwt.SigningMethodRS256, key, with("exp", now.Add(-time.Second).Unix())), 401},
		{"exp too far", sign(jwt.SigningMethodRS256, key, jwt.MapClaims{"iss": "4242", "iat": now.Unix(), "exp": now.Add(11 * time.Minute).Unix()}), 401},
		{"iat in future", sign(jwt.SigningMethodRS256, key, with("iat", now.Add(5*time.Minute).Unix())), 401},
		{"HS256", sign(jwt.SigningMethodHS256, []byte("k"), good), 401},
		{"garbage", "not.a.jwt", 401},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/app/installations/%d/access_tokens", m.URL(), id), nil)
		req.Header.Set("Authorization", "Bearer "+tt.tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
}

func TestAppWrongKeyFromClient(t *testing.T) {
	key, _ := newKey(t)
	_, otherPEM := newKey(t)
	m := ghmodel.New(ghmodel.Options{})
	defer m.Close()
	m.RegisterApp("4242", &key.PublicKey)
	m.Install("4242", "acme/app")
	var logs bytes.Buffer
	c := newClient(t, m, "https://github.com/acme/app", runnerreg.Options{
		App:    &runnerreg.AppCredentials{AppID: "4242", PrivateKey: runnerreg.NewSecret(string(otherPEM))},
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	_, err := c.MintJIT(context.Background(), "vm", []string{"l"}, 1, "")
	if runnerreg.StatusCode(err) != 401 || len(m.Runners()) != 0 {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error()+logs.String(), "eyJ") {
		t.Errorf("JWT echoed: %v / %s", err, logs.String())
	}
}

func TestInstallationTokenExpires(t *testing.T) {
	key, keyPEM := newKey(t)
	m := ghmodel.New(ghmodel.Options{InstallationTokenTTL: time.Hour})
	defer m.Close()
	m.RegisterApp("1", &key.PublicKey)
	id := m.Install("1", "acme/app")
	now := time.Now()
	m.SetNow(func() time.Time { return now })
	// The client's clock lags: it believes its token is fresh when the
	// model has expired it, so the 401 makes it mint a new one, once.
	c := newClient(t, m, "https://github.com/acme/app", runnerreg.Options{
		App: &runnerreg.AppCredentials{AppID: "1", PrivateKey: runnerreg.NewSecret(string(keyPEM)), InstallationID: id},
	})
	if _, err := c.RegistrationToken(context.Background()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	// The model now refuses both the old token and JWTs from the client's
	// (real) clock, which is two hours behind: an error, after one refresh.
	_, err := c.RegistrationToken(context.Background())
	if err == nil {
		t.Fatal("expired installation token accepted")
	}
	if n := m.Calls(ghmodel.EpAccessToken); n != 2 {
		t.Errorf("token exchanges = %d, want 2", n)
	}
	var refused bool
	for _, r := range m.Requests() {
		refused = refused || (r.Endpoint == ghmodel.EpRegToken && r.Status == 401)
	}
	if !refused {
		t.Error("model did not refuse the expired installation token")
	}
}

func TestCredentialsFromEnv(t *testing.T) {
	env := map[string]string{"GITHUB_TOKEN": "tok123456", "KEY": "-----BEGIN…"}
	get := func(k string) string { return env[k] }
	app, tok, err := runnerreg.CredentialsFromEnv("12", "", "KEY", get)
	if err != nil || app == nil || app.AppID != "12" || !tok.IsZero() || app.PrivateKey.Reveal() != env["KEY"] {
		t.Errorf("app: %+v %v %v", app, tok, err)
	}
	app, tok, err = runnerreg.CredentialsFromEnv("", "", "", get)
	if err != nil || app != nil || tok.Reveal() != "tok123456" {
		t.Errorf("token: %+v %v", app, err)
	}
	if _, _, err := runnerreg.CredentialsFromEnv("12", "", "NOPE", get); err == nil {
		t.Error("empty key variable accepted")
	}
	if _, _, err := runnerreg.CredentialsFromEnv("", "", "", func(string) string { return "" }); err == nil {
		t.Error("no credential accepted")
	}
	if _, err := runnerreg.New(runnerreg.Options{Scope: runnerreg.Scope{APIBase: "https://x", Owner: "a"}, App: &runnerreg.AppCredentials{AppID: "1", PrivateKey: runnerreg.NewSecret("nope")}}); err == nil || strings.Contains(err.Error(), "nope") {
		t.Errorf("bad PEM: %v", err)
	}
}

// TestNoSecretInLogsOrErrors drives every operation, failing and not, with
// debug logging on, and looks for the credentials in what was logged and
// in every error string.
func TestNoSecretInLogsOrErrors(t *testing.T) {
	ctx := context.Background()
	m := ghmodel.New(ghmodel.Options{RunnerKeyBits: 1024})
	defer m.Close()
	m.AddToken(pat)
	var logs bytes.Buffer
	c := newClient(t, m, "https://github.com/acme/app", runnerreg.Options{
		Token:  runnerreg.NewSecret(pat),
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	// A hostile or buggy answer that echoes the credential and other tokens.
	echo := `{"message":"token ` + pat + ` and ghs_abcdefghijklmnopqrstuvwxyz0123 were refused\r\n\u001b]0;title\u0007"}`
	m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpRegToken, Status: 401, Body: echo})
	m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpDeleteRunner, Nth: 1, Status: 500, Body: echo})
	var errs []string
	j, err := c.MintJIT(ctx, "vm-1", []string{"l"}, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegistrationToken(ctx); err != nil {
		errs = append(errs, err.Error())
	} else {
		t.Error("injected 401 not returned")
	}
	if err := c.DeleteRunner(ctx, j.RunnerID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MintJIT(ctx, "bad name", []string{"l"}, 1, ""); err != nil {
		errs = append(errs, err.Error())
	}
	logs.WriteString(fmt.Sprintf("%v %+v %#v", j, j, j))
	all := logs.String() + strings.Join(errs, "\n")
	jit := j.EncodedJITConfig.Reveal()
	for _, secret := range []string{pat, "ghs_abcdefghijklmnopqrstuvwxyz0123", jit, jit[len(jit)-40:]} {
		if strings.Contains(all, secret) {
			t.Errorf("secret %.8s… found in logs/errors:\n%s", secret, all)
		}
	}
	if strings.ContainsAny(strings.Join(errs, ""), "\r\n\u001b\u0007") {
		t.Errorf("control characters in errors: %q", errs)
	}
	if !strings.Contains(errs[0], "were refused") {
		t.Errorf("GitHub's message lost: %q", errs[0])
	}
}
