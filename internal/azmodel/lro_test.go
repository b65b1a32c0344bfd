package azmodel_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
)

// clock is a settable time source for the model.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// raw speaks plain HTTP to a served model, to check status codes and headers
// exactly.
type raw struct {
	t    *testing.T
	base string
	tok  string
	hc   *http.Client
}

func newRaw(t *testing.T, opts azmodel.Options) (*raw, *azmodel.Model) {
	t.Helper()
	m := azmodel.New(opts)
	srv := azmodel.NewServer(m, azmodel.ServerOptions{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return &raw{t: t, base: srv.URL(), tok: srv.IssueToken(), hc: srv.HTTPClient()}, m
}

func (c *raw) do(method, path string, body any, hdr ...string) (*http.Response, map[string]any) {
	c.t.Helper()
	u := path
	if !strings.HasPrefix(u, "https://") {
		u = c.base + path
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.tok)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp, out
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

const rgPath = "/subscriptions/" + sub + "/resourcegroups/lro"

func computePath(rest string) string {
	return "/subscriptions/" + sub + "/resourceGroups/lro/providers/Microsoft.Compute/" + rest
}

func netPath(rest string) string {
	return "/subscriptions/" + sub + "/resourceGroups/lro/providers/Microsoft.Network/" + rest
}

func vmBody(nic string) map[string]any {
	return map[string]any{
		"location": "eastus",
		"properties": map[string]any{
			"hardwareProfile": map[string]any{"vmSize": "Standard_B2s"},
			"storageProfile": map[string]any{
				"imageReference": map[string]any{"publisher": "Canonical", "offer": "0001-com-ubuntu-server-focal", "sku": "20_04-lts", "version": "latest"},
				"osDisk":         map[string]any{"createOption": "FromImage", "deleteOption": "Delete"},
			},
			"osProfile": map[string]any{"adminUsername": "azureuser", "computerName": "vm", "adminPassword": "Secr3t!Secr3t!"},
			"networkProfile": map[string]any{
				"networkApiVersion": "2020-11-01",
				"networkInterfaceConfigurations": []any{map[string]any{"name": nic, "properties": map[string]any{
					"deleteOption": "Delete",
					"ipConfigurations": []any{map[string]any{"name": "ip", "properties": map[string]any{
						"subnet": map[string]any{"id": netPath("virtualNetworks/vnet/subnets/default")},
					}}},
				}}},
			},
		},
	}
}

// TestLROShapes checks the status codes, polling headers and the
// InProgress → Succeeded progression of each kind of long-running operation.
func TestLROShapes(t *testing.T) {
	c, _ := newRaw(t, azmodel.Options{InProgressPolls: 2, LRORetryAfter: 3})
	const cv, nv, rv = "?api-version=2025-04-01", "?api-version=2025-01-01", "?api-version=2021-04-01"

	resp, _ := c.do("PUT", rgPath+rv, map[string]any{"location": "eastus"})
	if resp.StatusCode != 201 {
		t.Fatalf("rg create %d", resp.StatusCode)
	}
	resp, _ = c.do("PUT", rgPath+rv, map[string]any{"location": "eastus", "tags": map[string]any{"a": "b"}})
	if resp.StatusCode != 200 {
		t.Fatalf("rg update %d", resp.StatusCode)
	}
	resp, _ = c.do("PUT", rgPath+rv, map[string]any{"location": "westus"})
	if resp.StatusCode != 409 {
		t.Fatalf("rg location change %d", resp.StatusCode)
	}

	// pollAsync polls an Azure-AsyncOperation URL until it is terminal and
	// returns the statuses seen.
	pollAsync := func(u string) []string {
		var seen []string
		for range 10 {
			resp, body := c.do("GET", u, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("poll %s: %d", u, resp.StatusCode)
			}
			st, _ := body["status"].(string)
			seen = append(seen, st)
			if st != "InProgress" {
				return seen
			}
			if resp.Header.Get("Retry-After") != "3" {
				t.Fatalf("InProgress poll without Retry-After")
			}
		}
		return seen
	}

	resp, body := c.do("PUT", netPath("virtualNetworks/vnet")+nv, map[string]any{"location": "eastus", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []any{"10.0.0.0/16"}},
		"subnets":      []any{map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.0.0.0/24"}}},
	}})
	if resp.StatusCode != 201 || dig(body, "properties", "provisioningState") != "Updating" || resp.Header.Get("Azure-AsyncOperation") == "" {
		t.Fatalf("vnet create %d %v", resp.StatusCode, dig(body, "properties", "provisioningState"))
	}
	if got := strings.Join(pollAsync(resp.Header.Get("Azure-AsyncOperation")), ","); got != "InProgress,InProgress,Succeeded" {
		t.Fatalf("vnet polls %s", got)
	}

	resp, body = c.do("PUT", computePath("virtualMachines/vm")+cv, vmBody("nic"))
	async := resp.Header.Get("Azure-AsyncOperation")
	if resp.StatusCode != 201 || dig(body, "properties", "provisioningState") != "Creating" || async == "" ||
		resp.Header.Get("Location") != "" || resp.Header.Get("Retry-After") != "3" || !strings.Contains(async, "/providers/Microsoft.Compute/locations/eastus/operations/") {
		t.Fatalf("vm create %d %v headers %v", resp.StatusCode, body, resp.Header)
	}
	if dig(body, "properties", "osProfile", "adminPassword") != nil {
		t.Fatal("adminPassword echoed")
	}
	if _, body = c.do("GET", computePath("virtualMachines/vm")+cv, nil); dig(body, "properties", "provisioningState") != "Creating" {
		t.Fatalf("vm during create: %v", dig(body, "properties", "provisioningState"))
	}
	// The GET above counted as the first of the two InProgress answers.
	if got := strings.Join(pollAsync(async), ","); got != "InProgress,Succeeded" {
		t.Fatalf("vm create polls %s", got)
	}

	resp, _ = c.do("POST", computePath("virtualMachines/vm/deallocate")+cv, nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 202 || resp.Header.Get("Azure-AsyncOperation") == "" || !strings.Contains(loc, "monitor=true") {
		t.Fatalf("deallocate %d %v", resp.StatusCode, resp.Header)
	}
	var codes []int
	for range 5 {
		r, _ := c.do("GET", loc, nil)
		codes = append(codes, r.StatusCode)
		if r.StatusCode != 202 {
			break
		}
	}
	if len(codes) != 3 || codes[0] != 202 || codes[1] != 202 || codes[2] != 200 {
		t.Fatalf("deallocate Location polls %v", codes)
	}
	resp, _ = c.do("POST", computePath("virtualMachines/vm/generalize")+cv, nil)
	if resp.StatusCode != 200 || resp.ContentLength != 0 {
		t.Fatalf("generalize %d (%d bytes)", resp.StatusCode, resp.ContentLength)
	}

	resp, _ = c.do("DELETE", rgPath+rv, nil)
	if resp.StatusCode != 202 || resp.Header.Get("Azure-AsyncOperation") != "" || !strings.Contains(resp.Header.Get("Location"), "/operationresults/") {
		t.Fatalf("rg delete %d %v", resp.StatusCode, resp.Header)
	}
	if _, body = c.do("GET", rgPath+rv, nil); dig(body, "properties", "provisioningState") != "Deleting" {
		t.Fatalf("rg during delete %v", body)
	}
	resp, _ = c.do("PUT", computePath("virtualMachines/vm2")+cv, vmBody("nic2"))
	if resp.StatusCode != 409 {
		t.Fatalf("write into a deleting group: %d", resp.StatusCode)
	}

	// Errors in ARM's format.
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/subscriptions/" + sub + "/resourcegroups/none" + rv, 404, "ResourceGroupNotFound"},
		{"GET", rgPath + "?api-version=1999-01-01", 400, "NoRegisteredProviderFound"},
		{"GET", rgPath, 400, "MissingApiVersionParameter"},
		{"GET", "/subscriptions/" + sub + "/providers/Microsoft.Web/sites" + rv, 404, "InvalidResourceType"},
	} {
		resp, body := c.do(tc.method, tc.path, nil)
		if resp.StatusCode != tc.status || dig(body, "error", "code") != tc.code || dig(body, "error", "message") == "" {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, resp.StatusCode, body)
		}
	}
}

// TestLatencyAndReplication uses a fake clock: operations stay InProgress for
// their profile duration, and a version reports replication progress.
func TestLatencyAndReplication(t *testing.T) {
	clk := &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	c, m := newRaw(t, azmodel.Options{Now: clk.now, InProgressPolls: -1, Latency: azmodel.RealWorldLatency(1)})
	if err := m.SeedGallery(azmodel.GallerySeed{SubscriptionID: sub, ResourceGroup: "lro", Gallery: "g", Image: "i", Versions: []azmodel.VersionSeed{{Name: "1.0.0"}}}); err != nil {
		t.Fatal(err)
	}
	m.SetLatency(azmodel.LatencyProfile{Durations: map[azmodel.OpKind]time.Duration{azmodel.OpVersionCreate: 10 * time.Minute}})
	const gv = "?api-version=2025-03-03"
	vpath := computePath("galleries/g/images/i/versions/1.0.1")
	resp, _ := c.do("PUT", vpath+gv, map[string]any{"location": "eastus", "properties": map[string]any{
		"storageProfile":    map[string]any{"source": map[string]any{"id": computePath("galleries/g/images/i/versions/1.0.0")}},
		"publishingProfile": map[string]any{"targetRegions": []any{map[string]any{"name": "eastus"}, map[string]any{"name": "westus2"}}},
	}}, "If-None-Match", "*")
	async := resp.Header.Get("Azure-AsyncOperation")
	if resp.StatusCode != 201 || !strings.Contains(async, "/capsOperations/") {
		t.Fatalf("version create %d %s", resp.StatusCode, async)
	}
	clk.add(5 * time.Minute)
	_, body := c.do("GET", vpath+gv+"&$expand=ReplicationStatus", nil)
	rs := dig(body, "properties", "replicationStatus")
	if dig(rs, "aggregatedState") != "InProgress" || dig(body, "properties", "provisioningState") != "Creating" {
		t.Fatalf("halfway: %v", body)
	}
	summary := dig(rs, "summary").([]any)
	if len(summary) != 2 || dig(summary[0], "state") != "Replicating" || dig(summary[0], "progress") != float64(50) {
		t.Fatalf("halfway summary %v", summary)
	}
	if _, st := c.do("GET", async, nil); st["status"] != "InProgress" {
		t.Fatalf("5 min: %v", st)
	}
	clk.add(5 * time.Minute)
	if _, st := c.do("GET", async, nil); st["status"] != "Succeeded" || st["endTime"] == nil {
		t.Fatalf("10 min: %v", st)
	}
	_, body = c.do("GET", vpath+gv+"&$expand=ReplicationStatus", nil)
	if dig(body, "properties", "replicationStatus", "aggregatedState") != "Completed" || dig(body, "properties", "provisioningState") != "Succeeded" {
		t.Fatalf("done: %v", body)
	}
}

// TestSettleAndAdmin: an operation nobody polls finishes on Settle (as Azure
// finishes accepted work), and the admin API steers the model over HTTP.
func TestSettleAndAdmin(t *testing.T) {
	var deleted []string
	var mu sync.Mutex
	c, m := newRaw(t, azmodel.Options{OnVMDeleted: func(vm azmodel.VMInfo) { mu.Lock(); deleted = append(deleted, vm.Name); mu.Unlock() }})
	const cv, nv, rv = "?api-version=2025-04-01", "?api-version=2025-01-01", "?api-version=2021-04-01"
	c.do("PUT", rgPath+rv, map[string]any{"location": "eastus", "tags": map[string]any{"imagebake": "build"}})
	c.do("PUT", netPath("virtualNetworks/vnet")+nv, map[string]any{"location": "eastus", "properties": map[string]any{
		"subnets": []any{map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.1.0.0/24"}}},
	}})
	c.do("PUT", computePath("virtualMachines/vm")+cv, vmBody("nic"))
	m.Settle()
	resp, _ := c.do("DELETE", rgPath+rv, nil)
	if resp.StatusCode != 202 {
		t.Fatalf("rg delete %d", resp.StatusCode)
	}
	// Nobody polls; the group is still there until Azure (Settle) finishes.
	if n := len(m.Resources()); n == 0 {
		t.Fatal("deleted before the operation finished")
	}
	resp, _ = c.do("POST", "/_model/settle", nil)
	if resp.StatusCode != 204 || len(m.Resources()) != 0 {
		t.Fatalf("after settle: %d, %v", resp.StatusCode, m.Resources())
	}
	mu.Lock()
	if strings.Join(deleted, ",") != "vm" {
		t.Fatalf("OnVMDeleted %v", deleted)
	}
	mu.Unlock()

	// Rules over the admin API.
	resp, body := c.do("POST", "/_model/rules", map[string]any{"method": "GET", "path": "/resourcegroups/x$", "status": 503, "times": 2, "delay": "1ms"})
	if resp.StatusCode != 200 || body["id"] == nil {
		t.Fatalf("add rule %d %v", resp.StatusCode, body)
	}
	for _, want := range []int{503, 503, 404} {
		if resp, _ := c.do("GET", "/subscriptions/"+sub+"/resourcegroups/x"+rv, nil); resp.StatusCode != want {
			t.Fatalf("want %d got %d", want, resp.StatusCode)
		}
	}
	rules := m.Rules()
	if len(rules) != 1 || rules[0].Matched != 3 || rules[0].Fired != 2 || rules[0].Rule.Delay != time.Millisecond {
		t.Fatalf("rules %+v", rules)
	}
	resp, _ = c.do("PUT", "/_model/latency", map[string]any{"durations": map[string]any{"vm.create": "90s"}, "scale": 0.001})
	if resp.StatusCode != 204 {
		t.Fatalf("latency %d", resp.StatusCode)
	}
	resp, _ = c.do("POST", "/_model/seed/gallery", map[string]any{"resourceGroup": "img", "gallery": "g", "image": "i", "versions": []any{map[string]any{"name": "1.2.3"}}})
	if resp.StatusCode != 204 || len(m.GalleryVersions(azmodel.GalleryImageID("", "img", "g", "i"))) != 1 {
		t.Fatalf("seed %d", resp.StatusCode)
	}
	resp, _ = c.do("POST", "/_model/rules", map[string]any{"path": "("})
	if resp.StatusCode != 400 {
		t.Fatalf("bad rule accepted: %d", resp.StatusCode)
	}
	if n := m.CountRequests(azmodel.ClassRead); n != 3 {
		t.Fatalf("reads logged: %d (admin requests must not be logged)", n)
	}
}
