package azure

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
)

// An error names the operation and the resource once, with ARM's code and
// message, and none of the SDK's response dump.
func TestErrorsAreNamedOnceWithoutDump(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule azmodel.Rule
		call func(e *env, rg string) error
		want string
		code int
	}{
		{
			name: "failed long-running operation",
			rule: azmodel.Rule{Op: "VirtualMachines_Deallocate", FailLRO: true, Code: "InjectedFailure", Message: "deallocation failed"},
			call: func(e *env, rg string) error { return e.c.Deallocate(context.Background(), rg, "ib-t-vm") },
			want: "deallocate virtual machine ib-t-vm: InjectedFailure: deallocation failed",
			code: http.StatusOK,
		},
		{
			name: "refused synchronous call",
			rule: azmodel.Rule{Op: "VirtualMachines_Generalize", Status: 409, Code: "OperationNotAllowed", Message: "Operation 'generalize' is not allowed on VM 'ib-t-vm' since the VM is running."},
			call: func(e *env, rg string) error { return e.c.Generalize(context.Background(), rg, "ib-t-vm") },
			want: "generalize virtual machine ib-t-vm: OperationNotAllowed: Operation 'generalize' is not allowed on VM 'ib-t-vm' since the VM is running.",
			code: http.StatusConflict,
		},
		{
			name: "refused start of a long-running operation",
			rule: azmodel.Rule{Op: "VirtualMachines_Deallocate", Status: 409, Code: "Conflict", Message: "Another operation is in progress."},
			call: func(e *env, rg string) error { return e.c.Deallocate(context.Background(), rg, "ib-t-vm") },
			want: "deallocate virtual machine ib-t-vm: Conflict: Another operation is in progress.",
			code: http.StatusConflict,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, azmodel.Options{}, Config{})
			rg, _ := e.vm(t, VMSpec{})
			e.m.MustAddRule(tc.rule)
			err := tc.call(e, rg)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %q\nwant %q", err.Error(), tc.want)
			}
			for _, bad := range []string{"https://", "RESPONSE", "-----", "\n"} {
				if strings.Contains(err.Error(), bad) {
					t.Errorf("error contains %q: %q", bad, err.Error())
				}
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != tc.code || ae.Code != tc.rule.Code {
				t.Errorf("error %#v: want status %d and code %s", ae, tc.code, tc.rule.Code)
			}
		})
	}
}

// Throttled polls are waited out at Azure's Retry-After, even above the
// SDK's 60 s cap, and never start the operation again; when imagebake
// gives up, it still started it once.
func TestThrottledPollsNeverRestartTheOperation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		throttles int // polls answered 429; -1: all
		wantErr   bool
	}{
		{"waited out", 3, false},
		{"given up", -1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, azmodel.Options{}, Config{MaxThrottleRetries: 4})
			rg, _ := e.vm(t, VMSpec{})
			e.m.MustAddRule(azmodel.Rule{Op: "Operations_Get", Times: tc.throttles, Status: 429, RetryAfter: 120})
			err := e.c.Deallocate(context.Background(), rg, "ib-t-vm")
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if n := e.count("VirtualMachines_Deallocate"); n != 1 {
				t.Errorf("the deallocate was started %d times, want once", n)
			}
			long := 0
			for _, w := range e.recordedWaits() {
				if w == 120*time.Second {
					long++
				}
			}
			want := tc.throttles
			if tc.wantErr {
				want = 4
				if !IsStatus(err, http.StatusTooManyRequests) || strings.Count(err.Error(), "deallocate") != 1 {
					t.Errorf("error %q: want one named 429", err)
				}
			}
			if long != want {
				t.Errorf("waited the full 120 s Retry-After %d times, want %d (waits %v)", long, want, e.recordedWaits())
			}
		})
	}
}

// A Retry-After above MaxThrottleWait is not waited: the error says so.
func TestThrottleAboveTheLimitFails(t *testing.T) {
	e := newEnv(t, azmodel.Options{}, Config{MaxThrottleWait: time.Minute})
	rg, _ := e.vm(t, VMSpec{})
	e.m.MustAddRule(azmodel.Rule{Op: "VirtualMachines_Generalize", Status: 429, RetryAfter: 1200})
	err := e.c.Generalize(context.Background(), rg, "ib-t-vm")
	if err == nil || !strings.Contains(err.Error(), "throttled for 20m0s, more than the 1m0s imagebake waits") || !strings.HasPrefix(err.Error(), "generalize virtual machine ib-t-vm: ") {
		t.Errorf("err = %v", err)
	}
}

// Polls come no more often than Azure's Retry-After asks, starting from
// the answer that accepted the operation; without one, at PollFrequency.
func TestPollsFollowRetryAfter(t *testing.T) {
	for _, retryAfter := range []int{7, 0} {
		e := newEnv(t, azmodel.Options{LRORetryAfter: retryAfter, InProgressPolls: 2}, Config{})
		rg, _ := e.vm(t, VMSpec{})
		before, sentBefore := len(e.recordedWaits()), len(e.rec.all())
		if err := e.c.Deallocate(context.Background(), rg, "ib-t-vm"); err != nil {
			t.Fatal(err)
		}
		waits, reqs := e.recordedWaits()[before:], e.rec.all()[sentBefore:]
		// The answers: the accepting POST, then each poll (and perhaps a
		// final read); wait i follows answer i.
		if len(waits) < 2 || len(reqs) <= len(waits) {
			t.Fatalf("Retry-After %d: %d requests, %d waits", retryAfter, len(reqs), len(waits))
		}
		for i, w := range waits {
			want := 5 * time.Millisecond
			if s, err := strconv.Atoi(reqs[i].RetryAfter); err == nil && s > 0 {
				want = time.Duration(s) * time.Second
			}
			if w != want {
				t.Errorf("Retry-After %d: wait %d after %s %s (Retry-After %q) was %v, want %v", retryAfter, i, reqs[i].Method, reqs[i].Path, reqs[i].RetryAfter, w, want)
			}
		}
		if retryAfter == 7 && waits[0] != 7*time.Second {
			t.Errorf("the first poll did not wait for the accepting answer's Retry-After: %v", waits)
		}
	}
}

func TestArmErrorBodies(t *testing.T) {
	for _, tc := range []struct{ body, code, msg string }{
		{`{"error":{"code":"TooManyRequests","message":"","details":[{"code":"TooManyRequests","message":"The request is being throttled."}]}}`, "TooManyRequests", "The request is being throttled."},
		{`{"status":"Failed","error":{"code":"Conflict","message":"a\n  b"}}`, "Conflict", "a b"},
		{`{"code":"NotFound","message":"gone"}`, "NotFound", "gone"},
		{`not json`, "", ""},
	} {
		resp := &http.Response{StatusCode: 400, Body: http.NoBody, Header: http.Header{}}
		resp.Body = readCloser(tc.body)
		code, msg := armError(resp)
		if code != tc.code || msg != tc.msg {
			t.Errorf("%s: got %q %q, want %q %q", tc.body, code, msg, tc.code, tc.msg)
		}
	}
}

type stringBody struct{ *strings.Reader }

func (stringBody) Close() error { return nil }

func readCloser(s string) stringBody { return stringBody{strings.NewReader(s)} }
