package recipes

import (
	"strings"
	"testing"
)

const base = `name: demo
base: {local: {builtin: debian-bookworm}}
packages: [jq, curl]
users:
  - {name: app, groups: [adm]}
tags: {a: "1", b: "2"}
`

func TestHashIgnoresKeyOrderCommentsAndFormatting(t *testing.T) {
	same := `# a comment
tags:
  b: "2"
  a: "1"
users:
- groups: [adm]
  name: app
packages:
  - jq
  - curl
base:
  local:
    builtin: debian-bookworm
name: demo
`
	r1, err := Parse("a.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Parse("b.yaml", []byte(same))
	if err != nil {
		t.Fatal(err)
	}
	if r1.Hash() != r2.Hash() {
		t.Error("hash depends on key order, comments or formatting")
	}
	tests := map[string]string{
		"package order": strings.Replace(base, "[jq, curl]", "[curl, jq]", 1),
		"tag value":     strings.Replace(base, `a: "1"`, `a: "x"`, 1),
		"a group":       strings.Replace(base, "[adm]", "[adm, docker]", 1),
	}
	for name, changed := range tests {
		r3, err := Parse("c.yaml", []byte(changed))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r3.Hash() == r1.Hash() {
			t.Errorf("%s: a change of meaning kept the hash", name)
		}
	}
}

func TestDefaultsAndPositions(t *testing.T) {
	r, err := Parse("a.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if r.Users[0].Home != "/home/app" || r.Users[0].Shell != "/bin/bash" || r.Gallery.Version != "1.0" || r.Gallery.Image != "demo" {
		t.Errorf("defaults not applied: %+v %+v", r.Users[0], r.Gallery)
	}
	if p := r.Position("users[0].groups[0]"); p.Line != 5 {
		t.Errorf("users[0].groups[0] at %v, want line 5", p)
	}
	if p := r.Position("users[0].nonexistent"); p.Line != 5 {
		t.Errorf("unknown path falls back to its parent: %v", p)
	}
}

func TestShippedRecipesAreValid(t *testing.T) {
	for _, f := range []string{"github-runner-focal.yaml", "local-demo.yaml"} {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
