package bake

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) Event(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func TestCleanupsRunInReverseAndRetry(t *testing.T) {
	p := NewPipeline(nil, nil)
	var order []string
	fails := 1
	p.OnCleanup("a", func(context.Context) error { order = append(order, "a"); return nil })
	p.OnCleanup("b", func(context.Context) error {
		order = append(order, "b")
		if fails > 0 {
			fails--
			return errors.New("conflict")
		}
		return nil
	})
	p.OnCleanupKeepable("vm", func(context.Context) error { order = append(order, "vm"); return nil })
	left, err := p.Unwind(UnwindOptions{RetryDelay: time.Millisecond})
	if err != nil || len(left) != 0 {
		t.Fatalf("left %v err %v", left, err)
	}
	if got := strings.Join(order, ","); got != "vm,b,b,a" {
		t.Errorf("cleanup order %s, want vm,b,b,a (reverse, b retried once)", got)
	}
}

func TestKeepOnFailureKeepsOnlyKeepables(t *testing.T) {
	p := NewPipeline(nil, nil)
	ran := map[string]bool{}
	p.OnCleanupKeepable("vm", func(context.Context) error { ran["vm"] = true; return nil })
	p.OnCleanup("session", func(context.Context) error { ran["session"] = true; return nil })
	left, _ := p.Unwind(UnwindOptions{Keep: true})
	if ran["vm"] || !ran["session"] || len(left) != 1 || left[0] != "vm" {
		t.Errorf("ran %v left %v", ran, left)
	}
}

func TestSecondSignalStopsCleanup(t *testing.T) {
	rec := &recorder{}
	p := NewPipeline(rec, nil)
	abort := make(chan struct{})
	p.OnCleanup("first", func(context.Context) error { return nil })
	p.OnCleanup("slow", func(ctx context.Context) error {
		close(abort) // the second Ctrl-C arrives during this cleanup
		<-ctx.Done()
		return ctx.Err()
	})
	left, err := p.Unwind(UnwindOptions{Abort: abort, Attempts: 1})
	if err == nil || len(left) != 2 {
		t.Fatalf("left %v err %v; want both left after the abort", left, err)
	}
	var said []string
	for _, e := range rec.events {
		if e.Kind == CleanupLeft || e.Kind == CleanupFail {
			said = append(said, e.Message)
		}
	}
	if len(said) != 2 || !strings.Contains(said[1], "first left") {
		t.Errorf("what is left is not reported: %v", said)
	}
}

func TestStageTimeoutNamesTheStage(t *testing.T) {
	p := NewPipeline(nil, map[string]time.Duration{"ssh": 20 * time.Millisecond})
	err := p.Stage(context.Background(), "ssh", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	var se *StageError
	if !errors.As(err, &se) || se.Stage != "ssh" || !strings.Contains(err.Error(), "timed out after 20ms") {
		t.Errorf("err = %v", err)
	}
	if tm := p.Timings(); len(tm) != 1 || !tm[0].Failed {
		t.Errorf("timings %+v", tm)
	}
}

func TestCancelledContextSaysWhy(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	p := NewPipeline(nil, nil)
	err := p.Stage(ctx, "boot", func(ctx context.Context) error {
		cancel(errors.New("interrupted by interrupt"))
		<-ctx.Done()
		return ctx.Err()
	})
	if err == nil || !strings.Contains(err.Error(), "interrupted by interrupt") {
		t.Errorf("err = %v", err)
	}
	// A stage after cancellation does not run.
	ran := false
	if err := p.Stage(ctx, "next", func(context.Context) error { ran = true; return nil }); err == nil || ran {
		t.Errorf("a stage ran after cancellation: %v", err)
	}
}
