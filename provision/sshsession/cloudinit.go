package sshsession

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ErrCloudInitFailed is wrapped by CloudInitStatus.Err when cloud-init did
// not finish cleanly.
var ErrCloudInitFailed = errors.New("cloud-init did not finish cleanly")

// cloudInitFinishedProbe exits 0 once cloud-init's final stage has ended.
// `cloud-init status --wait` is not used: 22.4 stops waiting and answers
// "error" while the final stage still runs if an earlier stage failed.
const cloudInitFinishedProbe = "test -e /run/cloud-init/result.json || test -e /var/lib/cloud/instance/boot-finished"

// CloudInitStatus is what `cloud-init status` reported.
type CloudInitStatus struct {
	// Status is cloud-init's own word: "done", "error", "running",
	// "disabled", "not run" (≤22.x) or "not started" (23.x+).
	Status string
	// ExtendedStatus (23.4+) adds the condition, e.g. "degraded done" or
	// "error - done"; empty on older cloud-init.
	ExtendedStatus string
	Detail         string
	Datasource     string
	BootStatusCode string
	LastUpdate     string
	Errors         []string
	// RecoverableErrors (23.4+) maps a log level (WARNING, DEPRECATED, …) to
	// its messages.
	RecoverableErrors map[string][]string
	// ExitCode of the status command. Informative only: Ubuntu's Focal
	// package exits 0 even with recoverable errors, so the parsed fields
	// decide.
	ExitCode int
	// Format is "json" or "long": which output was parsed.
	Format string
}

// Recoverable lists the recoverable errors as "LEVEL: message", levels in
// sorted order.
func (s CloudInitStatus) Recoverable() []string {
	var out []string
	for _, level := range slices.Sorted(maps.Keys(s.RecoverableErrors)) {
		for _, m := range s.RecoverableErrors[level] {
			out = append(out, level+": "+m)
		}
	}
	return out
}

// Err is nil when cloud-init is done with no errors and, unless
// allowRecoverable, no recoverable errors either. Otherwise it wraps
// ErrCloudInitFailed and names the first few messages.
func (s CloudInitStatus) Err(allowRecoverable bool) error {
	state := s.Status
	if s.ExtendedStatus != "" && s.ExtendedStatus != s.Status {
		state += " (" + s.ExtendedStatus + ")"
	}
	switch {
	case s.Status == "error" || len(s.Errors) > 0:
		msgs := s.Errors
		if len(msgs) == 0 && s.Detail != "" {
			msgs = []string{s.Detail}
		}
		return fmt.Errorf("cloud-init status %s: %w: %s", state, ErrCloudInitFailed, summarize(msgs))
	case s.Status != "done":
		return fmt.Errorf("cloud-init status %s, want done: %w", state, ErrCloudInitFailed)
	case !allowRecoverable && len(s.Recoverable()) > 0:
		r := s.Recoverable()
		return fmt.Errorf("cloud-init status %s with %d recoverable errors: %w: %s", state, len(r), ErrCloudInitFailed, summarize(r))
	}
	return nil
}

func summarize(msgs []string) string {
	const maxMsgs = 5
	var b strings.Builder
	for i, m := range msgs {
		if i == maxMsgs {
			fmt.Fprintf(&b, "; … and %d more", len(msgs)-maxMsgs)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(truncate(strings.Join(strings.Fields(m), " "), 300))
	}
	return b.String()
}

// WaitCloudInit polls every poll (default 5s) until cloud-init's final stage
// has ended (/run/cloud-init/result.json or
// /var/lib/cloud/instance/boot-finished exists), then reads and returns its
// status. Judge the result with CloudInitStatus.Err: the returned error is
// only about waiting and reading (ctx, a dropped session, unreadable
// output).
func (s *Session) WaitCloudInit(ctx context.Context, poll time.Duration) (CloudInitStatus, error) {
	if poll <= 0 {
		poll = 5 * time.Second
	}
	start := time.Now()
	s.log.Info("waiting for cloud-init")
	for polls := 1; ; polls++ {
		_, err := s.Run(ctx, cloudInitFinishedProbe)
		if err == nil {
			break
		}
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != 1 {
			return CloudInitStatus{}, fmt.Errorf("cloud-init wait: %w", err)
		}
		s.log.Debug("cloud-init still running", "polls", polls, "waited", time.Since(start).Round(time.Second))
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return CloudInitStatus{}, fmt.Errorf("cloud-init wait: not finished after %s: %w",
				time.Since(start).Round(time.Second), context.Cause(ctx))
		case <-t.C:
		}
	}
	st, err := s.ReadCloudInitStatus(ctx)
	if err != nil {
		return st, err
	}
	s.log.Info("cloud-init finished", "status", st.Status, "extended", st.ExtendedStatus,
		"errors", len(st.Errors), "recoverable", len(st.Recoverable()), "waited", time.Since(start).Round(time.Second))
	return st, nil
}

// ReadCloudInitStatus reads `cloud-init status --format json`, falling back
// to `cloud-init status --long` for cloud-init without --format. It does not
// wait.
func (s *Session) ReadCloudInitStatus(ctx context.Context) (CloudInitStatus, error) {
	res, err := s.Run(ctx, "cloud-init status --format json")
	var ee *ExitError
	if err != nil && !errors.As(err, &ee) {
		return CloudInitStatus{}, fmt.Errorf("cloud-init status: %w", err)
	}
	st, jerr := parseStatusJSON([]byte(res.Stdout))
	if jerr == nil {
		st.ExitCode = res.ExitCode
		return st, nil
	}
	s.log.Debug("cloud-init status --format json unusable; trying --long", "err", jerr, "stderr", lastLine(res.Stderr, 200))

	long, err := s.Run(ctx, "cloud-init status --long")
	if err != nil && !errors.As(err, &ee) {
		return CloudInitStatus{}, fmt.Errorf("cloud-init status: %w", err)
	}
	st, lerr := parseStatusLong(long.Stdout)
	if lerr != nil {
		return CloudInitStatus{}, fmt.Errorf("cloud-init status: unreadable output (json: %v; long: %v; stderr: %q)",
			jerr, lerr, lastLine(long.Stderr, 200))
	}
	st.ExitCode = long.ExitCode
	return st, nil
}

func parseStatusJSON(out []byte) (CloudInitStatus, error) {
	var raw struct {
		Status            *string        `json:"status"`
		ExtendedStatus    string         `json:"extended_status"`
		Detail            string         `json:"detail"`
		Datasource        *string        `json:"datasource"`
		BootStatusCode    string         `json:"boot_status_code"`
		LastUpdate        string         `json:"last_update"`
		Errors            []any          `json:"errors"`
		RecoverableErrors map[string]any `json:"recoverable_errors"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return CloudInitStatus{}, err
	}
	if raw.Status == nil || *raw.Status == "" {
		return CloudInitStatus{}, errors.New(`no "status" key`)
	}
	st := CloudInitStatus{
		Status:         *raw.Status,
		ExtendedStatus: raw.ExtendedStatus,
		Detail:         raw.Detail,
		BootStatusCode: raw.BootStatusCode,
		LastUpdate:     raw.LastUpdate,
		Format:         "json",
	}
	if raw.Datasource != nil {
		st.Datasource = *raw.Datasource
	}
	for _, e := range raw.Errors {
		st.Errors = append(st.Errors, anyString(e))
	}
	for level, v := range raw.RecoverableErrors {
		if st.RecoverableErrors == nil {
			st.RecoverableErrors = map[string][]string{}
		}
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		for _, m := range list {
			st.RecoverableErrors[level] = append(st.RecoverableErrors[level], anyString(m))
		}
	}
	return st, nil
}

func anyString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

var longKey = regexp.MustCompile(`^(status|extended_status|boot_status_code|last_update|time|detail|errors|recoverable_errors):\s?(.*)$`)
var levelHeader = regexp.MustCompile(`^([A-Z][A-Z_]*):\s*$`)

// parseStatusLong reads the tabular `cloud-init status --long` output of any
// version: "detail:" on its own line (≤22.x) or with the value (23.x+),
// "errors:"/"recoverable_errors:" lists (23.4+).
func parseStatusLong(out string) (CloudInitStatus, error) {
	st := CloudInitStatus{Format: "long"}
	section, level := "", ""
	var detail []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		item, isItem := listItem(line)
		switch {
		case isItem && section == "errors":
			st.Errors = append(st.Errors, item)
			continue
		case isItem && section == "recoverable":
			if st.RecoverableErrors == nil {
				st.RecoverableErrors = map[string][]string{}
			}
			st.RecoverableErrors[level] = append(st.RecoverableErrors[level], item)
			continue
		case section == "recoverable" && levelHeader.MatchString(line):
			level = levelHeader.FindStringSubmatch(line)[1]
			continue
		}
		m := longKey.FindStringSubmatch(line)
		if m == nil {
			if section == "detail" && strings.TrimSpace(line) != "" {
				detail = append(detail, strings.TrimSpace(line))
			}
			continue
		}
		key, val := m[1], strings.TrimSpace(m[2])
		section = ""
		switch key {
		case "status":
			if st.Status == "" {
				st.Status = val
			}
		case "extended_status":
			st.ExtendedStatus = val
		case "boot_status_code":
			st.BootStatusCode = val
		case "last_update", "time":
			st.LastUpdate = val
		case "detail":
			section = "detail"
			if val != "" {
				detail = append(detail, val)
			}
		case "errors":
			if val != "[]" {
				section = "errors"
			}
		case "recoverable_errors":
			if val != "{}" {
				section, level = "recoverable", "UNKNOWN"
			}
		}
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	if st.Status == "" {
		return st, errors.New(`no "status:" line`)
	}
	st.Detail = strings.Join(detail, "\n")
	if st.Status == "error" && len(st.Errors) == 0 && len(detail) > 0 {
		// Before 23.4 the error messages were only in the detail.
		st.Errors = detail
	}
	return st, nil
}

func listItem(line string) (string, bool) {
	t := strings.TrimLeft(line, " \t")
	if t == line || !strings.HasPrefix(t, "- ") {
		return "", false
	}
	return strings.TrimSpace(t[2:]), true
}

// maxLogBytes caps each copied log; cloud-init logs are a few MB at most.
const maxLogBytes = 64 << 20

// CollectLogs copies /var/log/cloud-init.log and
// /var/log/cloud-init-output.log (read with `sudo -n cat`, as they are not
// world-readable) into dir, as files of the same names with mode 0600 (they
// can hold user-data fragments). It copies what it can and reports every
// failure.
func (s *Session) CollectLogs(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("cloud-init logs: %w", err)
	}
	var errs []error
	for _, remote := range []string{"/var/log/cloud-init.log", "/var/log/cloud-init-output.log"} {
		local := filepath.Join(dir, filepath.Base(remote))
		if err := s.copyRemoteFile(ctx, remote, local); err != nil {
			errs = append(errs, fmt.Errorf("cloud-init log %s: %w", remote, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Session) copyRemoteFile(ctx context.Context, remote, local string) (err error) {
	f, err := os.OpenFile(local, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := &cappedWriter{w: f, n: maxLogBytes}
	stderr := newBoundedBuffer(4 << 10)
	_, _, runErr := s.exec(ctx, "sudo -n cat "+ShellQuote(remote), w, stderr)
	closeErr := f.Close()
	if runErr != nil {
		var ee *ExitError
		if errors.As(runErr, &ee) {
			ee.StderrTail = lastLine(stderr.String(), 200)
		}
		if w.written == 0 {
			os.Remove(local)
		}
		return runErr
	}
	if w.err != nil {
		return w.err
	}
	if w.dropped > 0 {
		s.log.Warn("cloud-init log truncated", "file", remote, "dropped_bytes", w.dropped)
	}
	return closeErr
}

// cappedWriter writes up to n bytes and silently discards the rest, so one
// huge log cannot fill the disk. It never fails the stream (that would stall
// the SSH channel); a write error is kept for later.
type cappedWriter struct {
	w       io.Writer
	n       int64
	written int64
	dropped int64
	err     error
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	k := int64(len(p))
	if room := c.n - c.written; k > room {
		c.dropped += k - room
		k = room
	}
	if k > 0 && c.err == nil {
		n, err := c.w.Write(p[:k])
		c.written += int64(n)
		c.err = err
	}
	return len(p), nil
}

var explainLine = regexp.MustCompile(`ERROR|CRITICAL|WARNING|Traceback|^E: |\[FAIL`)

// LogExcerpt returns at most n lines of log that explain a failure: lines
// with ERROR, CRITICAL, WARNING, apt's "E: ", Python tracebacks in full, and
// the last lines of the log, in file order. When there are more, the last
// ones win.
func LogExcerpt(log string, n int) []string {
	if n <= 0 {
		return nil
	}
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	keep := make([]bool, len(lines))
	inTraceback := false
	for i, l := range lines {
		switch {
		case strings.Contains(l, "Traceback"):
			keep[i], inTraceback = true, true
		case inTraceback:
			keep[i] = true
			// Frames are indented; the exception line that ends a
			// traceback is not.
			if !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
				inTraceback = false
			}
		case explainLine.MatchString(l):
			keep[i] = true
		}
	}
	tail := max(n/4, min(5, n))
	for i := max(0, len(lines)-tail); i < len(lines); i++ {
		keep[i] = true
	}
	var out []string
	for i, l := range lines {
		if keep[i] {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}
