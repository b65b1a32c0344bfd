package platform

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestKeyVaultContract(t *testing.T) {
	f := newFixture(t, Config{})
	c := httpsClient(t, f.p)
	url := "https://my-keyvault.vault.azure.net/secrets/runner-pat?api-version=7.4"
	tokA := token(t, f.a, vaultRes)
	tokB := token(t, f.b, vaultRes)
	tokAARM := token(t, f.a, armRes)
	for _, tc := range []struct {
		name   string
		url    string
		tok    string
		status int
		body   string
	}{
		{"no token", url, "", 401, `{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}`},
		{"ARM token", url, tokAARM, 401, "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://management.azure.com/."},
		{"not granted", url, tokB, 403, `"innererror":{"code":"ForbiddenByRbac"}`},
		{"no api-version", strings.TrimSuffix(url, "?api-version=7.4"), tokA, 400, "api-version"},
		{"missing secret", strings.Replace(url, "runner-pat", "nope", 1), tokA, 404, `"code":"SecretNotFound"`},
		{"granted", url, tokA, 200, `"value":"ghp_secretvalue"`},
		{"granted, empty version (the SDK's form)", strings.Replace(url, "runner-pat?", "runner-pat/?", 1), tokA, 200, `"value":"ghp_secretvalue"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.tok != "" {
				hdr = bearerHdr(tc.tok)
			}
			r := do(t, c, "GET", tc.url, hdr, "")
			if r.status != tc.status || !strings.Contains(string(r.body), tc.body) {
				t.Fatalf("got %d %s, want %d with %q", r.status, r.body, tc.status, tc.body)
			}
			if r.status == 401 && !strings.Contains(r.header.Get("WWW-Authenticate"), `resource="https://vault.azure.net"`) {
				t.Errorf("challenge %q", r.header.Get("WWW-Authenticate"))
			}
			if r.status == 200 {
				m := r.json(t)
				if id, _ := m["id"].(string); !strings.HasPrefix(id, "https://my-keyvault.vault.azure.net/secrets/runner-pat/") {
					t.Errorf("id %v", m["id"])
				}
			}
		})
	}
	for _, e := range f.p.Events() {
		if strings.Contains(e.String(), "ghp_secretvalue") || strings.Contains(e.String(), tokA) {
			t.Fatalf("event leaks a secret: %s", e)
		}
	}
}

func TestTLSNamesAndMountedHosts(t *testing.T) {
	f := newFixture(t, Config{})
	gh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		_, _ = w.Write([]byte(`{"token":"from-the-github-stand-in"}`))
	})
	if err := f.p.Mount("api.github.com", gh); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"management.azure.com", "x.vault.azure.net", "api.github.com", "not a host", "localhost"} {
		if err := f.p.Mount(bad, gh); err == nil {
			t.Errorf("Mount(%q) accepted", bad)
		}
	}
	c := httpsClient(t, f.p)
	r := do(t, c, "POST", "https://api.github.com/repos/o/r/actions/runners/registration-token", nil, "")
	if r.status != 201 || !strings.Contains(string(r.body), "from-the-github-stand-in") {
		t.Fatalf("mounted host: %d %s", r.status, r.body)
	}
	// The CA signs only for names the platform serves.
	for _, name := range []string{"management.azure.com", "my-keyvault.vault.azure.net", "api.github.com"} {
		if err := handshake(f.p, name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, name := range []string{"example.com", "other.vault.azure.net", "github.com"} {
		if err := handshake(f.p, name); err == nil {
			t.Errorf("%s: handshake succeeded", name)
		}
	}
	got := strings.Join(f.p.ServedHosts(), " ")
	if got != "api.github.com management.azure.com my-keyvault.vault.azure.net" {
		t.Errorf("served hosts %q", got)
	}
	var seen bool
	for _, e := range f.p.Events() {
		seen = seen || (e.Source == "host:api.github.com" && strings.Contains(e.Line, "201"))
	}
	if !seen {
		t.Error("no event for the mounted host's call")
	}
}

func handshake(p *Platform, name string) error {
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: &tls.Config{RootCAs: p.CertPool(), ServerName: name}}
	conn, err := d.DialContext(context.Background(), "tcp", p.HTTPSAddr())
	if err != nil {
		return err
	}
	return conn.Close()
}
