package azmodel

import (
	"sort"
	"time"
)

// Meter sums up the request log as a real client on Azure's clock would have
// lived it: how many requests of each class it sent and how long the answers
// told it to wait. Tests run the waits scaled (ServerOptions.RetryAfterScale);
// the meter always counts the advertised, unscaled values, so a benchmark can
// put a bake on a virtual clock of real-world seconds.
type Meter struct {
	// Requests counts Resource Manager requests by class (read, write,
	// delete, poll); auth requests are counted under "auth".
	Requests map[Class]int `json:"requests"`
	// AdvertisedWait is the sum of every Retry-After the model sent
	// (long-running operations and throttling answers alike).
	AdvertisedWait time.Duration `json:"advertisedWait"`
	// WaitByClass splits AdvertisedWait by the class of the request answered.
	WaitByClass map[Class]time.Duration `json:"waitByClass"`
	// RetryAfterAnswers counts answers that carried Retry-After.
	RetryAfterAnswers int `json:"retryAfterAnswers"`
	// PendingWithoutRetryAfter counts answers that left an operation running
	// without a Retry-After: after each, a client waits its own poll
	// frequency (the SDK's default is 30 s).
	PendingWithoutRetryAfter int `json:"pendingWithoutRetryAfter"`
	// Throttled counts 429 answers.
	Throttled int `json:"throttled"`
	// ByOp breaks the counts down by operation (e.g.
	// "VirtualMachines_CreateOrUpdate", "Operations_Get").
	ByOp []OpMeter `json:"byOp"`
}

// OpMeter is one operation's share of a Meter.
type OpMeter struct {
	Op             string        `json:"op"`
	Class          Class         `json:"class"`
	Requests       int           `json:"requests"`
	AdvertisedWait time.Duration `json:"advertisedWait"`
	// PendingWithoutRetryAfter: see Meter.
	PendingWithoutRetryAfter int `json:"pendingWithoutRetryAfter"`
}

// ClientWait is the time a real client would have spent waiting between
// requests: every advertised Retry-After, plus pollFrequency after each
// answer that left an operation running without one.
func (mt Meter) ClientWait(pollFrequency time.Duration) time.Duration {
	return mt.AdvertisedWait + time.Duration(mt.PendingWithoutRetryAfter)*pollFrequency
}

// Writes is the number of write requests (PUT, PATCH, POST).
func (mt Meter) Writes() int { return mt.Requests[ClassWrite] }

// Meter summarises the request log (see Meter). ResetRequests resets it.
func (m *Model) Meter() Meter {
	m.mu.Lock()
	defer m.mu.Unlock()
	return meterOf(m.log)
}

func meterOf(log []Request) Meter {
	mt := Meter{Requests: map[Class]int{}, WaitByClass: map[Class]time.Duration{}}
	ops := map[string]*OpMeter{}
	for _, r := range log {
		mt.Requests[r.Class]++
		key := r.Op
		if key == "" {
			key = r.Method + " " + string(r.Class)
		}
		om := ops[key]
		if om == nil {
			om = &OpMeter{Op: key, Class: r.Class}
			ops[key] = om
		}
		om.Requests++
		if r.Status == 429 {
			mt.Throttled++
		}
		if r.RetryAfter > 0 {
			w := time.Duration(r.RetryAfter) * time.Second
			mt.AdvertisedWait += w
			mt.WaitByClass[r.Class] += w
			mt.RetryAfterAnswers++
			om.AdvertisedWait += w
		} else if r.Pending {
			mt.PendingWithoutRetryAfter++
			om.PendingWithoutRetryAfter++
		}
	}
	for _, om := range ops {
		mt.ByOp = append(mt.ByOp, *om)
	}
	sort.Slice(mt.ByOp, func(i, j int) bool { return mt.ByOp[i].Op < mt.ByOp[j].Op })
	return mt
}
