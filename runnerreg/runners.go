package runnerreg

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// JITConfig is one just-in-time runner registration: the runner GitHub
// created and the configuration its run.sh takes (ACTIONS_RUNNER_INPUT_JITCONFIG).
type JITConfig struct {
	RunnerID         int64
	RunnerName       string
	EncodedJITConfig Secret
}

// Runner is a registered self-hosted runner as GitHub lists it.
type Runner struct {
	ID     int64    `json:"id"`
	Name   string   `json:"name"`
	OS     string   `json:"os"`
	Status string   `json:"status"` // online or offline
	Busy   bool     `json:"busy"`
	Labels []string `json:"labels"`
}

// RegistrationToken is a config.sh registration token (valid one hour).
type RegistrationToken struct {
	Token     Secret
	ExpiresAt time.Time
}

type apiRunner struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	OS     string `json:"os"`
	Status string `json:"status"`
	Busy   bool   `json:"busy"`
	Labels []struct {
		Name string `json:"name"`
	} `json:"labels"`
}

func (r apiRunner) runner() Runner {
	out := Runner{ID: r.ID, Name: r.Name, OS: r.OS, Status: r.Status, Busy: r.Busy}
	for _, l := range r.Labels {
		out.Labels = append(out.Labels, l.Name)
	}
	return out
}

// GitHub's runner names: up to 64 characters, no spaces or slashes; the
// same rule keeps a name safe in a VM name and a log line.
var runnerNameRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// MintJIT creates runner name with labels in runner group runnerGroupID
// (1 is the "Default" group) and returns its JIT configuration. workFolder
// may be empty (GitHub's default "_work"). GitHub answers 409 when a runner
// of that name exists.
func (c *Client) MintJIT(ctx context.Context, name string, labels []string, runnerGroupID int64, workFolder string) (JITConfig, error) {
	if !runnerNameRe.MatchString(name) {
		return JITConfig{}, fmt.Errorf("JIT runner %q: name must be 1-64 of A-Z a-z 0-9 . _ -", sanitize(name, nil))
	}
	if len(labels) < 1 || len(labels) > 100 {
		return JITConfig{}, fmt.Errorf("JIT runner %s: want 1 to 100 labels, have %d", name, len(labels))
	}
	for _, l := range labels {
		if l == "" || len(l) > 256 || strings.ContainsAny(l, ", \t\r\n") {
			return JITConfig{}, fmt.Errorf("JIT runner %s: label %q is not valid", name, sanitize(l, nil))
		}
	}
	if runnerGroupID <= 0 {
		return JITConfig{}, fmt.Errorf("JIT runner %s: runner group ID must be positive (1 is Default)", name)
	}
	body := map[string]any{"name": name, "runner_group_id": runnerGroupID, "labels": labels}
	if workFolder != "" {
		body["work_folder"] = workFolder
	}
	var out struct {
		Runner  apiRunner `json:"runner"`
		Encoded string    `json:"encoded_jit_config"`
	}
	if _, err := c.do(ctx, request{method: "POST", path: c.scope.Path() + "/actions/runners/generate-jitconfig", body: body, want: []int{201}}, &out); err != nil {
		return JITConfig{}, fmt.Errorf("JIT runner %s on %s: %w", name, c.scope, err)
	}
	if out.Runner.ID == 0 || out.Encoded == "" {
		return JITConfig{}, fmt.Errorf("JIT runner %s on %s: answer lacks the runner ID or the JIT config", name, c.scope)
	}
	return JITConfig{RunnerID: out.Runner.ID, RunnerName: out.Runner.Name, EncodedJITConfig: NewSecret(out.Encoded)}, nil
}

// DeleteRunner removes runner id. A runner already gone (404) is not an
// error: deleting is how a launch undoes a mint, and may race GitHub's own
// removal of an ephemeral runner.
func (c *Client) DeleteRunner(ctx context.Context, id int64) error {
	if id <= 0 {
		return fmt.Errorf("runner %d: not a runner ID", id)
	}
	path := c.scope.Path() + "/actions/runners/" + strconv.FormatInt(id, 10)
	_, err := c.do(ctx, request{method: "DELETE", path: path, want: []int{204}}, nil)
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("runner %d on %s: %w", id, c.scope, err)
	}
	return nil
}

// RegistrationToken returns a token for config.sh --token.
func (c *Client) RegistrationToken(ctx context.Context) (RegistrationToken, error) {
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if _, err := c.do(ctx, request{method: "POST", path: c.scope.Path() + "/actions/runners/registration-token", want: []int{201}}, &out); err != nil {
		return RegistrationToken{}, fmt.Errorf("registration token for %s: %w", c.scope, err)
	}
	if out.Token == "" {
		return RegistrationToken{}, fmt.Errorf("registration token for %s: answer has no token", c.scope)
	}
	return RegistrationToken{Token: NewSecret(out.Token), ExpiresAt: out.ExpiresAt}, nil
}

// maxPages bounds ListRunners against a server whose Link never ends.
const maxPages = 1000

var nextLinkRe = regexp.MustCompile(`<([^>]+)>;\s*rel="next"`)

// ListRunners returns every runner of the scope, following GitHub's Link
// pagination (100 a page).
func (c *Client) ListRunners(ctx context.Context) ([]Runner, error) {
	var all []Runner
	next := c.scope.Path() + "/actions/runners?per_page=100"
	base, err := url.Parse(c.scope.APIBase)
	if err != nil {
		return nil, fmt.Errorf("runners of %s: %w", c.scope, err)
	}
	for page := 0; next != ""; page++ {
		if page >= maxPages {
			return nil, fmt.Errorf("runners of %s: more than %d pages", c.scope, maxPages)
		}
		var out struct {
			TotalCount int         `json:"total_count"`
			Runners    []apiRunner `json:"runners"`
		}
		h, err := c.do(ctx, request{method: "GET", path: next, want: []int{200}}, &out)
		if err != nil {
			return nil, fmt.Errorf("runners of %s: %w", c.scope, err)
		}
		for _, r := range out.Runners {
			all = append(all, r.runner())
		}
		next = ""
		if m := nextLinkRe.FindStringSubmatch(h.Get("Link")); m != nil {
			u, err := url.Parse(m[1])
			if err != nil {
				return nil, fmt.Errorf("runners of %s: bad next-page link: %w", c.scope, err)
			}
			// The next page must come from the same API: the request
			// carries the credential.
			if !strings.EqualFold(u.Host, base.Host) || u.Scheme != base.Scheme {
				return nil, errors.New("runners of " + c.scope.String() + ": next-page link points to another host")
			}
			next = u.String()
		}
	}
	return all, nil
}
