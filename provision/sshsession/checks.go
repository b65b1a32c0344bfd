package sshsession

import (
	"context"
	"errors"
	"time"
)

// maxCheckOutput bounds the output kept per check (head and tail).
const maxCheckOutput = 64 << 10

// Check is one verification run on the build VM before deprovisioning.
type Check struct {
	Name string
	Run  string // a shell script, run by sh -c
	Sudo bool   // run as root through `sudo -n`
}

// Command is the exact command line the check runs: the script is quoted
// whole, so it cannot be broken apart by the login shell.
func (c Check) Command() string {
	if c.Sudo {
		return "sudo -n sh -c " + ShellQuote(c.Run)
	}
	return "sh -c " + ShellQuote(c.Run)
}

// CheckResult is the outcome of one Check.
type CheckResult struct {
	Check
	Passed   bool
	Output   string // stdout and stderr interleaved, at most 64 KiB (head and tail)
	ExitCode int    // -1 when the check did not run to completion
	Duration time.Duration
	// Err says why the check could not run (dropped session, ctx ended);
	// nil when it ran, whatever its exit status.
	Err error
}

// RunChecks runs every check in order and never stops at a failure, so one
// report shows everything that is wrong. Once the session is gone or ctx is
// done the remaining checks fail at once with Err set.
func (s *Session) RunChecks(ctx context.Context, checks []Check) []CheckResult {
	results := make([]CheckResult, 0, len(checks))
	for _, c := range checks {
		out := newBoundedBuffer(maxCheckOutput)
		code, dur, err := s.exec(ctx, c.Command(), out, out)
		r := CheckResult{Check: c, Output: out.String(), ExitCode: code, Duration: dur}
		var ee *ExitError
		switch {
		case err == nil:
			r.Passed = true
		case errors.As(err, &ee):
			// Ran and failed: not a transport problem.
		default:
			r.Err = err
		}
		s.log.Info("check", "name", c.Name, "passed", r.Passed, "exit", r.ExitCode, "took", dur.Round(time.Millisecond))
		results = append(results, r)
	}
	return results
}
