package azmodel_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/imagebake/imagebake/internal/azmodel"
)

// TestVMUserData: userData is accepted on PUT, never echoed in the PUT
// answer or a plain GET, and returned with $expand=userData.
func TestVMUserData(t *testing.T) {
	c, m := securityEnv(t)
	ud := base64.StdEncoding.EncodeToString([]byte(`{"jitconfig":"not-a-real-config"}`))
	body := vmBody("ud-nic")
	body["properties"].(map[string]any)["userData"] = ud
	resp, out := c.do("PUT", computePath("virtualMachines/ud")+cv, body)
	if resp.StatusCode != 201 || dig(out, "properties", "userData") != nil {
		t.Fatalf("PUT: %d userData in answer: %v", resp.StatusCode, dig(out, "properties", "userData"))
	}
	c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
	for _, tc := range []struct {
		query string
		want  any
	}{
		{"", nil},
		{"&$expand=instanceView", nil},
		{"&$expand=userData", ud},
	} {
		_, got := c.do("GET", computePath("virtualMachines/ud")+cv+tc.query, nil)
		if dig(got, "properties", "userData") != tc.want {
			t.Errorf("GET%s: userData %v, want %v", tc.query, dig(got, "properties", "userData"), tc.want)
		}
	}
	if vm, _ := m.VM(computePath("virtualMachines/ud")); string(vm.UserData) != `{"jitconfig":"not-a-real-config"}` {
		t.Errorf("guest sees userData %q", vm.UserData)
	}
	_, list := c.do("GET", "/subscriptions/"+sub+"/providers/Microsoft.Compute/virtualMachines"+cv, nil)
	if strings.Contains(toJSON(list), ud) {
		t.Error("userData listed")
	}
}

// TestEphemeralOSDisk: placement rules, Compute's defaults, no disk
// resource, and no deallocate.
func TestEphemeralOSDisk(t *testing.T) {
	c, m := securityEnv(t)
	for i, tc := range []struct {
		name, size, placement, caching string
		sizeGB                         int
		status                         int
		wantPlacement                  string
	}{
		{"default placement CacheDisk", "Standard_D2s_v3", "", "", 0, 201, "CacheDisk"},
		{"resource disk of a Ddsv5", "Standard_D2ds_v5", "", "", 0, 201, "ResourceDisk"},
		{"CacheDisk on a size without cache", "Standard_D2ds_v5", "CacheDisk", "", 0, 400, ""},
		{"no local disk", "Standard_D2s_v5", "", "", 0, 400, ""},
		{"OS disk larger than the resource disk", "Standard_D2s_v3", "ResourceDisk", "", 0, 400, ""},
		{"OS disk larger than the cache", "Standard_D2s_v3", "CacheDisk", "", 64, 400, ""},
		{"ReadWrite caching", "Standard_D2s_v3", "", "ReadWrite", 0, 400, ""},
	} {
		name := "eph" + string(rune('a'+i))
		body := vmBody(name + "-nic")
		props := body["properties"].(map[string]any)
		props["hardwareProfile"] = map[string]any{"vmSize": tc.size}
		osd := map[string]any{"createOption": "FromImage", "diffDiskSettings": map[string]any{"option": "Local"}}
		if tc.placement != "" {
			osd["diffDiskSettings"].(map[string]any)["placement"] = tc.placement
		}
		if tc.caching != "" {
			osd["caching"] = tc.caching
		}
		if tc.sizeGB > 0 {
			osd["diskSizeGB"] = tc.sizeGB
		}
		props["storageProfile"].(map[string]any)["osDisk"] = osd
		resp, out := c.do("PUT", computePath("virtualMachines/"+name)+cv, body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, out)
			continue
		}
		if tc.status != 201 {
			continue
		}
		c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
		got := dig(out, "properties", "storageProfile", "osDisk")
		if dig(got, "diffDiskSettings", "placement") != tc.wantPlacement || dig(got, "caching") != "ReadOnly" || dig(got, "deleteOption") != "Delete" {
			t.Errorf("%s: osDisk %v", tc.name, got)
		}
		for _, r := range m.Resources() {
			if r.Type == azmodel.TypeDisk && strings.Contains(r.ID, name) {
				t.Errorf("%s: an ephemeral OS disk became a disk resource %s", tc.name, r.ID)
			}
		}
		if resp, out := c.do("POST", computePath("virtualMachines/"+name+"/deallocate")+cv, nil); resp.StatusCode != 409 || dig(out, "error", "code") != "OperationNotAllowed" {
			t.Errorf("%s: deallocate %d %v", tc.name, resp.StatusCode, out)
		}
	}
}

// TestListRunnerVMsByTag: runner VMs are found by tag across pages through
// Resources_List, and ListAll with statusOnly=true answers power states.
func TestListRunnerVMsByTag(t *testing.T) {
	c, m := securityEnv(t)
	for i := range 5 {
		name := "runner" + string(rune('0'+i))
		body := vmBody(name + "-nic")
		if i != 2 {
			body["tags"] = map[string]any{"imagebake-runner": "github-runner-noble"}
		}
		resp, _ := c.do("PUT", computePath("virtualMachines/"+name)+cv, body)
		c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
	}
	m.SetPageSize(2)
	collect := func(first string) ([]string, int) {
		var names []string
		pages := 0
		for u := first; u != ""; pages++ {
			resp, body := c.do("GET", u, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("list %s: %d %v", u, resp.StatusCode, body)
			}
			for _, v := range body["value"].([]any) {
				names = append(names, dig(v, "name").(string))
			}
			u, _ = body["nextLink"].(string)
		}
		return names, pages
	}
	names, pages := collect("/subscriptions/" + sub + "/resources?api-version=2021-04-01&$filter=" + "tagName%20eq%20%27imagebake-runner%27%20and%20tagValue%20eq%20%27github-runner-noble%27")
	if strings.Join(names, ",") != "runner0,runner1,runner3,runner4" || pages != 2 {
		t.Fatalf("by tag: %v in %d pages", names, pages)
	}
	_, list := c.do("GET", "/subscriptions/"+sub+"/providers/Microsoft.Compute/virtualMachines"+cv+"&statusOnly=true", nil)
	if st := toJSON(list); !strings.Contains(st, "PowerState/running") {
		t.Fatalf("statusOnly list without power states: %s", st)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
