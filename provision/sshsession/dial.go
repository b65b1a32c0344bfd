// Package sshsession talks to a build VM over SSH: it dials with a pinned
// host key and backoff, runs commands, waits for cloud-init, collects its
// logs, runs checks and sends the final detached deprovision.
package sshsession

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrHostKeyMismatch means the server presented a host key other than the
// pinned one. Dial never retries it: a man-in-the-middle must not get a
// retry loop.
var ErrHostKeyMismatch = errors.New("ssh host key mismatch")

// Config says where and how to reach a build VM. Zero durations take the
// documented defaults.
type Config struct {
	Addr    string        // host:port
	User    string        // login user (the VM's admin/build user)
	Signer  ssh.Signer    // client key, usually from NewClientKey
	HostKey ssh.PublicKey // pinned host key, usually from NewHostKey; required
	Logger  *slog.Logger  // nil: discard

	// AttemptTimeout bounds one TCP connect plus SSH handshake. Default 15s.
	AttemptTimeout time.Duration
	// InitialBackoff and MaxBackoff shape the retry delay, which doubles
	// from InitialBackoff up to MaxBackoff with jitter. Defaults 500ms, 10s.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// KeepaliveInterval is how often a keepalive is sent; the connection is
	// closed after KeepaliveMaxMissed unanswered keepalives in a row.
	// Defaults 10s and 3; a negative interval disables keepalives.
	KeepaliveInterval  time.Duration
	KeepaliveMaxMissed int
	// MaxOutput bounds how much of each output stream Run keeps (head and
	// tail). Default 1 MiB.
	MaxOutput int
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = 15 * time.Second
	}
	if c.InitialBackoff <= 0 {
		c.InitialBackoff = 500 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.MaxBackoff < c.InitialBackoff {
		c.MaxBackoff = c.InitialBackoff
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = 10 * time.Second
	}
	if c.KeepaliveMaxMissed <= 0 {
		c.KeepaliveMaxMissed = 3
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = 1 << 20
	}
}

// Dial connects to the VM, retrying the TCP connect and the SSH handshake
// (including authentication, since sshd can be up before cloud-init has
// installed the authorized key) with capped, jittered exponential backoff
// until ctx is done. A host key mismatch returns ErrHostKeyMismatch at once.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	switch {
	case cfg.Addr == "":
		return nil, errors.New("ssh dial: no address")
	case cfg.User == "":
		return nil, fmt.Errorf("ssh %s: no user", cfg.Addr)
	case cfg.Signer == nil:
		return nil, fmt.Errorf("ssh %s: no client key", cfg.Addr)
	case cfg.HostKey == nil:
		return nil, fmt.Errorf("ssh %s: no pinned host key: refusing to trust on first use", cfg.Addr)
	}
	cfg.setDefaults()
	log := cfg.Logger.With("addr", cfg.Addr)

	backoff := cfg.InitialBackoff
	start := time.Now()
	var lastErr error // the last failure not caused by ctx ending
	giveUp := func(attempt int) error {
		return fmt.Errorf("ssh %s: gave up after %d attempts in %s (last error: %v): %w",
			cfg.Addr, attempt, time.Since(start).Round(100*time.Millisecond), lastErr, context.Cause(ctx))
	}
	for attempt := 1; ; attempt++ {
		log.Debug("ssh dial attempt", "attempt", attempt)
		client, err := dialOnce(ctx, cfg)
		if err == nil {
			log.Info("ssh connected", "attempts", attempt, "after", time.Since(start).Round(time.Millisecond))
			return newSession(client, cfg, log), nil
		}
		if errors.Is(err, ErrHostKeyMismatch) {
			log.Error("ssh host key mismatch: not retrying", "err", err)
			return nil, err
		}
		if ctx.Err() == nil || lastErr == nil {
			lastErr = err
		}
		if ctx.Err() != nil {
			return nil, giveUp(attempt)
		}
		// Equal jitter: somewhere in [backoff/2, backoff).
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Debug("ssh dial failed; retrying", "attempt", attempt, "err", err, "key_rejected", isAuthError(err), "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, giveUp(attempt)
		case <-t.C:
		}
		backoff = min(backoff*2, cfg.MaxBackoff)
	}
}

// dialOnce makes one TCP connect plus SSH handshake, bounded by
// AttemptTimeout and ctx.
func dialOnce(ctx context.Context, cfg Config) (*ssh.Client, error) {
	actx, cancel := context.WithTimeout(ctx, cfg.AttemptTimeout)
	defer cancel()

	d := net.Dialer{KeepAlive: 15 * time.Second}
	conn, err := d.DialContext(actx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	// The handshake itself does not take a context: close the socket if the
	// attempt runs out of time so NewClientConn returns.
	stop := context.AfterFunc(actx, func() { conn.Close() })

	var mu sync.Mutex
	var mismatch error
	want := cfg.HostKey
	clientCfg := &ssh.ClientConfig{
		User: cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback: func(_ string, _ net.Addr, got ssh.PublicKey) error {
			if bytes.Equal(got.Marshal(), want.Marshal()) {
				return nil
			}
			err := fmt.Errorf("ssh %s: %w: pinned %s %s, server presented %s %s", cfg.Addr, ErrHostKeyMismatch,
				want.Type(), ssh.FingerprintSHA256(want), got.Type(), ssh.FingerprintSHA256(got))
			mu.Lock()
			mismatch = err
			mu.Unlock()
			return err
		},
		// Ask only for the pinned key's algorithm, so a server holding
		// several host keys presents the one we pinned.
		HostKeyAlgorithms: hostKeyAlgorithms(want),
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, clientCfg)
	timedOut := !stop() // the AfterFunc already ran: the socket is closed
	mu.Lock()
	mm := mismatch
	mu.Unlock()
	if mm != nil || timedOut || err != nil {
		if err == nil {
			c.Close()
		}
		conn.Close()
		switch {
		case mm != nil:
			return nil, mm
		case timedOut:
			return nil, fmt.Errorf("ssh %s: handshake: %w", cfg.Addr, context.Cause(actx))
		default:
			return nil, err
		}
	}
	return ssh.NewClient(c, chans, reqs), nil
}

func hostKeyAlgorithms(k ssh.PublicKey) []string {
	if k.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{k.Type()}
}

// keepalive sends keepalive@openssh.com requests; any reply (OpenSSH answers
// "failure") proves the VM is alive. After maxMissed unanswered ones in a
// row it closes the connection, which fails every running command with
// ErrSessionDropped instead of hanging on a dead VM.
func (s *Session) keepalive(interval time.Duration, maxMissed int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		replied := make(chan error, 1)
		go func() {
			_, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil)
			replied <- err
		}()
		timer := time.NewTimer(interval)
		select {
		case <-s.done:
			timer.Stop()
			return
		case err := <-replied:
			timer.Stop()
			if err != nil {
				return // connection already gone; the Wait goroutine records why
			}
			missed = 0
		case <-timer.C:
			missed++
			s.log.Warn("ssh keepalive unanswered", "missed", missed, "max", maxMissed)
			if missed >= maxMissed {
				s.setCause(fmt.Errorf("no keepalive reply for %s", (time.Duration(missed+1) * interval).Round(time.Second)))
				s.client.Close()
				return
			}
		}
	}
}

// isAuthError reports whether err looks like a rejected key (which we retry,
// since the key may not be installed yet).
func isAuthError(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}
