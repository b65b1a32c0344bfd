package aztest_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
)

// hosts records every host a client asked for, and answers nothing: no
// request leaves the process.
type hosts struct {
	mu   sync.Mutex
	seen []string
}

func (h *hosts) RoundTrip(req *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.seen = append(h.seen, req.URL.Host)
	h.mu.Unlock()
	return nil, context.DeadlineExceeded
}

func (h *hosts) imds() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.seen {
		if strings.HasPrefix(s, "169.254.169.254") {
			n++
		}
	}
	return n
}

func token(t *testing.T, tr *hosts) error {
	t.Helper()
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: policy.ClientOptions{Transport: &http.Client{Transport: tr}}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
	return err
}

// TestNoIMDSProbe: inside an aztest environment the default credential chain
// never asks for the instance metadata address; the control shows that the
// recorder does see the probe when managed identity is selected.
func TestNoIMDSProbe(t *testing.T) {
	for _, tc := range []struct {
		name      string
		selection string // AZURE_TOKEN_CREDENTIALS after aztest.New; "" keeps aztest's
		wantIMDS  bool
	}{
		{name: "aztest isolation", wantIMDS: false},
		{name: "control: managed identity selected", selection: "ManagedIdentityCredential", wantIMDS: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aztest.New(t, azmodel.Options{}, nil)
			if tc.selection != "" {
				t.Setenv("AZURE_TOKEN_CREDENTIALS", tc.selection)
			}
			tr := &hosts{}
			if err := token(t, tr); err == nil {
				t.Fatal("a token without any credential configured")
			}
			if got := tr.imds() > 0; got != tc.wantIMDS {
				t.Fatalf("IMDS probed: %v, want %v (hosts %v)", got, tc.wantIMDS, tr.seen)
			}
		})
	}
}

// TestLoopbackOnly: the guard reports and refuses requests off loopback and
// passes loopback ones through; the environment's client is guarded.
func TestLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		url     string
		refused bool
	}{
		{"http://169.254.169.254/metadata/identity/oauth2/token?resource=x", true},
		{"https://management.azure.com/subscriptions", true},
		{"https://localhost:1/x", false},
		{"https://127.0.0.1:1/x", false},
		{"https://[::1]:1/x", false},
	} {
		var reports []string
		next := &hosts{}
		c := &http.Client{Transport: aztest.LoopbackOnly(func(f string, a ...any) { reports = append(reports, f) }, next)}
		resp, err := c.Get(tc.url)
		if err == nil {
			resp.Body.Close()
		}
		if refused := len(reports) > 0 && len(next.seen) == 0; refused != tc.refused {
			t.Errorf("%s: refused %v, want %v (reports %v, passed %v)", tc.url, refused, tc.refused, reports, next.seen)
		}
	}
	e := aztest.New(t, azmodel.Options{}, nil)
	resp, err := e.HTTPClient().Get(e.Server.URL() + "/_model/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("loopback request through the guard: %d", resp.StatusCode)
	}
}
