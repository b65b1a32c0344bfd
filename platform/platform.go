package platform

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultOutcomeTag is the VM tag the image's cycle script records its
// outcome in before the VM is deallocated or deleted.
const DefaultOutcomeTag = "outcome"

// Cloud names one Azure cloud's endpoints, chosen by IMDS compute.azEnvironment.
type Cloud struct {
	Environment     string // IMDS azEnvironment, e.g. "AzurePublicCloud"
	ResourceManager string // host name, e.g. "management.azure.com"
	VaultSuffix     string // e.g. "vault.azure.net"
	// ARMAudiences are the token audiences Resource Manager accepts; the
	// first is the one to ask IMDS for.
	ARMAudiences []string
	// VaultAudiences are the token audiences Key Vault accepts.
	VaultAudiences []string
}

// clouds are the clouds the stand-in can play (Azure's documented values).
var clouds = []Cloud{
	{"AzurePublicCloud", "management.azure.com", "vault.azure.net",
		[]string{"https://management.azure.com/", "https://management.azure.com", "https://management.core.windows.net/", "https://management.core.windows.net"},
		[]string{"https://vault.azure.net", "https://vault.azure.net/"}},
	{"AzureUSGovernmentCloud", "management.usgovcloudapi.net", "vault.usgovcloudapi.net",
		[]string{"https://management.usgovcloudapi.net/", "https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net/", "https://management.core.usgovcloudapi.net"},
		[]string{"https://vault.usgovcloudapi.net", "https://vault.usgovcloudapi.net/"}},
	{"AzureChinaCloud", "management.chinacloudapi.cn", "vault.azure.cn",
		[]string{"https://management.chinacloudapi.cn/", "https://management.chinacloudapi.cn", "https://management.core.chinacloudapi.cn/", "https://management.core.chinacloudapi.cn"},
		[]string{"https://vault.azure.cn", "https://vault.azure.cn/"}},
}

// LookupCloud returns the cloud for an IMDS azEnvironment value.
func LookupCloud(env string) (Cloud, bool) {
	for _, c := range clouds {
		if strings.EqualFold(c.Environment, env) {
			return c, true
		}
	}
	return Cloud{}, false
}

// Config configures a Platform. Zero values get defaults.
type Config struct {
	SubscriptionID string // default: a random GUID
	TenantID       string // default: a random GUID
	Location       string // default "local"
	AzEnvironment  string // default "AzurePublicCloud"
	OutcomeTag     string // default DefaultOutcomeTag
	TokenLifetime  time.Duration
	Logger         *slog.Logger
	// OnEvent, when set, is called (outside the platform's lock) for every
	// event, for a live display; Events returns them all afterwards.
	OnEvent func(Event)
	// Now is the clock, for tests of token expiry.
	Now func() time.Time
}

// Event is one line of the platform's log: one call by a VM or one change
// of a VM's state. It never carries a token or a secret value.
type Event struct {
	Time   time.Time
	VM     string // empty for calls not tied to a VM
	Source string // "imds", "arm", "vault", "host:<name>", "platform"
	Line   string
}

func (e Event) String() string {
	vm := e.VM
	if vm == "" {
		vm = "-"
	}
	return fmt.Sprintf("%s %s %s %s", e.Time.UTC().Format("15:04:05.000"), vm, e.Source, e.Line)
}

// Platform is the loopback stand-in for Azure's side of a runner VM.
type Platform struct {
	cfg    Config
	cloud  Cloud
	log    *slog.Logger
	ca     *authority
	signer *tokenSigner

	ctx    context.Context // cancelled by Close; hooks run under it
	cancel context.CancelFunc
	wg     sync.WaitGroup // hooks and servers

	https   *http.Server
	httpsLn net.Listener

	mu         sync.Mutex
	closed     bool
	vms        map[string]*VM // by lower-case resource ID
	identities map[string]*Identity
	vaults     map[string]*vault // by lower-case vault name
	hosts      map[string]http.Handler
	ops        map[string]*operation
	events     []Event

	closeOnce sync.Once
	closeErr  error
}

// New starts a platform: its HTTPS listener on 127.0.0.1 (Resource Manager,
// Key Vault, mounted hosts). VMs and their IMDS listeners come with CreateVM.
func New(cfg Config) (*Platform, error) {
	if cfg.SubscriptionID == "" {
		cfg.SubscriptionID = newGUID()
	}
	if cfg.TenantID == "" {
		cfg.TenantID = newGUID()
	}
	if cfg.Location == "" {
		cfg.Location = "local"
	}
	if cfg.AzEnvironment == "" {
		cfg.AzEnvironment = "AzurePublicCloud"
	}
	if cfg.OutcomeTag == "" {
		cfg.OutcomeTag = DefaultOutcomeTag
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = 24 * time.Hour // what IMDS hands out for managed identities
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !guidRe.MatchString(cfg.SubscriptionID) || !guidRe.MatchString(cfg.TenantID) {
		return nil, errors.New("platform: subscription and tenant IDs must be GUIDs")
	}
	cloud, ok := LookupCloud(cfg.AzEnvironment)
	if !ok {
		return nil, fmt.Errorf("platform: unknown azEnvironment %q", cfg.AzEnvironment)
	}
	ca, err := newAuthority()
	if err != nil {
		return nil, fmt.Errorf("platform CA: %w", err)
	}
	signer, err := newTokenSigner()
	if err != nil {
		return nil, fmt.Errorf("platform token key: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Platform{
		cfg: cfg, cloud: cloud, log: cfg.Logger, ca: ca, signer: signer,
		ctx: ctx, cancel: cancel,
		vms:        map[string]*VM{},
		identities: map[string]*Identity{},
		vaults:     map[string]*vault{},
		hosts:      map[string]http.Handler{},
		ops:        map[string]*operation{},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("platform https listener: %w", err)
	}
	p.httpsLn = ln
	p.https = &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTPS),
		TLSConfig:         ca.serverConfig(p.servesName),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slogErrorLog(p.log),
	}
	p.serve(func() error { return p.https.ServeTLS(ln, "", "") })
	return p, nil
}

func (p *Platform) serve(f func() error) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := f(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Warn("platform listener stopped", "err", err)
		}
	}()
}

// SubscriptionID, TenantID and Cloud describe what the platform plays.
func (p *Platform) SubscriptionID() string { return p.cfg.SubscriptionID }
func (p *Platform) TenantID() string       { return p.cfg.TenantID }
func (p *Platform) Cloud() Cloud           { return p.cloud }

// HTTPSAddr is the host:port (127.0.0.1) of the Resource Manager, Key Vault
// and mounted hosts listener.
func (p *Platform) HTTPSAddr() string { return p.httpsLn.Addr().String() }

// CACertPEM is the platform CA certificate, PEM-encoded, for the guest's
// trust store and for host-side clients.
func (p *Platform) CACertPEM() []byte { return p.ca.CertPEM() }

// CertPool holds the platform CA, for host-side clients (tests, the SDK).
func (p *Platform) CertPool() *x509.CertPool { return p.ca.CertPool() }

var hostRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$`)

// Mount serves h for requests whose Host is host (for instance the GitHub
// stand-in for "api.github.com" and "github.com"). The guest resolves the
// name to GuestHTTPSAddr through GuestCloudConfig, and the platform CA signs
// a certificate for it.
func (p *Platform) Mount(host string, h http.Handler) error {
	host = strings.ToLower(host)
	if !hostRe.MatchString(host) {
		return fmt.Errorf("platform mount %q: not a host name", host)
	}
	if p.isBuiltinHost(host) {
		return fmt.Errorf("platform mount %q: served by the platform itself", host)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.hosts[host]; dup {
		return fmt.Errorf("platform mount %q: already mounted", host)
	}
	p.hosts[host] = h
	return nil
}

func (p *Platform) isBuiltinHost(host string) bool {
	return host == p.cloud.ResourceManager || strings.HasSuffix(host, "."+p.cloud.VaultSuffix)
}

// servesName reports whether the platform answers TLS for this SNI name.
func (p *Platform) servesName(name string) bool {
	name = strings.ToLower(name)
	if name == p.cloud.ResourceManager {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.hosts[name]; ok {
		return true
	}
	if v, ok := strings.CutSuffix(name, "."+p.cloud.VaultSuffix); ok {
		_, ok := p.vaults[v]
		return ok
	}
	return false
}

// ServedHosts lists the host names the HTTPS listener answers for, sorted:
// the cloud's Resource Manager, each vault, each mounted host.
func (p *Platform) ServedHosts() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []string{p.cloud.ResourceManager}
	for v := range p.vaults {
		out = append(out, v+"."+p.cloud.VaultSuffix)
	}
	for h := range p.hosts {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

func (p *Platform) serveHTTPS(w http.ResponseWriter, r *http.Request) {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if v, ok := strings.CutSuffix(host, "."+p.cloud.VaultSuffix); ok {
		p.serveVault(w, r, v)
		return
	}
	p.mu.Lock()
	h, mounted := p.hosts[host]
	p.mu.Unlock()
	if mounted {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		p.event("", "host:"+host, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, rec.status))
		return
	}
	// Resource Manager answers its own name and, for host-side clients that
	// dial the listener directly, the loopback address.
	p.serveARM(w, r)
}

// event records one log line.
func (p *Platform) event(vm, source, line string) {
	e := Event{Time: p.cfg.Now(), VM: vm, Source: source, Line: line}
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
	p.log.Debug("platform", "vm", vm, "source", source, "line", line)
	if p.cfg.OnEvent != nil {
		p.cfg.OnEvent(e)
	}
}

// Events returns the log so far, oldest first.
func (p *Platform) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// Close stops every listener, cancels running hooks and waits for them. It
// is safe to call more than once and from a signal handler's goroutine; ctx
// bounds how long in-flight requests may take to finish.
func (p *Platform) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		var servers []*http.Server
		for _, vm := range p.vms {
			if vm.imds != nil {
				servers = append(servers, vm.imds)
			}
		}
		p.mu.Unlock()
		servers = append(servers, p.https)
		p.cancel()
		var errs []error
		for _, s := range servers {
			// A deleted VM's IMDS server is already closed; that is no error.
			if err := s.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
				_ = s.Close()
			}
		}
		p.wg.Wait()
		if len(errs) > 0 {
			p.closeErr = fmt.Errorf("platform close: %w", errors.Join(errs...))
		}
	})
	return p.closeErr
}

var guidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
