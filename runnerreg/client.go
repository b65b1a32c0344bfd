// Package runnerreg registers GitHub Actions self-hosted runners through
// GitHub's REST API: just-in-time runner configurations (one per VM),
// registration tokens (the keyvault-pat mode's config.sh), runner listing
// and deletion. It authenticates as a GitHub App (installation tokens,
// minted from an RS256 JWT and cached until near expiry) or with a token.
//
// Secrets that pass through it (tokens, JIT configs) are Secret values and
// never appear in its errors or log lines.
package runnerreg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// APIVersion is the REST API version every request asks for.
const APIVersion = "2022-11-28"

// maxBody bounds what is read of a response; runner lists are the largest
// (100 runners a page, a few hundred bytes each).
const maxBody = 8 << 20

// Options configure a Client. Scope is required, and one credential:
// App (preferred) or Token.
type Options struct {
	Scope Scope
	// App authenticates as a GitHub App installation; it wins over Token.
	App *AppCredentials
	// Token is a PAT or GITHUB_TOKEN-style token sent as a bearer token.
	Token Secret
	// HTTPClient defaults to a client with a 30 s timeout. Its redirect
	// policy is replaced: a redirect may not change host or leave https.
	HTTPClient *http.Client
	Logger     *slog.Logger // defaults to a discarding logger
	UserAgent  string       // defaults to "imagebake-runnerreg"
	// MaxRetries bounds retries of 5xx, 429 and secondary rate limits
	// (default 3; negative means none).
	MaxRetries int
	// RetryBase is the first backoff when no Retry-After is given (default 1 s).
	RetryBase time.Duration
	// MaxRetryWait caps one wait; a longer Retry-After is not waited for and
	// the error comes back (default 60 s).
	MaxRetryWait time.Duration
	Now          func() time.Time // defaults to time.Now
}

// Client calls GitHub's runner endpoints for one scope. It is safe for
// concurrent use.
type Client struct {
	scope  Scope
	http   *http.Client
	log    *slog.Logger
	ua     string
	retry  int
	base   time.Duration
	maxW   time.Duration
	now    func() time.Time
	auth   authenticator
	secret func() []string // the values error text must never echo
}

// authenticator yields the Authorization header's credential; the GitHub
// App and the plain token are its two implementations.
type authenticator interface {
	token(ctx context.Context) (Secret, error)
	secrets() []string
	kind() string
	invalidate()
}

// New checks opts and returns a client; it makes no request.
func New(opts Options) (*Client, error) {
	if err := opts.Scope.validate(); err != nil {
		return nil, err
	}
	c := &Client{
		scope: opts.Scope,
		log:   opts.Logger,
		ua:    opts.UserAgent,
		retry: opts.MaxRetries,
		base:  opts.RetryBase,
		maxW:  opts.MaxRetryWait,
		now:   opts.Now,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.ua == "" {
		c.ua = "imagebake-runnerreg"
	}
	if c.retry == 0 {
		c.retry = 3
	} else if c.retry < 0 {
		c.retry = 0
	}
	if c.base <= 0 {
		c.base = time.Second
	}
	if c.maxW <= 0 {
		c.maxW = time.Minute
	}
	if c.now == nil {
		c.now = time.Now
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	if opts.HTTPClient != nil {
		cp := *opts.HTTPClient
		hc = &cp
	}
	hc.CheckRedirect = checkRedirect
	c.http = hc
	switch {
	case opts.App != nil:
		a, err := newAppAuth(c, *opts.App)
		if err != nil {
			return nil, err
		}
		c.auth = a
	case !opts.Token.IsZero():
		c.auth = tokenAuth{t: opts.Token}
	default:
		return nil, errors.New("runner registration: no GitHub credential (a GitHub App or a token)")
	}
	c.secret = c.auth.secrets
	return c, nil
}

// Scope is the client's scope.
func (c *Client) Scope() Scope { return c.scope }

// AuthKind says how the client authenticates: "app" or "token".
func (c *Client) AuthKind() string { return c.auth.kind() }

// checkRedirect refuses a redirect that changes host or drops TLS: the
// request carries a bearer credential.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	prev := via[len(via)-1].URL
	if !strings.EqualFold(req.URL.Host, prev.Host) {
		return fmt.Errorf("refusing redirect to another host (%s)", sanitize(req.URL.Host, nil))
	}
	if prev.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("refusing redirect from https to http")
	}
	return nil
}

// APIError is a non-success answer from GitHub. Message is GitHub's own
// message with control characters removed and known secrets redacted.
type APIError struct {
	Op         string // "POST /repos/o/r/actions/runners/generate-jitconfig"
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s: HTTP %d", e.Op, e.StatusCode)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.StatusCode, e.Message)
}

// IsNotFound reports whether err is a GitHub 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// StatusCode returns the HTTP status of an APIError in err's chain, or 0.
func StatusCode(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}

// request is one API call; cred overrides the client's credential (the
// App JWT for installation endpoints).
type request struct {
	method string
	path   string // absolute path from the API base, or a full URL (pagination)
	body   any
	want   []int
	cred   func(ctx context.Context) (Secret, error)
}

// do sends r, retrying 5xx, 429 and secondary rate limits, and decodes a
// wanted answer into out (if non-nil). It returns the response headers.
func (c *Client) do(ctx context.Context, r request, out any) (http.Header, error) {
	target := r.path
	if !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://") {
		target = strings.TrimRight(c.scope.APIBase, "/") + r.path
	}
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	op := r.method + " " + u.Path
	var payload []byte
	if r.body != nil {
		if payload, err = json.Marshal(r.body); err != nil {
			return nil, fmt.Errorf("%s: encoding request: %w", op, err)
		}
	}
	cred := r.cred
	if cred == nil {
		cred = c.auth.token
	}
	reauthed := false
	for attempt := 0; ; attempt++ {
		tok, err := cred(ctx)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, r.method, u.String(), bytes.NewReader(payload))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", APIVersion)
		req.Header.Set("User-Agent", c.ua)
		req.Header.Set("Authorization", "Bearer "+tok.Reveal())
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		start := c.now()
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s: %w", op, ctx.Err())
			}
			// The transport's error can quote the URL, never a header.
			return nil, fmt.Errorf("%s: %s", op, sanitize(err.Error(), c.secret()))
		}
		body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		c.log.LogAttrs(ctx, slog.LevelDebug, "github api", slog.String("op", op),
			slog.Int("status", resp.StatusCode), slog.Int("attempt", attempt+1),
			slog.Duration("took", c.now().Sub(start)))
		if rerr != nil {
			return nil, fmt.Errorf("%s: reading response: %w", op, rerr)
		}
		if wanted(resp.StatusCode, r.want) {
			if out != nil && len(body) > 0 {
				if err := json.Unmarshal(body, out); err != nil {
					return nil, fmt.Errorf("%s: decoding response: %s", op, sanitize(err.Error(), c.secret()))
				}
			}
			return resp.Header, nil
		}
		apiErr := &APIError{Op: op, StatusCode: resp.StatusCode, Message: errorMessage(body, c.secret())}
		if resp.StatusCode == http.StatusUnauthorized && r.cred == nil && c.auth.kind() == "app" && !reauthed {
			// A cached installation token can be revoked before it expires:
			// mint a fresh one once.
			reauthed = true
			c.auth.invalidate()
			continue
		}
		wait, retry := c.retryAfter(resp, attempt)
		if !retry {
			return resp.Header, apiErr
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "github api: retrying", slog.String("op", op),
			slog.Int("status", resp.StatusCode), slog.Duration("wait", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s: %w (last answer: %w)", op, ctx.Err(), apiErr)
		case <-t.C:
		}
	}
}

func wanted(code int, want []int) bool {
	for _, w := range want {
		if code == w {
			return true
		}
	}
	return false
}

// retryAfter decides whether a failed answer is retried and after how long:
// 5xx and 429 always (bounded), 403 only as a rate limit (Retry-After, or
// x-ratelimit-remaining: 0 with x-ratelimit-reset), as GitHub documents.
func (c *Client) retryAfter(resp *http.Response, attempt int) (time.Duration, bool) {
	if attempt >= c.retry {
		return 0, false
	}
	code := resp.StatusCode
	ra := resp.Header.Get("Retry-After")
	rateLimited := code == http.StatusTooManyRequests ||
		(code == http.StatusForbidden && (ra != "" || resp.Header.Get("X-Ratelimit-Remaining") == "0"))
	if code < 500 && !rateLimited {
		return 0, false
	}
	wait := c.base << attempt
	if secs, err := strconv.Atoi(strings.TrimSpace(ra)); err == nil && secs >= 0 {
		wait = time.Duration(secs) * time.Second
	} else if code == http.StatusForbidden && ra == "" {
		if reset, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
			wait = time.Unix(reset, 0).Sub(c.now())
		}
	}
	if wait < 0 {
		wait = 0
	}
	if wait > c.maxW {
		return 0, false
	}
	return wait, true
}

// errorMessage extracts GitHub's "message" (and validation errors) from an
// error body, cleaned for a terminal and a log.
func errorMessage(body []byte, secrets []string) string {
	var e struct {
		Message string `json:"message"`
		Errors  []any  `json:"errors"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		msg = e.Message
		for _, x := range e.Errors {
			switch v := x.(type) {
			case string:
				msg += "; " + v
			case map[string]any:
				if m, ok := v["message"].(string); ok {
					msg += "; " + m
				} else if code, ok := v["code"].(string); ok {
					msg += "; " + code
				}
			}
		}
	} else if len(body) > 0 && json.Valid(body) {
		msg = ""
	} else {
		msg = string(body)
	}
	return sanitize(msg, secrets)
}

// tokenShapeRe matches GitHub token formats and JWTs, so an API answer that
// echoes some credential we do not know of is still redacted.
var tokenShapeRe = regexp.MustCompile(`\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)`)

// sanitize makes untrusted text safe to print: known secrets redacted,
// control and escape characters dropped, whitespace folded, at most 300
// characters.
func sanitize(s string, secrets []string) string {
	for _, v := range secrets {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	s = tokenShapeRe.ReplaceAllString(s, redacted)
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		case unicode.IsControl(r) || r == unicode.ReplacementChar || unicode.Is(unicode.Cf, r):
			continue
		}
		space = false
		b.WriteRune(r)
		if b.Len() >= 300 {
			b.WriteString("…")
			break
		}
	}
	return strings.TrimSpace(b.String())
}
