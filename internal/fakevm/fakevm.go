// Package fakevm is an in-process SSH server that plays a build VM with
// scripted answers, for testing provision/sshsession and the pipeline
// without booting anything. It records every command it receives.
package fakevm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Reply is how the fake VM answers one command.
type Reply struct {
	Stdout   string
	Stderr   string
	ExitCode int
	// Delay is waited before answering; if the client closes the channel
	// meanwhile the command is recorded as interrupted.
	Delay time.Duration
	// Drop closes every connection (after Delay) instead of answering:
	// no exit status is sent, as when a VM goes away mid-command.
	Drop bool
	// DisconnectAfter, when positive, answers normally and then closes
	// every connection this long afterwards, as when a detached command
	// takes the VM down.
	DisconnectAfter time.Duration
	// RefuseLogins makes every later login fail (the user was deleted).
	RefuseLogins bool
}

// Rule maps commands to a Reply. Exactly one of Exact, Prefix and Regexp is
// normally set; a Rule with none of them matches every command.
type Rule struct {
	Exact  string
	Prefix string
	Regexp *regexp.Regexp
	// Limit, when positive, makes the rule answer only its first Limit
	// matching commands; later ones fall through to the next rules.
	Limit int
	Reply Reply
}

// Exact matches cmd exactly.
func Exact(cmd string, r Reply) Rule { return Rule{Exact: cmd, Reply: r} }

// Prefix matches commands starting with prefix.
func Prefix(prefix string, r Reply) Rule { return Rule{Prefix: prefix, Reply: r} }

// Regexp matches commands containing a match of expr. It panics on an
// invalid expression, like regexp.MustCompile (this is test scaffolding).
func Regexp(expr string, r Reply) Rule { return Rule{Regexp: regexp.MustCompile(expr), Reply: r} }

// Times returns a copy of r that answers only its first n matches.
func (r Rule) Times(n int) Rule { r.Limit = n; return r }

func (r Rule) matches(cmd string) bool {
	switch {
	case r.Exact != "":
		return cmd == r.Exact
	case r.Prefix != "":
		return strings.HasPrefix(cmd, r.Prefix)
	case r.Regexp != nil:
		return r.Regexp.MatchString(cmd)
	}
	return true
}

// Script is an ordered list of rules: the first matching rule answers. The
// built-in defaults (see New) come after it.
type Script []Rule

// Config describes the fake VM.
type Config struct {
	HostKey        ssh.Signer      // nil: a fresh ed25519 key (see VM.HostKey)
	AuthorizedKeys []ssh.PublicKey // keys allowed to log in
	User           string          // the only user allowed; "" allows any
	Script         Script
	Logger         *slog.Logger // nil: discard
}

// fakeCloudInitLog is what the default rules return for the cloud-init logs.
const fakeCloudInitLog = "2026-01-01 00:00:00,000 - util.py[DEBUG]: Cloud-init v. 24.4.1 running 'modules:final'\n" +
	"2026-01-01 00:00:01,000 - util.py[DEBUG]: Cloud-init v. 24.4.1 finished. Datasource DataSourceNoCloud.  Up 42.00 seconds\n"

// defaultScript answers what sshsession sends when the test did not script
// it: cloud-init has finished cleanly, checks pass, logs exist, and the
// detached deprovision succeeds, takes the connections down and deletes the
// login user. Unknown commands exit 127.
func defaultScript() Script {
	return Script{
		Regexp(`(?s)^sudo -n sh -c .*imagebake-deprovision`, Reply{DisconnectAfter: 100 * time.Millisecond, RefuseLogins: true}),
		Regexp(`/run/cloud-init/result\.json`, Reply{}),
		Prefix("cloud-init status", Reply{Stdout: StatusJSON("done", nil, nil)}),
		Regexp(`^sudo -n cat '?/var/log/cloud-init(-output)?\.log'?$`, Reply{Stdout: fakeCloudInitLog}),
		Prefix("sh -c ", Reply{}),
		Prefix("sudo -n sh -c ", Reply{}),
		{Reply: Reply{ExitCode: 127, Stderr: "fakevm: no script entry for this command\n"}},
	}
}

// VM is a running (or not yet started) fake build VM.
type VM struct {
	log     *slog.Logger
	hostKey ssh.Signer
	server  *ssh.ServerConfig
	script  Script

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu          sync.Mutex
	ln          net.Listener
	conns       map[net.Conn]struct{}
	used        []int // answers given per script rule
	commands    []string
	interrupted []string
	connections int
	logins      int
	refuse      bool
	frozen      bool
}

// New makes a fake VM; Start makes it listen.
func New(cfg Config) (*VM, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HostKey == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("fakevm host key: %w", err)
		}
		if cfg.HostKey, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("fakevm host key: %w", err)
		}
	}
	v := &VM{
		log:     cfg.Logger.With("component", "fakevm"),
		hostKey: cfg.HostKey,
		script:  append(slices.Clone(cfg.Script), defaultScript()...),
		closing: make(chan struct{}),
		conns:   map[net.Conn]struct{}{},
	}
	v.used = make([]int, len(v.script))
	authorized := slices.Clone(cfg.AuthorizedKeys)
	v.server = &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			v.mu.Lock()
			refuse := v.refuse
			v.mu.Unlock()
			if refuse {
				return nil, errors.New("fakevm: logins refused: the user was deleted")
			}
			if cfg.User != "" && meta.User() != cfg.User {
				return nil, fmt.Errorf("fakevm: unknown user %q", meta.User())
			}
			for _, k := range authorized {
				if bytes.Equal(k.Marshal(), key.Marshal()) {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, errors.New("fakevm: key not authorized")
		},
	}
	v.server.AddHostKey(cfg.HostKey)
	return v, nil
}

// HostKey is the public host key the fake VM presents, for pinning.
func (v *VM) HostKey() ssh.PublicKey { return v.hostKey.PublicKey() }

// Start listens on addr ("127.0.0.1:0" picks a free port; "" means that)
// and serves in the background until Close.
func (v *VM) Start(addr string) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ln != nil {
		return errors.New("fakevm: already started")
	}
	select {
	case <-v.closing:
		return errors.New("fakevm: closed")
	default:
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("fakevm listen %s: %w", addr, err)
	}
	v.ln = ln
	v.wg.Add(1)
	go v.acceptLoop(ln)
	return nil
}

// Addr is the listening address, "" before Start.
func (v *VM) Addr() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.ln == nil {
		return ""
	}
	return v.ln.Addr().String()
}

// Close stops listening, closes every connection and waits for the
// server's goroutines.
func (v *VM) Close() error {
	v.closeOnce.Do(func() {
		close(v.closing)
		v.mu.Lock()
		if v.ln != nil {
			v.ln.Close()
		}
		v.mu.Unlock()
		v.dropAll()
	})
	v.wg.Wait()
	return nil
}

// Commands returns every command received, in order.
func (v *VM) Commands() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.commands)
}

// Interrupted returns the commands whose channel the client closed before
// the answer was sent (e.g. on ctx cancellation).
func (v *VM) Interrupted() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.interrupted)
}

// Connections counts accepted TCP connections, handshaken or not.
func (v *VM) Connections() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.connections
}

// Logins counts successful SSH logins.
func (v *VM) Logins() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.logins
}

// Freeze makes the VM stop answering anything (keepalives, commands) while
// keeping its connections open, like a VM that hung or lost its network.
func (v *VM) Freeze() {
	v.mu.Lock()
	v.frozen = true
	v.mu.Unlock()
}

func (v *VM) isFrozen() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.frozen
}

// dropAll closes every connection, like a VM that went away.
func (v *VM) dropAll() {
	v.mu.Lock()
	conns := make([]net.Conn, 0, len(v.conns))
	for c := range v.conns {
		conns = append(conns, c)
	}
	v.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (v *VM) acceptLoop(ln net.Listener) {
	defer v.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		v.mu.Lock()
		v.conns[c] = struct{}{}
		v.connections++
		v.mu.Unlock()
		v.wg.Add(1)
		go v.serveConn(c)
	}
}

func (v *VM) serveConn(c net.Conn) {
	defer v.wg.Done()
	defer func() {
		c.Close()
		v.mu.Lock()
		delete(v.conns, c)
		v.mu.Unlock()
	}()
	sconn, chans, reqs, err := ssh.NewServerConn(c, v.server)
	if err != nil {
		v.log.Debug("handshake failed", "err", err)
		return
	}
	defer sconn.Close()
	v.mu.Lock()
	v.logins++
	v.mu.Unlock()
	v.log.Debug("login", "user", sconn.User())

	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		for req := range reqs {
			// A frozen VM leaves keepalives unanswered.
			if req.WantReply && !v.isFrozen() {
				req.Reply(false, nil)
			}
		}
	}()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "fakevm: only session channels")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		v.wg.Add(1)
		go v.serveSession(ch, creqs)
	}
}

func (v *VM) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer v.wg.Done()
	gone := make(chan struct{}) // closed when the client closes the channel
	started := false
	defer close(gone)
	for req := range reqs {
		if req.Type != "exec" || started {
			// pty-req, env, shell, signal…: not part of the script.
			if req.WantReply {
				req.Reply(false, nil)
			}
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			req.Reply(false, nil)
			continue
		}
		req.Reply(true, nil)
		started = true
		v.wg.Add(1)
		go v.answer(ch, payload.Command, gone)
	}
}

func (v *VM) lookup(cmd string) Reply {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.commands = append(v.commands, cmd)
	for i, r := range v.script {
		if !r.matches(cmd) || (r.Limit > 0 && v.used[i] >= r.Limit) {
			continue
		}
		v.used[i]++
		return r.Reply
	}
	return Reply{ExitCode: 127} // unreachable: the defaults end with a catch-all
}

func (v *VM) answer(ch ssh.Channel, cmd string, gone <-chan struct{}) {
	defer v.wg.Done()
	reply := v.lookup(cmd)
	v.log.Debug("exec", "cmd", cmd)

	if reply.Delay > 0 {
		t := time.NewTimer(reply.Delay)
		select {
		case <-t.C:
		case <-gone:
			t.Stop()
			v.markInterrupted(cmd)
			return
		case <-v.closing:
			t.Stop()
			return
		}
	}
	if v.isFrozen() {
		select {
		case <-gone:
		case <-v.closing:
		}
		return
	}
	if reply.Drop {
		v.setRefuse(reply.RefuseLogins)
		v.dropAll()
		return
	}
	ch.Write([]byte(reply.Stdout))
	ch.Stderr().Write([]byte(reply.Stderr))
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(reply.ExitCode)}))
	ch.Close()
	v.setRefuse(reply.RefuseLogins)
	if reply.DisconnectAfter > 0 {
		t := time.NewTimer(reply.DisconnectAfter)
		select {
		case <-t.C:
			v.dropAll()
		case <-v.closing:
			t.Stop()
		}
	}
}

func (v *VM) markInterrupted(cmd string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.interrupted = append(v.interrupted, cmd)
}

func (v *VM) setRefuse(refuse bool) {
	if !refuse {
		return
	}
	v.mu.Lock()
	v.refuse = true
	v.mu.Unlock()
}

// StatusJSON renders a `cloud-init status --format json` answer in the
// 23.4+ shape (status, extended_status, errors, recoverable_errors, …).
func StatusJSON(status string, errs []string, recoverable map[string][]string) string {
	extended := status
	switch {
	case status == "error":
		extended = "error - done"
	case len(recoverable) > 0:
		extended = "degraded " + status
	}
	if errs == nil {
		errs = []string{}
	}
	if recoverable == nil {
		recoverable = map[string][]string{}
	}
	b, err := json.MarshalIndent(map[string]any{
		"boot_status_code":   "enabled-by-generator",
		"datasource":         "nocloud",
		"detail":             "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud-net]",
		"errors":             errs,
		"extended_status":    extended,
		"last_update":        "Thu, 01 Jan 2026 00:00:42 +0000",
		"recoverable_errors": recoverable,
		"status":             status,
	}, "", "  ")
	if err != nil {
		panic(err) // only strings, slices and maps of strings: cannot fail
	}
	return string(b) + "\n"
}
