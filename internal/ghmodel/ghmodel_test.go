package ghmodel_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/ghmodel"
)

const tok = "ghp_modeltestmodeltestmodeltest012345"

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, m *ghmodel.Model, method, path, auth string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, m.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	req.Header.Set("User-Agent", "ghmodel-test")
	resp, err := m.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &a.body); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, path, b, err)
		}
	}
	return a
}

func newModel(t *testing.T, o ghmodel.Options) (*ghmodel.Model, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	o.RunnerKeyBits = 1024
	m := ghmodel.New(o)
	t.Cleanup(m.Close)
	m.AddToken(tok)
	return m, &logs
}

const jitPath = "/repos/acme/app/actions/runners/generate-jitconfig"

func TestGenerateJITShapes(t *testing.T) {
	m, logs := newModel(t, ghmodel.Options{TLS: true, PathPrefix: "/api/v3"})
	tests := []struct {
		name string
		auth string
		body any
		want int
	}{
		{"no auth", "", map[string]any{"name": "a", "runner_group_id": 1, "labels": []string{"x"}}, 401},
		{"bad token", "ghp_nope", map[string]any{"name": "a", "runner_group_id": 1, "labels": []string{"x"}}, 401},
		{"no group", tok, map[string]any{"name": "a", "labels": []string{"x"}}, 422},
		{"no labels", tok, map[string]any{"name": "a", "runner_group_id": 1, "labels": []string{}}, 422},
		{"no name", tok, map[string]any{"runner_group_id": 1, "labels": []string{"x"}}, 422},
		{"unknown group", tok, map[string]any{"name": "a", "runner_group_id": 9, "labels": []string{"x"}}, 404},
		{"ok", tok, map[string]any{"name": "a", "runner_group_id": 1, "labels": []string{"x"}, "work_folder": "w"}, 201},
		{"duplicate", tok, map[string]any{"name": "a", "runner_group_id": 1, "labels": []string{"x"}}, 409},
	}
	var jit string
	for _, tt := range tests {
		a := call(t, m, "POST", jitPath, tt.auth, tt.body)
		if a.status != tt.want {
			t.Errorf("%s: %d %v, want %d", tt.name, a.status, a.body, tt.want)
		}
		if a.status >= 400 && (a.body["message"] == nil || a.body["documentation_url"] == nil) {
			t.Errorf("%s: error body %v lacks GitHub's fields", tt.name, a.body)
		}
		if tt.want == 201 {
			jit, _ = a.body["encoded_jit_config"].(string)
			rn, _ := a.body["runner"].(map[string]any)
			if rn["id"] == nil || rn["name"] != "a" || rn["status"] != "offline" || rn["busy"] != false {
				t.Errorf("runner = %v", rn)
			}
		}
	}
	files, err := ghmodel.DecodeJITConfig(jit)
	if err != nil {
		t.Fatal(err)
	}
	var settings, creds, rsa map[string]any
	for name, v := range map[string]*map[string]any{".runner": &settings, ".credentials": &creds, ".credentials_rsaparams": &rsa} {
		if err := json.Unmarshal(files[name], v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if settings["serverUrl"] != m.ServerURL()+"/_standin/runner/" || settings["workFolder"] != "w" || settings["ephemeral"] != true || settings["gitHubUrl"] != nil {
		t.Errorf(".runner = %v", settings)
	}
	if creds["scheme"] != "OAuth" || rsa["modulus"] == nil || rsa["d"] == nil || rsa["exponent"] != "AQAB" {
		t.Errorf(".credentials = %v, rsaparams keys %d", creds, len(rsa))
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), jit[len(jit)-40:]) {
		t.Errorf("secret in the model's log:\n%s", logs.String())
	}
	for _, r := range m.Requests() {
		if strings.Contains(r.Auth, tok) {
			t.Errorf("request log holds the token: %+v", r)
		}
	}
}

func TestUserAgentRequired(t *testing.T) {
	m, _ := newModel(t, ghmodel.Options{})
	req, _ := http.NewRequest("POST", m.URL()+"/repos/acme/app/actions/runners/registration-token", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("User-Agent", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("no User-Agent: %d, want 403", resp.StatusCode)
	}
}

func TestListPagesAndDelete(t *testing.T) {
	m, _ := newModel(t, ghmodel.Options{})
	for _, n := range []string{"a", "b", "c"} {
		if a := call(t, m, "POST", jitPath, tok, map[string]any{"name": n, "runner_group_id": 1, "labels": []string{"x"}}); a.status != 201 {
			t.Fatal(a)
		}
	}
	a := call(t, m, "GET", "/repos/acme/app/actions/runners?per_page=2", tok, nil)
	if a.status != 200 || a.body["total_count"] != float64(3) || len(a.body["runners"].([]any)) != 2 ||
		!strings.Contains(a.header.Get("Link"), `page=2>; rel="next"`) {
		t.Fatalf("page 1: %d %v %q", a.status, a.body, a.header.Get("Link"))
	}
	a = call(t, m, "GET", "/repos/acme/app/actions/runners?per_page=2&page=2", tok, nil)
	if len(a.body["runners"].([]any)) != 1 || strings.Contains(a.header.Get("Link"), `rel="next"`) {
		t.Errorf("page 2: %v %q", a.body, a.header.Get("Link"))
	}
	if a := call(t, m, "GET", "/orgs/acme/actions/runners", tok, nil); a.body["total_count"] != float64(0) {
		t.Errorf("org list shows its repositories' runners: %v", a.body)
	}
	if a := call(t, m, "DELETE", "/repos/acme/app/actions/runners/23", tok, nil); a.status != 204 {
		t.Errorf("delete: %d", a.status)
	}
	if a := call(t, m, "DELETE", "/repos/acme/app/actions/runners/23", tok, nil); a.status != 404 {
		t.Errorf("delete again: %d", a.status)
	}
	if a := call(t, m, "DELETE", "/repos/other/app/actions/runners/24", tok, nil); a.status != 404 {
		t.Errorf("delete through another repository: %d", a.status)
	}
	if a := call(t, m, "GET", "/repos/acme/app/actions/runners/24", tok, nil); a.status != 200 || a.body["name"] != "b" {
		t.Errorf("get: %d %v", a.status, a.body)
	}
}

func TestFaultsByNth(t *testing.T) {
	m, _ := newModel(t, ghmodel.Options{})
	m.Inject(ghmodel.Fault{Endpoint: ghmodel.EpRegToken, Nth: 2, Status: 503, Header: http.Header{"Retry-After": {"7"}}})
	path := "/repos/acme/app/actions/runners/registration-token"
	got := []int{}
	var retryAfter string
	for range 3 {
		a := call(t, m, "POST", path, tok, nil)
		got = append(got, a.status)
		if a.status == 503 {
			retryAfter = a.header.Get("Retry-After")
		}
	}
	if got[0] != 201 || got[1] != 503 || got[2] != 201 || retryAfter != "7" {
		t.Errorf("statuses %v, Retry-After %q", got, retryAfter)
	}
	var injected int
	for _, r := range m.Requests() {
		if r.Injected {
			injected++
		}
	}
	if injected != 1 || m.Calls(ghmodel.EpRegToken) != 3 {
		t.Errorf("injected %d, calls %d", injected, m.Calls(ghmodel.EpRegToken))
	}
}

func TestRegistrationTokenExpiresForConfigSh(t *testing.T) {
	m, _ := newModel(t, ghmodel.Options{})
	now := time.Now()
	m.SetNow(func() time.Time { return now })
	a := call(t, m, "POST", "/repos/acme/app/actions/runners/registration-token", tok, nil)
	reg, _ := a.body["token"].(string)
	if a.status != 201 || reg == "" || a.body["expires_at"] == nil {
		t.Fatal(a)
	}
	register := func(url string) int {
		b, _ := json.Marshal(map[string]any{"url": url, "token": reg, "name": "vm", "labels": []string{"x"}, "replace": true})
		resp, err := http.Post(m.RunnerURL()+"register", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := register("https://github.com/acme/other"); s != 404 {
		t.Errorf("token of another repository: %d", s)
	}
	if s := register("https://github.com/acme/app"); s != 200 {
		t.Errorf("register: %d", s)
	}
	if s := register("https://github.com/acme/app"); s != 200 || m.Registrations("vm") != 2 {
		t.Errorf("register --replace: %d, registrations %d", s, m.Registrations("vm"))
	}
	now = now.Add(61 * time.Minute)
	if s := register("https://github.com/acme/app"); s != 404 {
		t.Errorf("expired token: %d", s)
	}
	live := 0
	for _, r := range m.Runners() {
		if !r.Deleted {
			live++
		}
	}
	if live != 1 {
		t.Errorf("live runners = %d, want 1 (replace)", live)
	}
}

func TestSessionNeedsProof(t *testing.T) {
	m, _ := newModel(t, ghmodel.Options{})
	a := call(t, m, "POST", jitPath, tok, map[string]any{"name": "a", "runner_group_id": 1, "labels": []string{"x"}})
	id := a.body["runner"].(map[string]any)["id"]
	b, _ := json.Marshal(map[string]any{"runnerId": id, "clientId": "x", "time": time.Now().Unix(), "proof": "abcd"})
	resp, err := http.Post(m.RunnerURL()+"session", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || m.Sessions("a") != 0 {
		t.Errorf("forged session: %d, sessions %d", resp.StatusCode, m.Sessions("a"))
	}
}

func TestAdvertiseURL(t *testing.T) {
	m, _ := newModel(t, ghmodel.Options{AdvertiseURL: "http://10.0.2.2:8123/"})
	if m.RunnerURL() != "http://10.0.2.2:8123/_standin/runner/" {
		t.Errorf("RunnerURL = %s", m.RunnerURL())
	}
	a := call(t, m, "POST", jitPath, tok, map[string]any{"name": "a", "runner_group_id": 1, "labels": []string{"x"}})
	files, err := ghmodel.DecodeJITConfig(a.body["encoded_jit_config"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var settings map[string]any
	if err := json.Unmarshal(files[".runner"], &settings); err != nil || settings["serverUrl"] != "http://10.0.2.2:8123/_standin/runner/" {
		t.Errorf(".runner = %s", files[".runner"])
	}
}

// TestHandlerMountedElsewhere serves the model's Handler on a second
// server, as the platform's HTTPS listener mounts it as api.github.com:
// both servers share one model, and JIT configs name the advertised one.
func TestHandlerMountedElsewhere(t *testing.T) {
	front := httptest.NewUnstartedServer(nil)
	front.Start()
	defer front.Close()
	m, _ := newModel(t, ghmodel.Options{AdvertiseURL: front.URL})
	front.Config.Handler = m.Handler()
	post := func(url, auth string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
		req.Header.Set("User-Agent", "ghmodel-test")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]any{}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	status, out := post(front.URL+jitPath, tok, map[string]any{"name": "front", "runner_group_id": 1, "labels": []string{"x"}})
	if status != 201 {
		t.Fatalf("mint through the mounted handler: %d %v", status, out)
	}
	files, err := ghmodel.DecodeJITConfig(out["encoded_jit_config"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var settings map[string]any
	if err := json.Unmarshal(files[".runner"], &settings); err != nil || settings["serverUrl"] != front.URL+"/_standin/runner/" {
		t.Errorf(".runner = %s", files[".runner"])
	}
	// The model's own server sees the runner minted through the other one.
	if a := call(t, m, "GET", "/repos/acme/app/actions/runners", tok, nil); a.body["total_count"] != float64(1) {
		t.Errorf("list on the model's own server: %v", a.body)
	}
	if status, _ := post(front.URL+"/nope", tok, nil); status != 404 {
		t.Errorf("unknown path through the handler: %d", status)
	}
	if n := m.Calls(ghmodel.EpGenerateJIT); n != 1 {
		t.Errorf("generate-jitconfig calls = %d, want 1", n)
	}
}

// TestRegisterUnderPathPrefix: config.sh registers with the API base, so a
// GitHub Enterprise Server-shaped model serves register under /api/v3 too.
func TestRegisterUnderPathPrefix(t *testing.T) {
	for _, prefix := range []string{"", "/api/v3"} {
		m, _ := newModel(t, ghmodel.Options{PathPrefix: prefix})
		a := call(t, m, "POST", "/repos/acme/app/actions/runners/registration-token", tok, nil)
		reg, _ := a.body["token"].(string)
		for i, url := range []string{m.URL() + "/_standin/runner/register", m.ServerURL() + "/_standin/runner/register"} {
			b, _ := json.Marshal(map[string]any{"url": "https://ghes.example/acme/app", "token": reg, "name": "vm", "labels": []string{"x"}, "replace": true})
			resp, err := http.Post(url, "application/json", bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("prefix %q: register at %s: %d", prefix, url, resp.StatusCode)
			}
			if got := m.Registrations("vm"); got != i+1 {
				t.Errorf("prefix %q: registrations = %d, want %d", prefix, got, i+1)
			}
		}
	}
}
