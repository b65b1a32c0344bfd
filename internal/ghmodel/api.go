package ghmodel

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const docsURL = "https://docs.github.com/rest/actions/self-hosted-runners"

type ctxKey struct{}

// call carries one request through the middleware: what it was and who
// asked, for the log.
type call struct {
	ep   Endpoint
	auth string
}

func (m *Model) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern string, ep Endpoint, h func(http.ResponseWriter, *http.Request, *call)) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" "+m.prefix+path, m.wrap(ep, h))
	}
	for _, s := range []string{"/repos/{owner}/{repo}", "/orgs/{org}"} {
		api("GET "+s+"/installation", EpInstallation, m.getInstallation)
		api("POST "+s+"/actions/runners/generate-jitconfig", EpGenerateJIT, m.generateJIT)
		api("POST "+s+"/actions/runners/registration-token", EpRegToken, m.registrationToken)
		api("GET "+s+"/actions/runners", EpListRunners, m.listRunners)
		api("GET "+s+"/actions/runners/{id}", EpGetRunner, m.getRunner)
		api("DELETE "+s+"/actions/runners/{id}", EpDeleteRunner, m.deleteRunner)
	}
	api("POST /app/installations/{id}/access_tokens", EpAccessToken, m.accessToken)
	// config.sh registers with the API host, as the real runner POSTs
	// <api base>/actions/runner-registration: https://api.github.com, or
	// https://HOST/api/v3 on GitHub Enterprise Server. So the register
	// endpoint is served under the API prefix too (and at the root, for
	// stand-in runners built with a fixed register URL).
	mux.HandleFunc("POST /_standin/runner/register", m.wrap(EpRunnerRegister, m.runnerRegister))
	if m.prefix != "" {
		mux.HandleFunc("POST "+m.prefix+"/_standin/runner/register", m.wrap(EpRunnerRegister, m.runnerRegister))
	}
	// The rest of the runner-facing service is never under the API prefix:
	// it stands for the Actions service, another host in reality.
	mux.HandleFunc("POST /_standin/runner/session", m.wrap(EpRunnerSession, m.runnerSession))
	mux.HandleFunc("POST /_standin/runner/done", m.wrap(EpRunnerDone, m.runnerDone))
	mux.HandleFunc("POST /_standin/runner/leak", m.wrap(EpRunnerLeak, m.runnerLeak))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		m.record(r, "", http.StatusNotFound, "", false)
		writeErr(w, http.StatusNotFound, "Not Found")
	})
	return mux
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// wrap counts the call, applies injected faults and logs the request.
func (m *Model) wrap(ep Endpoint, h func(http.ResponseWriter, *http.Request, *call)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		m.mu.Lock()
		m.calls[ep]++
		n := m.calls[ep]
		var fault *Fault
		for i := range m.faults {
			f := m.faults[i]
			if f.Endpoint == ep && (f.Nth == 0 || f.Nth == n) {
				fault = &f
				break
			}
		}
		m.mu.Unlock()
		c := &call{ep: ep}
		if fault != nil {
			for k, vs := range fault.Header {
				for _, v := range vs {
					w.Header().Add(k, v)
				}
			}
			m.record(r, ep, fault.Status, "", true)
			if fault.Body == "" {
				writeErr(w, fault.Status, http.StatusText(fault.Status))
				return
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(fault.Status)
			_, _ = io.WriteString(w, fault.Body)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		w.Header().Set("X-GitHub-Api-Version-Selected", "2022-11-28")
		if r.Header.Get("User-Agent") == "" && !strings.HasPrefix(string(ep), "runner-") {
			// GitHub refuses API requests without a User-Agent.
			writeErr(sw, http.StatusForbidden, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.")
		} else {
			h(sw, r, c)
		}
		m.record(r, ep, sw.status, c.auth, false)
	}
}

func (m *Model) record(r *http.Request, ep Endpoint, status int, auth string, injected bool) {
	m.mu.Lock()
	m.reqs = append(m.reqs, Request{Time: m.now(), Method: r.Method, Path: r.URL.Path, Endpoint: ep, Status: status, Auth: auth, Injected: injected,
		Accept: r.Header.Get("Accept"), APIVersion: r.Header.Get("X-GitHub-Api-Version"), UserAgent: r.Header.Get("User-Agent")})
	m.mu.Unlock()
	m.logf("ghmodel: %s %s → %d %s", r.Method, r.URL.Path, status, auth)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr answers GitHub's error shape.
func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"message": msg, "documentation_url": docsURL, "status": strconv.Itoa(status)})
}

func bearerOf(r *http.Request) string {
	h := r.Header.Get("Authorization")
	for _, p := range []string{"Bearer ", "bearer ", "token ", "Token "} {
		if v, ok := strings.CutPrefix(h, p); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func reqScope(r *http.Request) string {
	if org := r.PathValue("org"); org != "" {
		return "orgs/" + strings.ToLower(org)
	}
	return "repos/" + strings.ToLower(r.PathValue("owner")) + "/" + strings.ToLower(r.PathValue("repo"))
}

// authScope checks a token or installation token for the request's scope,
// answering as GitHub does when it fails.
func (m *Model) authScope(w http.ResponseWriter, r *http.Request, c *call) (string, bool) {
	scope := reqScope(r)
	tok := bearerOf(r)
	if tok == "" {
		writeErr(w, http.StatusUnauthorized, "Requires authentication")
		return "", false
	}
	m.mu.Lock()
	b, ok := m.bearers[tok]
	now := m.now()
	m.mu.Unlock()
	if !ok || b.kind == "registration" {
		if strings.Count(tok, ".") == 2 {
			c.auth = "app-jwt"
			writeErr(w, http.StatusForbidden, "Resource not accessible by integration")
			return "", false
		}
		writeErr(w, http.StatusUnauthorized, "Bad credentials")
		return "", false
	}
	switch b.kind {
	case "token":
		c.auth = "token:" + Fingerprint(tok)
	case "installation":
		c.auth = "installation:" + strconv.FormatInt(b.instID, 10)
		if !b.expires.IsZero() && !now.Before(b.expires) {
			writeErr(w, http.StatusUnauthorized, "Bad credentials")
			return "", false
		}
		if !covers(b.scope, scope) {
			writeErr(w, http.StatusForbidden, "Resource not accessible by integration")
			return "", false
		}
	}
	return scope, true
}

// authApp verifies a GitHub App JWT as GitHub does: RS256 only, signed by
// the registered key of the app named in iss, iat not in the future, exp
// in the future and at most 10 minutes ahead.
func (m *Model) authApp(w http.ResponseWriter, r *http.Request, c *call) (*app, bool) {
	tok := bearerOf(r)
	if tok == "" {
		writeErr(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return nil, false
	}
	now := m.clock()
	var a *app
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		iss := issuer(t.Claims.(jwt.MapClaims)["iss"])
		m.mu.Lock()
		a = m.apps[iss]
		m.mu.Unlock()
		if a == nil {
			return nil, fmt.Errorf("unknown issuer")
		}
		return a.pub, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithoutClaimsValidation())
	if err != nil || a == nil {
		c.auth = "app-jwt:?"
		writeErr(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return nil, false
	}
	c.auth = "app-jwt:" + a.id
	iat, errI := claims.GetIssuedAt()
	exp, errE := claims.GetExpirationTime()
	switch {
	case errI != nil || iat == nil || iat.After(now.Add(30*time.Second)):
		writeErr(w, http.StatusUnauthorized, "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued")
	case errE != nil || exp == nil || !exp.After(now):
		writeErr(w, http.StatusUnauthorized, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires")
	case exp.Sub(iat.Time) > 10*time.Minute || exp.After(now.Add(10*time.Minute+30*time.Second)):
		writeErr(w, http.StatusUnauthorized, "'Expiration time' claim ('exp') is too far in the future")
	default:
		return a, true
	}
	return nil, false
}

func issuer(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatInt(int64(x), 10)
	case json.Number:
		return x.String()
	}
	return ""
}

func (m *Model) getInstallation(w http.ResponseWriter, r *http.Request, c *call) {
	a, ok := m.authApp(w, r, c)
	if !ok {
		return
	}
	scope := reqScope(r)
	m.mu.Lock()
	// A repository's installation may be its organization's (the app
	// installed on the organization with access to the repository).
	var found *installation
	for _, in := range m.insts {
		if in.appID == a.id && covers(in.scope, scope) && (found == nil || in.scope == scope) {
			found = in
		}
	}
	m.mu.Unlock()
	if found == nil {
		writeErr(w, http.StatusNotFound, "Not Found")
		return
	}
	login := strings.Split(strings.SplitN(scope, "/", 2)[1], "/")[0]
	typ := "User"
	if strings.HasPrefix(scope, "orgs/") {
		typ = "Organization"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": found.id, "app_id": appIDValue(a.id), "target_type": typ,
		"account":              map[string]any{"login": login, "type": typ},
		"permissions":          map[string]string{"administration": "write", "organization_self_hosted_runners": "write", "metadata": "read"},
		"repository_selection": "selected",
	})
}

func appIDValue(id string) any {
	if n, err := strconv.ParseInt(id, 10, 64); err == nil {
		return n
	}
	return id
}

func (m *Model) accessToken(w http.ResponseWriter, r *http.Request, c *call) {
	a, ok := m.authApp(w, r, c)
	if !ok {
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	m.mu.Lock()
	in := m.insts[id]
	m.mu.Unlock()
	if in == nil || in.appID != a.id {
		writeErr(w, http.StatusNotFound, "Not Found")
		return
	}
	tok := "ghs_" + randToken(36)
	m.mu.Lock()
	exp := m.now().Add(m.instTTL).UTC().Truncate(time.Second)
	m.bearers[tok] = &bearer{kind: "installation", scope: in.scope, instID: in.id, expires: exp}
	m.watch = append(m.watch, watched{"installation-token", tok})
	m.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"token": tok, "expires_at": exp.Format(time.RFC3339),
		"permissions":          map[string]string{"administration": "write", "organization_self_hosted_runners": "write"},
		"repository_selection": "selected",
	})
}

type labelJSON struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

type runnerJSON struct {
	ID            int64       `json:"id"`
	Name          string      `json:"name"`
	OS            string      `json:"os"`
	Status        string      `json:"status"`
	Busy          bool        `json:"busy"`
	Ephemeral     bool        `json:"ephemeral"`
	RunnerGroupID int64       `json:"runner_group_id"`
	Labels        []labelJSON `json:"labels"`
}

func (r *Runner) json() runnerJSON {
	out := runnerJSON{ID: r.ID, Name: r.Name, OS: "unknown", Status: r.Status, Busy: r.Busy, Ephemeral: r.Ephemeral, RunnerGroupID: r.RunnerGroupID}
	if r.Version != "" {
		out.OS = "linux" // known once the runner has connected
	}
	out.Labels = append(out.Labels, labelJSON{ID: 1, Name: "self-hosted", Type: "read-only"})
	for i, l := range r.Labels {
		out.Labels = append(out.Labels, labelJSON{ID: int64(100 + i), Name: l, Type: "custom"})
	}
	return out
}

func (m *Model) generateJIT(w http.ResponseWriter, r *http.Request, c *call) {
	scope, ok := m.authScope(w, r, c)
	if !ok {
		return
	}
	var body struct {
		Name          *string  `json:"name"`
		RunnerGroupID *int64   `json:"runner_group_id"`
		Labels        []string `json:"labels"`
		WorkFolder    string   `json:"work_folder"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErr(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	switch {
	case body.Name == nil:
		writeErr(w, http.StatusUnprocessableEntity, "Invalid request.\n\n\"name\" wasn't supplied.")
		return
	case body.RunnerGroupID == nil:
		writeErr(w, http.StatusUnprocessableEntity, "Invalid input: object is missing required key: runner_group_id.")
		return
	case len(body.Labels) < 1 || len(body.Labels) > 100:
		writeErr(w, http.StatusUnprocessableEntity, "Invalid request.\n\nFor 'properties/labels', the array must have between 1 and 100 items.")
		return
	case *body.RunnerGroupID != 1:
		writeErr(w, http.StatusNotFound, "Not Found")
		return
	}
	wf := body.WorkFolder
	if wf == "" {
		wf = "_work"
	}
	rn, files, status, msg := m.createRunner(scope, *body.Name, body.Labels, *body.RunnerGroupID, wf, true, false, false)
	if rn == nil {
		writeErr(w, status, msg)
		return
	}
	m.mu.Lock()
	rn.jit = files.encoded()
	m.mints = append(m.mints, Mint{RunnerID: rn.ID, Name: rn.Name, Scope: scope, Labels: append([]string(nil), rn.Labels...), RunnerGroupID: rn.RunnerGroupID, WorkFolder: wf})
	j := rn.json()
	m.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"runner": j, "encoded_jit_config": rn.jit})
}

// createRunner registers a runner (JIT or config.sh) and builds its files.
// replace removes a runner of the same name first, as config.sh --replace.
func (m *Model) createRunner(scope, name string, labels []string, group int64, work string, jit, ephemeral, replace bool) (*Runner, runnerFiles, int, string) {
	m.mu.Lock()
	key := m.sharedKey
	m.mu.Unlock()
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, m.keyBits); err != nil {
			return nil, nil, http.StatusInternalServerError, "key generation failed"
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.opts.ReuseRunnerKey && m.sharedKey == nil {
		m.sharedKey = key
	}
	for _, old := range m.runners {
		if !old.Deleted && old.Scope == scope && strings.EqualFold(old.Name, name) {
			if !replace {
				return nil, nil, http.StatusConflict, "Already exists - A runner with the name " + name + " already exists."
			}
			old.Deleted = true
		}
	}
	m.nextID++
	rn := &Runner{ID: m.nextID, Name: name, Scope: scope, Labels: append([]string(nil), labels...), RunnerGroupID: group,
		WorkFolder: work, Status: "offline", Ephemeral: ephemeral || jit, JIT: jit, clientID: randUUID(), pub: &key.PublicKey}
	m.runners[rn.ID] = rn
	m.regs[name]++
	files := m.runnerFilesLocked(rn, key, jit)
	return rn, files, 0, ""
}

func (m *Model) registrationToken(w http.ResponseWriter, r *http.Request, c *call) {
	scope, ok := m.authScope(w, r, c)
	if !ok {
		return
	}
	tok := strings.ToUpper(randToken(29))
	m.mu.Lock()
	exp := m.now().Add(time.Hour).UTC().Truncate(time.Second)
	m.bearers[tok] = &bearer{kind: "registration", scope: scope, expires: exp}
	m.watch = append(m.watch, watched{"registration-token", tok})
	m.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]string{"token": tok, "expires_at": exp.Format(time.RFC3339)})
}

func (m *Model) listRunners(w http.ResponseWriter, r *http.Request, c *call) {
	scope, ok := m.authScope(w, r, c)
	if !ok {
		return
	}
	perPage, _ := strconv.Atoi(r.URL.Query().Get("per_page"))
	if perPage <= 0 {
		perPage = 30
	}
	perPage = min(perPage, 100)
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	m.mu.Lock()
	var all []runnerJSON
	for _, rn := range m.runners {
		// An organization's list holds its own runners, not its
		// repositories' (GitHub lists those per repository).
		if !rn.Deleted && rn.Scope == scope {
			all = append(all, rn.json())
		}
	}
	m.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	lo := min((page-1)*perPage, len(all))
	hi := min(lo+perPage, len(all))
	last := max((len(all)+perPage-1)/perPage, 1)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	link := func(p int, rel string) string {
		return fmt.Sprintf(`<%s://%s%s?per_page=%d&page=%d>; rel="%s"`, scheme, r.Host, r.URL.Path, perPage, p, rel)
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(page-1, "prev"))
	}
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_count": len(all), "runners": append([]runnerJSON{}, all[lo:hi]...)})
}

func (m *Model) findRunner(r *http.Request, scope string) *Runner {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	rn := m.runners[id]
	if rn == nil || rn.Deleted || rn.Scope != scope {
		return nil
	}
	return rn
}

func (m *Model) getRunner(w http.ResponseWriter, r *http.Request, c *call) {
	scope, ok := m.authScope(w, r, c)
	if !ok {
		return
	}
	m.mu.Lock()
	rn := m.findRunner(r, scope)
	var j runnerJSON
	if rn != nil {
		j = rn.json()
	}
	m.mu.Unlock()
	if rn == nil {
		writeErr(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (m *Model) deleteRunner(w http.ResponseWriter, r *http.Request, c *call) {
	scope, ok := m.authScope(w, r, c)
	if !ok {
		return
	}
	m.mu.Lock()
	rn := m.findRunner(r, scope)
	busy := rn != nil && rn.Busy
	if rn != nil && !busy {
		rn.Deleted = true
	}
	m.mu.Unlock()
	switch {
	case rn == nil:
		writeErr(w, http.StatusNotFound, "Not Found")
	case busy:
		writeErr(w, http.StatusUnprocessableEntity, "Bad request - Runner \""+rn.Name+"\" is still running a job\"")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
