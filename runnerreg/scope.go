package runnerreg

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Scope is where runners are registered: one repository or one
// organization, on github.com, a GHE.com tenant or a GitHub Enterprise
// Server, plus the REST API base that serves it.
type Scope struct {
	APIBase string // https://api.github.com, https://HOST/api/v3, or a test server
	Owner   string // the organization or the repository's owner
	Repo    string // empty for an organization
}

var (
	// GitHub logins: alphanumerics and single hyphens, at most 39 characters.
	ownerRe = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$`)
	repoRe  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
)

// ParseScope reads a recipe's REPO_URL:
//
//	https://github.com/OWNER/REPO → repository, API https://api.github.com
//	https://github.com/ORG        → organization
//	https://SUB.ghe.com/…         → API https://api.SUB.ghe.com
//	https://HOST/OWNER/REPO       → GitHub Enterprise Server, API https://HOST/api/v3
//
// A trailing slash or ".git" is accepted. Only https URLs are accepted: the
// registration credentials travel over them.
func ParseScope(repoURL string) (Scope, error) {
	u, err := url.Parse(strings.TrimSpace(repoURL))
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Scope{}, fmt.Errorf("repository URL %q: want https://HOST/OWNER[/REPO]", repoURL)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 1 || len(parts) > 2 || parts[0] == "" {
		return Scope{}, fmt.Errorf("repository URL %q: want https://HOST/OWNER[/REPO]", repoURL)
	}
	s := Scope{Owner: parts[0]}
	if len(parts) == 2 {
		s.Repo = strings.TrimSuffix(parts[1], ".git")
		if !repoRe.MatchString(s.Repo) || s.Repo == "." || s.Repo == ".." {
			return Scope{}, fmt.Errorf("repository URL %q: %q is not a repository name", repoURL, parts[1])
		}
	}
	if !ownerRe.MatchString(s.Owner) {
		return Scope{}, fmt.Errorf("repository URL %q: %q is not an owner name", repoURL, s.Owner)
	}
	host := strings.ToLower(u.Host)
	switch {
	case host == "github.com" || host == "www.github.com":
		s.APIBase = "https://api.github.com"
	case strings.HasSuffix(host, ".ghe.com") && !strings.Contains(strings.TrimSuffix(host, ".ghe.com"), "."):
		s.APIBase = "https://api." + host
	default:
		s.APIBase = "https://" + host + "/api/v3"
	}
	return s, nil
}

// WithAPIBase returns s served from base instead (a test server, a proxy).
func (s Scope) WithAPIBase(base string) Scope {
	s.APIBase = strings.TrimRight(base, "/")
	return s
}

// IsOrg reports whether the scope is an organization.
func (s Scope) IsOrg() bool { return s.Repo == "" }

// Path is the REST path of the scope: /repos/OWNER/REPO or /orgs/ORG.
func (s Scope) Path() string {
	if s.IsOrg() {
		return "/orgs/" + url.PathEscape(s.Owner)
	}
	return "/repos/" + url.PathEscape(s.Owner) + "/" + url.PathEscape(s.Repo)
}

// String names the scope for messages: OWNER/REPO or ORG.
func (s Scope) String() string {
	if s.IsOrg() {
		return s.Owner
	}
	return s.Owner + "/" + s.Repo
}

func (s Scope) validate() error {
	if !ownerRe.MatchString(s.Owner) || (s.Repo != "" && !repoRe.MatchString(s.Repo)) {
		return fmt.Errorf("runner scope %q: bad owner or repository name", s.String())
	}
	u, err := url.Parse(s.APIBase)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return fmt.Errorf("runner scope %s: API base %q is not an http(s) URL", s, s.APIBase)
	}
	return nil
}
