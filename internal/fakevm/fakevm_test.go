package fakevm

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func newKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return signer, string(pem.EncodeToMemory(block))
}

// start runs a fake VM with script and returns it with a connected client.
func start(t *testing.T, script Script) (*VM, *ssh.Client, ssh.Signer) {
	t.Helper()
	client, _ := newKey(t)
	vm, err := New(Config{AuthorizedKeys: []ssh.PublicKey{client.PublicKey()}, User: "builder", Script: script})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	c, err := dial(vm, "builder", client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return vm, c, client
}

func dial(vm *VM, user string, key ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", vm.Addr(), &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(vm.HostKey()),
		Timeout:         5 * time.Second,
	})
}

type outcome struct {
	stdout, stderr string
	code           int
	err            error
}

func run(t *testing.T, c *ssh.Client, cmd string) outcome {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		return outcome{code: -1, err: err}
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(cmd)
	o := outcome{stdout: out.String(), stderr: errb.String(), err: err}
	var xe *ssh.ExitError
	if errors.As(err, &xe) {
		o.code = xe.ExitStatus()
	} else if err != nil {
		o.code = -1
	}
	return o
}

func TestScriptAndDefaults(t *testing.T) {
	vm, c, _ := start(t, Script{
		Exact("echo hi", Reply{Stdout: "hi\n"}),
		Prefix("fail", Reply{Stderr: "nope\n", ExitCode: 3}),
		Regexp(`^poll \d+$`, Reply{ExitCode: 1}).Times(2),
		Regexp(`^poll \d+$`, Reply{Stdout: "ready\n"}),
	})
	tests := []struct {
		cmd        string
		wantStdout string
		wantStderr string
		wantCode   int
	}{
		{"echo hi", "hi\n", "", 0},
		{"fail now", "", "nope\n", 3},
		{"poll 1", "", "", 1},
		{"poll 2", "", "", 1},
		{"poll 3", "ready\n", "", 0},
		{"test -e /run/cloud-init/result.json || test -e /var/lib/cloud/instance/boot-finished", "", "", 0},
		{"sh -c 'true'", "", "", 0},
		{"sudo -n sh -c 'true'", "", "", 0},
		{"sudo -n cat '/var/log/cloud-init.log'", fakeCloudInitLog, "", 0},
		{"something unknown", "", "fakevm: no script entry for this command\n", 127},
		// Reading the deprovision log is not the deprovision itself.
		{"sudo -n cat /run/imagebake-deprovision.log", "", "fakevm: no script entry for this command\n", 127},
	}
	for _, tt := range tests {
		got := run(t, c, tt.cmd)
		if got.stdout != tt.wantStdout || got.stderr != tt.wantStderr || got.code != tt.wantCode {
			t.Errorf("%q: got stdout %q stderr %q code %d, want %q %q %d",
				tt.cmd, got.stdout, got.stderr, got.code, tt.wantStdout, tt.wantStderr, tt.wantCode)
		}
	}
	st := run(t, c, "cloud-init status --format json")
	var status struct{ Status string }
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil || status.Status != "done" {
		t.Errorf("default cloud-init status: %q (%v)", st.stdout, err)
	}
	if got := len(vm.Commands()); got != len(tests)+1 {
		t.Errorf("recorded %d commands, want %d: %q", got, len(tests)+1, vm.Commands())
	}
	if vm.Commands()[0] != "echo hi" {
		t.Errorf("first recorded command %q", vm.Commands()[0])
	}
}

func TestAuth(t *testing.T) {
	vm, _, client := start(t, nil)
	stranger, _ := newKey(t)
	if _, err := dial(vm, "builder", stranger); err == nil {
		t.Error("unauthorized key logged in")
	}
	if _, err := dial(vm, "root", client); err == nil {
		t.Error("wrong user logged in")
	}
	if got := vm.Logins(); got != 1 {
		t.Errorf("Logins() = %d, want 1", got)
	}
	if got := vm.Connections(); got != 3 {
		t.Errorf("Connections() = %d, want 3", got)
	}
}

func TestDeprovisionDefaultDropsAndRefuses(t *testing.T) {
	vm, c, client := start(t, nil)
	got := run(t, c, "sudo -n sh -c 'nohup setsid sh -c '\\''set -e\nsync'\\'' "+`>/run/imagebake-deprovision.log 2>&1 </dev/null &'`)
	if got.code != 0 || got.err != nil {
		t.Fatalf("deprovision answer: %+v", got)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("connection not dropped after deprovision")
	}
	if _, err := dial(vm, "builder", client); err == nil {
		t.Error("login accepted after the user was deleted")
	}
}

func TestDropAndInterrupt(t *testing.T) {
	vm, c, _ := start(t, Script{
		Exact("slow", Reply{Delay: time.Hour}),
		Exact("crash", Reply{Drop: true}),
	})
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("slow"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(vm.Interrupted()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := vm.Interrupted(); len(got) != 1 || got[0] != "slow" {
		t.Errorf("Interrupted() = %q, want [slow]", got)
	}
	got := run(t, c, "crash")
	var missing *ssh.ExitMissingError
	if got.err == nil || (!errors.As(got.err, &missing) && !strings.Contains(got.err.Error(), "EOF")) {
		t.Errorf("crash: got %+v, want a missing exit status", got)
	}
}

func TestHostKeyFromCloudConfig(t *testing.T) {
	signer, privPEM := newKey(t)
	other, _ := newKey(t)
	pubLine := string(ssh.MarshalAuthorizedKey(signer.PublicKey()))
	otherLine := string(ssh.MarshalAuthorizedKey(other.PublicKey()))
	doc := func(pub string) string {
		s := "#cloud-config\nssh_deletekeys: false\nssh_keys:\n  ed25519_private: |\n" + indent(privPEM, "    ")
		if pub != "" {
			s += "  ed25519_public: " + strings.TrimSpace(pub) + "\n"
		}
		return s
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(doc(pubLine)))
	zw.Close()

	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"plain", []byte(doc(pubLine)), ""},
		{"no public line", []byte(doc("")), ""},
		{"gzip", gz.Bytes(), ""},
		{"public of another key", []byte(doc(otherLine)), "not the public half"},
		{"not cloud-config", []byte("#!/bin/sh\necho hi\n"), "#cloud-config"},
		{"no ssh_keys", []byte("#cloud-config\npackages: [jq]\n"), "no ssh_keys.ed25519_private"},
		{"bad yaml", []byte("#cloud-config\nssh_keys: [\n"), "cloud-config"},
		{"bad key", []byte("#cloud-config\nssh_keys:\n  ed25519_private: garbage\n"), "ed25519_private"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HostKeyFromCloudConfig(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.PublicKey().Marshal(), signer.PublicKey().Marshal()) {
				t.Error("wrong key")
			}
		})
	}
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(prefix + l)
		}
	}
	return b.String()
}

func TestStatusJSON(t *testing.T) {
	var got struct {
		Status            string              `json:"status"`
		ExtendedStatus    string              `json:"extended_status"`
		Errors            []string            `json:"errors"`
		RecoverableErrors map[string][]string `json:"recoverable_errors"`
	}
	s := StatusJSON("done", nil, map[string][]string{"WARNING": {"w"}})
	if err := json.Unmarshal([]byte(s), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status != "done" || got.ExtendedStatus != "degraded done" || got.Errors == nil || got.RecoverableErrors["WARNING"][0] != "w" {
		t.Errorf("StatusJSON: %s", s)
	}
}
