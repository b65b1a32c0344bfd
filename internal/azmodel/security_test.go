package azmodel_test

import (
	"testing"

	"github.com/imagebake/imagebake/internal/azmodel"
)

// securityEnv is a raw model with a network and three definitions: Standard
// Gen1 (seeded), TrustedLaunch and TrustedLaunchSupported (Gen2).
func securityEnv(t *testing.T) (*raw, *azmodel.Model) {
	c, m := newRaw(t, azmodel.Options{InProgressPolls: -1})
	c.do("PUT", rgPath+rv, map[string]any{"location": "eastus"})
	resp, _ := c.do("PUT", netPath("virtualNetworks/vnet")+nv, map[string]any{"location": "eastus", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []any{"10.0.0.0/16"}},
		"subnets":      []any{map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.0.0.0/24"}}},
	}})
	c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
	for _, s := range []azmodel.GallerySeed{
		{Image: "std"},
		{Image: "tl", HyperVGeneration: "V2", SecurityType: "TrustedLaunch"},
		{Image: "tls", HyperVGeneration: "V2", SecurityType: "TrustedLaunchSupported"},
	} {
		s.SubscriptionID, s.ResourceGroup, s.Gallery = sub, "lro", "g"
		if err := m.SeedGallery(s); err != nil {
			t.Fatal(err)
		}
	}
	return c, m
}

// createVM PUTs a VM and finishes its creation; it returns the PUT status and
// error code.
func createVM(c *raw, name, size, sku, security string) (int, string) {
	body := vmBody(name + "-nic")
	props := body["properties"].(map[string]any)
	props["hardwareProfile"] = map[string]any{"vmSize": size}
	props["storageProfile"].(map[string]any)["imageReference"] = map[string]any{"publisher": "Canonical", "offer": offerOf(sku), "sku": sku, "version": "latest"}
	if security != "" {
		props["securityProfile"] = map[string]any{"securityType": security}
	}
	resp, out := c.do("PUT", computePath("virtualMachines/"+name)+cv, body)
	if a := resp.Header.Get("Azure-AsyncOperation"); a != "" {
		c.do("GET", a, nil)
	}
	code, _ := dig(out, "error", "code").(string)
	return resp.StatusCode, code
}

func offerOf(sku string) string {
	if sku == "server" || sku == "server-gen1" {
		return "ubuntu-24_04-lts"
	}
	return "0001-com-ubuntu-server-focal"
}

// TestTrustedLaunchVMs: sizes and images that refuse Trusted Launch, and the
// security profile a Trusted Launch VM gets.
func TestTrustedLaunchVMs(t *testing.T) {
	c, m := securityEnv(t)
	for _, tc := range []struct {
		name, size, sku, security string
		status                    int
		code                      string
	}{
		{"noble Gen2 Trusted Launch", "Standard_D2s_v5", "server", "TrustedLaunch", 201, ""},
		{"noble Gen2 Standard", "Standard_D2s_v5", "server", "", 201, ""},
		{"Dv3 refuses Trusted Launch", "Standard_D2s_v3", "server", "TrustedLaunch", 400, "BadRequest"},
		{"Dv2 refuses Trusted Launch", "Standard_DS1_v2", "server", "TrustedLaunch", 400, "BadRequest"},
		{"Dv3 Standard is fine", "Standard_D2s_v3", "20_04-lts", "", 201, ""},
		{"Gen1 focal cannot boot Trusted Launch", "Standard_D2s_v5", "20_04-lts", "TrustedLaunch", 400, "BadRequest"},
		{"Gen1 noble cannot boot Trusted Launch", "Standard_D2s_v5", "server-gen1", "TrustedLaunch", 400, "BadRequest"},
		{"confidential needs a confidential size", "Standard_D2s_v5", "server", "ConfidentialVM", 400, "BadRequest"},
		{"confidential size", "Standard_DC2as_v5", "server", "ConfidentialVM", 201, ""},
		{"unknown security type", "Standard_D2s_v5", "server", "Secure", 400, "InvalidParameter"},
	} {
		name := "vm" + string(rune('a'+len(m.VMs())))
		st, code := createVM(c, name, tc.size, tc.sku, tc.security)
		if st != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.name, st, code, tc.status, tc.code)
			continue
		}
		if st != 201 {
			continue
		}
		vm, _ := m.VM(computeID("virtualMachines/" + name))
		want := tc.security
		if want == "" {
			want = "Standard"
		}
		if vm.SecurityType != want {
			t.Errorf("%s: VM security type %q", tc.name, vm.SecurityType)
		}
		if want == "TrustedLaunch" {
			_, got := c.do("GET", computePath("virtualMachines/"+name)+cv, nil)
			if dig(got, "properties", "securityProfile", "uefiSettings", "secureBootEnabled") != true || dig(got, "properties", "securityProfile", "uefiSettings", "vTpmEnabled") != true {
				t.Errorf("%s: securityProfile %v", tc.name, dig(got, "properties", "securityProfile"))
			}
		}
	}
}

func computeID(rest string) string { return computePath(rest) }

// TestSecurityTypePublishing: a Trusted Launch VM publishes only to a
// TrustedLaunch definition and never through a managed image; a Standard Gen2
// VM publishes to TrustedLaunchSupported but not to TrustedLaunch.
func TestSecurityTypePublishing(t *testing.T) {
	c, _ := securityEnv(t)
	if st, code := createVM(c, "tlvm", "Standard_D2s_v5", "server", "TrustedLaunch"); st != 201 {
		t.Fatalf("TL VM: %d %s", st, code)
	}
	if st, code := createVM(c, "stdvm", "Standard_D2s_v5", "server", ""); st != 201 {
		t.Fatalf("Standard VM: %d %s", st, code)
	}
	for _, vm := range []string{"tlvm", "stdvm"} {
		resp, _ := c.do("POST", computePath("virtualMachines/"+vm+"/deallocate")+cv, nil)
		c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
		c.do("POST", computePath("virtualMachines/"+vm+"/generalize")+cv, nil)
	}
	resp, body := c.do("PUT", computePath("images/fromtl")+cv, map[string]any{"location": "eastus", "properties": map[string]any{
		"sourceVirtualMachine": map[string]any{"id": computePath("virtualMachines/tlvm")}, "hyperVGeneration": "V2"}})
	if resp.StatusCode != 400 {
		t.Errorf("managed image from a TL VM: %d %v", resp.StatusCode, body)
	}
	// Nor does a Trusted Launch VM boot from a managed image.
	resp, _ = c.do("PUT", computePath("images/fromstd")+cv, map[string]any{"location": "eastus", "properties": map[string]any{
		"sourceVirtualMachine": map[string]any{"id": computePath("virtualMachines/stdvm")}, "hyperVGeneration": "V2"}})
	c.do("GET", resp.Header.Get("Azure-AsyncOperation"), nil)
	mi := vmBody("frommi-nic")
	miProps := mi["properties"].(map[string]any)
	miProps["storageProfile"].(map[string]any)["imageReference"] = map[string]any{"id": computePath("images/fromstd")}
	miProps["hardwareProfile"] = map[string]any{"vmSize": "Standard_D2s_v5"}
	miProps["securityProfile"] = map[string]any{"securityType": "TrustedLaunch"}
	if resp, body := c.do("PUT", computePath("virtualMachines/frommi")+cv, mi); resp.StatusCode != 400 {
		t.Errorf("TL VM from a managed image: %d %v", resp.StatusCode, body)
	}
	delete(miProps, "securityProfile")
	if resp, body := c.do("PUT", computePath("virtualMachines/frommi")+cv, mi); resp.StatusCode != 201 {
		t.Errorf("Standard VM from a Gen2 managed image: %d %v", resp.StatusCode, body)
	}
	for i, tc := range []struct {
		vm, def string
		status  int
	}{
		{"tlvm", "tl", 201},
		{"tlvm", "tls", 400},
		{"stdvm", "tls", 201},
		{"stdvm", "tl", 400},
	} {
		resp, body := c.do("PUT", computePath("galleries/g/images/"+tc.def+"/versions/1.0."+string(rune('0'+i)))+gv, map[string]any{"location": "eastus", "properties": map[string]any{
			"storageProfile": map[string]any{"source": map[string]any{"virtualMachineId": computePath("virtualMachines/" + tc.vm)}}}})
		if resp.StatusCode != tc.status {
			t.Errorf("%s → %s: %d %v, want %d", tc.vm, tc.def, resp.StatusCode, body, tc.status)
		}
		if a := resp.Header.Get("Azure-AsyncOperation"); a != "" {
			if _, st := c.do("GET", a, nil); st["status"] != "Succeeded" {
				t.Errorf("%s → %s: operation %v", tc.vm, tc.def, st)
			}
		}
	}
	// A VM from the TrustedLaunch definition must be Trusted Launch.
	body = vmBody("fromtl-nic")
	props := body["properties"].(map[string]any)
	props["storageProfile"].(map[string]any)["imageReference"] = map[string]any{"id": computePath("galleries/g/images/tl/versions/1.0.0")}
	props["hardwareProfile"] = map[string]any{"vmSize": "Standard_D2s_v5"}
	if resp, body := c.do("PUT", computePath("virtualMachines/fromtl")+cv, body); resp.StatusCode != 400 {
		t.Errorf("Standard VM from a TrustedLaunch definition: %d %v", resp.StatusCode, body)
	}
	props["securityProfile"] = map[string]any{"securityType": "TrustedLaunch"}
	if resp, body := c.do("PUT", computePath("virtualMachines/fromtl")+cv, body); resp.StatusCode != 201 {
		t.Errorf("TL VM from a TrustedLaunch definition: %d %v", resp.StatusCode, body)
	}
}

// TestDefinitionDefaults: from galleries API 2025-03-03 a definition without
// hyperVGeneration is V2 and TrustedLaunchSupported; explicit values stay; a
// Gen1 definition cannot carry a Trusted Launch type.
func TestDefinitionDefaults(t *testing.T) {
	c, _ := securityEnv(t)
	def := func(props map[string]any) map[string]any {
		p := map[string]any{"osType": "Linux", "osState": "Generalized", "identifier": map[string]any{"publisher": "p", "offer": "o", "sku": "s"}}
		for k, v := range props {
			p[k] = v
		}
		return map[string]any{"location": "eastus", "properties": p}
	}
	for _, tc := range []struct {
		name, api string
		props     map[string]any
		status    int
		hv, sec   any
	}{
		{"unspecified, 2025-03-03", gv, nil, 201, "V2", "TrustedLaunchSupported"},
		{"unspecified, 2022-03-03", "?api-version=2022-03-03", nil, 201, "V1", nil},
		{"explicit V1", gv, map[string]any{"hyperVGeneration": "V1"}, 201, "V1", nil},
		{"explicit TrustedLaunch", gv, map[string]any{"hyperVGeneration": "V2", "features": []any{map[string]any{"name": "SecurityType", "value": "TrustedLaunch"}}}, 201, "V2", "TrustedLaunch"},
		{"V1 with TrustedLaunch", gv, map[string]any{"hyperVGeneration": "V1", "features": []any{map[string]any{"name": "SecurityType", "value": "TrustedLaunch"}}}, 400, nil, nil},
	} {
		c2, m2 := newRaw(t, azmodel.Options{InProgressPolls: -1, ExtraAPIVersions: []string{"2022-03-03"}})
		_ = c
		if err := m2.SeedGallery(azmodel.GallerySeed{SubscriptionID: sub, ResourceGroup: "lro", Gallery: "g", Image: "seed"}); err != nil {
			t.Fatal(err)
		}
		resp, body := c2.do("PUT", computePath("galleries/g/images/new")+tc.api, def(tc.props))
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %v", tc.name, resp.StatusCode, body)
			continue
		}
		if tc.status != 201 {
			continue
		}
		var sec any
		if fs, _ := dig(body, "properties", "features").([]any); len(fs) > 0 {
			sec = dig(fs[0], "value")
		}
		if dig(body, "properties", "hyperVGeneration") != tc.hv || sec != tc.sec {
			t.Errorf("%s: hyperVGeneration %v, SecurityType %v; want %v, %v", tc.name, dig(body, "properties", "hyperVGeneration"), sec, tc.hv, tc.sec)
		}
	}
}
