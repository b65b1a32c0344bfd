package localca

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestLeafVerifiesOnlyForItsNames(t *testing.T) {
	ca, err := New("test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := New("other CA")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		leafFor []string
		dial    string
		pool    *x509.CertPool
		ok      bool
	}{
		{"own name", []string{"vault.example"}, "vault.example", ca.CertPool(), true},
		{"another name", []string{"vault.example"}, "management.example", ca.CertPool(), false},
		{"untrusted CA", []string{"vault.example"}, "vault.example", other.CertPool(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := ca.Leaf(tt.leafFor, nil)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}}
			srv.StartTLS()
			defer srv.Close()
			c := &http.Client{Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: tt.pool, ServerName: tt.dial},
			}}
			resp, err := c.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("GET with ServerName %s: err = %v, want ok=%v", tt.dial, err, tt.ok)
			}
		})
	}
}

func TestLeafIsCachedPerNames(t *testing.T) {
	ca, _ := New("test CA")
	a, _ := ca.Leaf(nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	b, _ := ca.Leaf(nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	c, _ := ca.Leaf([]string{"x.example"}, nil)
	if a != b {
		t.Error("same names gave two certificates")
	}
	if a == c {
		t.Error("different names share a certificate")
	}
	if len(a.Certificate) != 2 {
		t.Errorf("chain has %d certificates, want leaf and CA", len(a.Certificate))
	}
}
