package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

func outputFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json", EnvVars: envs("OUTPUT")}
}

// output is where a command's result goes: with --output json the result is
// one JSON document on stdout and every human line goes to stderr; with
// text both go to stdout.
type output struct {
	json           bool
	stdout, stderr io.Writer
}

// readOutput checks --output and returns the streams to write to.
func (a *app) readOutput(c *cli.Context) (output, error) {
	o := c.String("output")
	if o != "text" && o != "json" {
		return output{}, usageErr("--output %q: use text or json", o)
	}
	return output{json: o == "json", stdout: a.stdout, stderr: a.stderr}, nil
}

// text is the stream for human lines (progress, notes, results in text).
func (o output) text() io.Writer {
	if o.json {
		return o.stderr
	}
	return o.stdout
}

// result prints v as indented JSON with --output json, or calls text with
// stdout otherwise.
func (o output) result(v any, text func(w io.Writer) error) error {
	if o.json {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if text == nil {
		return nil
	}
	return text(o.stdout)
}

// writeGitHubOutput appends step outputs (name, value pairs) to $GITHUB_OUTPUT
// when run in GitHub Actions. A value holding a line break would forge
// another output, so it is refused.
func writeGitHubOutput(pairs ...[2]string) error {
	path := os.Getenv("GITHUB_OUTPUT")
	if path == "" {
		return nil
	}
	var b strings.Builder
	for _, p := range pairs {
		if strings.ContainsAny(p[0]+p[1], "\r\n") {
			return fmt.Errorf("output %q: a line break in the name or value", p[0])
		}
		b.WriteString(p[0] + "=" + p[1] + "\n")
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
