package bake

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/imagebake/imagebake/provision/sshsession"
)

// TextSink prints one line per stage with its duration: plain lines in CI
// and logs, and on a terminal also a line when a stage starts.
type TextSink struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
}

// NewTextSink writes to w; terminal adds start lines.
func NewTextSink(w io.Writer, terminal bool) *TextSink { return &TextSink{w: w, terminal: terminal} }

// Event prints e.
func (s *TextSink) Event(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Kind {
	case StageStart:
		if s.terminal {
			fmt.Fprintf(s.w, "  ... %s\n", e.Stage)
		}
	case StageDone:
		fmt.Fprintf(s.w, "  ok  %-12s %8s\n", e.Stage, round(e.Duration))
	case StageFailed:
		fmt.Fprintf(s.w, "  FAIL %-11s %8s  %s\n", e.Stage, round(e.Duration), e.Message)
	case StageSkip:
		fmt.Fprintf(s.w, "  skip %-11s %s\n", e.Stage, e.Message)
	case CleanupDone:
		fmt.Fprintf(s.w, "  cleanup: removed %s\n", e.Message)
	case CleanupFail, CleanupLeft:
		fmt.Fprintf(s.w, "  cleanup: %s\n", e.Message)
	case Info:
		for _, l := range strings.Split(strings.TrimRight(e.Message, "\n"), "\n") {
			fmt.Fprintf(s.w, "       %s\n", l)
		}
	}
}

func round(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// Multi fans events out to several sinks.
type Multi []Sink

// Event sends e to every sink.
func (m Multi) Event(e Event) {
	for _, s := range m {
		if s != nil {
			s.Event(e)
		}
	}
}

// CheckReport is one check's outcome in the manifest.
type CheckReport struct {
	Name     string  `json:"name"`
	Passed   bool    `json:"passed"`
	ExitCode int     `json:"exitCode"`
	Seconds  float64 `json:"seconds"`
	Output   string  `json:"output,omitempty"`
}

// Manifest is what a bake produced, for --output json and later commands.
type Manifest struct {
	Result      string            `json:"result"` // baked, failed or skipped
	Error       string            `json:"error,omitempty"`
	FailedStage string            `json:"failedStage,omitempty"`
	Recipe      string            `json:"recipe"`
	RecipeHash  string            `json:"recipeHash"`
	Target      string            `json:"target"`
	Image       string            `json:"image"`
	Version     string            `json:"version,omitempty"`
	VersionID   string            `json:"versionId,omitempty"`
	Path        string            `json:"path,omitempty"`
	BaseImage   string            `json:"baseImage,omitempty"`
	BaseVersion string            `json:"baseVersion,omitempty"`
	Imagebake   string            `json:"imagebake"`
	Commit      string            `json:"commit,omitempty"`
	Started     time.Time         `json:"started"`
	Finished    time.Time         `json:"finished"`
	Stages      []StageTiming     `json:"stages"`
	Checks      []CheckReport     `json:"checks,omitempty"`
	Resources   map[string]string `json:"resources,omitempty"`
	Left        []string          `json:"left,omitempty"`
	LogDir      string            `json:"logDir,omitempty"`
	// Boot is how long the local VM took from QEMU's launch to ready
	// (verify: the published image's first boot; bake: the build boot).
	Boot *BootTiming `json:"boot,omitempty"`
	// BootCommand boots a local version by hand (a throwaway snapshot).
	BootCommand string `json:"bootCommand,omitempty"`
	// Settings are the run's effective settings (flag over recipe over
	// default).
	Settings *Settings `json:"settings,omitempty"`
}

func checkReports(results []sshsession.CheckResult) []CheckReport {
	out := make([]CheckReport, 0, len(results))
	for _, r := range results {
		cr := CheckReport{Name: r.Name, Passed: r.Passed, ExitCode: r.ExitCode, Seconds: r.Duration.Seconds()}
		if !r.Passed {
			cr.Output = r.Output
			if r.Err != nil {
				cr.Output += r.Err.Error()
			}
		}
		out = append(out, cr)
	}
	return out
}

// checksError fails the checks stage with every failed check's output, so
// one run shows everything that is wrong.
func checksError(results []sshsession.CheckResult) error {
	var failed []string
	for _, r := range results {
		if r.Passed {
			continue
		}
		out := strings.TrimSpace(r.Output)
		if r.Err != nil {
			out = strings.TrimSpace(out + "\n" + r.Err.Error())
		}
		if out == "" {
			out = "(no output)"
		}
		failed = append(failed, fmt.Sprintf("check %q failed (exit %d):\n%s", r.Name, r.ExitCode, indent(out, "    ")))
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d checks failed:\n%s", len(failed), len(results), strings.Join(failed, "\n"))
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

// finish unwinds the pipeline's cleanups and completes the manifest: the
// result word on success, the error and failed stage otherwise. A cleanup
// that failed after a successful run fails the run (something was left).
func finish(p *Pipeline, m *Manifest, err error, opts UnwindOptions, success string) (*Manifest, error) {
	opts.Keep = opts.Keep && err != nil
	left, cerr := p.Unwind(opts)
	m.Left, m.Stages, m.Finished = left, p.Timings(), time.Now()
	if err == nil && cerr != nil {
		err = &StageError{Stage: "cleanup", Err: cerr}
	}
	if err != nil {
		m.Result, m.Error = "failed", err.Error()
		var se *StageError
		if errors.As(err, &se) {
			m.FailedStage = se.Stage
		}
		return m, err
	}
	m.Result = success
	return m, nil
}
