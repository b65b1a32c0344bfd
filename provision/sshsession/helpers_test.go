package sshsession

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/fakevm"
	"golang.org/x/crypto/ssh"
)

// logBuffer collects slog output for assertions about what Dial did.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), "msg=\""+msg+"\"")
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

type keys struct {
	client     ssh.Signer
	clientLine string
	hostPEM    string
	hostLine   string
	hostPub    ssh.PublicKey
	hostSigner ssh.Signer
}

func newKeys(t *testing.T) keys {
	t.Helper()
	var k keys
	var err error
	if k.client, k.clientLine, err = NewClientKey(); err != nil {
		t.Fatal(err)
	}
	if k.hostPEM, k.hostLine, k.hostPub, err = NewHostKey(); err != nil {
		t.Fatal(err)
	}
	if k.hostSigner, err = ssh.ParsePrivateKey([]byte(k.hostPEM)); err != nil {
		t.Fatal(err)
	}
	return k
}

// fakeVM starts a fake VM for user "builder" and returns it with a Config
// that reaches it.
func fakeVM(t *testing.T, script fakevm.Script) (*fakevm.VM, Config) {
	t.Helper()
	k := newKeys(t)
	vm, err := fakevm.New(fakevm.Config{
		HostKey:        k.hostSigner,
		AuthorizedKeys: []ssh.PublicKey{k.client.PublicKey()},
		User:           "builder",
		Script:         script,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	log, _ := newLogger()
	return vm, Config{
		Addr:           vm.Addr(),
		User:           "builder",
		Signer:         k.client,
		HostKey:        k.hostPub,
		Logger:         log,
		InitialBackoff: 50 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
	}
}

func dialT(t *testing.T, cfg Config) *Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
