package qemu

import (
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestSeedServer(t *testing.T) {
	userData := "#cloud-config\nwrite_files: []\n"
	s, err := StartSeedServer(SeedConfig{UserData: []byte(userData), Hostname: "bake-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Errorf("URL = %q, want loopback", s.URL())
	}
	if want := "ds=nocloud-net;s=http://10.0.2.2:" + itoa(s.Port()) + "/"; s.DataSource() != want {
		t.Errorf("DataSource = %q, want %q", s.DataSource(), want)
	}
	if got := s.Fetched(); len(got) != 0 {
		t.Errorf("Fetched before any request = %v", got)
	}

	tests := []struct {
		path     string
		wantCode int
		check    func(body string) string // returns a complaint or ""
	}{
		{"user-data", 200, func(b string) string {
			if b != userData {
				return "user-data differs"
			}
			return ""
		}},
		{"meta-data", 200, func(b string) string {
			var md map[string]string
			if err := yaml.Unmarshal([]byte(b), &md); err != nil {
				return err.Error()
			}
			if md["local-hostname"] != "bake-1" || md["instance-id"] != s.InstanceID() || !strings.HasPrefix(md["instance-id"], "iid-") {
				return "meta-data " + b
			}
			return ""
		}},
		{"vendor-data", 200, func(b string) string {
			if b != "" {
				return "vendor-data not empty"
			}
			return ""
		}},
		{"network-config", 404, nil},
		{"../etc/passwd", 404, nil},
		{"user-data", 200, nil}, // again: recorded once
	}
	for _, tc := range tests {
		code, body := get(t, s.URL()+tc.path)
		if code != tc.wantCode {
			t.Errorf("GET %s = %d, want %d", tc.path, code, tc.wantCode)
		}
		if tc.check != nil {
			if msg := tc.check(body); msg != "" {
				t.Errorf("GET %s: %s", tc.path, msg)
			}
		}
	}
	if got, want := s.Fetched(), []string{"user-data", "meta-data", "vendor-data"}; !slices.Equal(got, want) {
		t.Errorf("Fetched = %v, want %v", got, want)
	}

	port := s.Port()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+itoa(port), time.Second); err == nil {
		c.Close()
		t.Errorf("seed port %d still accepts connections after Close", port)
	}
}

func TestSeedServerInstanceIDsAndQuoting(t *testing.T) {
	a, err := StartSeedServer(SeedConfig{Hostname: "evil\ninstance-id: fixed"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := StartSeedServer(SeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.InstanceID() == b.InstanceID() {
		t.Errorf("two seeds share instance-id %q", a.InstanceID())
	}
	_, body := get(t, a.URL()+"meta-data")
	var md map[string]string
	if err := yaml.Unmarshal([]byte(body), &md); err != nil {
		t.Fatalf("meta-data %q: %v", body, err)
	}
	if md["instance-id"] != a.InstanceID() || md["local-hostname"] != "evil\ninstance-id: fixed" {
		t.Errorf("hostname leaked into other keys: %q", body)
	}
	_, body = get(t, b.URL()+"meta-data")
	if !strings.Contains(body, `local-hostname: "imagebake"`) {
		t.Errorf("default hostname missing: %q", body)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
