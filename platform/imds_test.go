package platform

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestIMDSRequestContract(t *testing.T) {
	f := newFixture(t, Config{})
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	base := "http://" + f.a.IMDSAddr()
	inst := base + "/metadata/instance?api-version=2021-02-01"
	tok := base + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + armRes
	for _, tc := range []struct {
		name, method, url string
		hdr               map[string]string
		status            int
		body              string // a substring of the body
	}{
		{"no Metadata header", "GET", inst, nil, 400, `{"error":"Bad request. Required metadata header not specified"}`},
		{"Metadata not lower-case true", "GET", inst, map[string]string{"Metadata": "True"}, 400, "Required metadata header not specified"},
		{"X-Forwarded-For", "GET", inst, map[string]string{"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}, 400, "X-Forwarded-For"},
		{"token without Metadata", "GET", tok, nil, 400, `"error":"invalid_request"`},
		{"token with X-Forwarded-For", "GET", tok, map[string]string{"Metadata": "true", "X-Forwarded-For": "1.2.3.4"}, 400, "invalid_request"},
		{"no api-version", "GET", base + "/metadata/instance", map[string]string{"Metadata": "true"}, 400, `"newest-versions":["2025-04-07","2024-07-17","2024-03-15"]`},
		{"unknown api-version", "GET", base + "/metadata/instance?api-version=2099-01-01", map[string]string{"Metadata": "true"}, 400, "api-version is invalid"},
		{"duplicate query", "GET", inst + "&api-version=2021-02-01", map[string]string{"Metadata": "true"}, 400, "repeated"},
		{"POST", "POST", inst, map[string]string{"Metadata": "true"}, 405, ""},
		{"versions needs no api-version", "GET", base + "/metadata/versions", map[string]string{"Metadata": "true"}, 200, `"2021-02-01"`},
		{"unknown category", "GET", base + "/metadata/attested/document?api-version=2021-02-01", map[string]string{"Metadata": "true"}, 404, "Not found"},
		{"unknown key", "GET", base + "/metadata/instance/compute/nope?api-version=2021-02-01", map[string]string{"Metadata": "true"}, 404, "Not found"},
		{"leaf without format=text", "GET", base + "/metadata/instance/compute/vmId?api-version=2021-02-01", map[string]string{"Metadata": "true"}, 400, "format=text"},
		{"bad format", "GET", inst + "&format=xml", map[string]string{"Metadata": "true"}, 400, "format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, c, tc.method, tc.url, tc.hdr, "")
			if r.status != tc.status || !strings.Contains(string(r.body), tc.body) {
				t.Fatalf("got %d %s, want %d containing %q", r.status, r.body, tc.status, tc.body)
			}
			if ct := r.header.Get("Content-Type"); tc.status != 405 && !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type %q", ct)
			}
		})
	}
}

func TestIMDSInstanceDocument(t *testing.T) {
	f := newFixture(t, Config{Location: "westeurope"})
	p := f.p
	r := imds(t, f.a, "/metadata/instance?api-version=2021-02-01")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	doc := r.json(t)
	compute := doc["compute"].(map[string]any)
	want := map[string]string{
		"name": "vm-a", "resourceGroupName": "rg", "subscriptionId": p.SubscriptionID(), "location": "westeurope",
		"resourceId":    "/subscriptions/" + p.SubscriptionID() + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-a",
		"azEnvironment": "AzurePublicCloud", "osType": "Linux", "tags": "cycle:delete;team:platform",
		"userData": base64.StdEncoding.EncodeToString([]byte("jit-config-a")), "customData": "",
	}
	for k, v := range want {
		if compute[k] != v {
			t.Errorf("compute.%s = %v, want %q", k, compute[k], v)
		}
	}
	if compute["vmId"] == "" || compute["vmId"] == nil {
		t.Error("no vmId")
	}
	for k, v := range compute {
		switch v.(type) {
		case string, map[string]any, []any:
		default:
			t.Errorf("compute.%s is %T: IMDS primitives are strings", k, v)
		}
	}
	ip := imds(t, f.a, "/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress?api-version=2021-02-01&format=text")
	if ip.status != 200 || string(ip.body) != GuestDHCPAddr {
		t.Errorf("private IP: %d %q", ip.status, ip.body)
	}
	// The cycle script's call: compute with tagsList.
	cr := imds(t, f.a, "/metadata/instance/compute?api-version=2021-02-01").json(t)
	tl := cr["tagsList"].([]any)
	if len(tl) != 2 || tl[0].(map[string]any)["name"] != "cycle" || tl[0].(map[string]any)["value"] != "delete" {
		t.Errorf("tagsList = %v", tl)
	}
	// Route filtering to an array returns the array itself.
	arr := imds(t, f.a, "/metadata/instance/compute/tagsList?api-version=2021-02-01")
	if arr.status != 200 || !strings.HasPrefix(string(arr.body), `[{"name":"cycle","value":"delete"}`) {
		t.Errorf("tagsList route: %d %s", arr.status, arr.body)
	}
	ud := imds(t, f.a, "/metadata/instance/compute/userData?api-version=2021-01-01&format=text")
	if dec, _ := base64.StdEncoding.DecodeString(string(ud.body)); ud.status != 200 || string(dec) != "jit-config-a" {
		t.Errorf("userData: %d %q", ud.status, ud.body)
	}
	tags := imds(t, f.a, "/metadata/instance/compute/tags?api-version=2021-02-01&format=text")
	if string(tags.body) != "cycle:delete;team:platform" {
		t.Errorf("tags text = %q", tags.body)
	}
	listing := imds(t, f.a, "/metadata/instance?api-version=2021-02-01&format=text")
	if string(listing.body) != "compute/\nnetwork/" {
		t.Errorf("text listing = %q", listing.body)
	}
	// Fields appear with the api-version that introduced them.
	for _, tc := range []struct {
		version, key string
		present      bool
	}{
		{"2020-12-01", "userData", false}, {"2021-01-01", "userData", true},
		{"2019-06-01", "tagsList", false}, {"2019-06-04", "tagsList", true},
		{"2019-02-01", "resourceId", false}, {"2019-03-11", "resourceId", true},
		{"2018-04-02", "azEnvironment", false}, {"2018-10-01", "azEnvironment", true},
	} {
		r := imds(t, f.a, "/metadata/instance/compute/"+tc.key+"?format=text&api-version="+tc.version)
		if got := r.status == 200; got != tc.present {
			t.Errorf("%s at %s: status %d, want present=%v", tc.key, tc.version, r.status, tc.present)
		}
	}
}

func TestIMDSIdentityTokens(t *testing.T) {
	f := newFixture(t, Config{})
	p := f.p
	two, err := p.AddIdentity(Identity{Name: "id-extra", ResourceGroup: "rg"})
	if err != nil {
		t.Fatal(err)
	}
	multi, err := p.CreateVM(VMSpec{Name: "vm-multi", ResourceGroup: "rg", Identities: []string{f.idA.ID, two.ID}})
	if err != nil {
		t.Fatal(err)
	}
	q := "/metadata/identity/oauth2/token?api-version=2018-02-01"
	for _, tc := range []struct {
		name     string
		vm       *VM
		query    string
		status   int
		body     string
		clientID string
	}{
		{"no identity", f.noIdentity, q + "&resource=" + armRes, 400, `{"error":"invalid_request","error_description":"Identity not found"}`, ""},
		{"no resource", f.a, q, 400, "'resource' is missing", ""},
		{"unknown resource", f.a, q + "&resource=https%3A%2F%2Fexample.com", 400, `"error":"invalid_resource"`, ""},
		{"another VM's identity", f.a, q + "&resource=" + armRes + "&client_id=" + f.idB.ClientID, 400, "Identity not found", ""},
		{"ARM", f.a, q + "&resource=" + armRes, 200, `"resource":"https://management.azure.com/"`, f.idA.ClientID},
		{"vault", f.a, q + "&resource=" + vaultRes, 200, `"token_type":"Bearer"`, f.idA.ClientID},
		{"two identities, none chosen", multi, q + "&resource=" + armRes, 400, "Multiple user assigned identities", ""},
		{"two identities, by client_id", multi, q + "&resource=" + armRes + "&client_id=" + two.ClientID, 200, "access_token", two.ClientID},
		{"two identities, by mi_res_id", multi, q + "&resource=" + armRes + "&mi_res_id=" + two.ID, 200, "access_token", two.ClientID},
		{"two identities, by object_id", multi, q + "&resource=" + armRes + "&object_id=" + f.idA.PrincipalID, 200, "access_token", f.idA.ClientID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := imds(t, tc.vm, tc.query)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.body) {
				t.Fatalf("got %d %s, want %d with %q", r.status, r.body, tc.status, tc.body)
			}
			if tc.status != 200 {
				return
			}
			m := r.json(t)
			for _, k := range []string{"access_token", "expires_in", "expires_on", "not_before", "resource", "token_type", "client_id"} {
				if s, ok := m[k].(string); !ok || s == "" {
					t.Errorf("%s = %v, want a non-empty string", k, m[k])
				}
			}
			if m["client_id"] != tc.clientID {
				t.Errorf("client_id = %v, want %s", m["client_id"], tc.clientID)
			}
			if strings.Count(m["access_token"].(string), ".") != 2 {
				t.Errorf("access token is not JWT-shaped")
			}
		})
	}
	// The event log names the call but never the token.
	tok := token(t, f.a, armRes)
	for _, e := range p.Events() {
		if strings.Contains(e.Line, tok) || strings.Contains(e.String(), "ghp_") {
			t.Fatalf("event leaks a secret: %s", e)
		}
	}
}
