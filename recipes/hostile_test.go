package recipes_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/imagebake/imagebake/recipes"
)

// aliasBomb is issue 12's recipe: one scalar anchor, a sudoers rule that
// repeats it `width` times, and `rules` copies of that rule.
func aliasBomb(width, rules int) []byte {
	var b strings.Builder
	b.WriteString("name: runner-small\nbase: {azure: 'canonical:0001-com-ubuntu-server-focal:20_04-lts:latest'}\n")
	b.WriteString("description: &s /usr/bin/true\nusers: [{name: runner1}]\nsudoers:\n")
	b.WriteString("  - &u {user: runner1, commands: [" + strings.Repeat("*s, ", width-1) + "*s]}\n")
	b.WriteString(strings.Repeat("  - *u\n", rules))
	return []byte(b.String())
}

// Issue 12 item 1: a 10 KB alias bomb rendered 15 MB, a 30 KB one took 31 s
// and 3.25 GB. Both now stop at the alias past the budget.
func TestAliasBombRefused(t *testing.T) {
	for _, tc := range []struct {
		name         string
		width, rules int
		wantLine     int
	}{
		{"10KB", 1000, 1000, 15},  // the 9th copy: 1000 + 9×1003 > 10000
		{"30KB", 3000, 3000, 9},   // the 3rd copy: 3000 + 3×3003 > 10000
		{"deep", 10, 100000, 775}, // many small copies add up: 10 + 769×13 > 10000
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := aliasBomb(tc.width, tc.rules)
			_, err := recipes.Parse("bomb.yaml", data)
			var list *recipes.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse(%d bytes) = %v, want an *ErrorList", len(data), err)
			}
			if len(list.Errors) != 1 {
				t.Fatalf("%d errors, want only the alias budget's:\n%v", len(list.Errors), err)
			}
			e := list.Errors[0]
			if e.Line != tc.wantLine || e.Col != 5 || !strings.Contains(e.Message, fmt.Sprintf("more than %d values", recipes.MaxAliasValues)) {
				t.Errorf("got %d:%d %s: %s; want %d:5 and the budget", e.Line, e.Col, e.Field, e.Message, tc.wantLine)
			}
		})
	}
}

// Sharing through aliases below the budget still works, and means what the
// values written out would.
func TestAliasesWithinBudget(t *testing.T) {
	r, err := recipes.Parse("ok.yaml", aliasBomb(10, 20))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sudoers) != 21 || len(r.Sudoers[20].Commands) != 10 || r.Sudoers[20].Commands[9] != "/usr/bin/true" {
		t.Errorf("aliases expanded to %d rules", len(r.Sudoers))
	}
}

// BenchmarkAliasBomb shows the bound's effect: the 30 KB bomb is refused
// in about the time of a plain recipe (it took 31 s before the bound).
func BenchmarkAliasBomb(b *testing.B) {
	data := aliasBomb(3000, 3000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := recipes.Parse("bomb.yaml", data); err == nil {
			b.Fatal("alias bomb accepted")
		}
	}
}

const sudoRecipe = `name: runner-small
base: {azure: 'canonical:0001-com-ubuntu-server-focal:20_04-lts:latest'}
users: [{name: runner1}]
sudoers:
  - user: runner1
    commands: [%s]
`

// Issue 12 item 15: sudo reads "/usr/bin/foo  a " as "/usr/bin/foo a"
// (sudo -l prints that); the recipe holds the form sudo prints, so the rule
// and its built-in check agree. templates' TestSudoersNormalForm checks
// the form against cvtsudoers.
func TestSudoersCommandsNormalised(t *testing.T) {
	for in, want := range map[string]string{
		`"/usr/bin/foo  a   b "`:    "/usr/bin/foo a b",
		`"  /usr/bin/apt-get"`:      "/usr/bin/apt-get",
		`"/usr/bin/foo"`:            "/usr/bin/foo",
		`"sudoedit  /etc/app.conf"`: "sudoedit /etc/app.conf",
		`"ALL "`:                    "ALL",
	} {
		r, err := recipes.Parse("s.yaml", []byte(fmt.Sprintf(sudoRecipe, in)))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := r.Sudoers[0].Commands[0]; got != want {
			t.Errorf("%s loaded as %q, want %q", in, got, want)
		}
	}
}

// The smaller item: a one-character name is fine once gallery.image names
// the image.
func TestOneCharacterNameWithImage(t *testing.T) {
	if _, err := recipes.Parse("a.yaml", []byte("name: a\nbase: {local: {builtin: debian-bookworm}}\ngallery: {image: app}\n")); err != nil {
		t.Errorf("name a with gallery.image: %v", err)
	}
}
