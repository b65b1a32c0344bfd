package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 12 item 23: validate applies Azure's 64 KiB custom-data limit only
// to a recipe that targets Azure (base.azure); a base.local-only recipe of
// any rendered size is valid.
func TestValidateCustomDataLimitOnlyForAzure(t *testing.T) {
	var noise strings.Builder
	x := uint64(88172645463325252)
	for noise.Len() < 300_000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		fmt.Fprintf(&noise, "%016x", x)
	}
	for _, tc := range []struct {
		base string
		want int
	}{
		{"{local: {builtin: debian-bookworm}}", 0},
		{"{azure: 'canonical:0001-com-ubuntu-server-focal:20_04-lts:latest', local: {builtin: debian-bookworm}}", 1},
	} {
		path := filepath.Join(t.TempDir(), "big.yaml")
		recipe := "name: big-local\nbase: " + tc.base + "\nfiles:\n  - {path: /opt/big.txt, content: \"" + noise.String() + "\"}\n"
		if err := os.WriteFile(path, []byte(recipe), 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if code := run([]string{"imagebake", "validate", path}, &stdout, &stderr); code != tc.want {
			t.Errorf("base %s: exit %d, want %d\n%s%s", tc.base, code, tc.want, stdout.String(), stderr.String())
		}
		if tc.want == 1 && !strings.Contains(stdout.String()+stderr.String(), "custom data") {
			t.Errorf("base %s: the refusal does not name custom data:\n%s%s", tc.base, stdout.String(), stderr.String())
		}
	}
}
