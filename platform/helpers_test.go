package platform

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMachine records what the platform asked the hypervisor to do.
type fakeMachine struct {
	mu        sync.Mutex
	poweroffs int
	destroys  int
	err       error
	release   chan struct{} // when set, calls block until it is closed
}

func (m *fakeMachine) call(ctx context.Context, n *int) error {
	if m.release != nil {
		select {
		case <-m.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	*n++
	return m.err
}

func (m *fakeMachine) PowerOff(ctx context.Context) error { return m.call(ctx, &m.poweroffs) }
func (m *fakeMachine) Destroy(ctx context.Context) error  { return m.call(ctx, &m.destroys) }

func (m *fakeMachine) counts() (int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.poweroffs, m.destroys
}

func newPlatform(t *testing.T, cfg Config) *Platform {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

// httpsClient reaches the platform's HTTPS listener under any host name,
// trusting only the platform CA (as a guest with GuestCloudConfig does).
func httpsClient(t *testing.T, p *Platform) *http.Client {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.CertPool()},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", p.HTTPSAddr())
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

func do(t *testing.T, c *http.Client, method, url string, hdr map[string]string, body string) resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, b}
}

// imds calls a VM's metadata listener with the Metadata header.
func imds(t *testing.T, vm *VM, pathQuery string) resp {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	return do(t, c, "GET", "http://"+vm.IMDSAddr()+pathQuery, map[string]string{"Metadata": "true"}, "")
}

// token gets an access token for resource from a VM's IMDS.
func token(t *testing.T, vm *VM, resource string) string {
	t.Helper()
	r := imds(t, vm, "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="+resource)
	if r.status != 200 {
		t.Fatalf("token for %s: %d %s", resource, r.status, r.body)
	}
	return r.json(t)["access_token"].(string)
}

const armRes = "https%3A%2F%2Fmanagement.azure.com%2F"
const vaultRes = "https%3A%2F%2Fvault.azure.net"

// fixture is two VMs, each with its own identity, and a vault only A reads.
type fixture struct {
	p          *Platform
	a, b       *VM
	ma, mb     *fakeMachine
	idA, idB   Identity
	noIdentity *VM
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	p := newPlatform(t, cfg)
	f := &fixture{p: p, ma: &fakeMachine{}, mb: &fakeMachine{}}
	var err error
	if f.idA, err = p.AddIdentity(Identity{Name: "id-a", ResourceGroup: "rg"}); err != nil {
		t.Fatal(err)
	}
	if f.idB, err = p.AddIdentity(Identity{Name: "id-b", ResourceGroup: "rg"}); err != nil {
		t.Fatal(err)
	}
	if f.a, err = p.CreateVM(VMSpec{Name: "vm-a", ResourceGroup: "rg", Identities: []string{f.idA.ID},
		Tags: map[string]string{"cycle": "delete", "team": "platform"}, UserData: []byte("jit-config-a"), Machine: f.ma}); err != nil {
		t.Fatal(err)
	}
	if f.b, err = p.CreateVM(VMSpec{Name: "vm-b", ResourceGroup: "rg", Identities: []string{f.idB.ID}, Machine: f.mb}); err != nil {
		t.Fatal(err)
	}
	if f.noIdentity, err = p.CreateVM(VMSpec{Name: "vm-none", ResourceGroup: "rg"}); err != nil {
		t.Fatal(err)
	}
	if err := p.AddVault(VaultSpec{Name: "my-keyvault", Secrets: map[string]string{"runner-pat": "ghp_secretvalue"},
		Readers: []string{f.idA.ID}}); err != nil {
		t.Fatal(err)
	}
	return f
}

func bearerHdr(tok string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + tok}
}
