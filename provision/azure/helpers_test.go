package azure

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
)

// sub is the model's subscription in these tests.
const sub = "00000000-0000-0000-0000-00000000abcd"

// sent is one request imagebake sent, with its body.
type sent struct {
	Method, Path string
	Body         []byte
	// RetryAfter is the answer's Retry-After header.
	RetryAfter string
}

// recorder is a Transporter that keeps what was sent.
type recorder struct {
	next *http.Client
	mu   sync.Mutex
	reqs []sent
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := r.next.Do(req)
	s := sent{Method: req.Method, Path: req.URL.Path, Body: body}
	if err == nil {
		s.RetryAfter = resp.Header.Get("Retry-After")
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) all() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.reqs...)
}

// find returns the requests with the method whose path ends in suffix
// (case-insensitive).
func (r *recorder) find(method, suffix string) []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sent
	for _, s := range r.reqs {
		if s.Method == method && strings.HasSuffix(strings.ToLower(s.Path), strings.ToLower(suffix)) {
			out = append(out, s)
		}
	}
	return out
}

// env is the served model with imagebake's clients pointed at it; the
// clients' waits are recorded at full length and not slept.
type env struct {
	m   *azmodel.Model
	c   *Clients
	rec *recorder

	mu    sync.Mutex
	waits []time.Duration
}

func newEnv(t *testing.T, opts azmodel.Options, cfg Config) *env {
	t.Helper()
	e := &env{m: azmodel.New(opts)}
	srv := azmodel.NewServer(e.m, azmodel.ServerOptions{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cred, err := srv.Credential("tenant-1", "client-1", "not-a-real-secret")
	if err != nil {
		t.Fatal(err)
	}
	e.rec = &recorder{next: srv.HTTPClient()}
	cfg.SubscriptionID, cfg.ResourceManager, cfg.Credential, cfg.Transport = sub, srv.URL(), cred, e.rec
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cfg.PollFrequency == 0 {
		cfg.PollFrequency = 5 * time.Millisecond
	}
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		e.mu.Lock()
		e.waits = append(e.waits, d)
		e.mu.Unlock()
		return ctx.Err()
	}
	if e.c, err = NewClients(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) recordedWaits() []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]time.Duration(nil), e.waits...)
}

func (e *env) count(op string) int {
	n := 0
	for _, r := range e.m.Requests() {
		if r.Op == op {
			n++
		}
	}
	return n
}

// vm makes a resource group, a network and a build VM from the focal base.
func (e *env) vm(t *testing.T, spec VMSpec) (rg, id string) {
	t.Helper()
	ctx := context.Background()
	rg = "rg-test"
	if err := e.c.CreateResourceGroup(ctx, rg, "eastus", nil); err != nil {
		t.Fatal(err)
	}
	n, err := e.c.CreateNetwork(ctx, rg, "eastus", "ib-t", []string{"*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Name == "" {
		spec.Name = "ib-t-vm"
	}
	if spec.Image.Publisher == "" && spec.ImageID == "" {
		spec.Image = Image{Publisher: "Canonical", Offer: "0001-com-ubuntu-server-focal", SKU: "20_04-lts", Version: "20.04.202502110"}
	}
	if spec.Size == "" {
		spec.Size = "Standard_D2s_v5"
	}
	spec.ResourceGroup, spec.Location, spec.SubnetID, spec.PublicIP = rg, "eastus", n.SubnetID, true
	spec.AdminUser, spec.AuthorizedKey, spec.CustomData = "imagebake", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly test", "I2Nsb3VkLWNvbmZpZwo="
	id, _, err = e.c.CreateVM(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	return rg, id
}
