package azmodel_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/imagebake/imagebake/internal/azmodel"
)

const gv, cv, nv, rv = "?api-version=2025-03-03", "?api-version=2025-04-01", "?api-version=2025-01-01", "?api-version=2021-04-01"

// TestHandlerPanicAnswers500 : a panicking handler answers 500 and releases
// the model's lock, so the next request is served instead of hanging.
func TestHandlerPanicAnswers500(t *testing.T) {
	c, m := newRaw(t, azmodel.Options{})
	if err := m.SeedGallery(azmodel.GallerySeed{SubscriptionID: sub, ResourceGroup: "lro", Gallery: "g", Image: "i"}); err != nil {
		t.Fatal(err)
	}
	m.MustAddRule(azmodel.Rule{Method: "GET", Op: "Galleries_Get", Panic: true})
	c.hc.Timeout = 5 * time.Second
	resp, body := c.do("GET", computePath("galleries/g")+gv, nil)
	if resp.StatusCode != 500 || dig(body, "error", "code") != "InternalServerError" {
		t.Fatalf("panicking handler: %d %v", resp.StatusCode, body)
	}
	resp, _ = c.do("GET", computePath("galleries/g")+gv, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("after the panic: %d", resp.StatusCode)
	}
	// The request that used to panic with the lock held: a new version whose
	// storageProfile has no source.
	resp, body = c.do("PUT", computePath("galleries/g/images/i/versions/1.0.0")+gv, map[string]any{"location": "eastus", "properties": map[string]any{"storageProfile": map[string]any{}}})
	if resp.StatusCode != 400 || dig(body, "error", "code") != "InvalidParameter" {
		t.Fatalf("version without source: %d %v", resp.StatusCode, body)
	}
	if resp, _ := c.do("GET", computePath("galleries/g")+gv, nil); resp.StatusCode != 200 {
		t.Fatalf("model stuck: %d", resp.StatusCode)
	}
}

// TestVersionPutOnExistingVersion: galleries know no If-None-Match; a PUT on
// an existing version is an update (200, Updating) that keeps the source when
// it omits it, and a different source is refused 409.
func TestVersionPutOnExistingVersion(t *testing.T) {
	c, m := newRaw(t, azmodel.Options{InProgressPolls: -1})
	if err := m.SeedGallery(azmodel.GallerySeed{SubscriptionID: sub, ResourceGroup: "lro", Gallery: "g", Image: "i", Versions: []azmodel.VersionSeed{{Name: "1.0.0"}}}); err != nil {
		t.Fatal(err)
	}
	src := map[string]any{"id": computePath("galleries/g/images/i/versions/1.0.0")}
	vpath := computePath("galleries/g/images/i/versions/1.0.1") + gv
	put := func(props map[string]any, hdr ...string) (int, map[string]any) {
		resp, body := c.do("PUT", vpath, map[string]any{"location": "eastus", "tags": map[string]any{"build": "b1"}, "properties": props}, hdr...)
		if a := resp.Header.Get("Azure-AsyncOperation"); a != "" {
			c.do("GET", a, nil)
		}
		return resp.StatusCode, body
	}
	st, body := put(map[string]any{"storageProfile": map[string]any{"source": src}, "publishingProfile": map[string]any{"targetRegions": []any{map[string]any{"name": "eastus2"}, map[string]any{"name": "East US"}}}})
	if st != 201 || dig(body, "properties", "provisioningState") != "Creating" {
		t.Fatalf("create: %d %v", st, body)
	}
	trs := dig(body, "properties", "publishingProfile", "targetRegions").([]any)
	if dig(trs[0], "name") != "East US 2" || dig(trs[1], "name") != "East US" {
		t.Fatalf("targetRegions %v, want display names", trs)
	}
	if dig(body, "properties", "safetyProfile", "allowDeletionOfReplicatedLocations") != false {
		t.Fatalf("safetyProfile %v", dig(body, "properties", "safetyProfile"))
	}
	for _, tc := range []struct {
		name   string
		props  map[string]any
		hdr    []string
		status int
		code   string
	}{
		{"same source with If-None-Match: * (ignored)", map[string]any{"storageProfile": map[string]any{"source": src}}, []string{"If-None-Match", "*"}, 200, ""},
		{"no source keeps the source", map[string]any{"storageProfile": map[string]any{}}, nil, 200, ""},
		{"no storageProfile at all", map[string]any{"publishingProfile": map[string]any{"excludeFromLatest": true}}, nil, 200, ""},
		{"different source", map[string]any{"storageProfile": map[string]any{"source": map[string]any{"id": computePath("images/other")}}}, nil, 409, "PropertyChangeNotAllowed"},
	} {
		st, body := put(tc.props, tc.hdr...)
		if st != tc.status || (tc.code != "" && dig(body, "error", "code") != tc.code) {
			t.Errorf("%s: %d %v", tc.name, st, body)
			continue
		}
		if st == 200 && dig(body, "properties", "provisioningState") != "Updating" {
			t.Errorf("%s: provisioningState %v, want Updating", tc.name, dig(body, "properties", "provisioningState"))
		}
		_, got := c.do("GET", vpath, nil)
		if id, _ := dig(got, "properties", "storageProfile", "source", "id").(string); !strings.EqualFold(id, src["id"].(string)) {
			t.Errorf("%s: source now %v", tc.name, dig(got, "properties", "storageProfile", "source"))
		}
	}
	if vs := m.GalleryVersions(azmodel.GalleryImageID(sub, "lro", "g", "i")); len(vs) != 2 || !vs[1].ExcludeFromLatest || vs[1].Tags["build"] != "b1" {
		t.Fatalf("versions %+v", vs)
	}
}

// TestGeneralizeNeedsAStoppedVM: generalize is refused on a running VM and
// accepted on a powered-off one (recorded) as on a deallocated one.
func TestGeneralizeNeedsAStoppedVM(t *testing.T) {
	c, _ := newRaw(t, azmodel.Options{InProgressPolls: -1})
	c.do("PUT", rgPath+rv, map[string]any{"location": "eastus"})
	resp, _ := c.do("PUT", netPath("virtualNetworks/vnet")+nv, map[string]any{"location": "eastus", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []any{"10.0.0.0/16"}},
		"subnets":      []any{map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.0.0.0/24"}}},
	}})
	c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
	resp, _ = c.do("PUT", computePath("virtualMachines/vm")+cv, vmBody("nic"))
	c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
	resp, body := c.do("POST", computePath("virtualMachines/vm/generalize")+cv, nil)
	if resp.StatusCode != 409 || dig(body, "error", "code") != "OperationNotAllowed" {
		t.Fatalf("generalize running: %d %v", resp.StatusCode, body)
	}
	resp, _ = c.do("POST", computePath("virtualMachines/vm/powerOff")+cv, nil)
	if resp.Header.Get("Retry-After") != "" {
		t.Fatalf("powerOff Retry-After %q (recorded none)", resp.Header.Get("Retry-After"))
	}
	c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
	if resp, body := c.do("POST", computePath("virtualMachines/vm/generalize")+cv, nil); resp.StatusCode != 200 {
		t.Fatalf("generalize stopped: %d %v", resp.StatusCode, body)
	}
	if resp, _ := c.do("POST", computePath("virtualMachines/vm/start")+cv, nil); resp.StatusCode != 409 {
		t.Fatalf("start after generalize: %d", resp.StatusCode)
	}
}

// TestComputeThrottleShape: Compute's 429 names the policy in
// details[{code: TooManyRequests}] and may come without Retry-After.
func TestComputeThrottleShape(t *testing.T) {
	c, m := newRaw(t, azmodel.Options{})
	c.do("PUT", rgPath+rv, map[string]any{"location": "eastus"})
	for _, ra := range []int{0, 7} {
		m.ClearRules()
		m.MustAddRule(azmodel.Rule{Method: "GET", Path: "/virtualMachines/", Status: 429, RetryAfter: ra})
		resp, body := c.do("GET", computePath("virtualMachines/vm")+cv, nil)
		details, _ := dig(body, "error", "details").([]any)
		if resp.StatusCode != 429 || dig(body, "error", "code") != "OperationNotAllowed" || len(details) != 1 || dig(details[0], "code") != "TooManyRequests" || dig(details[0], "target") != "HighCostGet3Min" {
			t.Fatalf("429: %d %v", resp.StatusCode, body)
		}
		want := ""
		if ra > 0 {
			want = "7"
		}
		if got := resp.Header.Get("Retry-After"); got != want {
			t.Fatalf("Retry-After %q, want %q", got, want)
		}
	}
}

// TestMeterAndClockScale: the model advertises the recorded cadence, the
// meter counts it unscaled, and the scaled transports make clients wait
// 1:1000 (throttling answers keep their real Retry-After).
func TestMeterAndClockScale(t *testing.T) {
	c, m := newRaw(t, azmodel.Options{InProgressPolls: 2})
	c.do("PUT", rgPath+rv, map[string]any{"location": "eastus"})
	resp, _ := c.do("PUT", netPath("virtualNetworks/vnet")+nv, map[string]any{"location": "eastus", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []any{"10.0.0.0/16"}},
		"subnets":      []any{map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.0.0.0/24"}}},
	}})
	if resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("vnet PUT Retry-After %q", resp.Header.Get("Retry-After"))
	}
	for range 3 {
		c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
	}
	m.ResetRequests()
	resp, _ = c.do("PUT", computePath("virtualMachines/vm")+cv, vmBody("nic"))
	async := resp.Header.Get("Azure-AsyncOperation")
	var ras []string
	for range 3 {
		r, _ := c.do("GET", async, nil)
		ras = append(ras, r.Header.Get("Retry-After"))
	}
	if resp.Header.Get("Retry-After") != "10" || strings.Join(ras, ",") != "50,," {
		t.Fatalf("VM create cadence %q then %q, recorded 10 then 50,,", resp.Header.Get("Retry-After"), ras)
	}
	mt := m.Meter()
	if mt.Requests[azmodel.ClassWrite] != 1 || mt.Requests[azmodel.ClassPoll] != 3 || mt.AdvertisedWait != 60*time.Second ||
		mt.PendingWithoutRetryAfter != 1 || mt.ClientWait(30*time.Second) != 90*time.Second || mt.WaitByClass[azmodel.ClassPoll] != 50*time.Second {
		t.Fatalf("meter %+v", mt)
	}

	// A server with the test clock: its clients see retry-after-ms instead.
	m2 := azmodel.New(azmodel.Options{})
	srv := azmodel.NewServer(m2, azmodel.ServerOptions{RetryAfterScale: 0.001, ScaleOnWire: true})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	m2.MustAddRule(azmodel.Rule{Method: "GET", Path: "/resourcegroups/x$", Status: 429, RetryAfter: 1200})
	for _, tc := range []struct {
		name                 string
		hc                   *http.Client
		method, path         string
		ra, raMS, raOriginal string
	}{
		{"scaled client, LRO", srv.HTTPClient(), "DELETE", "/resourcegroups/a", "", "15", "15"},
		{"wire only, LRO", srv.HTTPClientScaled(1), "DELETE", "/resourcegroups/b", "", "15", "15"},
		{"throttled keeps real value", srv.HTTPClient(), "GET", "/resourcegroups/x", "1200", "", ""},
	} {
		m2.SeedGallery(azmodel.GallerySeed{SubscriptionID: sub, ResourceGroup: strings.TrimPrefix(tc.path, "/resourcegroups/"), Gallery: "g", Image: "i"})
		req, _ := http.NewRequest(tc.method, srv.URL()+"/subscriptions/"+sub+tc.path+rv, nil)
		req.Header.Set("Authorization", "Bearer "+srv.IssueToken())
		resp, err := tc.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Retry-After") != tc.ra || resp.Header.Get("retry-after-ms") != tc.raMS || resp.Header.Get("x-azmodel-retry-after") != tc.raOriginal {
			t.Errorf("%s: %d Retry-After %q retry-after-ms %q original %q", tc.name, resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("retry-after-ms"), resp.Header.Get("x-azmodel-retry-after"))
		}
	}
	if mt := m2.Meter(); mt.AdvertisedWait != 1230*time.Second || mt.Throttled != 1 {
		t.Fatalf("meter counts unscaled values: %+v", mt)
	}
}

// TestSDKWaitsScaledCadence: a real SDK poller at its default 30 s
// frequency follows the recorded resource-group delete cadence (Retry-After
// 15 on the 202 and on each InProgress poll) through the scaled client, so it
// finishes in milliseconds, while the meter counts the real 45 s.
func TestSDKWaitsScaledCadence(t *testing.T) {
	e := newEnv(t, azmodel.Options{InProgressPolls: 2})
	ctx := context.Background()
	rgs := e.res.NewResourceGroupsClient()
	if _, err := rgs.CreateOrUpdate(ctx, "doomed", armresources.ResourceGroup{Location: to(loc)}, nil); err != nil {
		t.Fatal(err)
	}
	e.m.ResetRequests()
	start := time.Now()
	p, err := rgs.BeginDelete(ctx, "doomed", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("poller took %s: the scaled Retry-After was not used", d)
	}
	mt := e.m.Meter()
	if mt.Requests[azmodel.ClassDelete] != 1 || mt.Requests[azmodel.ClassPoll] != 3 || mt.AdvertisedWait != 45*time.Second || mt.PendingWithoutRetryAfter != 0 {
		t.Fatalf("meter %+v", mt)
	}
}
