package platform

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// imdsVersions are the api-versions Azure's IMDS documents as supported,
// newest first (learn.microsoft.com, "Azure Instance Metadata Service").
var imdsVersions = []string{
	"2025-04-07", "2024-07-17", "2024-03-15", "2023-11-15", "2023-07-01",
	"2021-12-13", "2021-11-15", "2021-11-01", "2021-10-01", "2021-08-01",
	"2021-05-01", "2021-03-01", "2021-02-01", "2021-01-01", "2020-12-01",
	"2020-10-01", "2020-09-01", "2020-07-15", "2020-06-01", "2019-11-01",
	"2019-08-15", "2019-08-01", "2019-06-04", "2019-06-01", "2019-04-30",
	"2019-03-11", "2019-02-01", "2018-10-01", "2018-04-02", "2018-02-01",
	"2017-12-01", "2017-10-01", "2017-08-01", "2017-04-02", "2017-03-01",
}

// Error bodies. The metadata-header and api-version ones are Azure's
// documented text; the identity ones are what Azure's IMDS returns (quoted in
// azidentity's tests). The X-Forwarded-For, leaf-format and duplicate-query
// texts are not documented: the status (400) is, the wording here is ours.
const (
	imdsNoMetadataHeader = "Bad request. Required metadata header not specified"
	imdsForwarded        = "Bad request. Request must not contain the X-Forwarded-For header"
	imdsBadAPIVersion    = "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds"
	imdsDuplicateQuery   = "Bad request. Query parameters must not be repeated"
	imdsLeafNeedsText    = "Bad request. A leaf node must be queried with format=text"
	imdsBadFormat        = "Bad request. format must be json or text"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (vm *VM) serveIMDS(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	note := vm.imdsRoute(rec, r)
	line := fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, rec.status)
	if note != "" {
		line += " " + note
	}
	vm.p.event(vm.name, "imds", line)
}

// imdsRoute answers one request and returns a note for the event log.
func (vm *VM) imdsRoute(w http.ResponseWriter, r *http.Request) string {
	identity := strings.HasPrefix(r.URL.Path, "/metadata/identity")
	fail := func(status int, msg string) {
		if identity {
			writeJSON(w, status, map[string]string{"error": "invalid_request", "error_description": msg})
		} else {
			writeJSON(w, status, map[string]string{"error": msg})
		}
	}
	// IMDS refuses anything that may have been relayed (SSRF protection).
	if len(r.Header.Values("X-Forwarded-For")) > 0 {
		fail(http.StatusBadRequest, imdsForwarded)
		return "refused: X-Forwarded-For"
	}
	if r.Header.Get("Metadata") != "true" {
		fail(http.StatusBadRequest, imdsNoMetadataHeader)
		return "refused: no Metadata header"
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		fail(http.StatusMethodNotAllowed, "Bad request. Only GET is supported")
		return ""
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		fail(http.StatusBadRequest, "Bad request. Malformed query")
		return ""
	}
	for _, vs := range q {
		if len(vs) > 1 {
			fail(http.StatusBadRequest, imdsDuplicateQuery)
			return ""
		}
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "/metadata/versions" {
		writeJSON(w, http.StatusOK, map[string][]string{"apiVersions": sortedAsc(imdsVersions)})
		return ""
	}
	version := q.Get("api-version")
	if !slices.Contains(imdsVersions, version) {
		if identity {
			fail(http.StatusBadRequest, "Required query variable 'api-version' is missing or not supported")
		} else {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": imdsBadAPIVersion, "newest-versions": imdsVersions[:3]})
		}
		return ""
	}
	switch {
	case path == "/metadata/identity/oauth2/token":
		return vm.serveToken(w, q, version)
	case path == "/metadata/instance" || strings.HasPrefix(path, "/metadata/instance/"):
		vm.serveInstance(w, strings.TrimPrefix(path, "/metadata/instance"), q.Get("format"), version)
		return ""
	default:
		fail(http.StatusNotFound, "Not found")
		return ""
	}
}

func sortedAsc(v []string) []string {
	out := slices.Clone(v)
	sort.Strings(out)
	return out
}

// field is one compute key and the api-version that introduced it.
type field struct {
	key, since string
	value      any
}

// instanceDoc builds /metadata/instance for an api-version. Every primitive
// is a string, and missing values are empty strings, as IMDS answers.
func (vm *VM) instanceDoc(version string) map[string]any {
	p := vm.p
	p.mu.Lock()
	tags := make([]string, 0, len(vm.tags))
	for k := range vm.tags {
		tags = append(tags, k)
	}
	sort.Strings(tags)
	tagStr := make([]string, 0, len(tags))
	tagList := make([]any, 0, len(tags))
	for _, k := range tags {
		tagStr = append(tagStr, k+":"+vm.tags[k])
		tagList = append(tagList, map[string]any{"name": k, "value": vm.tags[k]})
	}
	p.mu.Unlock()

	fields := []field{
		{"azEnvironment", "2018-10-01", p.cloud.Environment},
		{"customData", "2019-02-01", ""}, // deprecated and always empty in IMDS
		{"evictionPolicy", "2020-12-01", ""},
		{"isHostCompatibilityLayerVm", "2020-06-01", "false"},
		{"licenseType", "2020-09-01", ""},
		{"location", "2017-04-02", p.cfg.Location},
		{"name", "2017-04-02", vm.name},
		{"offer", "2017-04-02", ""},
		{"osProfile", "2020-07-15", map[string]any{
			"adminUsername": vm.admin, "computerName": vm.name, "disablePasswordAuthentication": "true"}},
		{"osType", "2017-04-02", "Linux"},
		{"placementGroupId", "2017-08-01", ""},
		{"plan", "2018-04-02", map[string]any{"name": "", "product": "", "publisher": ""}},
		{"platformFaultDomain", "2017-04-02", "0"},
		{"platformUpdateDomain", "2017-04-02", "0"},
		{"priority", "2020-12-01", "Regular"},
		{"provider", "2018-10-01", "Microsoft.Compute"},
		{"publicKeys", "2018-04-02", []any{}},
		{"publisher", "2017-04-02", ""},
		{"resourceGroupName", "2017-08-01", vm.rg},
		{"resourceId", "2019-03-11", vm.id},
		{"securityProfile", "2020-06-01", map[string]any{
			"secureBootEnabled": "false", "virtualTpmEnabled": "false", "encryptionAtHost": "false", "securityType": ""}},
		{"sku", "2017-04-02", ""},
		{"storageProfile", "2019-06-01", map[string]any{
			"dataDisks":      []any{},
			"imageReference": map[string]any{"id": "", "offer": "", "publisher": "", "sku": "", "version": ""},
			"osDisk": map[string]any{
				"caching": "ReadWrite", "createOption": "FromImage", "diskSizeGB": "30",
				"managedDisk": map[string]any{"id": "", "storageAccountType": "Standard_LRS"},
				"name":        vm.name + "_OsDisk", "osType": "Linux"},
			"resourceDisk": map[string]any{"size": "0"},
		}},
		{"subscriptionId", "2017-08-01", p.cfg.SubscriptionID},
		{"tags", "2017-08-01", strings.Join(tagStr, ";")},
		{"tagsList", "2019-06-04", tagList},
		{"userData", "2021-01-01", base64.StdEncoding.EncodeToString(vm.userData)},
		{"version", "2017-04-02", ""},
		{"vmId", "2017-04-02", vm.vmID},
		{"vmScaleSetName", "2017-12-01", ""},
		{"vmSize", "2017-04-02", vm.size},
		{"zone", "2017-12-01", ""},
	}
	compute := map[string]any{}
	for _, f := range fields {
		if version >= f.since { // api-versions are ISO dates: string order is date order
			compute[f.key] = f.value
		}
	}
	network := map[string]any{"interface": []any{map[string]any{
		"ipv4": map[string]any{
			"ipAddress": []any{map[string]any{"privateIpAddress": vm.privateIP, "publicIpAddress": ""}},
			"subnet":    []any{map[string]any{"address": guestSubnetAddr, "prefix": guestSubnetPrefix}},
		},
		"ipv6":       map[string]any{"ipAddress": []any{}},
		"macAddress": guestMACHex,
	}}}
	return map[string]any{"compute": compute, "network": network}
}

// serveInstance walks the route parameters down the document (keys, then
// array indexes), as IMDS's response filtering does.
func (vm *VM) serveInstance(w http.ResponseWriter, route, format, version string) {
	var node any = vm.instanceDoc(version)
	for _, seg := range strings.Split(strings.Trim(route, "/"), "/") {
		if seg == "" {
			continue
		}
		switch n := node.(type) {
		case map[string]any:
			v, ok := n[seg]
			if !ok {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not found"})
				return
			}
			node = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(n) {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not found"})
				return
			}
			node = n[i]
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not found"})
			return
		}
	}
	leaf, isLeaf := node.(string)
	switch format {
	case "", "json":
		if isLeaf {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": imdsLeafNeedsText})
			return
		}
		writeJSON(w, http.StatusOK, node)
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if isLeaf {
			_, _ = w.Write([]byte(leaf))
			return
		}
		_, _ = w.Write([]byte(textListing(node)))
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": imdsBadFormat})
	}
}

// textListing is IMDS's format=text for an inner node: one child per line,
// with a trailing slash on children that have children of their own.
func textListing(node any) string {
	var lines []string
	suffix := func(v any) string {
		if _, ok := v.(string); ok {
			return ""
		}
		return "/"
	}
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			lines = append(lines, k+suffix(v))
		}
		sort.Strings(lines)
	case []any:
		for i, v := range n {
			lines = append(lines, strconv.Itoa(i)+suffix(v))
		}
	}
	return strings.Join(lines, "\n")
}

// serveToken mints a managed-identity token for one of the VM's identities.
func (vm *VM) serveToken(w http.ResponseWriter, q url.Values, version string) string {
	p := vm.p
	bad := func(status int, code, msg string) {
		writeJSON(w, status, map[string]string{"error": code, "error_description": msg})
	}
	if version < "2018-02-01" {
		bad(http.StatusBadRequest, "invalid_request", "Required query variable 'api-version' is missing or not supported")
		return ""
	}
	resource := q.Get("resource")
	if resource == "" {
		bad(http.StatusBadRequest, "invalid_request", "Required query variable 'resource' is missing")
		return ""
	}
	if len(vm.identities) == 0 {
		bad(http.StatusBadRequest, "invalid_request", "Identity not found")
		return "no identity"
	}
	var id *Identity
	sel := map[string]string{
		"client_id": q.Get("client_id"), "object_id": q.Get("object_id"),
		"principal_id": q.Get("principal_id"), "msi_res_id": q.Get("msi_res_id"), "mi_res_id": q.Get("mi_res_id"),
	}
	chosen := false
	for k, v := range sel {
		if v == "" {
			continue
		}
		chosen = true
		for _, cand := range vm.identities {
			switch {
			case k == "client_id" && strings.EqualFold(cand.ClientID, v),
				(k == "object_id" || k == "principal_id") && strings.EqualFold(cand.PrincipalID, v),
				(k == "msi_res_id" || k == "mi_res_id") && strings.EqualFold(cand.ID, v):
				id = cand
			}
		}
	}
	switch {
	case chosen && id == nil:
		bad(http.StatusBadRequest, "invalid_request", "Identity not found")
		return "identity not found"
	case !chosen && len(vm.identities) > 1:
		bad(http.StatusBadRequest, "invalid_request",
			"Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request")
		return ""
	case !chosen:
		id = vm.identities[0]
	}
	if !slices.Contains(p.cloud.ARMAudiences, resource) && !slices.Contains(p.cloud.VaultAudiences, resource) {
		bad(http.StatusBadRequest, "invalid_resource", fmt.Sprintf(
			"AADSTS500011: The resource principal named %s was not found in the tenant named %s.", resource, p.cfg.TenantID))
		return "unknown resource " + resource
	}
	now := p.cfg.Now()
	exp := now.Add(p.cfg.TokenLifetime)
	tok, err := p.signer.sign(tokenClaims{
		Aud: resource, Iss: "https://sts.windows.net/" + p.cfg.TenantID + "/",
		Iat: now.Unix(), Nbf: now.Unix(), Exp: exp.Unix(),
		Oid: id.PrincipalID, Sub: id.PrincipalID, Tid: p.cfg.TenantID, AppID: id.ClientID,
		IdType: "app", MIResID: id.ID, TokenUse: "1.0",
	})
	if err != nil {
		bad(http.StatusInternalServerError, "unknown", "Failed to retrieve token")
		return ""
	}
	secs := strconv.FormatInt(int64(p.cfg.TokenLifetime.Seconds()), 10)
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token":   tok,
		"client_id":      id.ClientID,
		"expires_in":     secs,
		"expires_on":     strconv.FormatInt(exp.Unix(), 10),
		"ext_expires_in": secs,
		"not_before":     strconv.FormatInt(now.Unix(), 10),
		"resource":       resource,
		"token_type":     "Bearer",
	})
	return "token for " + id.Name + " resource " + resource
}
