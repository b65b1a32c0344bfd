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

// existingGroup is the --build-resource-group of the fault matrix's second
// run: a bake there deletes what it made one resource at a time.
const existingGroup = "existing-build-rg"

// faultEnv is a served model for one bake, with the existing build group
// when the matrix runs in it.
func faultEnv(t *testing.T, inExisting bool) (*aztest.Env, AzureOptions) {
	e := aztest.New(t, azmodel.Options{}, nil)
	opts := options(t, e)
	if inExisting {
		if err := opts.Clients.CreateResourceGroup(context.Background(), existingGroup, "eastus", map[string]string{"owner": "platform"}); err != nil {
			t.Fatal(err)
		}
		opts.BuildResourceGroup = existingGroup
	}
	return e, opts
}

// leftovers are the build's resources still there; the existing group
// itself is not the build's, and its absence is reported as a leftover of
// another kind: the bake must never delete it.
func leftovers(e *aztest.Env, inExisting bool) []string {
	var out []string
	found := false
	for _, l := range e.BuildLeftovers() {
		if strings.HasSuffix(strings.ToLower(l), "/resourcegroups/"+existingGroup) {
			found = true
			continue
		}
		out = append(out, l)
	}
	if inExisting && !found {
		out = append(out, "(the existing group "+existingGroup+" was deleted)")
	}
	return out
}

// cleanBakeCalls bakes once without faults and returns every Resource
// Manager call it made, in order.
func cleanBakeCalls(t *testing.T, inExisting bool) ([]call, []string) {
	e, opts := faultEnv(t, inExisting)
	e.Model.ResetRequests()
	tr := &stageTracker{model: e.Model}
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

func runFault(t *testing.T, inExisting bool, name string, rule *azmodel.Rule, cancelAt string) faultResult {
	e, opts := faultEnv(t, inExisting)
	if rule != nil {
		e.Model.MustAddRule(*rule)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	opts.CleanupRetryDelay = 10 * time.Millisecond
	opts.Sink = &stageTracker{model: e.Model, onStart: func(stage string) {
		if stage == cancelAt {
			cancel(errors.New("interrupted by interrupt (test)"))
		}
	}}
	m, err := Azure(ctx, loadRunner(t), opts)
	return faultResult{name: name, err: err, leftovers: leftovers(e, inExisting), newVersions: len(e.Versions()), failedStage: m.FailedStage}
}

// TestFaultMatrix injects a failure into every Resource Manager call a bake
// makes (an error answer, and for long-running operations a Failed end),
// and interrupts the bake at every stage. Every bake must fail, name its
// stage, and leave no build resource and no version behind. A fault in a
// cleanup call must be absorbed by the cleanup's retry, leaving nothing.
// The matrix runs twice: with a temporary resource group (deleted whole)
// and in an existing --build-resource-group (each resource the build made
// deleted on its own, the group left alone).
func TestFaultMatrix(t *testing.T) {
	injected, failedCleanly, leaked := 0, 0, 0
	for _, inExisting := range []bool{false, true} {
		i, f, l := faultMatrix(t, inExisting)
		injected, failedCleanly, leaked = injected+i, failedCleanly+f, leaked+l
	}
	fmt.Printf("fault matrix: %d faults injected, %d bakes failed cleanly, %d resources leaked\n", injected, failedCleanly, leaked)
}

func faultMatrix(t *testing.T, inExisting bool) (injected, failedCleanly, leaked int) {
	mode := "temporary resource group"
	if inExisting {
		mode = "existing resource group " + existingGroup
	}
	calls, stages := cleanBakeCalls(t, inExisting)
	if len(calls) < 15 {
		t.Fatalf("a clean bake made only %d Resource Manager calls", len(calls))
	}
	var results []faultResult
	for _, c := range calls {
		rule := azmodel.Rule{Op: c.op, Method: c.method, Nth: c.nth, Status: 409, Code: "InjectedConflict", Message: "fault matrix"}
		r := runFault(t, inExisting, fmt.Sprintf("%s #%d (%s, stage %s) → 409", c.op, c.nth, c.method, c.stage), &rule, "")
		r.cleanupPhase = c.stage == "cleanup"
		// Replication progress is read with GETs while publishing; a failed
		// read only costs a progress line.
		r.bestEffort = c.op == "GalleryImageVersions_Get" && c.stage == "publish" && strings.Contains(strings.ToLower(c.query), "replicationstatus")
		results = append(results, r)
		if c.lro {
			lro := azmodel.FailLRO(c.method, "", c.nth, "InjectedFailure", "fault matrix")
			lro.Op = c.op
			r := runFault(t, inExisting, fmt.Sprintf("%s #%d (stage %s) → LRO Failed", c.op, c.nth, c.stage), &lro, "")
			r.cleanupPhase = c.stage == "cleanup"
			results = append(results, r)
		}
	}
	for _, s := range stages {
		results = append(results, runFault(t, inExisting, "SIGINT at stage "+s, nil, s))
	}

	cleanupFaults, cleanupRecovered, tolerated := 0, 0, 0
	for _, r := range results {
		leaked += len(r.leftovers)
		if len(r.leftovers) > 0 {
			t.Errorf("%s: %s: leaked %v", mode, r.name, r.leftovers)
		}
		if r.bestEffort {
			if r.err != nil || r.newVersions != 1 {
				t.Errorf("%s: %s: a failed progress read failed the bake: %v", mode, r.name, r.err)
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
				t.Errorf("%s: %s: cleanup fault not absorbed: err=%v versions=%d", mode, r.name, r.err, r.newVersions)
			}
			continue
		}
		injected++
		switch {
		case r.err == nil:
			t.Errorf("%s: %s: the bake succeeded despite the fault", mode, r.name)
		case r.failedStage == "" || !strings.Contains(r.err.Error(), "stage "+r.failedStage):
			t.Errorf("%s: %s: the error does not name its stage: %v", mode, r.name, r.err)
		case r.newVersions != 0:
			t.Errorf("%s: %s: a version was left behind (%d)", mode, r.name, r.newVersions)
		case len(r.leftovers) == 0:
			failedCleanly++
		}
	}
	t.Logf("%s: fault matrix: %d faults injected, %d bakes failed cleanly, %d resources leaked", mode, injected, failedCleanly, leaked)
	t.Logf("%s: cleanup faults: %d injected, %d absorbed by retry, 0 left behind", mode, cleanupFaults, cleanupRecovered)
	t.Logf("%s: progress-read faults: %d injected, %d bakes still published, 0 left behind", mode, tolerated, tolerated)
	return injected, failedCleanly, leaked
}
