package azmodel

import (
	"net/http"
	"net/url"
	"strconv"
	"time"
)

const (
	statusInProgress = "InProgress"
	statusSucceeded  = "Succeeded"
	statusFailed     = "Failed"
)

// lroStyle selects the operation URLs a provider hands out.
type lroStyle int

const (
	styleCompute lroStyle = iota // …/Microsoft.Compute/locations/L/operations/ID
	styleGallery                 // …/Microsoft.Compute/locations/L/capsOperations/ID
	styleNetwork                 // …/Microsoft.Network/locations/L/operations/ID and operationResults/ID
	styleRG                      // /subscriptions/S/operationresults/TOKEN
)

// operation is one long-running operation. It finishes when it has answered
// InProgress `need` times and its duration has passed (or on Settle).
type operation struct {
	id         string
	seq        int
	kind       OpKind
	target     string // lower-case ID of the resource it acts on
	sub        string
	loc        string
	style      lroStyle
	apiVersion string
	start      time.Time
	end        time.Time
	dur        time.Duration
	need       int
	polls      int
	raPolls    int // InProgress answers that carried Retry-After
	status     string
	fail       *armError
	onSuccess  func()
	onFailure  func()
}

// startOp registers a long-running operation on target. If the call carries an
// injected FailLRO rule, the operation will end Failed.
func (m *Model) startOp(c *call, kind OpKind, target *res, style lroStyle, loc string) *operation {
	m.opSeq++
	op := &operation{
		id:         newGUID(),
		seq:        m.opSeq,
		kind:       kind,
		sub:        c.sub(),
		loc:        normLoc(loc),
		style:      style,
		apiVersion: c.apiVersion(),
		start:      m.now(),
		dur:        m.latency.For(kind),
		need:       m.polls,
		status:     statusInProgress,
	}
	if op.loc == "" {
		op.loc = normLoc(m.opts.Location)
	}
	if target != nil {
		op.target = lowerID(target.id)
		target.op = op
	}
	if c.failLRO != nil {
		op.fail = &armError{Code: c.failLRO.Code, Message: c.failLRO.Message}
		if op.fail.Code == "" {
			op.fail.Code = "InternalExecutionError"
		}
		if op.fail.Message == "" {
			op.fail.Message = "An internal execution error occurred. Please retry later."
		}
	}
	m.ops[op.id] = op
	return op
}

// pollLocked counts one status request (or GET of the target) and finishes
// the operation when it is due.
func (m *Model) pollLocked(op *operation) {
	if op.status != statusInProgress {
		return
	}
	op.polls++
	if op.polls > op.need && m.now().Sub(op.start) >= op.dur {
		m.finishLocked(op)
	}
}

func (m *Model) finishLocked(op *operation) {
	if op.status != statusInProgress {
		return
	}
	op.end = m.now()
	if t := m.res[op.target]; t != nil && t.op == op {
		t.op = nil
	}
	if op.fail != nil {
		op.status = statusFailed
		if op.onFailure != nil {
			op.onFailure()
		}
		return
	}
	op.status = statusSucceeded
	if op.onSuccess != nil {
		op.onSuccess()
	}
}

// preemptLocked ends a pending operation because a newer one (a delete)
// replaced it, as Compute does.
func (m *Model) preemptLocked(op *operation) {
	if op == nil || op.status != statusInProgress {
		return
	}
	op.status = statusFailed
	op.end = m.now()
	op.fail = &armError{Code: "OperationPreempted", Message: "Operation execution has been preempted by a more recent operation."}
	if t := m.res[op.target]; t != nil && t.op == op {
		t.op = nil
	}
}

// touchLocked counts a GET of a resource as a poll of its pending operation,
// so clients that poll the resource instead of the operation see progress.
func (m *Model) touchLocked(r *res) {
	if r != nil && r.op != nil {
		m.pollLocked(r.op)
	}
}

// opURLs returns the Azure-AsyncOperation and Location URLs of op.
func (op *operation) urls(base string) (async, location string) {
	q := url.Values{"api-version": {op.apiVersion}}
	switch op.style {
	case styleCompute:
		p := base + "/subscriptions/" + op.sub + "/providers/Microsoft.Compute/locations/" + op.loc + "/operations/" + op.id
		return p + "?p=" + op.id + "&" + q.Encode(), p + "?p=" + op.id + "&monitor=true&" + q.Encode()
	case styleGallery:
		p := base + "/subscriptions/" + op.sub + "/providers/Microsoft.Compute/locations/" + op.loc + "/capsOperations/" + op.id
		return p + "?" + q.Encode(), p + "?monitor=true&" + q.Encode()
	case styleNetwork:
		p := base + "/subscriptions/" + op.sub + "/providers/Microsoft.Network/locations/" + op.loc
		return p + "/operations/" + op.id + "?" + q.Encode(), p + "/operationResults/" + op.id + "?" + q.Encode()
	default:
		return "", base + "/subscriptions/" + op.sub + "/operationresults/" + op.id + "?" + url.Values{"api-version": {"2021-04-01"}}.Encode()
	}
}

// Cadence is the Retry-After (seconds) Azure advertises for one kind of
// operation: Initial on the response that starts it, Poll on InProgress
// answers of its status URLs (the first PollTimes of them when PollTimes > 0).
// Zero means the header is absent, and a client polls at its own frequency.
type Cadence struct {
	Initial   int `json:"initial,omitempty"`
	Poll      int `json:"poll,omitempty"`
	PollTimes int `json:"pollTimes,omitempty"`
}

// RecordedCadence returns the Retry-After values seen in recorded Azure
// traffic (see testdata/recordings): network PUTs 3 s; a VM PUT 10 s and
// 50 s on its first InProgress poll (the later InProgress polls carried none);
// a resource-group DELETE 15 s (also on its 202 polls); gallery and compute
// POSTs, image PUTs, gallery writes and deletes none.
func RecordedCadence() map[OpKind]Cadence {
	return map[OpKind]Cadence{
		OpNetworkWrite: {Initial: 3},
		OpVMCreate:     {Initial: 10, Poll: 50, PollTimes: 1},
		OpVMUpdate:     {Initial: 10, Poll: 50, PollTimes: 1},
		OpRGDelete:     {Initial: 15, Poll: 15},
	}
}

// cadenceLocked is the cadence of kind under the model's options:
// LRORetryAfter > 0 sends that value everywhere, < 0 none at all.
func (m *Model) cadence(kind OpKind) Cadence {
	switch {
	case m.opts.LRORetryAfter > 0:
		return Cadence{Initial: m.opts.LRORetryAfter, Poll: m.opts.LRORetryAfter}
	case m.opts.LRORetryAfter < 0:
		return Cadence{}
	}
	return m.cadences[kind]
}

// pollRetryAfter is the Retry-After of an InProgress answer for op (0: none),
// counting the answers that carry one.
func (m *Model) pollRetryAfter(op *operation) int {
	cd := m.cadence(op.kind)
	if cd.Poll <= 0 || (cd.PollTimes > 0 && op.raPolls >= cd.PollTimes) {
		return 0
	}
	op.raPolls++
	return cd.Poll
}

func setRetryAfter(rep *reply, secs int) {
	if secs > 0 {
		rep.header().Set("Retry-After", strconv.Itoa(secs))
	}
}

// lroHeaders adds the polling headers of op: Azure-AsyncOperation (not for
// resource-group deletes), Location when withLocation, and the operation's
// initial Retry-After.
func (m *Model) lroHeaders(c *call, rep *reply, op *operation, withLocation bool) *reply {
	async, loc := op.urls(c.base)
	if async != "" {
		rep.header().Set("Azure-AsyncOperation", async)
	}
	if withLocation || async == "" {
		rep.header().Set("Location", loc)
	}
	setRetryAfter(rep, m.cadence(op.kind).Initial)
	rep.pending = op.status == statusInProgress
	return rep
}

// opStatus answers a GET of an operation URL. monitor selects the Location
// semantics (202 while running, 200 or an error status when done); otherwise
// the Azure-AsyncOperation semantics (200 with a status body).
func (m *Model) opStatus(c *call, id string, monitor bool) *reply {
	op := m.ops[id]
	if op == nil {
		return errReply(http.StatusNotFound, "NotFound", "The operation '"+id+"' was not found.")
	}
	m.pollLocked(op)
	if monitor {
		switch op.status {
		case statusInProgress:
			rep := &reply{status: http.StatusAccepted, pending: true}
			_, loc := op.urls(c.base)
			rep.header().Set("Location", loc)
			setRetryAfter(rep, m.pollRetryAfter(op))
			return rep
		case statusSucceeded:
			return &reply{status: http.StatusOK}
		default:
			// A 4xx ends the SDK's Location poller as Failed; a 5xx would
			// keep it polling (408/429/5xx are non-terminal there).
			st := op.fail.Status
			if st < 400 || st > 499 {
				st = http.StatusConflict
			}
			return errReply(st, op.fail.Code, op.fail.Message)
		}
	}
	body := map[string]any{
		"name":      op.id,
		"status":    op.status,
		"startTime": op.start.UTC().Format(time.RFC3339Nano),
	}
	if !op.end.IsZero() {
		body["endTime"] = op.end.UTC().Format(time.RFC3339Nano)
	}
	if op.status == statusFailed {
		body["error"] = op.fail
	}
	rep := jsonReply(http.StatusOK, body)
	if op.status == statusInProgress {
		rep.pending = true
		setRetryAfter(rep, m.pollRetryAfter(op))
	}
	return rep
}
