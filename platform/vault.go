package platform

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// VaultSpec describes a Key Vault.
type VaultSpec struct {
	Name    string            // 3-24 characters: letters, digits, hyphens
	Secrets map[string]string // secret name → value
	// Readers are the resource IDs of identities granted "get secret"
	// (Key Vault Secrets User, or an access policy).
	Readers []string
}

type vault struct {
	name    string
	secrets map[string]secretVersion
	readers []string // lower-case identity resource IDs
}

type secretVersion struct {
	value   string
	version string
	created time.Time
}

var vaultNameRe = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$`)
var secretNameRe = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

// AddVault creates a vault, served at https://<name>.<cloud vault suffix>.
func (p *Platform) AddVault(spec VaultSpec) error {
	if !vaultNameRe.MatchString(spec.Name) || strings.Contains(spec.Name, "--") {
		return fmt.Errorf("vault %q: bad name", spec.Name)
	}
	v := &vault{name: strings.ToLower(spec.Name), secrets: map[string]secretVersion{}}
	now := p.cfg.Now()
	for k, val := range spec.Secrets {
		if !secretNameRe.MatchString(k) {
			return fmt.Errorf("vault %s: secret %q: bad name", spec.Name, k)
		}
		v.secrets[strings.ToLower(k)] = secretVersion{value: val, version: strings.ReplaceAll(newGUID(), "-", ""), created: now}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range spec.Readers {
		if _, ok := p.identities[strings.ToLower(r)]; !ok {
			return fmt.Errorf("vault %s: reader %s: identity not found", spec.Name, r)
		}
		v.readers = append(v.readers, strings.ToLower(r))
	}
	if _, dup := p.vaults[v.name]; dup {
		return fmt.Errorf("vault %s: already exists", spec.Name)
	}
	p.vaults[v.name] = v
	return nil
}

func kvError(w http.ResponseWriter, status int, code, msg string, inner string) {
	e := map[string]any{"code": code, "message": msg}
	if inner != "" {
		e["innererror"] = map[string]string{"code": inner}
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func (p *Platform) serveVault(w http.ResponseWriter, r *http.Request, name string) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	note := p.vaultRoute(rec, r, name)
	line := fmt.Sprintf("%s %s %s %d", name, r.Method, r.URL.Path, rec.status)
	if note != "" {
		line += " " + note
	}
	p.event("", "vault", line)
}

// vaultRoute answers GET /secrets/{name}[/{version}]. Shapes follow Key
// Vault's recorded answers: a 401 with a WWW-Authenticate challenge naming
// the tenant and resource, 403 ForbiddenByRbac, 404 SecretNotFound.
func (p *Platform) vaultRoute(w http.ResponseWriter, r *http.Request, name string) string {
	p.mu.Lock()
	v, ok := p.vaults[name]
	p.mu.Unlock()
	if !ok {
		// A real vault name that does not exist does not resolve at all.
		kvError(w, http.StatusNotFound, "VaultNotFound", "The vault "+name+" does not exist.", "")
		return ""
	}
	challenge := fmt.Sprintf(`Bearer authorization="https://login.microsoftonline.com/%s", resource="%s"`,
		p.cfg.TenantID, p.cloud.VaultAudiences[0])
	id, err := p.authenticate(r, p.cloud.VaultAudiences)
	if err != nil {
		w.Header().Set("WWW-Authenticate", challenge)
		var ae *authError
		errors.As(err, &ae)
		switch ae.code {
		case "AuthenticationFailed":
			kvError(w, http.StatusUnauthorized, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.", "")
		case "InvalidAuthenticationTokenAudience":
			kvError(w, http.StatusUnauthorized, "Unauthorized", fmt.Sprintf(
				"AKV10022: Invalid audience. Expected %s, found: %s.", p.cloud.VaultAudiences[0], audienceOf(p, r)), "")
		case "ExpiredAuthenticationToken":
			kvError(w, http.StatusUnauthorized, "Unauthorized", "AKV10021: Token is expired.", "")
		default:
			kvError(w, http.StatusUnauthorized, "Unauthorized", "AKV10032: Invalid issuer or signature.", "")
		}
		return "refused: " + ae.code
	}
	if r.URL.Query().Get("api-version") == "" {
		kvError(w, http.StatusBadRequest, "BadParameter", "The request URI contains an invalid or missing api-version.", "")
		return ""
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) < 2 || len(segs) > 3 || !strings.EqualFold(segs[0], "secrets") {
		kvError(w, http.StatusNotFound, "NotFound", "The requested resource was not found.", "")
		return ""
	}
	if r.Method != http.MethodGet {
		kvError(w, http.StatusMethodNotAllowed, "BadParameter", "Only reading secrets is played locally.", "")
		return ""
	}
	secret := segs[1]
	if !slices.Contains(v.readers, strings.ToLower(id.ID)) {
		kvError(w, http.StatusForbidden, "Forbidden", fmt.Sprintf(
			"Caller is not authorized to perform action on resource.\r\nCaller: appid=%s;oid=%s;iss=https://sts.windows.net/%s/\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nResource: '/subscriptions/%s/resourcegroups/local/providers/microsoft.keyvault/vaults/%s/secrets/%s'\r\nAssignment: (not found)\r\nDecisionReason: 'DeniedWithNoValidRBAC' \r\nVault: %s;location=%s\r\n",
			id.ClientID, id.PrincipalID, p.cfg.TenantID, p.cfg.SubscriptionID, name, strings.ToLower(secret), name, p.cfg.Location),
			"ForbiddenByRbac")
		return "refused: " + id.Name + " not a reader"
	}
	s, ok := v.secrets[strings.ToLower(secret)]
	if !ok || (len(segs) == 3 && segs[2] != "" && segs[2] != s.version) {
		kvError(w, http.StatusNotFound, "SecretNotFound", fmt.Sprintf(
			"A secret with (name/id) %s was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", secret), "")
		return ""
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"value": s.value,
		"id":    fmt.Sprintf("https://%s.%s/secrets/%s/%s", name, p.cloud.VaultSuffix, secret, s.version),
		"attributes": map[string]any{
			"enabled": true, "created": s.created.Unix(), "updated": s.created.Unix(),
			"recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90,
		},
		"tags": map[string]string{},
	})
	return "secret " + secret + " to " + id.Name // the value is never logged
}

// audienceOf reads the (verified) token's audience for an error message.
func audienceOf(p *Platform, r *http.Request) string {
	tok, _ := bearer(r.Header.Get("Authorization"))
	c, _ := p.signer.verify(tok, p.cfg.Now())
	return c.Aud
}
