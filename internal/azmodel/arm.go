package azmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// armError is the ARM error object: {"error":{"code","message","target"}}.
type armError struct {
	Code    string     `json:"code"`
	Message string     `json:"message"`
	Target  string     `json:"target,omitempty"`
	Details []armError `json:"details,omitempty"`
	Status  int        `json:"-"`
}

// reply is a response built under the model's lock and written after it.
type reply struct {
	status int
	hdr    http.Header
	body   []byte
	code   string // ARM error code, for the request log
	// pending: the answer leaves a long-running operation running (an LRO
	// start or an InProgress poll), so a client waits before its next poll.
	pending bool
}

func (r *reply) header() http.Header {
	if r.hdr == nil {
		r.hdr = http.Header{}
	}
	return r.hdr
}

func jsonReply(status int, v any) *reply {
	b, err := json.Marshal(v)
	if err != nil {
		return errReply(http.StatusInternalServerError, "InternalServerError", "azmodel: marshal response: "+err.Error())
	}
	rep := &reply{status: status, body: b}
	rep.header().Set("Content-Type", "application/json; charset=utf-8")
	return rep
}

func errReply(status int, code, msg string) *reply {
	return errTarget(status, code, msg, "")
}

func errTarget(status int, code, msg, target string) *reply {
	rep := jsonReply(status, map[string]any{"error": armError{Code: code, Message: msg, Target: target}})
	rep.code = code
	return rep
}

// call is one request being handled.
type call struct {
	r       *http.Request
	q       url.Values
	p       []string // path parameters, in pattern order; p[0] is the subscription
	body    []byte
	base    string // scheme://host of this server, for URLs handed out
	failLRO *Rule
}

func (c *call) sub() string        { return c.p[0] }
func (c *call) apiVersion() string { return c.q.Get("api-version") }

// decode parses the request body into v, answering 400 as ARM does when the
// body is missing or not JSON.
func (c *call) decode(v any) *reply {
	if len(strings.TrimSpace(string(c.body))) == 0 {
		return errReply(http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized: 'The request body is empty.'.")
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return errReply(http.StatusBadRequest, "InvalidRequestContent", fmt.Sprintf("The request content was invalid and could not be deserialized: '%v'.", err))
	}
	return nil
}

type handler func(m *Model, c *call) *reply

type route struct {
	method  string
	pattern []string // lower-case literals; "*" captures a segment
	op      string   // operation name for the log and rules
	api     string   // api-version group ("" = not checked)
	rtype   string   // resource type named in api-version errors
	poll    bool
	sync    OpKind // a synchronous operation's latency kind
	h       handler
}

// API versions the SDK clients imagebake uses send (armcompute v7.3.0,
// armnetwork v7.2.0, armresources v1.2.0).
var apiVersions = map[string]string{
	"compute":   "2025-04-01",
	"gallery":   "2025-03-03",
	"disk":      "2025-01-02",
	"network":   "2025-01-01",
	"resources": "2021-04-01",
}

func r(method, pattern, op, api, rtype string, h handler) route {
	return route{method: method, pattern: strings.Split(strings.ToLower(pattern), "/"), op: op, api: api, rtype: rtype, h: h}
}

const (
	pRG   = "subscriptions/*/resourcegroups/*"
	pComp = pRG + "/providers/microsoft.compute"
	pNet  = pRG + "/providers/microsoft.network"
	pVMI  = "subscriptions/*/providers/microsoft.compute/locations/*/publishers/*/artifacttypes/vmimage/offers/*/skus/*/versions"
	pGal  = pComp + "/galleries/*"
)

var routes = buildRoutes()

func buildRoutes() []route {
	rs := []route{
		// Resource groups and generic resources.
		r("PUT", pRG, "ResourceGroups_CreateOrUpdate", "resources", "resourceGroups", (*Model).rgPut),
		r("PATCH", pRG, "ResourceGroups_Update", "resources", "resourceGroups", (*Model).rgPatch),
		r("GET", pRG, "ResourceGroups_Get", "resources", "resourceGroups", (*Model).rgGet),
		r("HEAD", pRG, "ResourceGroups_CheckExistence", "resources", "resourceGroups", (*Model).rgHead),
		r("DELETE", pRG, "ResourceGroups_Delete", "resources", "resourceGroups", (*Model).rgDelete),
		r("GET", "subscriptions/*/resourcegroups", "ResourceGroups_List", "resources", "resourceGroups", (*Model).rgList),
		r("GET", pRG+"/resources", "Resources_ListByResourceGroup", "resources", "resources", (*Model).resListRG),
		r("GET", "subscriptions/*/resources", "Resources_List", "resources", "resources", (*Model).resListSub),

		// Network.
		r("PUT", pNet+"/virtualnetworks/*", "VirtualNetworks_CreateOrUpdate", "network", "virtualNetworks", (*Model).vnetPut),
		r("GET", pNet+"/virtualnetworks/*", "VirtualNetworks_Get", "network", "virtualNetworks", (*Model).vnetGet),
		r("DELETE", pNet+"/virtualnetworks/*", "VirtualNetworks_Delete", "network", "virtualNetworks", (*Model).vnetDelete),
		r("GET", pNet+"/virtualnetworks", "VirtualNetworks_List", "network", "virtualNetworks", (*Model).vnetList),
		r("PUT", pNet+"/virtualnetworks/*/subnets/*", "Subnets_CreateOrUpdate", "network", "virtualNetworks/subnets", (*Model).subnetPut),
		r("GET", pNet+"/virtualnetworks/*/subnets/*", "Subnets_Get", "network", "virtualNetworks/subnets", (*Model).subnetGet),
		r("DELETE", pNet+"/virtualnetworks/*/subnets/*", "Subnets_Delete", "network", "virtualNetworks/subnets", (*Model).subnetDelete),
		r("GET", pNet+"/virtualnetworks/*/subnets", "Subnets_List", "network", "virtualNetworks/subnets", (*Model).subnetList),
		r("PUT", pNet+"/networksecuritygroups/*", "NetworkSecurityGroups_CreateOrUpdate", "network", "networkSecurityGroups", (*Model).nsgPut),
		r("GET", pNet+"/networksecuritygroups/*", "NetworkSecurityGroups_Get", "network", "networkSecurityGroups", (*Model).nsgGet),
		r("DELETE", pNet+"/networksecuritygroups/*", "NetworkSecurityGroups_Delete", "network", "networkSecurityGroups", (*Model).nsgDelete),
		r("GET", pNet+"/networksecuritygroups", "NetworkSecurityGroups_List", "network", "networkSecurityGroups", (*Model).nsgList),
		r("GET", pNet+"/publicipaddresses/*", "PublicIPAddresses_Get", "network", "publicIPAddresses", (*Model).pipGet),
		r("DELETE", pNet+"/publicipaddresses/*", "PublicIPAddresses_Delete", "network", "publicIPAddresses", (*Model).pipDelete),
		r("GET", pNet+"/publicipaddresses", "PublicIPAddresses_List", "network", "publicIPAddresses", (*Model).pipList),
		r("GET", pNet+"/networkinterfaces/*", "NetworkInterfaces_Get", "network", "networkInterfaces", (*Model).nicGet),
		r("DELETE", pNet+"/networkinterfaces/*", "NetworkInterfaces_Delete", "network", "networkInterfaces", (*Model).nicDelete),
		r("GET", pNet+"/networkinterfaces", "NetworkInterfaces_List", "network", "networkInterfaces", (*Model).nicList),

		// Compute: VMs, disks, images, marketplace.
		r("PUT", pComp+"/virtualmachines/*", "VirtualMachines_CreateOrUpdate", "compute", "virtualMachines", (*Model).vmPut),
		r("GET", pComp+"/virtualmachines/*", "VirtualMachines_Get", "compute", "virtualMachines", (*Model).vmGet),
		r("DELETE", pComp+"/virtualmachines/*", "VirtualMachines_Delete", "compute", "virtualMachines", (*Model).vmDelete),
		r("GET", pComp+"/virtualmachines", "VirtualMachines_List", "compute", "virtualMachines", (*Model).vmList),
		r("GET", "subscriptions/*/providers/microsoft.compute/virtualmachines", "VirtualMachines_ListAll", "compute", "virtualMachines", (*Model).vmListAll),
		r("GET", pComp+"/virtualmachines/*/instanceview", "VirtualMachines_InstanceView", "compute", "virtualMachines", (*Model).vmInstanceView),
		r("POST", pComp+"/virtualmachines/*/deallocate", "VirtualMachines_Deallocate", "compute", "virtualMachines", (*Model).vmDeallocate),
		r("POST", pComp+"/virtualmachines/*/poweroff", "VirtualMachines_PowerOff", "compute", "virtualMachines", (*Model).vmPowerOff),
		r("POST", pComp+"/virtualmachines/*/start", "VirtualMachines_Start", "compute", "virtualMachines", (*Model).vmStart),
		r("POST", pComp+"/virtualmachines/*/restart", "VirtualMachines_Restart", "compute", "virtualMachines", (*Model).vmRestart),
		r("POST", pComp+"/virtualmachines/*/generalize", "VirtualMachines_Generalize", "compute", "virtualMachines", (*Model).vmGeneralize),
		r("GET", pComp+"/disks/*", "Disks_Get", "disk", "disks", (*Model).diskGet),
		r("DELETE", pComp+"/disks/*", "Disks_Delete", "disk", "disks", (*Model).diskDelete),
		r("GET", pComp+"/disks", "Disks_ListByResourceGroup", "disk", "disks", (*Model).diskList),
		r("PUT", pComp+"/images/*", "Images_CreateOrUpdate", "compute", "images", (*Model).imagePut),
		r("GET", pComp+"/images/*", "Images_Get", "compute", "images", (*Model).imageGet),
		r("DELETE", pComp+"/images/*", "Images_Delete", "compute", "images", (*Model).imageDelete),
		r("GET", pComp+"/images", "Images_ListByResourceGroup", "compute", "images", (*Model).imageList),
		r("GET", pVMI, "VirtualMachineImages_List", "compute", "locations/publishers/artifacttypes/offers/skus/versions", (*Model).vmImageList),
		r("GET", pVMI+"/*", "VirtualMachineImages_Get", "compute", "locations/publishers/artifacttypes/offers/skus/versions", (*Model).vmImageGet),

		// Compute galleries.
		r("PUT", pGal, "Galleries_CreateOrUpdate", "gallery", "galleries", (*Model).galleryPut),
		r("GET", pGal, "Galleries_Get", "gallery", "galleries", (*Model).galleryGet),
		r("DELETE", pGal, "Galleries_Delete", "gallery", "galleries", (*Model).galleryDelete),
		r("GET", pComp+"/galleries", "Galleries_ListByResourceGroup", "gallery", "galleries", (*Model).galleryList),
		r("PUT", pGal+"/images/*", "GalleryImages_CreateOrUpdate", "gallery", "galleries/images", (*Model).gimgPut),
		r("GET", pGal+"/images/*", "GalleryImages_Get", "gallery", "galleries/images", (*Model).gimgGet),
		r("DELETE", pGal+"/images/*", "GalleryImages_Delete", "gallery", "galleries/images", (*Model).gimgDelete),
		r("GET", pGal+"/images", "GalleryImages_ListByGallery", "gallery", "galleries/images", (*Model).gimgList),
		r("PUT", pGal+"/images/*/versions/*", "GalleryImageVersions_CreateOrUpdate", "gallery", "galleries/images/versions", (*Model).verPut),
		r("PATCH", pGal+"/images/*/versions/*", "GalleryImageVersions_Update", "gallery", "galleries/images/versions", (*Model).verPatch),
		r("GET", pGal+"/images/*/versions/*", "GalleryImageVersions_Get", "gallery", "galleries/images/versions", (*Model).verGet),
		r("DELETE", pGal+"/images/*/versions/*", "GalleryImageVersions_Delete", "gallery", "galleries/images/versions", (*Model).verDelete),
		r("GET", pGal+"/images/*/versions", "GalleryImageVersions_ListByGalleryImage", "gallery", "galleries/images/versions", (*Model).verList),
	}
	// Operation status endpoints (polls).
	polls := []route{
		r("GET", "subscriptions/*/providers/microsoft.compute/locations/*/operations/*", "Operations_Get", "", "", (*Model).opGetCompute),
		r("GET", "subscriptions/*/providers/microsoft.compute/locations/*/capsoperations/*", "Operations_Get", "", "", (*Model).opGetCompute),
		r("GET", "subscriptions/*/providers/microsoft.network/locations/*/operations/*", "Operations_Get", "", "", (*Model).opGetAsync),
		r("GET", "subscriptions/*/providers/microsoft.network/locations/*/operationresults/*", "Operations_Get", "", "", (*Model).opGetMonitor),
		r("GET", "subscriptions/*/operationresults/*", "Operations_Get", "", "", (*Model).opGetMonitor),
	}
	for i := range polls {
		polls[i].poll = true
	}
	for i := range rs {
		if rs[i].op == "VirtualMachines_Generalize" {
			rs[i].sync = OpVMGeneralize
		}
	}
	return append(rs, polls...)
}

func (m *Model) opGetCompute(c *call) *reply {
	return m.opStatus(c, c.p[len(c.p)-1], c.q.Get("monitor") == "true")
}
func (m *Model) opGetAsync(c *call) *reply   { return m.opStatus(c, c.p[len(c.p)-1], false) }
func (m *Model) opGetMonitor(c *call) *reply { return m.opStatus(c, c.p[len(c.p)-1], true) }

// match returns the route for method and path, the captured parameters, and
// whether the path matched some route with another method.
func match(method, path string) (*route, []string, bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	pathKnown := false
	for i := range routes {
		rt := &routes[i]
		if len(rt.pattern) != len(segs) {
			continue
		}
		var params []string
		ok := true
		for j, p := range rt.pattern {
			if p == "*" {
				if segs[j] == "" {
					ok = false
					break
				}
				params = append(params, segs[j])
				continue
			}
			if !strings.EqualFold(p, segs[j]) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if rt.method != method {
			pathKnown = true
			continue
		}
		return rt, params, true
	}
	return nil, nil, pathKnown
}

// ServeHTTP answers Resource Manager requests (no authentication: Server adds
// it). It applies the injection rules, logs the request and dispatches it.
func (m *Model) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	body, _ := io.ReadAll(io.LimitReader(req.Body, 8<<20))
	rt, params, pathKnown := match(req.Method, req.URL.Path)
	entry := Request{Time: m.now(), Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Class: classOf(req.Method, rt)}
	if rt != nil {
		entry.Op = rt.op
	}

	m.mu.Lock()
	act := m.matchRulesLocked(req.Method, req.URL.Path, entry.Op)
	m.mu.Unlock()

	finish := func(rep *reply, injected bool) {
		entry.Status, entry.Code, entry.Injected = rep.status, rep.code, injected
		entry.RetryAfter, entry.Pending = retryAfterOf(rep), rep.pending
		entry.Duration = time.Since(start)
		m.record(entry)
		m.opts.Logger.Debug("arm request", "method", req.Method, "path", req.URL.Path, "status", rep.status, "code", rep.code)
		writeReply(w, rep)
	}
	if act.delay > 0 && !sleepCtx(req.Context(), act.delay) {
		return
	}
	if act.drop {
		entry.Injected, entry.Duration = true, time.Since(start)
		m.record(entry)
		panic(http.ErrAbortHandler) // closes the connection without an answer
	}
	if act.fail != nil {
		finish(injectedError(*act.fail, req), true)
		return
	}
	if rt == nil {
		if pathKnown {
			finish(errReply(http.StatusMethodNotAllowed, "MethodNotAllowed", fmt.Sprintf("The requested resource does not support http method '%s'.", req.Method)), false)
			return
		}
		finish(errReply(http.StatusNotFound, "InvalidResourceType", fmt.Sprintf("azmodel: no model for %s %s (the real service may support it; the model does not).", req.Method, req.URL.Path)), false)
		return
	}
	c := &call{r: req, q: req.URL.Query(), p: params, body: body, base: baseURL(req), failLRO: act.failLRO}
	if rep := m.checkAPIVersion(rt, c); rep != nil {
		finish(rep, false)
		return
	}
	m.mu.Lock()
	lat := m.latency
	m.mu.Unlock()
	d := lat.For(OpRequestWrite)
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		d = lat.For(OpRequestRead)
	}
	if rt.sync != "" {
		d += lat.For(rt.sync)
	}
	if d > 0 && !sleepCtx(req.Context(), d) {
		return
	}
	rep, cbs := m.handle(rt, c)
	for _, cb := range cbs {
		cb()
	}
	finish(rep, false)
}

// handle runs one handler under the model's lock. A panicking handler
// answers 500 and releases the lock, so a model bug shows as an error at the
// call that hit it instead of every later request hanging.
func (m *Model) handle(rt *route, c *call) (rep *reply, cbs []func()) {
	m.mu.Lock()
	defer func() {
		if p := recover(); p != nil {
			m.opts.Logger.Error("azmodel handler panicked", "op", rt.op, "panic", p, "stack", string(debug.Stack()))
			rep = errReply(http.StatusInternalServerError, "InternalServerError", fmt.Sprintf("azmodel: %s handler panicked: %v", rt.op, p))
			cbs = nil
			m.callbacks = nil
		}
		m.mu.Unlock()
	}()
	rep = rt.h(m, c)
	if rt.api == "network" && c.r.Method == http.MethodGet && rep.status == http.StatusOK {
		// Network answers a GET of one resource with its etag as ETag too
		// (recorded).
		var top struct {
			Etag string `json:"etag"`
		}
		if json.Unmarshal(rep.body, &top) == nil && top.Etag != "" {
			rep.header().Set("ETag", top.Etag)
		}
	}
	return rep, m.takeCallbacksLocked()
}

// retryAfterOf reads the Retry-After seconds of a reply (0: none).
func retryAfterOf(rep *reply) int {
	n, err := strconv.Atoi(rep.header().Get("Retry-After"))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func classOf(method string, rt *route) Class {
	switch {
	case rt != nil && rt.poll:
		return ClassPoll
	case method == http.MethodGet || method == http.MethodHead:
		return ClassRead
	case method == http.MethodDelete:
		return ClassDelete
	default:
		return ClassWrite
	}
}

func (m *Model) checkAPIVersion(rt *route, c *call) *reply {
	if rt.api == "" {
		return nil
	}
	v := c.apiVersion()
	if v == "" {
		return errReply(http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
	}
	if v == apiVersions[rt.api] || m.apiExtra[v] {
		return nil
	}
	return errReply(http.StatusBadRequest, "NoRegisteredProviderFound", fmt.Sprintf(
		"No registered resource provider found for location '%s' and API version '%s' for type '%s'. The supported api-versions are '%s'.",
		normLoc(m.opts.Location), v, rt.rtype, apiVersions[rt.api]))
}

// injectedError builds the answer of a Status rule, defaulting the code and
// message to what Azure sends for that status from that provider.
func injectedError(r Rule, req *http.Request) *reply {
	code, msg := r.Code, r.Message
	compute := strings.Contains(strings.ToLower(req.URL.Path), "/microsoft.compute/")
	if code == "" {
		switch r.Status {
		case http.StatusTooManyRequests:
			if compute {
				code = "OperationNotAllowed"
			} else {
				code = "TooManyRequests"
			}
		case http.StatusInternalServerError:
			code = "InternalServerError"
		case http.StatusBadGateway:
			code = "BadGateway"
		case http.StatusServiceUnavailable:
			code = "ServiceUnavailable"
		case http.StatusGatewayTimeout:
			code = "GatewayTimeout"
		case http.StatusConflict:
			code = "Conflict"
		case http.StatusPreconditionFailed:
			code = "PreconditionFailed"
		case http.StatusNotFound:
			code = "NotFound"
		case http.StatusUnauthorized:
			code = "AuthenticationFailed"
		case http.StatusForbidden:
			code = "AuthorizationFailed"
		default:
			code = "BadRequest"
		}
	}
	if msg == "" {
		switch {
		case r.Status == http.StatusTooManyRequests && compute:
			msg = "The server rejected the request because too many requests have been received for this subscription."
		case r.Status == http.StatusTooManyRequests:
			kind := "Write"
			switch req.Method {
			case http.MethodGet, http.MethodHead:
				kind = "Read"
			case http.MethodDelete:
				kind = "Delete"
			}
			msg = "The request is being throttled as the limit has been reached for operation type - " + kind + "_ObservationWindow_00:05:00. For more information, see - https://aka.ms/srpthrottlinglimits"
		case r.Status >= 500:
			msg = "Encountered internal server error. Diagnostic information: timestamp '" + time.Now().UTC().Format("20060102T150405Z") + "', correlation id '" + newGUID() + "'."
		default:
			msg = "azmodel: injected " + strconv.Itoa(r.Status) + " " + code + "."
		}
	}
	rep := errReply(r.Status, code, msg)
	if r.Status == http.StatusTooManyRequests && compute {
		// Compute names the throttled policy in details (shape from Azure's
		// documented throttling answer; Retry-After may be absent).
		group := computeThrottleGroup(req)
		body := armError{Code: code, Message: msg, Details: []armError{{Code: "TooManyRequests", Target: group, Message: fmt.Sprintf(
			`{"operationGroup":"%s","startTime":"%s","endTime":"%s","allowedRequestCount":%d,"measuredRequestCount":%d}`,
			group, time.Now().UTC().Add(-3*time.Minute).Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339), 240, 241)}}}
		rep = jsonReply(r.Status, map[string]any{"error": body})
		rep.code = code
	}
	if r.RetryAfter > 0 {
		rep.header().Set("Retry-After", strconv.Itoa(r.RetryAfter))
	}
	if r.Status == http.StatusTooManyRequests && compute {
		rep.header().Set("x-ms-ratelimit-remaining-resource", "Microsoft.Compute/HighCostGet3Min;0,Microsoft.Compute/PutVM3Min;0")
	}
	return rep
}

// computeThrottleGroup names Compute's throttling policy for a request.
func computeThrottleGroup(req *http.Request) string {
	p := strings.ToLower(req.URL.Path)
	switch {
	case strings.Contains(p, "/operations/") || strings.Contains(p, "/capsoperations/"):
		return "GetOperation3Min"
	case req.Method == http.MethodPut && strings.Contains(p, "/virtualmachines/"):
		return "PutVM3Min"
	case req.Method == http.MethodDelete && strings.Contains(p, "/virtualmachines/"):
		return "DeleteVM3Min"
	case req.Method == http.MethodPost:
		return "UpdateVM3Min"
	case req.Method == http.MethodGet:
		return "HighCostGet3Min"
	}
	return "PutVM3Min"
}

func writeReply(w http.ResponseWriter, rep *reply) {
	h := w.Header()
	for k, vs := range rep.hdr {
		h[k] = vs
	}
	id := newGUID()
	h.Set("x-ms-request-id", id)
	h.Set("x-ms-correlation-request-id", id)
	h.Set("Cache-Control", "no-cache")
	if rep.status == 0 {
		rep.status = http.StatusOK
	}
	if len(rep.body) == 0 {
		h.Set("Content-Length", "0")
	}
	w.WriteHeader(rep.status)
	if len(rep.body) > 0 {
		_, _ = w.Write(rep.body)
	}
}

func baseURL(req *http.Request) string {
	scheme := "https"
	if req.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + req.Host
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pageReply answers a list with the model's page size, handing out a nextLink
// that carries $skiptoken (and the original query) when more items remain.
func (m *Model) pageReply(c *call, items []any) *reply {
	if items == nil {
		items = []any{}
	}
	skip, _ := strconv.Atoi(c.q.Get("$skiptoken"))
	skip = min(max(skip, 0), len(items))
	end := min(skip+m.pageSize, len(items))
	body := map[string]any{"value": items[skip:end]}
	if end < len(items) {
		q := url.Values{}
		for k, v := range c.q {
			q[k] = v
		}
		q.Set("$skiptoken", strconv.Itoa(end))
		body["nextLink"] = c.base + c.r.URL.Path + "?" + q.Encode()
	}
	return jsonReply(http.StatusOK, body)
}

// rgLocked returns the resource group of the call, or the ARM error: 404
// ResourceGroupNotFound, or for writes 409 ResourceGroupBeingDeleted.
func (m *Model) rgLocked(c *call, write bool) (*res, *reply) {
	rg := m.get(rgID(c.p[0], c.p[1]))
	if rg == nil {
		return nil, errReply(http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", c.p[1]))
	}
	if write && rg.op != nil && rg.op.kind == OpRGDelete {
		return nil, errReply(http.StatusConflict, "ResourceGroupBeingDeleted", fmt.Sprintf("The resource group '%s' is in deprovisioning state and cannot perform this operation.", rg.name))
	}
	return rg, nil
}

// notFound is ARM's answer for a missing resource; typeAndName is e.g.
// "Microsoft.Compute/virtualMachines/vm1".
func notFound(typeAndName, rg string) *reply {
	return errReply(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf(
		"The Resource '%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix", typeAndName, rg))
}

// parentNotFound is ARM's answer for a nested resource whose parent is missing.
func parentNotFound(op, childType, parentID string) *reply {
	return errReply(http.StatusNotFound, "ParentResourceNotFound", fmt.Sprintf(
		"Failed to perform '%s' on resource(s) of type '%s', because the parent resource '%s' could not be found.", op, childType, parentID))
}

func lowerID(id string) string { return strings.ToLower(id) }

// wantsExpand reports whether $expand lists v (case-insensitive).
func (c *call) wantsExpand(v string) bool {
	for _, e := range strings.Split(c.q.Get("$expand"), ",") {
		if strings.EqualFold(strings.TrimSpace(e), v) {
			return true
		}
	}
	return false
}
