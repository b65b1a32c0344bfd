package main

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/imagebake/imagebake/recipes"
)

// TestPlatformRelay runs the hidden subcommand QEMU starts per guest
// connection: it joins stdin/stdout to a loopback address, writes nothing
// of its own (that would go to the guest) and refuses other addresses.
func TestPlatformRelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				_, _ = c.Write(append([]byte("echo:"), b...))
			}()
		}
	}()
	tests := []struct {
		name       string
		args       []string
		code       int
		wantStdout string
	}{
		{"loopback", []string{ln.Addr().String()}, 0, "echo:GET / HTTP/1.1\r\n\r\n"},
		{"not loopback", []string{"192.0.2.1:80"}, 1, ""},
		{"no address", nil, 2, ""},
		{"two addresses", []string{ln.Addr().String(), ln.Addr().String()}, 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runBinaryIn(t, cleanEnv(), strings.NewReader("GET / HTTP/1.1\r\n\r\n"), append([]string{relayCommand}, tc.args...)...)
			code, stdout, stderr := res.code, res.stdout, res.stderr
			if code != tc.code || stdout != tc.wantStdout || stderr != "" {
				t.Errorf("exit %d stdout %q stderr %q; want exit %d stdout %q and no stderr", code, stdout, stderr, tc.code, tc.wantStdout)
			}
		})
	}
	res := runBinary(t, cleanEnv(), "--help")
	if strings.Contains(res.stdout, relayCommand) {
		t.Errorf("--help lists the internal %s subcommand", relayCommand)
	}
}

func TestRuntimeCycles(t *testing.T) {
	runner, err := recipes.Load("../../recipes/github-runner-noble.yaml")
	if err != nil {
		t.Fatal(err)
	}
	demo, err := recipes.Load("../../recipes/local-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		r       *recipes.Recipe
		values  []string
		want    []string
		wantErr string
	}{
		{"default", runner, []string{"delete", "none", "running"}, []string{"delete", "", "running"}, ""},
		{"comma separated", runner, []string{"deallocate, none"}, []string{"deallocate", ""}, ""},
		{"unknown value", runner, []string{"delete,sometimes"}, nil, `--cycles "sometimes"`},
		{"no runner", demo, []string{"delete"}, nil, "has no runner section"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runtimeCycles(tc.values, tc.r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}
