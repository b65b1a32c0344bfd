package sshsession

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrSessionDropped means the SSH connection ended without our asking: the
// VM closed it, went away, or stopped answering keepalives.
var ErrSessionDropped = errors.New("ssh session dropped")

// Session is one SSH connection to a build VM. It is safe for concurrent use.
type Session struct {
	addr      string
	client    *ssh.Client
	log       *slog.Logger
	maxOutput int

	done chan struct{} // closed when the connection has ended

	mu     sync.Mutex
	cause  error // why the connection ended (first reason wins)
	closed bool  // Close was called
}

func newSession(client *ssh.Client, cfg Config, log *slog.Logger) *Session {
	s := &Session{
		addr:      cfg.Addr,
		client:    client,
		log:       log,
		maxOutput: cfg.MaxOutput,
		done:      make(chan struct{}),
	}
	go func() {
		err := client.Wait()
		if err == nil {
			err = io.EOF
		}
		s.setCause(err)
		close(s.done)
	}()
	if cfg.KeepaliveInterval > 0 {
		go s.keepalive(cfg.KeepaliveInterval, cfg.KeepaliveMaxMissed)
	}
	return s
}

// Addr is the address the session is connected to.
func (s *Session) Addr() string { return s.addr }

// Close ends the connection. Commands still running fail.
func (s *Session) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.client.Close()
	if err != nil && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *Session) setCause(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cause == nil {
		s.cause = err
	}
}

// connErr explains why the connection is unusable.
func (s *Session) connErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("ssh %s: session closed: %w", s.addr, net.ErrClosed)
	}
	return fmt.Errorf("ssh %s: %w: %v", s.addr, ErrSessionDropped, s.cause)
}

// dropped reports whether the connection has ended, waiting up to grace for
// the connection's reader to notice (a channel can end a moment before the
// connection does).
func (s *Session) dropped(grace time.Duration) bool {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.done:
		return true
	case <-t.C:
		return false
	}
}

// Result is what a remote command produced. Stdout and Stderr keep at most
// Config.MaxOutput bytes each (head and tail); Truncated says something was
// cut from the middle.
type Result struct {
	Stdout    string
	Stderr    string
	ExitCode  int // -1 when the command did not finish
	Duration  time.Duration
	Truncated bool
}

// ExitError is returned by Run when the remote command finished
// with a non-zero status.
type ExitError struct {
	Addr   string
	Code   int
	Signal string // set when the command was killed by a signal
	// StderrTail is the last line of stderr, for a readable error message.
	StderrTail string
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("ssh %s: remote command exited with status %d", e.Addr, e.Code)
	if e.Signal != "" {
		msg += " (signal " + e.Signal + ")"
	}
	if e.StderrTail != "" {
		msg += ": " + e.StderrTail
	}
	return msg
}

// Run runs cmd (a shell command line, composed by the caller with ShellQuote
// for any data in it). A non-zero exit returns the Result and an error of
// type *ExitError. If ctx ends first the channel is closed and the error
// wraps ctx's cause; a KILL signal request is sent too, but OpenSSH 9.2
// refuses it ("session signalling requires privilege separation"), so the
// remote process can outlive the channel (the build VM is disposable). A lost
// connection returns an error wrapping ErrSessionDropped.
func (s *Session) Run(ctx context.Context, cmd string) (Result, error) {
	stdout, stderr := newBoundedBuffer(s.maxOutput), newBoundedBuffer(s.maxOutput)
	code, dur, err := s.exec(ctx, cmd, stdout, stderr)
	res := Result{
		Stdout:    stdout.String(),
		Stderr:    stderr.String(),
		ExitCode:  code,
		Duration:  dur,
		Truncated: stdout.Truncated() || stderr.Truncated(),
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		ee.StderrTail = lastLine(res.Stderr, 200)
	}
	return res, err
}

// exec runs cmd with the given writers (which must be safe for concurrent
// use when they are the same writer). It returns the exit code (-1 when the
// command did not finish), how long it took, and an error: *ExitError for a
// non-zero status, ErrSessionDropped, or ctx's cause.
func (s *Session) exec(ctx context.Context, cmd string, stdout, stderr io.Writer) (int, time.Duration, error) {
	if err := context.Cause(ctx); err != nil {
		return -1, 0, fmt.Errorf("ssh %s: %w", s.addr, err)
	}
	select {
	case <-s.done:
		return -1, 0, s.connErr()
	default:
	}
	s.log.Debug("ssh run", "cmd", truncate(cmd, 200))
	sess, err := s.client.NewSession()
	if err != nil {
		if s.dropped(2 * time.Second) {
			return -1, 0, s.connErr()
		}
		return -1, 0, fmt.Errorf("ssh %s: open session: %w", s.addr, err)
	}
	defer sess.Close()
	sess.Stdout, sess.Stderr = stdout, stderr

	start := time.Now()
	if err := sess.Start(cmd); err != nil {
		if s.dropped(2 * time.Second) {
			return -1, time.Since(start), s.connErr()
		}
		return -1, time.Since(start), fmt.Errorf("ssh %s: start command: %w", s.addr, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sess.Wait() }()

	select {
	case err = <-waited:
	case <-ctx.Done():
		// OpenSSH may ignore the signal (it honours "signal" requests only
		// in some configurations); closing the channel is what counts.
		_ = sess.Signal(ssh.SIGKILL)
		_ = sess.Close()
		dur := time.Since(start)
		s.log.Debug("ssh run interrupted", "after", dur, "cause", context.Cause(ctx))
		return -1, dur, fmt.Errorf("ssh %s: command interrupted: %w", s.addr, context.Cause(ctx))
	}
	dur := time.Since(start)

	var xe *ssh.ExitError
	switch {
	case err == nil:
		s.log.Debug("ssh run done", "exit", 0, "took", dur)
		return 0, dur, nil
	case errors.As(err, &xe):
		s.log.Debug("ssh run done", "exit", xe.ExitStatus(), "took", dur)
		return xe.ExitStatus(), dur, &ExitError{Addr: s.addr, Code: xe.ExitStatus(), Signal: xe.Signal()}
	case s.dropped(2 * time.Second):
		return -1, dur, s.connErr()
	default:
		return -1, dur, fmt.Errorf("ssh %s: remote command ended without an exit status: %w", s.addr, err)
	}
}

// ShellQuote quotes s for a POSIX shell: the result is always one word with
// no expansion, whatever s contains.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func lastLine(s string, n int) string {
	s = strings.TrimRight(s, "\r\n\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return truncate(strings.TrimSpace(s), n)
}

// boundedBuffer keeps the first and the last limit/2 bytes written to it,
// so a chatty command cannot exhaust memory while the start (what ran) and
// the end (how it failed) both survive.
type boundedBuffer struct {
	mu      sync.Mutex
	half    int
	head    []byte
	tail    []byte
	dropped int64
}

func newBoundedBuffer(limit int) *boundedBuffer {
	return &boundedBuffer{half: max(limit/2, 1)}
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.half - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if len(p) >= b.half {
		b.dropped += int64(len(b.tail) + len(p) - b.half)
		b.tail = append(b.tail[:0], p[len(p)-b.half:]...)
		return n, nil
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - b.half; over > 0 {
		b.dropped += int64(over)
		// Reslicing is enough: the next growing append copies only the
		// live half, so memory stays bounded.
		b.tail = b.tail[over:]
	}
	return n, nil
}

func (b *boundedBuffer) Truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped > 0
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped == 0 {
		return string(b.head) + string(b.tail)
	}
	return fmt.Sprintf("%s\n…[%d bytes omitted]…\n%s", b.head, b.dropped, b.tail)
}
