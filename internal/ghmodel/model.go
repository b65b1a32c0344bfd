// Package ghmodel is a stand-in for GitHub's REST API as imagebake uses
// it to register runners: just-in-time configurations, registration
// tokens, runner listing and deletion, GitHub App installation tokens and
// token auth, with GitHub's status codes and JSON shapes. It also plays
// the Actions service a runner talks to (namespaced under /_standin/runner/),
// so a stand-in runner (internal/fakerunner) can register, take one job and
// report secrets it saw leaked. It serves on 127.0.0.1 through httptest,
// with TLS or without, and records every request without secrets.
package ghmodel

import (
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"time"
)

// Endpoint names one served operation, for failure injection and the
// request log.
type Endpoint string

// The served endpoints.
const (
	EpInstallation   Endpoint = "installation"       // GET /repos/{o}/{r}/installation, /orgs/{o}/installation
	EpAccessToken    Endpoint = "access-tokens"      // POST /app/installations/{id}/access_tokens
	EpGenerateJIT    Endpoint = "generate-jitconfig" // POST …/actions/runners/generate-jitconfig
	EpRegToken       Endpoint = "registration-token" // POST …/actions/runners/registration-token
	EpListRunners    Endpoint = "list-runners"       // GET …/actions/runners
	EpGetRunner      Endpoint = "get-runner"         // GET …/actions/runners/{id}
	EpDeleteRunner   Endpoint = "delete-runner"      // DELETE …/actions/runners/{id}
	EpRunnerRegister Endpoint = "runner-register"    // POST /_standin/runner/register (config.sh)
	EpRunnerSession  Endpoint = "runner-session"     // POST /_standin/runner/session
	EpRunnerDone     Endpoint = "runner-done"        // POST /_standin/runner/done
	EpRunnerLeak     Endpoint = "runner-leak"        // POST /_standin/runner/leak
)

// Outcome is what the stand-in Actions service tells a runner that opens a
// session.
type Outcome string

// Outcomes.
const (
	OutcomeJob    Outcome = "job"    // run one job (default)
	OutcomeRefuse Outcome = "refuse" // 401: the runner exits 1 (terminated error)
	OutcomeStale  Outcome = "stale"  // the runner's version is deprecated: exit 7 or 1
	OutcomeRetry  Outcome = "retry"  // 503: the runner exits 2 (retryable)
)

// Options configure a Model.
type Options struct {
	TLS bool
	// PathPrefix serves the API under a prefix, "/api/v3" for a GitHub
	// Enterprise Server-shaped URL.
	PathPrefix string
	// AdvertiseURL is the base URL runners are told to connect to (in the
	// JIT config's .runner serverUrl and by config.sh), for runners that
	// reach the model through another address (a QEMU guest's 10.0.2.2).
	// Default: the server's own URL.
	AdvertiseURL string
	// InstallationTokenTTL defaults to one hour, like GitHub's.
	InstallationTokenTTL time.Duration
	// RunnerKeyBits sizes the RSA key each runner gets (default 2048).
	RunnerKeyBits int
	// ReuseRunnerKey gives every runner the same RSA key: for tests that
	// register hundreds of runners and never connect them.
	ReuseRunnerKey bool
	Logger         *slog.Logger // request lines, never secrets; default discards
	Now            func() time.Time
}

// Runner is a registered runner as the model holds it.
type Runner struct {
	ID            int64
	Name          string
	Scope         string // "repos/o/r" or "orgs/o"
	Labels        []string
	RunnerGroupID int64
	WorkFolder    string
	Status        string // online, offline
	Busy          bool
	Ephemeral     bool
	JIT           bool // minted with generate-jitconfig (else config.sh)
	DisableUpdate bool
	Version       string // the version the runner last reported
	Deleted       bool   // removed (by DELETE or after an ephemeral job)
	JobsDone      int
	JobResults    []string
	// What the runner's last leak scan could see: the journal ("all",
	// "own" messages only, "absent") and how many command lines it read.
	JournalScope     string
	ProcessesScanned int

	clientID string
	pub      *rsa.PublicKey
	jit      string // its encoded JIT config, watched for leaks
}

// Mint is one accepted generate-jitconfig call.
type Mint struct {
	RunnerID      int64
	Name          string
	Scope         string
	Labels        []string
	RunnerGroupID int64
	WorkFolder    string
}

// Leak is one secret a runner reported seeing where it must not be.
type Leak struct {
	RunnerID    int64
	RunnerName  string
	Kind        string // jitconfig, registration-token, pat, …
	Where       string // "cmdline of pid 1234 (sleep)", "journal"
	Fingerprint string // first 12 hex of the secret's SHA-256, never the value
}

// Request is one line of the request log. Auth names the credential's
// kind and fingerprint, never its value.
type Request struct {
	Time     time.Time
	Method   string
	Path     string
	Endpoint Endpoint
	Status   int
	Auth     string // "", "token:<fp>", "installation:<id>", "app-jwt:<app>", "runner:<id>"
	Injected bool
	// The headers GitHub asks clients for.
	Accept, APIVersion, UserAgent string
}

// Fault makes the Nth call (1-based; 0 means every call) to Endpoint
// answer Status with Body (a JSON message body when empty) and Header.
type Fault struct {
	Endpoint Endpoint
	Nth      int
	Status   int
	Body     string
	Header   http.Header
}

type app struct {
	id  string
	pub *rsa.PublicKey
}

type installation struct {
	id    int64
	appID string
	scope string
}

type bearer struct {
	kind    string // token, installation, registration
	scope   string // installations, registration tokens: their scope; "" = any
	instID  int64
	expires time.Time // zero: never
}

// Model is the served stand-in. All methods are safe for concurrent use.
type Model struct {
	opts    Options
	srv     *httptest.Server
	handler http.Handler
	prefix  string
	log     *slog.Logger

	mu        sync.Mutex
	now       func() time.Time
	apps      map[string]*app
	insts     map[int64]*installation
	bearers   map[string]*bearer // token value → what it is
	watch     []watched
	runners   map[int64]*Runner
	nextID    int64
	nextInst  int64
	nextJob   int64
	outcome   map[string]Outcome
	defOut    Outcome
	minVer    string
	jobSecs   float64
	regs      map[string]int
	sessions  map[string]int
	mints     []Mint
	leaks     []Leak
	reqs      []Request
	calls     map[Endpoint]int
	faults    []Fault
	instTTL   time.Duration
	keyBits   int
	advertise string
	sharedKey *rsa.PrivateKey
}

type watched struct{ kind, value string }

// New starts a model on 127.0.0.1. Close it when done.
func New(opts Options) *Model {
	m := &Model{
		opts:     opts,
		prefix:   strings.TrimRight(opts.PathPrefix, "/"),
		log:      opts.Logger,
		now:      opts.Now,
		apps:     map[string]*app{},
		insts:    map[int64]*installation{},
		bearers:  map[string]*bearer{},
		runners:  map[int64]*Runner{},
		nextID:   22, // GitHub's docs start their examples at 23
		nextInst: 1000,
		nextJob:  5000,
		outcome:  map[string]Outcome{},
		defOut:   OutcomeJob,
		regs:     map[string]int{},
		sessions: map[string]int{},
		calls:    map[Endpoint]int{},
		instTTL:  opts.InstallationTokenTTL,
		keyBits:  opts.RunnerKeyBits,
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.instTTL <= 0 {
		m.instTTL = time.Hour
	}
	if m.keyBits <= 0 {
		m.keyBits = 2048
	}
	h := m.routes()
	m.handler = h
	if opts.TLS {
		m.srv = httptest.NewTLSServer(h)
	} else {
		m.srv = httptest.NewServer(h)
	}
	m.advertise = strings.TrimRight(opts.AdvertiseURL, "/")
	if m.advertise == "" {
		m.advertise = m.srv.URL
	}
	return m
}

// Handler is the model's routes (API, with PathPrefix, and the runner
// service), for serving the model on another server too: the platform's
// HTTPS listener mounts it as api.github.com, so a runner VM's scripts
// reach it under GitHub's own name. Requests through it share the model's
// state, faults and request log. Set AdvertiseURL to that server's URL so
// JIT configs send runners there.
func (m *Model) Handler() http.Handler { return m.handler }

// Close stops the server.
func (m *Model) Close() { m.srv.Close() }

// URL is the API base (with PathPrefix), for runnerreg.Scope.WithAPIBase.
func (m *Model) URL() string { return m.srv.URL + m.prefix }

// ServerURL is the server's root URL, without PathPrefix.
func (m *Model) ServerURL() string { return m.srv.URL }

// RunnerURL is the advertised URL's /_standin/runner/: the service a
// runner's .runner names, and (+ "register") a register URL to bake into a
// stand-in runner; by default its config.sh registers at the API base
// derived from --url instead (<api base>/_standin/runner/register).
func (m *Model) RunnerURL() string { return m.advertise + "/_standin/runner/" }

// Client returns an HTTP client that trusts the server's certificate.
func (m *Model) Client() *http.Client { return m.srv.Client() }

// CertPEM is the TLS server's certificate in PEM (nil without TLS), for a
// runner's CA file or SSL_CERT_FILE.
func (m *Model) CertPEM() []byte {
	if m.srv.Certificate() == nil || !m.opts.TLS {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.srv.Certificate().Raw})
}

// SetNow replaces the model's clock (token expiry, JWT checks).
func (m *Model) SetNow(now func() time.Time) {
	m.mu.Lock()
	m.now = now
	m.mu.Unlock()
}

func (m *Model) clock() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now()
}

// AddToken accepts tok as a personal access token for every scope; it is
// also watched for leaks (kind "pat").
func (m *Model) AddToken(tok string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bearers[tok] = &bearer{kind: "token"}
	m.watch = append(m.watch, watched{"pat", tok})
}

// RegisterApp registers a GitHub App: JWTs issued by appID must verify with pub.
func (m *Model) RegisterApp(appID string, pub *rsa.PublicKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.apps[appID] = &app{id: appID, pub: pub}
}

// Install installs appID on a scope ("owner/repo" or "org") and returns
// the installation's ID.
func (m *Model) Install(appID, scope string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextInst++
	m.insts[m.nextInst] = &installation{id: m.nextInst, appID: appID, scope: scopeKey(scope)}
	return m.nextInst
}

// Watch adds a secret every runner is told to look for (a Key Vault token,
// a PAT the platform handed out); kind names it in leak reports.
func (m *Model) Watch(kind, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watch = append(m.watch, watched{kind, value})
}

// SetOutcome decides what the runner called name is told when it opens a
// session; SetDefaultOutcome does so for every other runner.
func (m *Model) SetOutcome(name string, o Outcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outcome[name] = o
}

// SetDefaultOutcome sets the outcome of runners without their own.
func (m *Model) SetDefaultOutcome(o Outcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.defOut = o
}

// SetMinRunnerVersion makes runners older than v stale, like GitHub's
// refusal of deprecated runner versions.
func (m *Model) SetMinRunnerVersion(v string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.minVer = v
}

// SetJobSeconds sets how long a job lasts (the runner scans for leaks
// meanwhile); default 0.
func (m *Model) SetJobSeconds(s float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobSecs = s
}

// Inject adds a fault.
func (m *Model) Inject(f Fault) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.faults = append(m.faults, f)
}

// Runners returns all runners ever registered, deleted ones included, by ID.
func (m *Model) Runners() []Runner {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Runner, 0, len(m.runners))
	for _, r := range m.runners {
		cp := *r
		cp.Labels = append([]string(nil), r.Labels...)
		cp.JobResults = append([]string(nil), r.JobResults...)
		out = append(out, cp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Runner returns runner id.
func (m *Model) Runner(id int64) (Runner, bool) {
	for _, r := range m.Runners() {
		if r.ID == id {
			return r, true
		}
	}
	return Runner{}, false
}

// Registrations counts the registrations (JIT mints and config.sh) of name.
func (m *Model) Registrations(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.regs[name]
}

// Sessions counts the sessions runner name opened.
func (m *Model) Sessions(name string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sessions[name]
}

// Mints lists the accepted JIT mints in order.
func (m *Model) Mints() []Mint {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Mint(nil), m.mints...)
}

// Leaks lists the leaks runners reported.
func (m *Model) Leaks() []Leak {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Leak(nil), m.leaks...)
}

// Requests returns the request log.
func (m *Model) Requests() []Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Request(nil), m.reqs...)
}

// Calls counts the calls to ep, injected failures included.
func (m *Model) Calls(ep Endpoint) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[ep]
}

// Fingerprint is how the model names a secret in logs: 12 hex of SHA-256.
func Fingerprint(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:6])
}

// scopeKey turns "owner/repo" or "org" (or "repos/o/r", "orgs/o") into the
// model's key "repos/o/r" or "orgs/o".
func scopeKey(s string) string {
	s = strings.Trim(s, "/")
	if strings.HasPrefix(s, "repos/") || strings.HasPrefix(s, "orgs/") {
		return strings.ToLower(s)
	}
	if strings.Contains(s, "/") {
		return "repos/" + strings.ToLower(s)
	}
	return "orgs/" + strings.ToLower(s)
}

// covers reports whether an installation on scope may act on target: an
// organization's installation covers its repositories.
func covers(scope, target string) bool {
	if scope == target {
		return true
	}
	if org, ok := strings.CutPrefix(scope, "orgs/"); ok {
		return strings.HasPrefix(target, "repos/"+org+"/")
	}
	return false
}

func (m *Model) logf(msg string, args ...any) { m.log.Info(fmt.Sprintf(msg, args...)) }
