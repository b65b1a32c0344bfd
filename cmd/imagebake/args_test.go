package main

import (
	"io"
	"reflect"
	"testing"
)

func TestInterspersed(t *testing.T) {
	app := (&app{stdout: io.Discard, stderr: io.Discard}).cli()
	tests := []struct{ in, want []string }{
		{[]string{"ib", "bake", "r.yaml", "--target", "azure", "--spot"}, []string{"ib", "bake", "--target", "azure", "--spot", "r.yaml"}},
		{[]string{"ib", "--log-level", "debug", "render", "r.yaml", "--format=custom-data"}, []string{"ib", "--log-level", "debug", "render", "--format=custom-data", "r.yaml"}},
		{[]string{"ib", "validate", "a.yaml", "-o", "json", "b.yaml"}, []string{"ib", "validate", "-o", "json", "a.yaml", "b.yaml"}},
		{[]string{"ib", "base", "pull", "focal", "--base-url", "http://x/"}, []string{"ib", "base", "pull", "--base-url", "http://x/", "focal"}},
		{[]string{"ib", "bake", "--", "-weird.yaml"}, []string{"ib", "bake", "--", "-weird.yaml"}},
		{[]string{"ib", "base", "pull", "--base-url", "http://x/", "focal"}, []string{"ib", "base", "pull", "--base-url", "http://x/", "focal"}},
		{[]string{"ib", "bump", "runner", "--api-url", "http://x", "r.yaml", "--latest"}, []string{"ib", "bump", "runner", "--api-url", "http://x", "--latest", "r.yaml"}},
		// A value flag between a command and its first argument keeps its value.
		{[]string{"ib", "bump", "runner", "--to", "2.338.0", "r.yaml"}, []string{"ib", "bump", "runner", "--to", "2.338.0", "r.yaml"}},
		{[]string{"ib", "gc", "--target", "azure", "--output", "json"}, []string{"ib", "gc", "--target", "azure", "--output", "json"}},
		{[]string{"ib", "validate", "a.yaml", "--output=json"}, []string{"ib", "validate", "--output=json", "a.yaml"}},
	}
	for _, tt := range tests {
		if got, err := interspersed(app, tt.in); err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("interspersed(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
