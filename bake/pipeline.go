// Package bake runs bakes and verifies as declared flows: each flow is one
// list of small named stages over one typed build struct (see flows.go for
// the four lists). Each stage that creates something registers its cleanup
// the moment the thing exists; cleanups run in reverse order on success,
// failure and cancellation, with a fresh bounded context, so nothing of a
// build outlives it.
package bake

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// EventKind is what happened to a stage.
type EventKind string

// Event kinds.
const (
	StageStart   EventKind = "start"
	StageDone    EventKind = "done"
	StageFailed  EventKind = "failed"
	StageSkip    EventKind = "skipped"
	CleanupStart EventKind = "cleanup-start"
	CleanupDone  EventKind = "cleanup"
	CleanupFail  EventKind = "cleanup-failed"
	CleanupLeft  EventKind = "left"
	Info         EventKind = "info"
)

// Event is one thing the progress display, the JSON log and the manifest
// hear about.
type Event struct {
	Time     time.Time     `json:"time"`
	Kind     EventKind     `json:"kind"`
	Stage    string        `json:"stage"`
	Duration time.Duration `json:"duration,omitempty"`
	Message  string        `json:"message,omitempty"`
}

// Sink receives events; it must be safe for concurrent use.
type Sink interface {
	Event(Event)
}

// StageError is a stage's failure, naming the stage.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return fmt.Sprintf("stage %s: %v", e.Stage, e.Err) }
func (e *StageError) Unwrap() error { return e.Err }

// StageTiming is one stage's duration, for the manifest.
type StageTiming struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"durationNs"`
	Seconds  float64       `json:"seconds"`
	Failed   bool          `json:"failed,omitempty"`
	Skipped  bool          `json:"skipped,omitempty"`
}

// Stage is one named step of a flow over the flow's build B: the typed
// struct that holds everything the flow's stages hand one another. A flow
// is a declared []Stage[B]; Run runs it in order. Run takes the build first
// so that a flow can list method expressions, (*azureBake).publish.
type Stage[B any] struct {
	Name string
	Run  func(b *B, ctx context.Context) error
}

// Names lists the stages' names, in order.
func Names[B any](stages []Stage[B]) []string {
	out := make([]string, len(stages))
	for i, s := range stages {
		out[i] = s.Name
	}
	return out
}

// SkipError is what a stage returns when it had nothing to do: the stage is
// reported skipped, with the reason, and the flow goes on.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return "skipped: " + e.Reason }

// Skip makes a stage's typed skip.
func Skip(reason string) error { return &SkipError{Reason: reason} }

// CleanupID names a registered cleanup, to Forget it.
type CleanupID int

type cleanup struct {
	id   CleanupID
	name string
	fn   func(context.Context) error
	// keep marks a cleanup that --keep-on-failure skips (the build
	// machine), as opposed to ones that always run (a local seed server).
	keep bool
}

// Pipeline runs stages and holds their cleanups.
type Pipeline struct {
	sink     Sink
	timeouts map[string]time.Duration
	now      func() time.Time

	mu       sync.Mutex
	nextID   CleanupID
	cleanups []cleanup
	timings  []StageTiming
}

// NewPipeline makes a pipeline. timeouts bounds named stages (a stage with
// no entry is bounded only by ctx).
func NewPipeline(sink Sink, timeouts map[string]time.Duration) *Pipeline {
	return &Pipeline{sink: sink, timeouts: timeouts, now: time.Now}
}

func (p *Pipeline) emit(e Event) {
	e.Time = p.now()
	if p.sink != nil {
		p.sink.Event(e)
	}
}

// Note reports something worth showing without being a stage.
func (p *Pipeline) Note(stage, msg string) { p.emit(Event{Kind: Info, Stage: stage, Message: msg}) }

// Run runs stages over b in order and stops at the first failure, which
// comes back as a *StageError. failed, when set, hears the failed stage's
// name first (to say how to reach a kept machine).
func Run[B any](ctx context.Context, p *Pipeline, b *B, stages []Stage[B], failed func(b *B, stage string)) error {
	for _, s := range stages {
		if err := p.Stage(ctx, s.Name, func(ctx context.Context) error { return s.Run(b, ctx) }); err != nil {
			if failed != nil {
				failed(b, s.Name)
			}
			return err
		}
	}
	return nil
}

// Stage runs fn as the named stage, bounded by the stage's timeout. Its
// error comes back as a *StageError; a *SkipError is reported as a skip and
// is not an error.
func (p *Pipeline) Stage(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return &StageError{Stage: name, Err: context.Cause(ctx)}
	}
	if d, ok := p.timeouts[name]; ok && d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, fmt.Errorf("stage %s timed out after %s", name, d))
		defer cancel()
	}
	p.emit(Event{Kind: StageStart, Stage: name})
	start := p.now()
	err := fn(ctx)
	d := p.now().Sub(start)
	var skip *SkipError
	skipped := errors.As(err, &skip)
	p.mu.Lock()
	p.timings = append(p.timings, StageTiming{Name: name, Duration: d, Seconds: d.Seconds(), Failed: err != nil && !skipped, Skipped: skipped})
	p.mu.Unlock()
	switch {
	case skipped:
		p.emit(Event{Kind: StageSkip, Stage: name, Message: skip.Reason})
		return nil
	case err != nil:
		// Say why ctx ended: "interrupted by interrupt" or "stage … timed
		// out" rather than a bare "context canceled".
		if cause := context.Cause(ctx); cause != nil && cause != context.Canceled && cause != context.DeadlineExceeded &&
			(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) && !strings.Contains(err.Error(), cause.Error()) {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
		p.emit(Event{Kind: StageFailed, Stage: name, Duration: d, Message: err.Error()})
		return &StageError{Stage: name, Err: err}
	}
	p.emit(Event{Kind: StageDone, Stage: name, Duration: d})
	return nil
}

func (p *Pipeline) register(name string, fn func(context.Context) error, keep bool) CleanupID {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	p.cleanups = append(p.cleanups, cleanup{id: p.nextID, name: name, fn: fn, keep: keep})
	return p.nextID
}

// OnCleanup registers fn to undo what a stage just created. Register it the
// moment the thing exists, before anything else can fail. name is what the
// cleanup's events and the manifest's "left" say.
func (p *Pipeline) OnCleanup(name string, fn func(context.Context) error) CleanupID {
	return p.register(name, fn, false)
}

// OnCleanupKeepable is OnCleanup for the build machine and what it needs:
// --keep-on-failure leaves these in place.
func (p *Pipeline) OnCleanupKeepable(name string, fn func(context.Context) error) CleanupID {
	return p.register(name, fn, true)
}

// Forget drops a registered cleanup: the thing was handed over (a
// published version) or removed by a stage. Forgetting twice is harmless.
func (p *Pipeline) Forget(id CleanupID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.cleanups {
		if c.id == id {
			p.cleanups = append(p.cleanups[:i], p.cleanups[i+1:]...)
			return
		}
	}
}

// UnwindOptions bound the cleanups.
type UnwindOptions struct {
	// Timeout bounds all cleanups together (fresh context: the bake's own
	// may be cancelled already).
	Timeout time.Duration
	// Keep skips keepable cleanups (--keep-on-failure after a failure).
	Keep bool
	// Abort, when closed (a second Ctrl-C), stops cleaning up; what is left
	// is reported.
	Abort <-chan struct{}
	// Attempts and RetryDelay retry a failed cleanup (a delete that hit a
	// transient conflict must not leak); defaults 3 and 5 s, doubling.
	Attempts   int
	RetryDelay time.Duration
}

// Unwind runs the cleanups in reverse order and returns what could not be
// cleaned up (and what was kept or left), by name.
func (p *Pipeline) Unwind(opts UnwindOptions) (left []string, err error) {
	p.mu.Lock()
	cs := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	if opts.Abort != nil {
		go func() {
			select {
			case <-opts.Abort:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	if len(cs) > 0 {
		p.emit(Event{Kind: CleanupStart, Stage: "cleanup"})
	}
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		c := cs[i]
		if opts.Keep && c.keep {
			left = append(left, c.name)
			p.emit(Event{Kind: CleanupLeft, Stage: "cleanup", Message: c.name + " kept (--keep-on-failure)"})
			continue
		}
		if ctx.Err() != nil {
			left = append(left, c.name)
			p.emit(Event{Kind: CleanupLeft, Stage: "cleanup", Message: c.name + " left: cleanup stopped"})
			continue
		}
		start := p.now()
		if cerr := retry(ctx, opts, c.fn); cerr != nil {
			left = append(left, c.name)
			errs = append(errs, fmt.Errorf("cleanup %s: %w", c.name, cerr))
			p.emit(Event{Kind: CleanupFail, Stage: "cleanup", Message: c.name + ": " + cerr.Error()})
			continue
		}
		p.emit(Event{Kind: CleanupDone, Stage: "cleanup", Duration: p.now().Sub(start), Message: c.name})
	}
	return left, errors.Join(errs...)
}

func retry(ctx context.Context, opts UnwindOptions, fn func(context.Context) error) error {
	attempts, delay := opts.Attempts, opts.RetryDelay
	if attempts <= 0 {
		attempts = 3
	}
	if delay <= 0 {
		delay = 5 * time.Second
	}
	var err error
	for i := 0; i < attempts; i++ {
		if err = fn(ctx); err == nil {
			return nil
		}
		if i+1 == attempts {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay *= 2
	}
	return err
}

// Timings are the stages run so far, in order.
func (p *Pipeline) Timings() []StageTiming {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]StageTiming(nil), p.timings...)
}
