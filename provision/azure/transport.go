package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// This file is the one Resource Manager transport every verb goes through:
// call runs a request, begin starts a long-running operation and
// Operation.Wait polls it. Both wait out throttling, and both wrap a failure
// exactly once, as an *Error naming the operation and resource with ARM's
// error code and message (never the SDK's response dump).

// Error is a Resource Manager call that failed.
type Error struct {
	// Op names what imagebake was doing and to what, e.g. "deallocate
	// virtual machine ib-x-vm".
	Op string
	// Status is the HTTP status of the failing answer; 0 when none came
	// back (a transport error, or the context ended). A long-running
	// operation that ended Failed carries the status of its last poll (200).
	Status int
	// Code and Message are ARM's error code and message, when it sent them.
	Code, Message string
	// Note adds imagebake's own context, e.g. why it stopped waiting.
	Note string
	// Err is the cause: an *azcore.ResponseError, a transport error, or the
	// context's cause.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteString(": ")
	switch {
	case e.Code != "" && e.Message != "":
		fmt.Fprintf(&b, "%s: %s", e.Code, e.Message)
	case e.Code != "":
		fmt.Fprintf(&b, "%s (HTTP %d)", e.Code, e.Status)
	case e.Message != "":
		fmt.Fprintf(&b, "HTTP %d: %s", e.Status, e.Message)
	case e.Status != 0:
		fmt.Fprintf(&b, "HTTP %d", e.Status)
	case errors.Is(e.Err, ErrNoCredentials):
		b.WriteString(fmt.Sprint(e.Err)) // with its line saying how to log in
	default:
		b.WriteString(firstLine(fmt.Sprint(e.Err)))
	}
	if e.Note != "" {
		b.WriteString(" (" + e.Note + ")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// wrap names err once: an error that already is an *Error is returned as is.
func wrap(op string, err error) error {
	var ae *Error
	if errors.As(err, &ae) {
		return err
	}
	e := &Error{Op: op, Err: err}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		e.Status, e.Code = re.StatusCode, re.ErrorCode
		if re.RawResponse != nil {
			code, msg := armError(re.RawResponse)
			if e.Code == "" {
				e.Code = code
			}
			e.Message = msg
		}
	}
	return e
}

// armError reads {"error": {"code", "message", "details"}} (or the same
// fields unwrapped, as some operation-status bodies have them).
func armError(resp *http.Response) (code, message string) {
	body, err := runtime.Payload(resp)
	if err != nil || len(body) == 0 {
		return "", ""
	}
	type detail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	var doc struct {
		detail
		Error *struct {
			detail
			Details []detail `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return "", ""
	}
	if doc.Error == nil {
		return doc.Code, oneLine(doc.Message)
	}
	code, message = doc.Error.Code, doc.Error.Message
	if message == "" && len(doc.Error.Details) > 0 {
		message = doc.Error.Details[0].Message
	}
	return code, oneLine(message)
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// call runs one request, waiting out throttling: the SDK retries a 429
// only while its Retry-After is under the SDK's cap and hands longer ones
// back, and a nightly bake should wait, not fail.
func (c *Clients) call(ctx context.Context, op string, f func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if err := c.waitOut(ctx, op, err, attempt); err != nil {
			return err
		}
	}
}

// waitOut decides what a failed attempt means: nil after waiting out a
// 429 (try again), or the wrapped error.
func (c *Clients) waitOut(ctx context.Context, op string, err error, attempt int) error {
	wait, throttled := retryAfter(err)
	if !throttled || attempt >= c.cfg.MaxThrottleRetries {
		return wrap(op, err)
	}
	if wait > c.cfg.MaxThrottleWait {
		e := wrap(op, err).(*Error)
		e.Note = fmt.Sprintf("throttled for %s, more than the %s imagebake waits", wait, c.cfg.MaxThrottleWait)
		return e
	}
	c.log.Warn("throttled by Azure; waiting", "call", op, "retry-after", wait)
	if serr := c.cfg.Sleep(ctx, wait); serr != nil {
		return &Error{Op: op, Note: "while waiting out throttling", Err: serr}
	}
	return nil
}

// retryAfter reads a 429's Retry-After (seconds, HTTP date, or
// Retry-After-Ms). Compute's 429s may come without one: then 10 s.
func retryAfter(err error) (time.Duration, bool) {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	d := 10 * time.Second
	if re.RawResponse != nil {
		h := re.RawResponse.Header.Get("Retry-After")
		if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
			d = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(h); err == nil {
			d = time.Until(t)
		}
		if ms := re.RawResponse.Header.Get("Retry-After-Ms"); ms != "" {
			if v, err := strconv.Atoi(ms); err == nil {
				d = time.Duration(v) * time.Millisecond
			}
		}
	}
	return d, true
}

// maxPollWait bounds one wait between polls, whatever Retry-After says.
const maxPollWait = 60 * time.Second

// firstPollWait starts the ramp of waits when Azure names none.
const firstPollWait = time.Second

// pollWait is how long to wait before the next poll: Azure's Retry-After
// on the last answer; else a ramp from firstPollWait doubling up to the
// configured interval, counted by unadvised, the polls so far that had no
// Retry-After. Compute and gallery actions send no Retry-After and many
// finish in seconds: a flat 5 s interval made each of them wait for the
// next multiple of 5 s (about 2.5 s lost per operation, the larger part of
// a bake's overhead in BenchmarkAzureBake), while the ramp adds at most
// two polls per operation and keeps long ones at the interval (12 a
// minute, under Compute's Get Operation limits).
func (c *Clients) pollWait(resp *http.Response, unadvised int) (d time.Duration, advised bool) {
	if resp != nil {
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
			return min(time.Duration(s)*time.Second, maxPollWait), true
		}
	}
	d = c.cfg.PollFrequency
	if unadvised < 8 {
		d = min(d, firstPollWait<<unadvised)
	}
	return d, false
}

// Operation is a long-running operation Azure accepted.
type Operation[T any] struct {
	c    *Clients
	op   string
	p    *runtime.Poller[T]
	last *http.Response
	// Status is the HTTP status Azure accepted it with: 201 for a PUT that
	// created the resource, 200 for one that updated an existing one, 202
	// for actions and deletes.
	Status int
}

// begin starts a long-running operation. Throttling of the start is waited
// out; the start is never repeated once Azure accepted it.
func begin[T any](ctx context.Context, c *Clients, op string, start func(ctx context.Context) (*runtime.Poller[T], error)) (*Operation[T], error) {
	o := &Operation[T]{c: c, op: op}
	err := c.call(ctx, op, func(ctx context.Context) error {
		var err error
		o.last = nil
		o.p, err = start(runtime.WithCaptureResponse(ctx, &o.last))
		return err
	})
	if err != nil {
		return nil, err
	}
	if o.last != nil {
		o.Status = o.last.StatusCode
	}
	return o, nil
}

// Wait polls the operation to its end, no more often than Azure's
// Retry-After asks (or the configured interval), waiting out throttled
// polls without restarting the operation. between, when set, runs after
// each poll that did not end it (n counts from 0): progress reads.
func (o *Operation[T]) Wait(ctx context.Context, between func(ctx context.Context, n int)) (T, error) {
	var zero T
	unadvised := 0
	for n := 0; !o.p.Done(); n++ {
		d, advised := o.c.pollWait(o.last, unadvised)
		if !advised {
			unadvised++
		}
		if err := o.c.cfg.Sleep(ctx, d); err != nil {
			return zero, &Error{Op: o.op, Note: "while waiting for the operation", Err: err}
		}
		if err := o.c.call(ctx, o.op, func(ctx context.Context) error {
			resp, err := o.p.Poll(ctx)
			if err == nil {
				o.last = resp
			}
			return err
		}); err != nil {
			return zero, err
		}
		if !o.p.Done() && between != nil {
			between(ctx, n)
		}
	}
	var res T
	err := o.c.call(ctx, o.op, func(ctx context.Context) error {
		var err error
		res, err = o.p.Result(ctx)
		return err
	})
	return res, err
}

// run starts a long-running operation and waits for its end.
func run[T any](ctx context.Context, c *Clients, op string, start func(ctx context.Context) (*runtime.Poller[T], error)) (T, error) {
	o, err := begin(ctx, c, op, start)
	if err != nil {
		var zero T
		return zero, err
	}
	return o.Wait(ctx, nil)
}

// runOrGone is run for deletes: a 404 at the start or end means the
// resource is already gone, which is what was wanted.
func runOrGone[T any](ctx context.Context, c *Clients, op string, start func(ctx context.Context) (*runtime.Poller[T], error)) error {
	_, err := run(ctx, c, op, start)
	if IsNotFound(err) {
		return nil
	}
	return err
}

// IsNotFound reports a 404 from Azure.
func IsNotFound(err error) bool { return IsStatus(err, http.StatusNotFound) }

// IsStatus reports a failed call whose answer had the given HTTP status.
func IsStatus(err error, code int) bool {
	var ae *Error
	if errors.As(err, &ae) && ae.Status != 0 {
		return ae.Status == code
	}
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}
