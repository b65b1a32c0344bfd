package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// PruneOptions narrow what prune selects; the zero value selects every
// deallocated VM imagebake launched of the image.
type PruneOptions struct {
	// OlderThan selects only VMs created longer ago than this (by their
	// TagCreated); a VM without a readable creation time is never old.
	OlderThan time.Duration
	// Outcomes selects only VMs whose recorded outcome is one of these.
	Outcomes []string
	Now      func() time.Time
}

// Pruned is one VM a prune plan names, and why.
type Pruned struct {
	VM     VM     `json:"vm"`
	Reason string `json:"reason"`
	// Deleted is set once Prune deleted it; Error when that failed.
	Deleted bool   `json:"deleted"`
	Error   string `json:"error,omitempty"`
}

// Prunable says whether prune may delete vm under opts, and why (not).
// Only a VM imagebake launched (it carries TagLaunchedFrom: Image is set)
// and that is deallocated is ever prunable: running, starting, stopped
// (still billed, maybe being looked at), deleting or unknown never.
func Prunable(vm VM, opts PruneOptions) (bool, string) {
	if vm.Image == "" {
		return false, "not launched by imagebake"
	}
	if vm.Power != PowerDeallocated {
		return false, "power state " + string(vm.Power)
	}
	reason := "deallocated"
	if opts.OlderThan > 0 {
		now := time.Now
		if opts.Now != nil {
			now = opts.Now
		}
		if vm.Created.IsZero() {
			return false, "no creation time"
		}
		age := now().Sub(vm.Created)
		if age < opts.OlderThan {
			return false, "younger than " + opts.OlderThan.String()
		}
		reason += fmt.Sprintf(", created %s ago", age.Truncate(time.Minute))
	}
	if len(opts.Outcomes) > 0 {
		if !slices.Contains(opts.Outcomes, vm.Outcome) {
			return false, "outcome " + orNone(vm.Outcome)
		}
		reason += ", outcome " + vm.Outcome
	}
	return true, reason
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// PlanPrune lists image's VMs ("" for every image) and selects the prunable.
func PlanPrune(ctx context.Context, t Target, image string, opts PruneOptions) ([]Pruned, error) {
	vms, err := t.List(ctx, image)
	if err != nil {
		return nil, err
	}
	plan := []Pruned{}
	for _, vm := range vms {
		if image != "" && vm.Image != image {
			continue // a target's filter is trusted only as far as it goes
		}
		if ok, why := Prunable(vm, opts); ok {
			plan = append(plan, Pruned{VM: vm, Reason: why})
		}
	}
	return plan, nil
}

// ApplyPrune deletes the plan's VMs (each with its OS disk), one after the
// other, marking each Deleted or with its Error; it stops when ctx ends.
func ApplyPrune(ctx context.Context, t Target, plan []Pruned) ([]Pruned, error) {
	var errs []error
	for i := range plan {
		if err := ctx.Err(); err != nil {
			plan[i].Error = "not deleted: " + context.Cause(ctx).Error()
			errs = append(errs, fmt.Errorf("runner VM %s: not deleted: %w", plan[i].VM.Name, context.Cause(ctx)))
			continue
		}
		if err := t.Delete(ctx, plan[i].VM); err != nil {
			plan[i].Error = err.Error()
			errs = append(errs, fmt.Errorf("runner VM %s: %w", plan[i].VM.Name, err))
			continue
		}
		plan[i].Deleted = true
	}
	return plan, errors.Join(errs...)
}

// Prune plans and deletes.
func Prune(ctx context.Context, t Target, image string, opts PruneOptions) ([]Pruned, error) {
	plan, err := PlanPrune(ctx, t, image, opts)
	if err != nil {
		return nil, err
	}
	return ApplyPrune(ctx, t, plan)
}
