package azmodel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/imagebake/imagebake/internal/localca"
)

// ServerOptions configure a Server. The zero value serves on a random port of
// 127.0.0.1, accepts any tenant and client credentials, and requires a bearer
// token it issued on every Resource Manager request.
type ServerOptions struct {
	// Addr is the listen address (default "127.0.0.1:0").
	Addr string
	// TenantID, when set, is the only tenant the token endpoint answers for.
	TenantID string
	// ClientID and ClientSecret, when set, are the only client credentials
	// the token endpoint accepts.
	ClientID     string
	ClientSecret string
	// DisableAuth serves Resource Manager requests without a bearer token.
	DisableAuth bool
	// Logger receives server errors (default: discard).
	Logger *slog.Logger
	// RetryAfterScale, when in (0, 1), is the test clock: the model still
	// sends Azure's Retry-After, and the clients of HTTPClient, ClientOptions
	// and Credential see each Retry-After: N on a non-error answer rewritten
	// to retry-after-ms: N×1000×scale (azcore reads retry-after-ms before
	// retry-after), so 50 s of polling cadence take 50 ms at 0.001. Throttling
	// answers (4xx/5xx) keep their Retry-After: the SDK's retry cap decides on
	// the real value. The meter (Model.Meter) counts the unscaled values.
	RetryAfterScale float64
	// ScaleOnWire applies RetryAfterScale in the server itself, for clients
	// in other processes (the real imagebake binary): a non-error answer's
	// Retry-After: N goes out as retry-after-ms: N×1000×scale, the original
	// in x-azmodel-retry-after. (Retry-After itself is whole seconds and
	// cannot carry a scaled wait; a client that reads only Retry-After then
	// polls at its own frequency.)
	ScaleOnWire bool
}

// Server serves a Model over HTTPS with a self-signed CA, together with the
// Microsoft Entra endpoints azidentity's ClientSecretCredential uses and the
// /_model/ admin API.
type Server struct {
	model *Model
	opts  ServerOptions

	srv   *http.Server
	ln    net.Listener
	url   string
	caPEM []byte
	pool  *x509.CertPool

	admin http.Handler

	mu     sync.Mutex
	tokens map[string]time.Time
}

// NewServer returns a server for m; call Start to serve.
func NewServer(m *Model, opts ServerOptions) *Server {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{model: m, opts: opts, admin: adminHandler(m), tokens: map[string]time.Time{}}
}

// Start generates the CA and server certificate, listens and serves in the
// background.
func (s *Server) Start() error {
	ca, err := localca.New("azmodel test CA")
	if err != nil {
		return fmt.Errorf("azmodel server: %w", err)
	}
	cert, err := ca.Leaf([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	if err != nil {
		return fmt.Errorf("azmodel server: %w", err)
	}
	caPEM, pool := ca.CertPEM(), ca.CertPool()
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("azmodel server: listen %s: %w", s.opts.Addr, err)
	}
	s.ln, s.caPEM, s.pool = ln, caPEM, pool
	s.url = "https://" + ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelDebug),
		// HTTP/1.1 only, so an injected Drop closes the connection.
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	go func() {
		if err := s.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("azmodel server stopped", "err", err)
		}
	}()
	return nil
}

// Close stops the server and closes its connections.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}

// URL is the base URL, e.g. "https://127.0.0.1:41234" (no trailing slash).
func (s *Server) URL() string { return s.url }

// Model returns the served model.
func (s *Server) Model() *Model { return s.model }

// CACertPEM is the PEM of the CA that signed the server certificate (write it
// to a file and point SSL_CERT_FILE at it for another process).
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// CertPool trusts the server's CA.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// HTTPClient returns a client that trusts the server's CA and dials only
// loopback addresses; with ServerOptions.RetryAfterScale it scales the
// Retry-After of non-error answers.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{Transport: s.transport(s.opts.RetryAfterScale)}
}

// HTTPClientScaled is HTTPClient with its own Retry-After scale (1 or 0: the
// real values).
func (s *Server) HTTPClientScaled(scale float64) *http.Client {
	return &http.Client{Transport: s.transport(scale)}
}

func (s *Server) transport(scale float64) http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: s.pool, MinVersion: tls.VersionTLS12}
	tr.Proxy = nil
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	// Tests never leave loopback: a client built here cannot reach the
	// instance metadata address or anything else off the machine.
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("azmodel client: refusing to dial %s: tests stay on loopback", addr)
		}
		return dialer.DialContext(ctx, network, addr)
	}
	if scale <= 0 || scale >= 1 {
		return tr
	}
	return &scaledTransport{next: tr, scale: scale}
}

// scaledTransport rewrites Retry-After: N on non-error answers into
// retry-after-ms: N×1000×scale (the original stays in
// x-azmodel-retry-after).
type scaledTransport struct {
	next  http.RoundTripper
	scale float64
}

func (t *scaledTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		scaleRetryAfter(resp.StatusCode, resp.Header, t.scale, true)
	}
	return resp, err
}

// scaleRetryAfter adds retry-after-ms for a Retry-After in seconds on an
// answer below 400; replace also removes Retry-After (keeping it as
// x-azmodel-retry-after).
func scaleRetryAfter(status int, h http.Header, scale float64, replace bool) {
	if status >= 400 {
		return
	}
	n, err := strconv.Atoi(h.Get("Retry-After"))
	if err != nil || n <= 0 {
		return
	}
	if h.Get("retry-after-ms") == "" { // already scaled on the wire
		h.Set("retry-after-ms", strconv.FormatInt(max(int64(float64(n)*1000*scale), 1), 10))
	}
	if replace {
		h.Set("x-azmodel-retry-after", h.Get("Retry-After"))
		h.Del("Retry-After")
	}
}

// wireScaler adds retry-after-ms to the answers of the model (ScaleOnWire).
type wireScaler struct {
	http.ResponseWriter
	scale float64
}

func (w wireScaler) WriteHeader(status int) {
	scaleRetryAfter(status, w.Header(), w.scale, true)
	w.ResponseWriter.WriteHeader(status)
}

// Cloud is the cloud configuration that points authority and Resource
// Manager at the server.
func (s *Server) Cloud() cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: s.url + "/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: s.url, Audience: s.url},
		},
	}
}

// ClientOptions are ARM client options (cloud and a transport trusting the
// CA) for armcompute/armnetwork/armresources clients.
func (s *Server) ClientOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: s.Cloud(), Transport: s.HTTPClient()}}
}

// Credential returns a real azidentity.ClientSecretCredential that gets its
// tokens from the server.
func (s *Server) Credential(tenantID, clientID, secret string) (*azidentity.ClientSecretCredential, error) {
	return azidentity.NewClientSecretCredential(tenantID, clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: s.Cloud(), Transport: s.HTTPClient()},
		DisableInstanceDiscovery: true,
	})
}

// IssueToken returns a bearer token the server accepts, for raw HTTP tests.
func (s *Server) IssueToken() string {
	tok := newHex(32)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = time.Now().Add(time.Hour)
	return tok
}

// ServeHTTP routes /_model/ to the admin API, the Entra paths to the token
// service, and everything else, once authenticated, to the model.
//
// MSAL sends instance discovery for a non-Microsoft authority host to
// login.microsoftonline.com, not to this server, so clients must set
// DisableInstanceDiscovery (Credential does).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/_model/"):
		s.admin.ServeHTTP(w, r)
	case strings.HasSuffix(p, "/v2.0/.well-known/openid-configuration"):
		s.openIDConfig(w, r)
	case strings.HasSuffix(p, "/oauth2/v2.0/token"):
		s.token(w, r)
	default:
		if !s.opts.DisableAuth {
			if rep := s.authenticate(r); rep != nil {
				s.model.record(Request{Time: time.Now(), Method: r.Method, Path: p, Query: r.URL.RawQuery, Class: classOf(r.Method, nil), Status: rep.status, Code: rep.code})
				writeReply(w, rep)
				return
			}
		}
		if sc := s.opts.RetryAfterScale; s.opts.ScaleOnWire && sc > 0 && sc < 1 {
			w = wireScaler{ResponseWriter: w, scale: sc}
		}
		s.model.ServeHTTP(w, r)
	}
}

func (s *Server) authenticate(r *http.Request) *reply {
	h := r.Header.Get("Authorization")
	challenge := func(rep *reply, desc string) *reply {
		rep.header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization_uri="%s/%s", error="invalid_token", error_description="%s"`, s.url, firstNonEmpty(s.opts.TenantID, "common"), desc))
		return rep
	}
	if h == "" {
		return challenge(errReply(http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."),
			"The authentication failed because of missing 'Authorization' header.")
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return challenge(errReply(http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format."),
			"The authentication failed because of invalid 'Authorization' header format.")
	}
	s.mu.Lock()
	exp, known := s.tokens[strings.TrimSpace(tok)]
	s.mu.Unlock()
	if !known || time.Now().After(exp) {
		return challenge(errReply(http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid."), "The access token is invalid.")
	}
	return nil
}

// tenantOf returns the first path segment (the tenant).
func tenantOf(p string) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return seg
}

func (s *Server) tenantOK(t string) bool {
	return s.opts.TenantID == "" || strings.EqualFold(t, s.opts.TenantID) || t == "organizations" || t == "common"
}

func aadError(w http.ResponseWriter, status int, code, desc string, codes ...int) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": code, "error_description": desc, "error_codes": codes,
		"timestamp": time.Now().UTC().Format("2006-01-02 15:04:05Z"), "trace_id": newGUID(), "correlation_id": newGUID(),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) openIDConfig(w http.ResponseWriter, r *http.Request) {
	t := tenantOf(r.URL.Path)
	s.model.record(Request{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Class: ClassAuth, Status: http.StatusOK})
	if !s.tenantOK(t) {
		aadError(w, http.StatusBadRequest, "invalid_tenant", fmt.Sprintf("AADSTS90002: Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", t), 90002)
		return
	}
	base := baseURL(r) + "/" + t
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"issuer":                                base + "/v2.0",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"tenant_region_scope":                   "WW",
		"cloud_instance_name":                   "azmodel",
	})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	entry := Request{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Class: ClassAuth, Status: http.StatusOK}
	defer func() { s.model.record(entry) }()
	t := tenantOf(r.URL.Path)
	if r.Method != http.MethodPost {
		entry.Status = http.StatusMethodNotAllowed
		aadError(w, entry.Status, "invalid_request", "AADSTS900561: The endpoint only accepts POST requests.", 900561)
		return
	}
	if err := r.ParseForm(); err != nil {
		entry.Status = http.StatusBadRequest
		aadError(w, entry.Status, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'grant_type'.", 900144)
		return
	}
	switch {
	case !s.tenantOK(t):
		entry.Status = http.StatusBadRequest
		aadError(w, entry.Status, "invalid_tenant", fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", t), 90002)
		return
	case r.PostForm.Get("grant_type") != "client_credentials":
		entry.Status = http.StatusBadRequest
		aadError(w, entry.Status, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.", 70003)
		return
	case s.opts.ClientID != "" && r.PostForm.Get("client_id") != s.opts.ClientID:
		entry.Status = http.StatusBadRequest
		aadError(w, entry.Status, "unauthorized_client", fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory.", r.PostForm.Get("client_id")), 700016)
		return
	case s.opts.ClientSecret != "" && r.PostForm.Get("client_secret") != s.opts.ClientSecret:
		entry.Status = http.StatusUnauthorized
		aadError(w, entry.Status, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.", 7000215)
		return
	case !hasDefaultScope(r.PostForm.Get("scope")):
		entry.Status = http.StatusBadRequest
		aadError(w, entry.Status, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.", 1002012)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": s.IssueToken(),
	})
}

// hasDefaultScope: client-credential requests must ask for "<resource>/.default"
// (MSAL adds openid, profile and offline_access beside it).
func hasDefaultScope(scope string) bool {
	for _, s := range strings.Fields(scope) {
		if strings.HasSuffix(s, "/.default") {
			return true
		}
	}
	return false
}
