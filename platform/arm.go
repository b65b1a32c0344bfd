package platform

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// armError writes Resource Manager's error envelope.
func armError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// operation is one long-running deallocate or delete, polled through the
// Azure-AsyncOperation and Location URLs of its 202.
type operation struct {
	id      string
	vm      string
	start   time.Time
	end     time.Time
	done    bool
	err     error
	subject string // lower-case VM resource ID
}

func (op *operation) finishLocked(now time.Time, err error) {
	op.done, op.end, op.err = true, now, err
}

// match reports whether segs matches pattern, literal segments compared
// case-insensitively (Resource Manager paths are), "*" matching any segment.
func match(segs []string, pattern ...string) bool {
	if len(segs) != len(pattern) {
		return false
	}
	for i, p := range pattern {
		if p != "*" && !strings.EqualFold(p, segs[i]) {
			return false
		}
	}
	return true
}

func (p *Platform) serveARM(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	vmName, note := p.armRoute(rec, r)
	line := fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, rec.status)
	if note != "" {
		line += " " + note
	}
	p.event(vmName, "arm", line)
}

func (p *Platform) armRoute(w http.ResponseWriter, r *http.Request) (vmName, note string) {
	id, err := p.authenticate(r, p.cloud.ARMAudiences)
	if err != nil {
		p.armAuthError(w, err)
		return "", "refused: " + err.Error()
	}
	if r.URL.Query().Get("api-version") == "" {
		armError(w, http.StatusBadRequest, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests.")
		return "", ""
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	base := []string{"subscriptions", "*", "resourceGroups", "*", "providers", "Microsoft.Compute", "virtualMachines", "*"}
	switch {
	case match(segs, "subscriptions", "*", "providers", "Microsoft.Compute", "locations", "*", "operations", "*"):
		p.serveOperation(w, r, segs[7])
		return "", ""
	case len(segs) >= len(base) && match(segs[:len(base)], base...):
		vmID := "/" + strings.Join(segs[:len(base)], "/")
		rest := segs[len(base):]
		name := segs[7]
		switch {
		case len(rest) == 0:
			return name, p.serveVM(w, r, id, vmID)
		case match(rest, "deallocate"):
			return name, p.serveDeallocate(w, r, id, vmID)
		case match(rest, "providers", "Microsoft.Resources", "tags", "default"):
			return name, p.serveTags(w, r, id, vmID)
		}
	}
	armError(w, http.StatusNotFound, "InvalidResourceType",
		"The resource type could not be found in the namespace for api-version "+r.URL.Query().Get("api-version")+".")
	return "", ""
}

type authError struct {
	status  int
	code    string
	message string
}

func (e *authError) Error() string { return e.code }

// authenticate checks a bearer token the way Resource Manager and Key Vault
// do: present, minted here, unexpired, for one of audiences, for a known
// identity.
func (p *Platform) authenticate(r *http.Request, audiences []string) (*Identity, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, &authError{http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."}
	}
	tok, ok := bearer(h)
	if !ok {
		return nil, &authError{http.StatusUnauthorized, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing the access token."}
	}
	now := p.cfg.Now()
	c, err := p.signer.verify(tok, now)
	switch {
	case errors.Is(err, errTokenExpired):
		return nil, &authError{http.StatusUnauthorized, "ExpiredAuthenticationToken", fmt.Sprintf(
			"The access token expiry UTC time '%s' is earlier than current UTC time '%s'.",
			time.Unix(c.Exp, 0).UTC().Format(time.RFC1123), now.UTC().Format(time.RFC1123))}
	case err != nil:
		return nil, &authError{http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid."}
	}
	if !slices.Contains(audiences, c.Aud) {
		return nil, &authError{http.StatusUnauthorized, "InvalidAuthenticationTokenAudience", fmt.Sprintf(
			"The access token has been obtained for wrong audience or resource '%s'. It should exactly match with one of the allowed audiences '%s'.",
			c.Aud, strings.Join(audiences, "','"))}
	}
	if c.Tid != p.cfg.TenantID {
		return nil, &authError{http.StatusUnauthorized, "InvalidAuthenticationTokenTenant", "The access token is from the wrong issuer."}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	id, ok := p.identities[strings.ToLower(c.MIResID)]
	if !ok || id.PrincipalID != c.Oid {
		return nil, &authError{http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid."}
	}
	return id, nil
}

func (p *Platform) armAuthError(w http.ResponseWriter, err error) {
	var ae *authError
	if !errors.As(err, &ae) {
		armError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "The access token is invalid.")
		return
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(
		`Bearer authorization_uri="https://login.microsoftonline.com/%s", error="invalid_token", error_description="%s"`,
		p.cfg.TenantID, ae.code))
	armError(w, ae.status, ae.code, ae.message)
}

// mayManage reports whether id holds scope: it is attached to that VM, or
// one of its granted scopes contains it. p.mu must be held.
func (p *Platform) mayManageLocked(id *Identity, scope string) bool {
	if vm, ok := p.vms[strings.ToLower(scope)]; ok && slices.Contains(vm.identities, id) {
		return true
	}
	for _, s := range id.Scopes {
		s = strings.ToLower(strings.TrimSuffix(s, "/"))
		if l := strings.ToLower(scope); l == s || strings.HasPrefix(l, s+"/") {
			return true
		}
	}
	return false
}

// authorize answers 403 AuthorizationFailed, as Resource Manager does, when
// id may not perform action on scope. It runs before the resource is looked
// up, so a caller without rights cannot learn whether a VM exists.
func (p *Platform) authorize(w http.ResponseWriter, id *Identity, scope, action string) bool {
	p.mu.Lock()
	ok := p.mayManageLocked(id, scope)
	p.mu.Unlock()
	if !ok {
		armError(w, http.StatusForbidden, "AuthorizationFailed", fmt.Sprintf(
			"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. If access was recently granted, please refresh your credentials.",
			id.PrincipalID, id.PrincipalID, action, scope))
	}
	return ok
}

// lookupLocked returns the VM with this resource ID unless it is deleted.
func (p *Platform) lookupLocked(vmID string) (*VM, bool) {
	vm, ok := p.vms[strings.ToLower(vmID)]
	if !ok || vm.state == StateDeleted {
		return nil, false
	}
	return vm, true
}

func vmNotFound(w http.ResponseWriter, vmID string) {
	segs := strings.Split(strings.Trim(vmID, "/"), "/")
	armError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf(
		"The Resource 'Microsoft.Compute/virtualMachines/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
		segs[len(segs)-1], segs[3]))
}

func (p *Platform) serveVM(w http.ResponseWriter, r *http.Request, id *Identity, vmID string) string {
	switch r.Method {
	case http.MethodGet:
		if !p.authorize(w, id, vmID, "Microsoft.Compute/virtualMachines/read") {
			return "refused"
		}
		p.mu.Lock()
		vm, ok := p.lookupLocked(vmID)
		var body map[string]any
		if ok {
			body = vm.armJSONLocked(r.URL.Query().Get("$expand"))
		}
		p.mu.Unlock()
		if !ok {
			vmNotFound(w, vmID)
			return ""
		}
		writeJSON(w, http.StatusOK, body)
		return ""
	case http.MethodPatch:
		if !p.authorize(w, id, vmID, "Microsoft.Compute/virtualMachines/write") {
			return "refused"
		}
		var req struct {
			Tags *map[string]string `json:"tags"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			armError(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
			return ""
		}
		if req.Tags != nil {
			if code, msg := checkTags(*req.Tags); code != "" {
				armError(w, http.StatusBadRequest, code, msg)
				return ""
			}
		}
		p.mu.Lock()
		vm, ok := p.lookupLocked(vmID)
		var body map[string]any
		busy := ok && vm.state == StateDeleting
		if ok && !busy {
			if req.Tags != nil {
				vm.tags = maps.Clone(*req.Tags)
				if vm.tags == nil {
					vm.tags = map[string]string{}
				}
				vm.setStateLocked(vm.state, vm.lastErr) // wake waiters: tags changed
			}
			body = vm.armJSONLocked("")
		}
		p.mu.Unlock()
		switch {
		case !ok:
			vmNotFound(w, vmID)
			return ""
		case busy:
			armError(w, http.StatusConflict, "OperationNotAllowed", "The VM is being deleted.")
			return ""
		}
		writeJSON(w, http.StatusOK, body)
		return "tags " + tagSummary(body)
	case http.MethodDelete:
		if !p.authorize(w, id, vmID, "Microsoft.Compute/virtualMachines/delete") {
			return "refused"
		}
		return p.startOperation(w, r, vmID, true)
	default:
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed on this resource.")
		return ""
	}
}

func tagSummary(body map[string]any) string {
	tags, _ := body["tags"].(map[string]string)
	keys := slices.Sorted(maps.Keys(tags))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+tags[k])
	}
	return strings.Join(parts, ",")
}

// checkTags applies Resource Manager's tag limits.
func checkTags(tags map[string]string) (code, msg string) {
	if len(tags) > 50 {
		return "InvalidTemplate", "A resource can have at most 50 tags."
	}
	for k, v := range tags {
		if k == "" || len(k) > 512 || strings.ContainsAny(k, "<>%&\\?/") {
			return "InvalidTagNameCharacters", fmt.Sprintf("The tag names '%s' have reserved characters '<,>,%%,&,\\,?,/' or control characters.", k)
		}
		if len(v) > 256 {
			return "InvalidTagValueLength", fmt.Sprintf("The tag value for '%s' exceeds 256 characters.", k)
		}
	}
	return "", ""
}

func (p *Platform) serveDeallocate(w http.ResponseWriter, r *http.Request, id *Identity, vmID string) string {
	if r.Method != http.MethodPost {
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed on this resource.")
		return ""
	}
	if !p.authorize(w, id, vmID, "Microsoft.Compute/virtualMachines/deallocate/action") {
		return "refused"
	}
	return p.startOperation(w, r, vmID, false)
}

// startOperation answers 202 with the polling headers and starts the hook.
func (p *Platform) startOperation(w http.ResponseWriter, r *http.Request, vmID string, deleting bool) string {
	p.mu.Lock()
	vm, ok := p.lookupLocked(vmID)
	if !ok {
		p.mu.Unlock()
		if deleting {
			w.WriteHeader(http.StatusNoContent) // deleting what is not there succeeds
			return ""
		}
		vmNotFound(w, vmID)
		return ""
	}
	switch vm.state {
	case StateDeallocating, StateDeleting:
		st := vm.state
		p.mu.Unlock()
		armError(w, http.StatusConflict, "OperationNotAllowed", fmt.Sprintf(
			"Operation '%s' is not allowed on VM '%s' since the VM is %s.", verb(deleting), vm.name, st))
		return ""
	case StateDeallocated:
		if !deleting {
			op := p.newOperationLocked(vm)
			op.finishLocked(p.cfg.Now(), nil)
			p.mu.Unlock()
			writeAccepted(w, r, p, op)
			return "already deallocated"
		}
	}
	op := p.newOperationLocked(vm)
	if deleting {
		vm.setStateLocked(StateDeleting, nil)
	} else {
		vm.setStateLocked(StateDeallocating, nil)
	}
	p.mu.Unlock()
	writeAccepted(w, r, p, op)
	vm.runHook(op, deleting)
	return verb(deleting)
}

func verb(deleting bool) string {
	if deleting {
		return "delete"
	}
	return "deallocate"
}

func (p *Platform) newOperationLocked(vm *VM) *operation {
	op := &operation{id: newGUID(), vm: vm.name, start: p.cfg.Now(), subject: strings.ToLower(vm.id)}
	p.ops[op.id] = op
	return op
}

// writeAccepted answers 202 the way Compute does for deallocate and delete:
// Azure-AsyncOperation to poll the status, Location for the final result.
// The URLs use the Host the caller used, so a host-side SDK client on
// 127.0.0.1 polls the same listener.
func writeAccepted(w http.ResponseWriter, r *http.Request, p *Platform, op *operation) {
	base := fmt.Sprintf("https://%s/subscriptions/%s/providers/Microsoft.Compute/locations/%s/operations/%s",
		r.Host, p.cfg.SubscriptionID, p.cfg.Location, op.id)
	av := r.URL.Query().Get("api-version")
	w.Header().Set("Azure-AsyncOperation", base+"?p="+op.id+"&api-version="+av)
	w.Header().Set("Location", base+"?p="+op.id+"&monitor=true&api-version="+av)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

func (p *Platform) serveOperation(w http.ResponseWriter, r *http.Request, opID string) {
	if r.Method != http.MethodGet {
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed on this resource.")
		return
	}
	p.mu.Lock()
	op, ok := p.ops[opID]
	var o operation
	if ok {
		o = *op
	}
	p.mu.Unlock()
	if !ok {
		armError(w, http.StatusNotFound, "NotFound", "The operation was not found.")
		return
	}
	if r.URL.Query().Get("monitor") == "true" {
		if !o.done {
			w.Header().Set("Location", "https://"+r.Host+r.URL.RequestURI())
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		if o.err != nil {
			armError(w, http.StatusInternalServerError, "InternalExecutionError", o.err.Error())
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	body := map[string]any{"name": o.id, "startTime": o.start.UTC().Format(time.RFC3339Nano), "status": "InProgress"}
	if o.done {
		body["endTime"] = o.end.UTC().Format(time.RFC3339Nano)
		body["status"] = "Succeeded"
		if o.err != nil {
			body["status"] = "Failed"
			body["error"] = map[string]string{"code": "InternalExecutionError", "message": o.err.Error()}
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// serveTags is the tags API on the VM (az tag update --operation merge):
// a merge lets the VM record its outcome without replacing the cycle tag.
func (p *Platform) serveTags(w http.ResponseWriter, r *http.Request, id *Identity, vmID string) string {
	action := "Microsoft.Resources/tags/write"
	if r.Method == http.MethodGet {
		action = "Microsoft.Resources/tags/read"
	}
	if !p.authorize(w, id, vmID, action) {
		return "refused"
	}
	var req struct {
		Operation  string `json:"operation"`
		Properties struct {
			Tags map[string]string `json:"tags"`
		} `json:"properties"`
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodPut, http.MethodPatch:
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			armError(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
			return ""
		}
		if r.Method == http.MethodPut {
			req.Operation = "Replace"
		}
		if !slices.Contains([]string{"Merge", "Replace", "Delete"}, req.Operation) {
			armError(w, http.StatusBadRequest, "InvalidRequestContent", "The tags operation must be Merge, Replace or Delete.")
			return ""
		}
	default:
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The requested method is not allowed on this resource.")
		return ""
	}
	p.mu.Lock()
	vm, ok := p.lookupLocked(vmID)
	var tags map[string]string
	var code, msg string
	if ok {
		next := maps.Clone(vm.tags)
		switch req.Operation {
		case "Merge":
			maps.Copy(next, req.Properties.Tags)
		case "Replace":
			next = maps.Clone(req.Properties.Tags)
		case "Delete":
			for k, v := range req.Properties.Tags {
				if cur, has := next[k]; has && (v == "" || v == cur) {
					delete(next, k)
				}
			}
		}
		if next == nil {
			next = map[string]string{}
		}
		if code, msg = checkTags(next); code == "" && req.Operation != "" {
			vm.tags = next
			vm.setStateLocked(vm.state, vm.lastErr)
		}
		tags = maps.Clone(vm.tags)
	}
	p.mu.Unlock()
	switch {
	case !ok:
		vmNotFound(w, vmID)
		return ""
	case code != "":
		armError(w, http.StatusBadRequest, code, msg)
		return ""
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": vmID + "/providers/Microsoft.Resources/tags/default", "name": "default",
		"type": "Microsoft.Resources/tags", "properties": map[string]any{"tags": tags},
	})
	if req.Operation == "" {
		return ""
	}
	return strings.ToLower(req.Operation) + " tags " + tagSummary(map[string]any{"tags": tags})
}

// armJSONLocked is the VM as Compute's GET returns it; userData only with
// $expand=userData and the power state only with $expand=instanceView, as
// Compute does.
func (vm *VM) armJSONLocked(expand string) map[string]any {
	provisioning := "Succeeded"
	power := "PowerState/running"
	switch vm.state {
	case StateDeallocating:
		provisioning, power = "Updating", "PowerState/deallocating"
	case StateDeallocated:
		power = "PowerState/deallocated"
	case StateDeleting:
		provisioning, power = "Deleting", "PowerState/stopping"
	case StateFailed:
		provisioning, power = "Failed", "PowerState/unknown"
	}
	uai := map[string]any{}
	for _, id := range vm.identities {
		uai[id.ID] = map[string]string{"principalId": id.PrincipalID, "clientId": id.ClientID}
	}
	props := map[string]any{
		"vmId":              vm.vmID,
		"provisioningState": provisioning,
		"hardwareProfile":   map[string]any{"vmSize": vm.size},
		"storageProfile": map[string]any{"osDisk": map[string]any{
			"osType": "Linux", "name": vm.name + "_OsDisk", "createOption": "FromImage", "deleteOption": "Delete"}},
		"osProfile":   map[string]any{"computerName": vm.name, "adminUsername": vm.admin},
		"timeCreated": vm.created.UTC().Format(time.RFC3339Nano),
	}
	for _, e := range strings.Split(expand, ",") {
		switch strings.TrimSpace(strings.ToLower(e)) {
		case "userdata":
			props["userData"] = base64.StdEncoding.EncodeToString(vm.userData)
		case "instanceview":
			props["instanceView"] = map[string]any{"statuses": []map[string]string{
				{"code": "ProvisioningState/" + strings.ToLower(provisioning), "level": "Info"},
				{"code": power, "level": "Info"},
			}}
		}
	}
	body := map[string]any{
		"name": vm.name, "id": vm.id, "type": "Microsoft.Compute/virtualMachines",
		"location": vm.p.cfg.Location, "tags": maps.Clone(vm.tags), "properties": props,
	}
	if len(uai) > 0 {
		body["identity"] = map[string]any{"type": "UserAssigned", "userAssignedIdentities": uai}
	}
	return body
}
