package runnerreg

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AppCredentials identify a GitHub App: its ID (or client ID, which GitHub
// also accepts as the JWT issuer) and its private key in PEM.
type AppCredentials struct {
	AppID      string
	PrivateKey Secret // PEM; see LoadPrivateKey
	// InstallationID skips the installation lookup when known.
	InstallationID int64
}

// LoadPrivateKey reads an App's PEM private key from a file, or from the
// content of an environment variable (CI systems hand keys over that way).
// Exactly one of path and envVar may be set.
func LoadPrivateKey(path, envVar string) (Secret, error) {
	switch {
	case path != "" && envVar != "":
		return Secret{}, errors.New("GitHub App private key: give a file or an environment variable, not both")
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return Secret{}, fmt.Errorf("GitHub App private key: %w", err)
		}
		return NewSecret(string(b)), nil
	case envVar != "":
		v, ok := os.LookupEnv(envVar)
		if !ok || strings.TrimSpace(v) == "" {
			return Secret{}, fmt.Errorf("GitHub App private key: environment variable %s is empty", envVar)
		}
		return NewSecret(v), nil
	}
	return Secret{}, errors.New("GitHub App private key: no file or environment variable given")
}

// CredentialsFromEnv picks the credential in imagebake's order: a GitHub
// App when appID is set (key from keyFile or the variable keyEnv), else
// the token in GITHUB_TOKEN. getenv is os.Getenv in production.
func CredentialsFromEnv(appID, keyFile, keyEnv string, getenv func(string) string) (*AppCredentials, Secret, error) {
	if appID != "" {
		if keyFile == "" && keyEnv == "" {
			return nil, Secret{}, fmt.Errorf("GitHub App %s: no private key (a file or an environment variable)", appID)
		}
		var key Secret
		var err error
		if keyFile != "" {
			key, err = LoadPrivateKey(keyFile, "")
		} else {
			v := getenv(keyEnv)
			if strings.TrimSpace(v) == "" {
				return nil, Secret{}, fmt.Errorf("GitHub App %s: environment variable %s is empty", appID, keyEnv)
			}
			key = NewSecret(v)
		}
		if err != nil {
			return nil, Secret{}, err
		}
		return &AppCredentials{AppID: appID, PrivateKey: key}, Secret{}, nil
	}
	if t := strings.TrimSpace(getenv("GITHUB_TOKEN")); t != "" {
		return nil, NewSecret(t), nil
	}
	return nil, Secret{}, errors.New("no GitHub credential: set a GitHub App (ID and private key) or GITHUB_TOKEN")
}

type tokenAuth struct{ t Secret }

func (a tokenAuth) token(context.Context) (Secret, error) { return a.t, nil }
func (a tokenAuth) secrets() []string                     { return []string{a.t.v} }
func (a tokenAuth) kind() string                          { return "token" }
func (a tokenAuth) invalidate()                           {}

// appAuth mints installation tokens and caches one until shortly before it
// expires.
type appAuth struct {
	c     *Client
	appID string
	key   *rsa.PrivateKey

	mintMu sync.Mutex // one exchange at a time: parallel launches share it

	mu        sync.Mutex
	instID    int64
	tok       Secret
	expiresAt time.Time
	lastJWT   string
}

// refreshBefore is how long before its expiry a cached installation token
// is replaced: a long job of calls must not start with a dying token.
const refreshBefore = 5 * time.Minute

func newAppAuth(c *Client, a AppCredentials) (*appAuth, error) {
	if strings.TrimSpace(a.AppID) == "" {
		return nil, errors.New("GitHub App: no app ID")
	}
	if _, err := strconv.ParseInt(a.AppID, 10, 64); err != nil && !strings.HasPrefix(a.AppID, "Iv") {
		return nil, fmt.Errorf("GitHub App %q: not an app ID or client ID", sanitize(a.AppID, nil))
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(a.PrivateKey.Reveal()))
	if err != nil {
		// jwt's message names the PEM problem, never the key's bytes.
		return nil, fmt.Errorf("GitHub App %s: private key: %w", a.AppID, err)
	}
	return &appAuth{c: c, appID: a.AppID, key: key, instID: a.InstallationID}, nil
}

func (a *appAuth) kind() string { return "app" }

// invalidate drops the cached token (GitHub answered 401 to it: revoked,
// or the installation changed).
func (a *appAuth) invalidate() {
	a.mu.Lock()
	a.tok, a.expiresAt = Secret{}, time.Time{}
	a.mu.Unlock()
}

func (a *appAuth) secrets() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return []string{a.tok.v, a.lastJWT}
}

// appJWT signs the App's JWT: issued 60 s in the past against clock drift,
// expiring 9 min later (GitHub refuses more than 10 min).
func (a *appAuth) appJWT() (Secret, error) {
	now := a.c.now()
	claims := jwt.RegisteredClaims{
		Issuer:    a.appID,
		IssuedAt:  jwt.NewNumericDate(now.Add(-60 * time.Second)),
		ExpiresAt: jwt.NewNumericDate(now.Add(9 * time.Minute)),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(a.key)
	if err != nil {
		return Secret{}, fmt.Errorf("GitHub App %s: signing JWT: %w", a.appID, err)
	}
	a.mu.Lock()
	a.lastJWT = s
	a.mu.Unlock()
	return NewSecret(s), nil
}

func (a *appAuth) cached() (Secret, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.tok.IsZero() && a.c.now().Before(a.expiresAt.Add(-refreshBefore)) {
		return a.tok, true
	}
	return Secret{}, false
}

func (a *appAuth) token(ctx context.Context) (Secret, error) {
	if t, ok := a.cached(); ok {
		return t, nil
	}
	a.mintMu.Lock()
	defer a.mintMu.Unlock()
	if t, ok := a.cached(); ok { // another caller minted it meanwhile
		return t, nil
	}
	a.mu.Lock()
	instID := a.instID
	a.mu.Unlock()

	jwtCred := func(context.Context) (Secret, error) { return a.appJWT() }
	if instID == 0 {
		var inst struct {
			ID int64 `json:"id"`
		}
		if _, err := a.c.do(ctx, request{method: "GET", path: a.c.scope.Path() + "/installation", want: []int{200}, cred: jwtCred}, &inst); err != nil {
			return Secret{}, fmt.Errorf("GitHub App %s installation on %s: %w", a.appID, a.c.scope, err)
		}
		if inst.ID == 0 {
			return Secret{}, fmt.Errorf("GitHub App %s installation on %s: answer has no id", a.appID, a.c.scope)
		}
		instID = inst.ID
	}
	var at struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	path := "/app/installations/" + strconv.FormatInt(instID, 10) + "/access_tokens"
	if _, err := a.c.do(ctx, request{method: "POST", path: path, want: []int{201}, cred: jwtCred}, &at); err != nil {
		return Secret{}, fmt.Errorf("GitHub App %s installation %d token: %w", a.appID, instID, err)
	}
	if at.Token == "" {
		return Secret{}, fmt.Errorf("GitHub App %s installation %d token: answer has no token", a.appID, instID)
	}
	if at.ExpiresAt.IsZero() {
		at.ExpiresAt = a.c.now().Add(time.Hour) // GitHub's documented lifetime
	}
	a.mu.Lock()
	a.instID, a.tok, a.expiresAt = instID, NewSecret(at.Token), at.ExpiresAt
	a.mu.Unlock()
	a.c.log.LogAttrs(ctx, slog.LevelDebug, "github app: installation token minted",
		slog.Int64("installation", instID), slog.Time("expires", at.ExpiresAt))
	return NewSecret(at.Token), nil
}
