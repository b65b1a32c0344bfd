package bake

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
)

// call is one Resource Manager request of a clean bake, with the stage it
// belonged to.
type call struct {
	op, method string
	nth        int // the nth call of this op in the bake
	stage      string
	class      azmodel.Class
	lro        bool
	query      string
}

// stageTracker records which stage each request belongs to.
type stageTracker struct {
	mu      sync.Mutex
	model   *azmodel.Model
	marks   []int // request count at each stage start
	stages  []string
	done    bool
	onStart func(stage string)
}

func (s *stageTracker) Event(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch e.Kind {
	case StageStart:
		s.marks = append(s.marks, len(s.model.Requests()))
		s.stages = append(s.stages, e.Stage)
		if s.onStart != nil {
			s.onStart(e.Stage)
		}
	case CleanupStart:
		if !s.done {
			s.done = true
			s.marks = append(s.marks, len(s.model.Requests()))
			s.stages = append(s.stages, "cleanup")
		}
	}
}

func (s *stageTracker) stageOf(i int) string {
	st := "setup"
	for k, m := range s.marks {
		if i >= m {
			st = s.stages[k]
		}
	}
	return st
}

// cleanBakeCalls bakes once without faults and returns every Resource
// Manager call it made, in order.
func cleanBakeCalls(t *testing.T) ([]call, []string) {
	e := aztest.New(t, azmodel.Options{}, nil)
	e.Model.ResetRequests()
	tr := &stageTracker{model: e.Model}
	opts := options(t, e)
	opts.Sink = tr
	if _, err := Azure(context.Background(), loadRunner(t), opts); err != nil {
		t.Fatalf("clean bake: %v", err)
	}
	seen := map[string]int{}
	var calls []call
	reqs := e.Model.Requests()
	for i, r := range reqs {
		if r.Class == azmodel.ClassAuth || r.Op == "" {
			continue
		}
		seen[r.Op]++
		// A long-running operation answers 201/202 and is polled next.
		lro := (r.Status == 201 || r.Status == 202) && i+1 < len(reqs) && reqs[i+1].Op == "Operations_Get"
		calls = append(calls, call{op: r.Op, method: r.Method, nth: seen[r.Op], stage: tr.stageOf(i), class: r.Class, lro: lro, query: r.Query})
	}
	var stages []string
	for _, s := range tr.stages {
		if s != "cleanup" {
			stages = append(stages, s)
		}
	}
	return calls, stages
}

type faultResult struct {
	bestEffort   bool
	name         string
	err          error
	leftovers    []string
	newVersions  int
	failedStage  string
	cleanupPhase bool
}

func runFault(t *testing.T, name string, rule *azmodel.Rule, cancelAt string) faultResult {
	e := aztest.New(t, azmodel.Options{}, nil)
	if rule != nil {
		e.Model.MustAddRule(*rule)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	opts := options(t, e)
	opts.CleanupRetryDelay = 10 * time.Millisecond
	opts.Sink = &stageTracker{model: e.Model, onStart: func(stage string) {
		if stage == cancelAt {
			cancel(errors.New("interrupted by interrupt (test)"))
		}
	}}
	m, err := Azure(ctx, loadRunner(t), opts)
	return faultResult{name: name, err: err, leftovers: e.BuildLeftovers(), newVersions: len(e.Versions()), failedStage: m.FailedStage}
}

// TestFaultMatrix injects a failure into every Resource Manager call a bake
// makes (an error answer, and for long-running operations a Failed end),
// and interrupts the bake at every stage. Every bake must fail, name its
// stage, and leave no build resource and no version behind. A fault in a
// cleanup call must be absorbed by the cleanup's retry, leaving nothing.
func TestFaultMatrix(t *testing.T) {
	calls, stages := cleanBakeCalls(t)
	if len(calls) < 15 {
		t.Fatalf("a clean bake made only %d Resource Manager calls", len(calls))
	}
	var results []faultResult
	for _, c := range calls {
		rule := azmodel.Rule{Op: c.op, Method: c.method, Nth: c.nth, Status: 409, Code: "InjectedConflict", Message: "fault matrix"}
		r := runFault(t, fmt.Sprintf("%s #%d (%s, stage %s) → 409", c.op, c.nth, c.method, c.stage), &rule, "")
		r.cleanupPhase = c.stage == "cleanup"
		// Replication progress is read with GETs while publishing; a failed
		// read only costs a progress line.
		r.bestEffort = c.op == "GalleryImageVersions_Get" && c.stage == "publish" && strings.Contains(strings.ToLower(c.query), "replicationstatus")
		results = append(results, r)
		if c.lro {
			lro := azmodel.FailLRO(c.method, "", c.nth, "InjectedFailure", "fault matrix")
			lro.Op = c.op
			r := runFault(t, fmt.Sprintf("%s #%d (stage %s) → LRO Failed", c.op, c.nth, c.stage), &lro, "")
			r.cleanupPhase = c.stage == "cleanup"
			results = append(results, r)
		}
	}
	for _, s := range stages {
		results = append(results, runFault(t, "SIGINT at stage "+s, nil, s))
	}

	injected, failedCleanly, leaked, cleanupFaults, cleanupRecovered, tolerated := 0, 0, 0, 0, 0, 0
	for _, r := range results {
		leaked += len(r.leftovers)
		if len(r.leftovers) > 0 {
			t.Errorf("%s: leaked %v", r.name, r.leftovers)
		}
		if r.bestEffort {
			if r.err != nil || r.newVersions != 1 {
				t.Errorf("%s: a failed progress read failed the bake: %v", r.name, r.err)
			}
			tolerated++
			continue
		}
		if r.cleanupPhase {
			cleanupFaults++
			// The bake itself succeeded; its cleanup retried the call.
			if r.err == nil && len(r.leftovers) == 0 && r.newVersions == 1 {
				cleanupRecovered++
			} else {
				t.Errorf("%s: cleanup fault not absorbed: err=%v versions=%d", r.name, r.err, r.newVersions)
			}
			continue
		}
		injected++
		switch {
		case r.err == nil:
			t.Errorf("%s: the bake succeeded despite the fault", r.name)
		case r.failedStage == "" || !strings.Contains(r.err.Error(), "stage "+r.failedStage):
			t.Errorf("%s: the error does not name its stage: %v", r.name, r.err)
		case r.newVersions != 0:
			t.Errorf("%s: a version was left behind (%d)", r.name, r.newVersions)
		case len(r.leftovers) == 0:
			failedCleanly++
		}
	}
	t.Logf("fault matrix: %d faults injected, %d bakes failed cleanly, %d resources leaked", injected, failedCleanly, leaked)
	t.Logf("cleanup faults: %d injected, %d absorbed by retry, 0 left behind", cleanupFaults, cleanupRecovered)
	t.Logf("progress-read faults: %d injected, %d bakes still published, 0 left behind", tolerated, tolerated)
	fmt.Printf("fault matrix: %d faults injected, %d bakes failed cleanly, %d resources leaked\n", injected, failedCleanly, leaked)
}
