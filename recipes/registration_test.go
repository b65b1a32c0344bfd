package recipes

import (
	"strings"
	"testing"
)

// The ways a recipe can write runner.registration, and what each means; the
// founding runbook's mapping must keep meaning keyvault-pat.
func TestRegistrationForms(t *testing.T) {
	const runner = `name: rr
base: {local: {builtin: debian-bookworm}}
users: [{name: runner1}]
runner:
  version: 2.337.0
  sha256: 70920811a4f8ad4328818682bca5c6469c1c942fab52448868071d0063816613
  user: runner1
  env: {RESOURCE_GROUP: rg, REPO_URL: "https://github.com/o/r"}
`
	tests := []struct {
		name, reg           string
		mode, vault, secret string
		line, col           int // where runner.registration is, 0 when absent
	}{
		{"absent means jit", "", "jit", "", "", 0, 0},
		{"shorthand", "  registration: jit\n", "jit", "", "", 9, 17},
		{"founding mapping", "  registration: {keyVault: kv-one, secret: pat}\n", "keyvault-pat", "kv-one", "pat", 9, 17},
		{"explicit mode", "  registration:\n    mode: keyvault-pat\n    keyVault: kv-one\n    secret: pat\n", "keyvault-pat", "kv-one", "pat", 10, 5},
		{"mode shorthand keyvault-pat", "  registration: keyvault-pat\n", "keyvault-pat", "", "", 9, 17},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse("rr.yaml", []byte(runner+tt.reg))
			if tt.name == "mode shorthand keyvault-pat" {
				// keyvault-pat without a vault is refused, naming the field.
				if err == nil || !strings.Contains(err.Error(), "runner.registration.keyVault") {
					t.Fatalf("want a keyVault error, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := r.Runner.Registration
			if got.Mode != tt.mode || got.KeyVault != tt.vault || got.Secret != tt.secret {
				t.Errorf("registration = %+v, want mode %s vault %q secret %q", got, tt.mode, tt.vault, tt.secret)
			}
			if r.Runner.GroupID != 1 || r.Runner.OnNoJob != "keep" {
				t.Errorf("defaults: groupId %d onNoJob %q, want 1 and keep", r.Runner.GroupID, r.Runner.OnNoJob)
			}
			if tt.line != 0 {
				if p := r.Position("runner.registration"); p.Line != tt.line || p.Col != tt.col {
					t.Errorf("runner.registration at %d:%d, want %d:%d", p.Line, p.Col, tt.line, tt.col)
				}
			}
		})
	}
}
