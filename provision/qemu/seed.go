package qemu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// GuestHostAddr is the host as a guest on QEMU user networking sees it.
const GuestHostAddr = "10.0.2.2"

// SeedConfig is what a SeedServer serves.
type SeedConfig struct {
	UserData   []byte
	Hostname   string // local-hostname; "imagebake" when empty
	InstanceID string // a fresh random id when empty, so every boot is a first boot
}

// SeedServer serves a NoCloud seed (meta-data, user-data and an empty
// vendor-data) over HTTP on 127.0.0.1. cloud-init in a guest on QEMU user
// networking reaches it at GuestURL.
type SeedServer struct {
	cfg  SeedConfig
	ln   net.Listener
	srv  *http.Server
	done chan struct{}

	mu      sync.Mutex
	fetched []string
	closed  bool
}

// StartSeedServer listens on a free loopback port and serves cfg until Close.
func StartSeedServer(cfg SeedConfig) (*SeedServer, error) {
	if cfg.Hostname == "" {
		cfg.Hostname = "imagebake"
	}
	if cfg.InstanceID == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("seed server: instance id: %w", err)
		}
		cfg.InstanceID = "iid-imagebake-" + hex.EncodeToString(b[:])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("seed server: %w", err)
	}
	s := &SeedServer{cfg: cfg, ln: ln, done: make(chan struct{})}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// metaData renders meta-data. Both values are written as JSON strings,
// which YAML reads verbatim, so a hostname cannot inject other keys.
func (s *SeedServer) metaData() []byte {
	id, _ := json.Marshal(s.cfg.InstanceID)
	host, _ := json.Marshal(s.cfg.Hostname)
	return fmt.Appendf(nil, "instance-id: %s\nlocal-hostname: %s\n", id, host)
}

func (s *SeedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var body []byte
	switch r.URL.Path {
	case "/meta-data":
		body = s.metaData()
	case "/user-data":
		body = s.cfg.UserData
	case "/vendor-data":
		// Empty but present: on a 404 cloud-init 22.4 retries and then
		// falls back to DataSourceNone (FACTS.md).
	default:
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	name := r.URL.Path[1:]
	seen := false
	for _, f := range s.fetched {
		seen = seen || f == name
	}
	if !seen {
		s.fetched = append(s.fetched, name)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// Port is the loopback port the server listens on.
func (s *SeedServer) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// URL is the seed's address from the host.
func (s *SeedServer) URL() string { return fmt.Sprintf("http://127.0.0.1:%d/", s.Port()) }

// GuestURL is the seed's address from a guest on QEMU user networking.
func (s *SeedServer) GuestURL() string { return fmt.Sprintf("http://%s:%d/", GuestHostAddr, s.Port()) }

// DataSource is the NoCloud selector for the kernel command line or the
// SMBIOS serial. It must be "nocloud-net": with "nocloud" cloud-init 22.4
// fetched the seed and then fell back to DataSourceNone (FACTS.md).
func (s *SeedServer) DataSource() string { return "ds=nocloud-net;s=" + s.GuestURL() }

// InstanceID is the instance-id served in meta-data.
func (s *SeedServer) InstanceID() string { return s.cfg.InstanceID }

// Fetched lists the seed files served so far (meta-data, user-data,
// vendor-data), each once, in the order first fetched.
func (s *SeedServer) Fetched() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.fetched...)
}

// Close stops the server and frees its port. It is safe to call twice.
func (s *SeedServer) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	if err != nil {
		return fmt.Errorf("seed server: %w", err)
	}
	return nil
}
