package azmodel

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// OpKind names a kind of operation in the latency profile.
type OpKind string

// Operation kinds. Long-running kinds keep their operation InProgress for the
// profile's duration; vm.generalize (synchronous) delays its response;
// request.read and request.write delay every read or write request.
const (
	OpVMCreate           OpKind = "vm.create"
	OpVMUpdate           OpKind = "vm.update"
	OpVMDeallocate       OpKind = "vm.deallocate"
	OpVMPowerOff         OpKind = "vm.powerOff"
	OpVMStart            OpKind = "vm.start"
	OpVMRestart          OpKind = "vm.restart"
	OpVMGeneralize       OpKind = "vm.generalize"
	OpVMDelete           OpKind = "vm.delete"
	OpDiskDelete         OpKind = "disk.delete"
	OpImageCreate        OpKind = "image.create"
	OpImageDelete        OpKind = "image.delete"
	OpGalleryWrite       OpKind = "gallery.write"
	OpGalleryDelete      OpKind = "gallery.delete"
	OpGalleryImageWrite  OpKind = "galleryImage.write"
	OpGalleryImageDelete OpKind = "galleryImage.delete"
	OpVersionCreate      OpKind = "version.create"
	OpVersionUpdate      OpKind = "version.update"
	OpVersionDelete      OpKind = "version.delete"
	OpNetworkWrite       OpKind = "network.write"
	OpNetworkDelete      OpKind = "network.delete"
	OpRGDelete           OpKind = "rg.delete"
	OpRequestRead        OpKind = "request.read"
	OpRequestWrite       OpKind = "request.write"
)

// LatencyProfile maps operation kinds to durations, multiplied by Scale.
type LatencyProfile struct {
	Durations map[OpKind]time.Duration
	// Scale multiplies every duration; 0 means 1. Benchmarks use e.g. 0.001
	// to run real-world durations a thousand times faster.
	Scale float64
}

// For returns the scaled duration of kind k.
func (p LatencyProfile) For(k OpKind) time.Duration {
	d := p.Durations[k]
	if d <= 0 {
		return 0
	}
	if p.Scale > 0 {
		d = time.Duration(float64(d) * p.Scale)
	}
	return d
}

// RealWorldLatency returns typical Azure durations (estimates from experience
// and public reports, not measured here), scaled by scale (0 means 1).
func RealWorldLatency(scale float64) LatencyProfile {
	return LatencyProfile{Scale: scale, Durations: map[OpKind]time.Duration{
		OpVMCreate:           90 * time.Second,
		OpVMUpdate:           20 * time.Second,
		OpVMDeallocate:       60 * time.Second,
		OpVMPowerOff:         30 * time.Second,
		OpVMStart:            40 * time.Second,
		OpVMRestart:          40 * time.Second,
		OpVMGeneralize:       5 * time.Second,
		OpVMDelete:           60 * time.Second,
		OpDiskDelete:         10 * time.Second,
		OpImageCreate:        60 * time.Second,
		OpImageDelete:        20 * time.Second,
		OpGalleryWrite:       10 * time.Second,
		OpGalleryDelete:      10 * time.Second,
		OpGalleryImageWrite:  10 * time.Second,
		OpGalleryImageDelete: 10 * time.Second,
		OpVersionCreate:      10 * time.Minute,
		OpVersionUpdate:      3 * time.Minute,
		OpVersionDelete:      3 * time.Minute,
		OpNetworkWrite:       5 * time.Second,
		OpNetworkDelete:      10 * time.Second,
		OpRGDelete:           3 * time.Minute,
		OpRequestRead:        150 * time.Millisecond,
		OpRequestWrite:       400 * time.Millisecond,
	}}
}

// latencyJSON is the wire form of a LatencyProfile: durations as Go duration
// strings ("90s").
type latencyJSON struct {
	Durations map[OpKind]string `json:"durations,omitempty"`
	Scale     float64           `json:"scale,omitempty"`
}

// MarshalJSON writes durations as strings such as "1m30s".
func (p LatencyProfile) MarshalJSON() ([]byte, error) {
	j := latencyJSON{Scale: p.Scale, Durations: map[OpKind]string{}}
	for k, d := range p.Durations {
		j.Durations[k] = d.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads durations as strings such as "90s".
func (p *LatencyProfile) UnmarshalJSON(b []byte) error {
	var j latencyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	p.Scale = j.Scale
	p.Durations = map[OpKind]time.Duration{}
	for k, s := range j.Durations {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("latency %s: %w", k, err)
		}
		p.Durations[k] = d
	}
	return nil
}

// Rule injects a fault into matching calls. A call matches when Method (if
// set) equals the HTTP method, Path (if set) matches the URL path as a
// case-insensitive regular expression, and Op (if set) equals the operation
// (e.g. "VirtualMachines_CreateOrUpdate", "GalleryImageVersions_Get",
// "Operations_Get" for polls; see Request.Op). The rule acts on matching calls
// number Nth .. Nth+Times-1 (1-based; Nth 0 means 1; Times 0 means 1, -1
// means every call from Nth on).
//
// Actions, in order: Delay sleeps before the call is handled; Drop closes the
// connection without an answer; Status answers with that status and an ARM
// error body (Code and Message, or defaults fitting the status and the
// provider, e.g. 429 OperationNotAllowed for Compute and TooManyRequests for
// other providers) plus Retry-After when RetryAfter > 0; FailLRO lets the call
// run but makes the long-running operation it starts end Failed with
// Code/Message (default InternalExecutionError).
type Rule struct {
	Method     string        `json:"method,omitempty"`
	Path       string        `json:"path,omitempty"`
	Op         string        `json:"op,omitempty"`
	Nth        int           `json:"nth,omitempty"`
	Times      int           `json:"times,omitempty"`
	Status     int           `json:"status,omitempty"`
	Code       string        `json:"code,omitempty"`
	Message    string        `json:"message,omitempty"`
	RetryAfter int           `json:"retryAfter,omitempty"`
	FailLRO    bool          `json:"failLRO,omitempty"`
	Delay      time.Duration `json:"-"`
	Drop       bool          `json:"drop,omitempty"`
}

// ruleAlias has Rule's fields without its methods, so the JSON methods below
// do not recurse.
type ruleAlias Rule

// MarshalJSON writes Delay as a duration string.
func (r Rule) MarshalJSON() ([]byte, error) {
	var w struct {
		ruleAlias
		Delay string `json:"delay,omitempty"`
	}
	w.ruleAlias = ruleAlias(r)
	if r.Delay > 0 {
		w.Delay = r.Delay.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads Delay as a duration string ("1.5s").
func (r *Rule) UnmarshalJSON(b []byte) error {
	var w struct {
		ruleAlias
		Delay string `json:"delay,omitempty"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = Rule(w.ruleAlias)
	if w.Delay != "" {
		d, err := time.ParseDuration(w.Delay)
		if err != nil {
			return fmt.Errorf("rule delay: %w", err)
		}
		r.Delay = d
	}
	return nil
}

// FailNth answers the nth call matching method and path with status and code.
func FailNth(method, path string, nth, status int, code string) Rule {
	return Rule{Method: method, Path: path, Nth: nth, Status: status, Code: code}
}

// Throttle answers `times` calls matching method and path, from the nth on,
// with 429 and Retry-After: retryAfter seconds.
func Throttle(method, path string, nth, times, retryAfter int) Rule {
	return Rule{Method: method, Path: path, Nth: nth, Times: times, Status: 429, RetryAfter: retryAfter}
}

// FailLRO makes the long-running operation started by the nth call matching
// method and path end Failed with code and message.
func FailLRO(method, path string, nth int, code, message string) Rule {
	return Rule{Method: method, Path: path, Nth: nth, FailLRO: true, Code: code, Message: message}
}

// DelayCalls delays `times` calls matching method and path, from the nth on.
func DelayCalls(method, path string, nth, times int, d time.Duration) Rule {
	return Rule{Method: method, Path: path, Nth: nth, Times: times, Delay: d}
}

// RuleState is a rule with its counters.
type RuleState struct {
	ID      int  `json:"id"`
	Rule    Rule `json:"rule"`
	Matched int  `json:"matched"`
	Fired   int  `json:"fired"`
}

type ruleEntry struct {
	RuleState
	re *regexp.Regexp
}

// AddRule installs a rule and returns its ID.
func (m *Model) AddRule(r Rule) (int, error) {
	e := &ruleEntry{RuleState: RuleState{Rule: r}}
	if r.Path != "" {
		re, err := regexp.Compile("(?i)" + r.Path)
		if err != nil {
			return 0, fmt.Errorf("rule path %q: %w", r.Path, err)
		}
		e.re = re
	}
	if r.Status != 0 && (r.Status < 400 || r.Status > 599) {
		return 0, fmt.Errorf("rule status %d: want 4xx or 5xx", r.Status)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextRule++
	e.ID = m.nextRule
	m.rules = append(m.rules, e)
	return e.ID, nil
}

// MustAddRule is AddRule for tests: it panics on an invalid rule.
func (m *Model) MustAddRule(r Rule) int {
	id, err := m.AddRule(r)
	if err != nil {
		panic(err)
	}
	return id
}

// RemoveRule uninstalls one rule.
func (m *Model) RemoveRule(id int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, e := range m.rules {
		if e.ID == id {
			m.rules = append(m.rules[:i], m.rules[i+1:]...)
			return
		}
	}
}

// ClearRules uninstalls every rule.
func (m *Model) ClearRules() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rules = nil
}

// Rules lists the installed rules with their counters.
func (m *Model) Rules() []RuleState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]RuleState, len(m.rules))
	for i, e := range m.rules {
		out[i] = e.RuleState
	}
	return out
}

// action is what the matching rules ask of one call.
type action struct {
	delay   time.Duration
	drop    bool
	fail    *Rule
	failLRO *Rule
	fired   []int
}

func (m *Model) matchRulesLocked(method, path, op string) action {
	var a action
	for _, e := range m.rules {
		if e.Rule.Method != "" && !strings.EqualFold(e.Rule.Method, method) {
			continue
		}
		if e.re != nil && !e.re.MatchString(path) {
			continue
		}
		if e.Rule.Op != "" && !strings.EqualFold(e.Rule.Op, op) {
			continue
		}
		e.Matched++
		nth := max(e.Rule.Nth, 1)
		times := e.Rule.Times
		if times == 0 {
			times = 1
		}
		if e.Matched < nth || (times > 0 && e.Matched >= nth+times) {
			continue
		}
		r := e.Rule
		switch {
		case a.drop || a.fail != nil:
			continue // an earlier rule already answers this call
		case r.Drop:
			a.drop = true
		case r.Status != 0:
			a.fail = &r
		case r.FailLRO:
			if a.failLRO != nil {
				continue
			}
			a.failLRO = &r
		}
		a.delay += r.Delay
		e.Fired++
		a.fired = append(a.fired, e.ID)
	}
	return a
}

// Class is the kind of a logged request.
type Class string

// Request classes. Read, Write, Delete and Poll are Resource Manager requests
// (Poll: GETs of operation status URLs); Auth are token-endpoint requests;
// Admin are /_model/ requests (not logged).
const (
	ClassRead   Class = "read"
	ClassWrite  Class = "write"
	ClassDelete Class = "delete"
	ClassPoll   Class = "poll"
	ClassAuth   Class = "auth"
)

// Request is one logged request.
type Request struct {
	Time     time.Time     `json:"time"`
	Method   string        `json:"method"`
	Path     string        `json:"path"`
	Query    string        `json:"query,omitempty"`
	Op       string        `json:"op,omitempty"` // operation, e.g. "VirtualMachines_Get"
	Class    Class         `json:"class"`
	Status   int           `json:"status"`
	Code     string        `json:"code,omitempty"` // ARM error code of an error answer
	Injected bool          `json:"injected,omitempty"`
	Duration time.Duration `json:"duration"`
	// RetryAfter is the Retry-After (seconds) the answer advertised, before
	// any test scaling: what a real client would have waited.
	RetryAfter int `json:"retryAfter,omitempty"`
	// Pending: the answer left a long-running operation running (an LRO start
	// or an InProgress poll); without RetryAfter a client waits its own poll
	// frequency before the next poll.
	Pending bool `json:"pending,omitempty"`
}

// Requests returns the request log, oldest first.
func (m *Model) Requests() []Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Request(nil), m.log...)
}

// ResetRequests empties the request log.
func (m *Model) ResetRequests() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log = nil
}

// CountRequests counts logged requests of the given classes; with no classes
// it counts every Resource Manager request (read, write, delete, poll).
func (m *Model) CountRequests(classes ...Class) int {
	if len(classes) == 0 {
		classes = []Class{ClassRead, ClassWrite, ClassDelete, ClassPoll}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.log {
		for _, c := range classes {
			if r.Class == c {
				n++
				break
			}
		}
	}
	return n
}

func (m *Model) record(r Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log = append(m.log, r)
}
