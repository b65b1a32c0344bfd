package platform

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

const av = "?api-version=2025-04-01"

func TestARMTokenScoping(t *testing.T) {
	var now time.Time
	f := newFixture(t, Config{Now: func() time.Time {
		if now.IsZero() {
			return time.Now()
		}
		return now
	}})
	other := newPlatform(t, Config{SubscriptionID: f.p.SubscriptionID(), TenantID: f.p.TenantID()})
	oid, err := other.AddIdentity(Identity{Name: "id-a", ResourceGroup: "rg", ClientID: f.idA.ClientID, PrincipalID: f.idA.PrincipalID})
	if err != nil {
		t.Fatal(err)
	}
	ovm, err := other.CreateVM(VMSpec{Name: "vm-a", ResourceGroup: "rg", Identities: []string{oid.ID}})
	if err != nil {
		t.Fatal(err)
	}
	c := httpsClient(t, f.p)
	arm := "https://management.azure.com"
	tokA := token(t, f.a, armRes)
	tokAVault := token(t, f.a, vaultRes)
	tokForeign := token(t, ovm, armRes) // same IDs, minted by another platform
	expiring := token(t, f.b, armRes)

	for _, tc := range []struct {
		name, method, path string
		tok                string
		status             int
		code               string
	}{
		{"no token", "POST", f.a.ResourceID() + "/deallocate" + av, "", 401, "AuthenticationFailed"},
		{"not a token", "POST", f.a.ResourceID() + "/deallocate" + av, "garbage", 401, "InvalidAuthenticationToken"},
		{"another platform's token", "POST", f.a.ResourceID() + "/deallocate" + av, tokForeign, 401, "InvalidAuthenticationToken"},
		{"vault token at ARM", "POST", f.a.ResourceID() + "/deallocate" + av, tokAVault, 401, "InvalidAuthenticationTokenAudience"},
		{"no api-version", "GET", f.a.ResourceID(), tokA, 400, "MissingApiVersionParameter"},
		{"A reads B", "GET", f.b.ResourceID() + av, tokA, 403, "AuthorizationFailed"},
		{"A deallocates B", "POST", f.b.ResourceID() + "/deallocate" + av, tokA, 403, "AuthorizationFailed"},
		{"A deletes B", "DELETE", f.b.ResourceID() + av + "&forceDeletion=true", tokA, 403, "AuthorizationFailed"},
		{"A tags B", "PATCH", f.b.ResourceID() + av, tokA, 403, "AuthorizationFailed"},
		{"A probes a VM that does not exist", "GET", strings.Replace(f.a.ResourceID(), "vm-a", "vm-x", 1) + av, tokA, 403, "AuthorizationFailed"},
		{"A reads A (case-insensitive path)", "GET", strings.ToLower(f.a.ResourceID()) + av, tokA, 200, ""},
		{"unknown route", "GET", "/subscriptions/" + f.p.SubscriptionID() + "/resourceGroups/rg" + av, tokA, 404, "InvalidResourceType"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.tok != "" {
				hdr = bearerHdr(tc.tok)
			}
			body := ""
			if tc.method == "PATCH" {
				body = `{"tags":{"x":"y"}}`
			}
			r := do(t, c, tc.method, arm+tc.path, hdr, body)
			if r.status != tc.status {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.code != "" {
				e, _ := r.json(t)["error"].(map[string]any)
				if e["code"] != tc.code {
					t.Fatalf("error %s, want code %s", r.body, tc.code)
				}
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	now = time.Now().Add(25 * time.Hour)
	r := do(t, c, "GET", arm+f.b.ResourceID()+av, bearerHdr(expiring), "")
	if r.status != 401 || !strings.Contains(string(r.body), "ExpiredAuthenticationToken") {
		t.Errorf("expired token: %d %s", r.status, r.body)
	}
	if st := f.b.Status().State; st != StateRunning {
		t.Errorf("B is %s after A's refused calls", st)
	}
	if _, ok := f.b.Status().Tags["x"]; ok {
		t.Error("A's refused PATCH changed B's tags")
	}
}

func TestDeallocateAndDeleteDriveTheMachine(t *testing.T) {
	f := newFixture(t, Config{})
	c := httpsClient(t, f.p)
	arm := "https://management.azure.com"
	tokA := token(t, f.a, armRes)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	r := do(t, c, "POST", arm+f.a.ResourceID()+"/deallocate"+av, bearerHdr(tokA), "")
	if r.status != 202 || r.header.Get("Azure-AsyncOperation") == "" || r.header.Get("Location") == "" {
		t.Fatalf("deallocate: %d %v %s", r.status, r.header, r.body)
	}
	st, err := f.a.Wait(ctx, StateDeallocated)
	if err != nil {
		t.Fatal(err)
	}
	if off, del := f.ma.counts(); off != 1 || del != 0 {
		t.Fatalf("machine calls poweroff=%d destroy=%d", off, del)
	}
	if st.State != StateDeallocated {
		t.Fatal(st.State)
	}
	op := do(t, c, "GET", r.header.Get("Azure-AsyncOperation"), bearerHdr(tokA), "").json(t)
	if op["status"] != "Succeeded" || op["endTime"] == nil {
		t.Errorf("operation %v", op)
	}
	loc := do(t, c, "GET", r.header.Get("Location"), bearerHdr(tokA), "")
	if loc.status != 200 {
		t.Errorf("location poll after completion: %d", loc.status)
	}
	view := do(t, c, "GET", arm+f.a.ResourceID()+av+"&$expand=instanceView", bearerHdr(tokA), "").json(t)
	statuses := view["properties"].(map[string]any)["instanceView"].(map[string]any)["statuses"].([]any)
	if statuses[1].(map[string]any)["code"] != "PowerState/deallocated" {
		t.Errorf("instance view %v", statuses)
	}
	if _, has := view["properties"].(map[string]any)["userData"]; has {
		t.Error("userData without $expand=userData")
	}
	ud := do(t, c, "GET", arm+f.a.ResourceID()+av+"&$expand=userData", bearerHdr(tokA), "").json(t)
	if ud["properties"].(map[string]any)["userData"] != "aml0LWNvbmZpZy1h" {
		t.Errorf("userData %v", ud["properties"])
	}
	// Deallocating again is accepted and changes nothing.
	if r := do(t, c, "POST", arm+f.a.ResourceID()+"/deallocate"+av, bearerHdr(tokA), ""); r.status != 202 {
		t.Errorf("second deallocate %d", r.status)
	}
	if off, _ := f.ma.counts(); off != 1 {
		t.Errorf("second deallocate powered off again (%d)", off)
	}

	r = do(t, c, "DELETE", arm+f.a.ResourceID()+av+"&forceDeletion=true", bearerHdr(tokA), "")
	if r.status != 202 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if _, err := f.a.Wait(ctx, StateDeleted); err != nil {
		t.Fatal(err)
	}
	if off, del := f.ma.counts(); off != 1 || del != 1 {
		t.Fatalf("machine calls poweroff=%d destroy=%d", off, del)
	}
	if r := do(t, c, "GET", arm+f.a.ResourceID()+av, bearerHdr(tokA), ""); r.status != 404 || !strings.Contains(string(r.body), "ResourceNotFound") {
		t.Errorf("GET after delete: %d %s", r.status, r.body)
	}
	if r := do(t, c, "DELETE", arm+f.a.ResourceID()+av, bearerHdr(tokA), ""); r.status != 204 {
		t.Errorf("DELETE after delete: %d", r.status)
	}
	if r := do(t, c, "POST", arm+f.a.ResourceID()+"/deallocate"+av, bearerHdr(tokA), ""); r.status != 404 {
		t.Errorf("deallocate after delete: %d", r.status)
	}
	// A deleted VM has no metadata service.
	if conn, err := net.Dial("tcp", f.a.IMDSAddr()); err == nil {
		conn.Close()
		t.Error("IMDS of a deleted VM still answers")
	}
	if off, del := f.mb.counts(); off+del != 0 || f.b.Status().State != StateRunning {
		t.Error("B was touched")
	}
}

func TestOperationInProgressAndMachineFailure(t *testing.T) {
	f := newFixture(t, Config{})
	c := httpsClient(t, f.p)
	arm := "https://management.azure.com"
	f.mb.release = make(chan struct{})
	f.mb.err = errors.New("qemu: no such process")
	tokB := token(t, f.b, armRes)
	r := do(t, c, "POST", arm+f.b.ResourceID()+"/deallocate"+av, bearerHdr(tokB), "")
	if r.status != 202 {
		t.Fatal(r.status)
	}
	if st := f.b.Status().State; st != StateDeallocating {
		t.Errorf("state while powering off: %s", st)
	}
	if op := do(t, c, "GET", r.header.Get("Azure-AsyncOperation"), bearerHdr(tokB), "").json(t); op["status"] != "InProgress" {
		t.Errorf("operation %v", op)
	}
	if loc := do(t, c, "GET", r.header.Get("Location"), bearerHdr(tokB), ""); loc.status != 202 {
		t.Errorf("location poll in progress: %d", loc.status)
	}
	if r := do(t, c, "DELETE", arm+f.b.ResourceID()+av, bearerHdr(tokB), ""); r.status != 409 {
		t.Errorf("delete during deallocate: %d", r.status)
	}
	close(f.mb.release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := f.b.Wait(ctx, StateDeallocated)
	if err == nil || st.State != StateFailed || !strings.Contains(err.Error(), "no such process") {
		t.Fatalf("state %s err %v", st.State, err)
	}
	if op := do(t, c, "GET", r.header.Get("Azure-AsyncOperation"), bearerHdr(tokB), "").json(t); op["status"] != "Failed" {
		t.Errorf("operation %v", op)
	}
}

func TestTagsRecordOutcome(t *testing.T) {
	f := newFixture(t, Config{})
	c := httpsClient(t, f.p)
	arm := "https://management.azure.com"
	tokA := token(t, f.a, armRes)
	// The tags API merges: the outcome joins the cycle tag.
	r := do(t, c, "PATCH", arm+f.a.ResourceID()+"/providers/Microsoft.Resources/tags/default?api-version=2021-04-01",
		bearerHdr(tokA), `{"operation":"Merge","properties":{"tags":{"outcome":"job-done"}}}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	st := f.a.Status()
	if st.Outcome != "job-done" || st.Tags["cycle"] != "delete" {
		t.Errorf("after merge: %+v", st)
	}
	tl := imds(t, f.a, "/metadata/instance/compute/tags?api-version=2021-02-01&format=text")
	if string(tl.body) != "cycle:delete;outcome:job-done;team:platform" {
		t.Errorf("IMDS tags %q", tl.body)
	}
	// PATCH on the VM replaces the tag set, as Compute's update does.
	r = do(t, c, "PATCH", arm+f.a.ResourceID()+av, bearerHdr(tokA), `{"tags":{"outcome":"refused"}}`)
	if r.status != 200 || r.json(t)["tags"].(map[string]any)["outcome"] != "refused" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if st := f.a.Status(); len(st.Tags) != 1 || st.Outcome != "refused" {
		t.Errorf("after PATCH: %+v", st.Tags)
	}
	for _, body := range []string{`{"tags":{"a/b":"x"}}`, `not json`} {
		if r := do(t, c, "PATCH", arm+f.a.ResourceID()+av, bearerHdr(tokA), body); r.status != 400 {
			t.Errorf("PATCH %s: %d", body, r.status)
		}
	}
	r = do(t, c, "PATCH", arm+f.a.ResourceID()+"/providers/Microsoft.Resources/tags/default?api-version=2021-04-01",
		bearerHdr(tokA), `{"operation":"Delete","properties":{"tags":{"outcome":""}}}`)
	if r.status != 200 || len(f.a.Status().Tags) != 0 {
		t.Errorf("tags delete: %d %v", r.status, f.a.Status().Tags)
	}
}

func TestGrantedScopeAndSharedIdentity(t *testing.T) {
	p := newPlatform(t, Config{})
	rgID := "/subscriptions/" + p.SubscriptionID() + "/resourceGroups/runners"
	shared, err := p.AddIdentity(Identity{Name: "runner-id", ResourceGroup: "runners"})
	if err != nil {
		t.Fatal(err)
	}
	ops, err := p.AddIdentity(Identity{Name: "ops", ResourceGroup: "runners", Scopes: []string{rgID}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := p.CreateVM(VMSpec{Name: "r1", ResourceGroup: "runners", Identities: []string{shared.ID}})
	b, _ := p.CreateVM(VMSpec{Name: "r2", ResourceGroup: "runners", Identities: []string{shared.ID}})
	o, _ := p.CreateVM(VMSpec{Name: "ops-vm", ResourceGroup: "other", Identities: []string{ops.ID}})
	other, _ := p.CreateVM(VMSpec{Name: "x", ResourceGroup: "other"})
	c := httpsClient(t, p)
	// The runbook's layout: one identity on every runner; as on Azure, each may act on the others.
	if r := do(t, c, "GET", "https://management.azure.com"+b.ResourceID()+av, bearerHdr(token(t, a, armRes)), ""); r.status != 200 {
		t.Errorf("shared identity: %d", r.status)
	}
	tok := token(t, o, armRes)
	if r := do(t, c, "GET", "https://management.azure.com"+a.ResourceID()+av, bearerHdr(tok), ""); r.status != 200 {
		t.Errorf("resource-group scope: %d", r.status)
	}
	if r := do(t, c, "GET", "https://management.azure.com"+other.ResourceID()+av, bearerHdr(tok), ""); r.status != 403 {
		t.Errorf("outside the scope: %d", r.status)
	}
}
