package ghmodel

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// runnerFiles are a runner's local configuration files by name, as the
// JIT config carries them.
type runnerFiles map[string][]byte

// encoded is the JIT config format of actions/runner
// (src/Runner.Listener/Runner.cs): base64 of a JSON object mapping each
// file name in the runner's root (.runner, .credentials,
// .credentials_rsaparams) to the base64 of its content.
func (f runnerFiles) encoded() string {
	m := map[string]string{}
	for k, v := range f {
		m[k] = base64.StdEncoding.EncodeToString(v)
	}
	b, _ := json.Marshal(m)
	return base64.StdEncoding.EncodeToString(b)
}

func b64(n *big.Int) string { return base64.StdEncoding.EncodeToString(n.Bytes()) }

// runnerFilesLocked builds the files of rn in the shapes the real runner
// writes: .runner (RunnerSettings), .credentials (OAuth with a client ID)
// and .credentials_rsaparams (RSAParametersSerializable). serverUrl points
// back at this model.
func (m *Model) runnerFilesLocked(rn *Runner, key *rsa.PrivateKey, jit bool) runnerFiles {
	server := m.advertise + "/_standin/runner/"
	settings := map[string]any{
		"agentId": rn.ID, "agentName": rn.Name, "poolId": rn.RunnerGroupID, "poolName": "Default",
		"serverUrl": server, "workFolder": rn.WorkFolder,
	}
	if rn.Ephemeral {
		settings["ephemeral"] = true
	}
	if !jit {
		// A JIT runner's .runner has no gitHubUrl (Runner.cs's comment on
		// IsHostedServer); config.sh writes the URL it was given.
		settings["gitHubUrl"] = githubURL(rn.Scope)
	}
	creds := map[string]any{"scheme": "OAuth", "data": map[string]string{
		"clientId": rn.clientID, "authorizationUrl": server + "oauth2/token", "requireFipsCryptography": "True",
	}}
	key.Precompute()
	rsaParams := map[string]string{
		"d": b64(key.D), "dp": b64(key.Precomputed.Dp), "dq": b64(key.Precomputed.Dq),
		"exponent": b64(big.NewInt(int64(key.E))), "inverseQ": b64(key.Precomputed.Qinv),
		"modulus": b64(key.N), "p": b64(key.Primes[0]), "q": b64(key.Primes[1]),
	}
	enc := func(v any) []byte { b, _ := json.MarshalIndent(v, "", "  "); return b }
	return runnerFiles{".runner": enc(settings), ".credentials": enc(creds), ".credentials_rsaparams": enc(rsaParams)}
}

func githubURL(scope string) string {
	if s, ok := strings.CutPrefix(scope, "repos/"); ok {
		return "https://github.com/" + s
	}
	return "https://github.com/" + strings.TrimPrefix(scope, "orgs/")
}

// scopeOfURL maps config.sh's --url (https://HOST/OWNER[/REPO]) to a scope key.
func scopeOfURL(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", false
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] != "":
		return "orgs/" + strings.ToLower(parts[0]), true
	case len(parts) == 2:
		return "repos/" + strings.ToLower(parts[0]+"/"+strings.TrimSuffix(parts[1], ".git")), true
	}
	return "", false
}

func randToken(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func randUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// runnerRegister is config.sh's registration: a registration token for the
// scope named by --url buys a runner and its files.
func (m *Model) runnerRegister(w http.ResponseWriter, r *http.Request, c *call) {
	var body struct {
		URL           string   `json:"url"`
		Token         string   `json:"token"`
		Name          string   `json:"name"`
		Labels        []string `json:"labels"`
		RunnerGroup   string   `json:"runnerGroup"`
		Work          string   `json:"work"`
		Ephemeral     bool     `json:"ephemeral"`
		DisableUpdate bool     `json:"disableUpdate"`
		Replace       bool     `json:"replace"`
		Version       string   `json:"version"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErr(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	scope, ok := scopeOfURL(body.URL)
	if !ok {
		writeErr(w, http.StatusNotFound, "Not Found")
		return
	}
	m.mu.Lock()
	b := m.bearers[body.Token]
	now := m.now()
	m.mu.Unlock()
	c.auth = "registration:" + Fingerprint(body.Token)
	if b == nil || b.kind != "registration" || b.scope != scope || !now.Before(b.expires) {
		writeErr(w, http.StatusNotFound, "Http response code: NotFound from 'POST https://api.github.com/actions/runner-registration'")
		return
	}
	if body.RunnerGroup != "" && body.RunnerGroup != "Default" && body.RunnerGroup != "1" {
		writeErr(w, http.StatusNotFound, "Could not find any self-hosted runner group named \""+body.RunnerGroup+"\".")
		return
	}
	if body.Work == "" {
		body.Work = "_work"
	}
	rn, files, status, msg := m.createRunner(scope, body.Name, body.Labels, 1, body.Work, false, body.Ephemeral, body.Replace)
	if rn == nil {
		writeErr(w, status, msg)
		return
	}
	m.mu.Lock()
	rn.DisableUpdate = body.DisableUpdate
	rn.Version = body.Version
	m.mu.Unlock()
	out := map[string]string{}
	for k, v := range files {
		out[k] = base64.StdEncoding.EncodeToString(v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"runner": map[string]any{"id": rn.ID, "name": rn.Name}, "files": out})
}

type runnerProof struct {
	RunnerID int64  `json:"runnerId"`
	ClientID string `json:"clientId"`
	Time     int64  `json:"time"`
	Proof    string `json:"proof"`
	Version  string `json:"version"`
	JobID    int64  `json:"jobId"`
	Result   string `json:"result"`
	// The leak scan's reach, reported with the job's result.
	Journal   string `json:"journal"`
	Processes int    `json:"processes"`
}

// verifyProof checks that the runner holds its .credentials_rsaparams key:
// proof is sha256("clientId:runnerId:time") raised to the private exponent
// (textbook RSA over the hash; a stand-in for the real OAuth JWT grant).
func verifyProof(pub *rsa.PublicKey, p runnerProof, now time.Time) bool {
	if d := now.Unix() - p.Time; d > 300 || d < -300 {
		return false
	}
	sig, ok := new(big.Int).SetString(p.Proof, 16)
	if !ok {
		return false
	}
	h := sha256.Sum256([]byte(p.ClientID + ":" + strconv.FormatInt(p.RunnerID, 10) + ":" + strconv.FormatInt(p.Time, 10)))
	want := new(big.Int).SetBytes(h[:])
	got := new(big.Int).Exp(sig, big.NewInt(int64(pub.E)), pub.N)
	return got.Cmp(want) == 0
}

// authRunner finds the runner a proof is for; ok is false (and the answer
// written) when it is unknown, deleted or the proof fails.
func (m *Model) authRunner(w http.ResponseWriter, r *http.Request, c *call) (*Runner, runnerProof, bool) {
	var p runnerProof
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		writeErr(w, http.StatusBadRequest, "Problems parsing JSON")
		return nil, p, false
	}
	c.auth = "runner:" + strconv.FormatInt(p.RunnerID, 10)
	m.mu.Lock()
	rn := m.runners[p.RunnerID]
	now := m.now()
	m.mu.Unlock()
	if rn == nil || rn.Deleted || rn.clientID != p.ClientID || !verifyProof(rn.pub, p, now) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"action": string(OutcomeRefuse),
			"message": "Failed to create a session. The runner registration has been deleted from the server, please re-configure. Runner registrations are automatically deleted for runners that have not connected to the service recently."})
		return nil, p, false
	}
	return rn, p, true
}

// olderThan compares dotted numeric versions.
func olderThan(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y int
		if i < len(a) {
			x, _ = strconv.Atoi(a[i])
		}
		if i < len(b) {
			y, _ = strconv.Atoi(b[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func (m *Model) runnerSession(w http.ResponseWriter, r *http.Request, c *call) {
	rn, p, ok := m.authRunner(w, r, c)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[rn.Name]++
	rn.Version = p.Version
	out, set := m.outcome[rn.Name]
	if !set {
		out = m.defOut
	}
	if m.minVer != "" && olderThan(p.Version, m.minVer) {
		out = OutcomeStale
	}
	switch out {
	case OutcomeRefuse:
		writeJSON(w, http.StatusUnauthorized, map[string]string{"action": string(out), "message": "Unauthorized: the runner's credentials were refused."})
	case OutcomeStale:
		writeJSON(w, http.StatusForbidden, map[string]string{"action": string(out), "message": "Runner version v" + p.Version + " is deprecated and cannot receive messages."})
	case OutcomeRetry:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"action": string(out), "message": "The service is temporarily unavailable."})
	default:
		rn.Status, rn.Busy = "online", true
		m.nextJob++
		watch := []map[string]string{}
		seen := map[string]bool{}
		add := func(kind, v string) {
			if v != "" && !seen[v] {
				seen[v] = true
				watch = append(watch, map[string]string{"kind": kind, "value": v})
			}
		}
		add("jitconfig", rn.jit)
		for _, x := range m.watch {
			add(x.kind, x.value)
		}
		writeJSON(w, http.StatusOK, map[string]any{"action": string(OutcomeJob),
			"job":   map[string]any{"id": m.nextJob, "name": "stand-in job", "seconds": m.jobSecs},
			"watch": watch})
	}
}

func (m *Model) runnerDone(w http.ResponseWriter, r *http.Request, c *call) {
	rn, p, ok := m.authRunner(w, r, c)
	if !ok {
		return
	}
	m.mu.Lock()
	rn.Busy, rn.Status = false, "offline"
	rn.JobsDone++
	rn.JobResults = append(rn.JobResults, p.Result)
	rn.JournalScope, rn.ProcessesScanned = p.Journal, p.Processes
	if rn.Ephemeral {
		// GitHub removes an ephemeral runner once its job is done.
		rn.Deleted = true
	}
	m.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// runnerLeak records a leak report. It needs no proof: a report must get
// through even from a runner whose credentials are refused.
func (m *Model) runnerLeak(w http.ResponseWriter, r *http.Request, c *call) {
	var body struct {
		RunnerID    int64  `json:"runnerId"`
		RunnerName  string `json:"runnerName"`
		Kind        string `json:"kind"`
		Where       string `json:"where"`
		Fingerprint string `json:"fingerprint"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeErr(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	c.auth = "runner:" + strconv.FormatInt(body.RunnerID, 10)
	clean := func(s string, n int) string {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, s)
		if len(s) > n {
			s = s[:n]
		}
		return s
	}
	m.mu.Lock()
	m.leaks = append(m.leaks, Leak{RunnerID: body.RunnerID, RunnerName: clean(body.RunnerName, 64), Kind: clean(body.Kind, 40),
		Where: clean(body.Where, 200), Fingerprint: clean(body.Fingerprint, 12)})
	m.mu.Unlock()
	m.logf("ghmodel: runner %d reported a leaked %s in %s", body.RunnerID, clean(body.Kind, 40), clean(body.Where, 200))
	writeJSON(w, http.StatusOK, map[string]string{"status": "recorded"})
}

// DecodeJITConfig decodes an encoded JIT config into its files, for tests
// that check what a runner would write.
func DecodeJITConfig(encoded string) (map[string][]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("JIT config: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("JIT config: %w", err)
	}
	out := map[string][]byte{}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b, err := base64.StdEncoding.DecodeString(m[k])
		if err != nil {
			return nil, fmt.Errorf("JIT config file %s: %w", k, err)
		}
		out[k] = b
	}
	return out, nil
}
