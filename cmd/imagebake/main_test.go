package main

import (
	"bytes"
	"testing"
)

// runCLI runs the real run() in process, as main does, and returns its
// exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"imagebake"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}
