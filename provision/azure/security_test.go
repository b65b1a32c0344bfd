package azure

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/recipes"
)

func TestCheckSecurity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gen     string
		build   recipes.Build
		opts    SecurityOptions
		want    Security
		defType string
		errs    []string // substrings; none: no error
	}{
		{name: "unset is Standard Gen1", gen: "V1", build: recipes.Build{VMSize: "Standard_D2s_v3"},
			want: Security{Type: "Standard", HyperVGeneration: "V1"}},
		{name: "Standard Gen2", gen: "V2", build: recipes.Build{SecurityType: "Standard", VMSize: "Standard_D2s_v3"},
			want: Security{Type: "Standard", HyperVGeneration: "V2"}, defType: "TrustedLaunchSupported"},
		{name: "Trusted Launch Gen2 Dv5", gen: "V2", build: recipes.Build{SecurityType: "TrustedLaunch", VMSize: "Standard_D2s_v5"},
			want: Security{Type: "TrustedLaunch", HyperVGeneration: "V2"}, defType: "TrustedLaunch"},
		{name: "flag size wins", gen: "V2", build: recipes.Build{SecurityType: "TrustedLaunch", VMSize: "Standard_D2s_v5"}, opts: SecurityOptions{VMSize: "Standard_D4s_v3"},
			errs: []string{"build.vmSize Standard_D4s_v3", "Dv2 and Dv3"}},
		{name: "Gen1 base with Trusted Launch", gen: "V1", build: recipes.Build{SecurityType: "TrustedLaunch", VMSize: "Standard_D2s_v5"},
			errs: []string{"build.securityType TrustedLaunch needs a Gen2 base image", "base.azure is V1"}},
		{name: "managed image with Trusted Launch", gen: "V2", build: recipes.Build{SecurityType: "TrustedLaunch", VMSize: "Standard_D2s_v5"}, opts: SecurityOptions{ManagedImage: true},
			errs: []string{"--managed-image"}},
		{name: "Dv3 with Trusted Launch", gen: "V2", build: recipes.Build{SecurityType: "TrustedLaunch", VMSize: "Standard_D2s_v3"},
			errs: []string{"build.vmSize Standard_D2s_v3"}},
		{name: "Dv2 with Trusted Launch", gen: "V2", build: recipes.Build{SecurityType: "TrustedLaunch", VMSize: "Standard_DS2_v2"},
			errs: []string{"build.vmSize Standard_DS2_v2"}},
		{name: "every problem at once", gen: "V1", build: recipes.Build{SecurityType: "TrustedLaunch", VMSize: "Standard_D2_v3"}, opts: SecurityOptions{ManagedImage: true},
			errs: []string{"Gen2", "--managed-image", "build.vmSize Standard_D2_v3"}},
		{name: "confidential on a confidential size", gen: "V2", build: recipes.Build{SecurityType: "ConfidentialVM", VMSize: "Standard_DC2as_v5"},
			want: Security{Type: "ConfidentialVM", HyperVGeneration: "V2"}, defType: "ConfidentialVM"},
		{name: "confidential on a general size", gen: "V2", build: recipes.Build{SecurityType: "ConfidentialVM", VMSize: "Standard_D2s_v5"},
			errs: []string{"not a confidential VM size"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckSecurity(tc.gen, tc.build, tc.opts)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want || got.DefinitionType() != tc.defType {
					t.Errorf("got %+v (definition %q), want %+v (definition %q)", got, got.DefinitionType(), tc.want, tc.defType)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; got %+v", got)
			}
			for _, s := range tc.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestCheckDefinition(t *testing.T) {
	std1 := Security{Type: "Standard", HyperVGeneration: "V1"}
	std2 := Security{Type: "Standard", HyperVGeneration: "V2"}
	tl := Security{Type: "TrustedLaunch", HyperVGeneration: "V2"}
	for _, tc := range []struct {
		sec          Security
		defType, gen string
		ok           bool
	}{
		{std1, "", "V1", true},
		{std1, "", "V2", false},
		{std2, "", "V2", true},
		{std2, "TrustedLaunchSupported", "V2", true},
		{std2, "TrustedLaunch", "V2", false},
		{tl, "TrustedLaunch", "V2", true},
		{tl, "TrustedLaunchSupported", "V2", false},
		{tl, "", "V2", false},
		{tl, "TrustedLaunch", "V1", false},
	} {
		err := tc.sec.CheckDefinition("gallery g image definition d", tc.defType, tc.gen)
		if (err == nil) != tc.ok {
			t.Errorf("%+v into %q %s: err = %v, want ok %v", tc.sec, tc.defType, tc.gen, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "gallery g image definition d") || !strings.Contains(err.Error(), "build.securityType")) {
			t.Errorf("error does not name the definition and the recipe fields: %v", err)
		}
	}
	def := armcompute.GalleryImage{Properties: &armcompute.GalleryImageProperties{HyperVGeneration: to.Ptr(armcompute.HyperVGenerationV2),
		Features: []*armcompute.GalleryImageFeature{{Name: to.Ptr("IsAcceleratedNetworkSupported"), Value: to.Ptr("true")}, {Name: to.Ptr("SecurityType"), Value: to.Ptr("TrustedLaunch")}}}}
	if st, gen := DefinitionSecurity(def); st != "TrustedLaunch" || gen != "V2" {
		t.Errorf("DefinitionSecurity = %q %q", st, gen)
	}
	if BootSecurity("TrustedLaunch") != "TrustedLaunch" || BootSecurity("TrustedLaunchSupported") != "Standard" || BootSecurity("") != "Standard" {
		t.Error("BootSecurity")
	}
}

// The build VM's securityProfile is what its security type says: none for
// Standard (as the Azure CLI sends), secure boot and vTPM for Trusted
// Launch, and guest-state encryption on the OS disk for confidential VMs.
func TestCreateVMSecurityProfile(t *testing.T) {
	for _, tc := range []struct {
		securityType string
		want         string // securityProfile JSON; "" none
		diskType     string
		size         string // "" the helper's general-purpose size
	}{
		{"", "", "", ""},
		{"Standard", "", "", ""},
		{"TrustedLaunch", `{"securityType":"TrustedLaunch","uefiSettings":{"secureBootEnabled":true,"vTpmEnabled":true}}`, "", ""},
		// Azure takes confidential VMs only on confidential sizes.
		{"ConfidentialVM", `{"securityType":"ConfidentialVM","uefiSettings":{"secureBootEnabled":true,"vTpmEnabled":true}}`, "VMGuestStateOnly", "Standard_DC2as_v5"},
	} {
		t.Run("type "+tc.securityType, func(t *testing.T) {
			e := newEnv(t, azmodel.Options{}, Config{})
			e.m.AddMarketplaceImage(azmodel.MarketplaceImage{Publisher: "Canonical", Offer: "ubuntu-24_04-lts", SKU: "server", Version: "24.04.202511150", HyperVGeneration: "V2"})
			e.vm(t, VMSpec{SecurityType: tc.securityType, Size: tc.size, Image: Image{Publisher: "Canonical", Offer: "ubuntu-24_04-lts", SKU: "server", Version: "24.04.202511150"}})
			puts := e.rec.find("PUT", "/virtualMachines/ib-t-vm")
			if len(puts) != 1 {
				t.Fatalf("%d VM PUTs", len(puts))
			}
			var body struct {
				Properties struct {
					SecurityProfile json.RawMessage `json:"securityProfile"`
					StorageProfile  struct {
						OSDisk struct {
							ManagedDisk struct {
								SecurityProfile struct {
									SecurityEncryptionType string `json:"securityEncryptionType"`
								} `json:"securityProfile"`
							} `json:"managedDisk"`
						} `json:"osDisk"`
					} `json:"storageProfile"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(puts[0].Body, &body); err != nil {
				t.Fatal(err)
			}
			if got := string(body.Properties.SecurityProfile); got != tc.want {
				t.Errorf("securityProfile = %s, want %s", got, tc.want)
			}
			if got := body.Properties.StorageProfile.OSDisk.ManagedDisk.SecurityProfile.SecurityEncryptionType; got != tc.diskType {
				t.Errorf("OS disk securityEncryptionType = %q, want %q", got, tc.diskType)
			}
		})
	}
}

// Noble's server SKU resolves as Gen2, which Trusted Launch needs.
func TestResolveNobleIsGen2(t *testing.T) {
	e := newEnv(t, azmodel.Options{}, Config{})
	for _, v := range []string{"24.04.202509090", "24.04.202511150"} {
		e.m.AddMarketplaceImage(azmodel.MarketplaceImage{Publisher: "Canonical", Offer: "ubuntu-24_04-lts", SKU: "server", Version: v, HyperVGeneration: "V2"})
	}
	img, err := e.c.ResolveImage(context.Background(), "eastus", "canonical:ubuntu-24_04-lts:server:latest")
	if err != nil {
		t.Fatal(err)
	}
	if img.Version != "24.04.202511150" || img.HyperVGeneration != "V2" {
		t.Fatalf("resolved %+v", img)
	}
	r, err := recipes.Load("../../recipes/github-runner-noble.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sec, err := CheckSecurity(img.HyperVGeneration, r.Build, SecurityOptions{})
	if err != nil || sec.Type != SecurityTrustedLaunch || sec.DefinitionType() != DefinitionTrustedLaunch {
		t.Errorf("noble recipe: %+v, %v", sec, err)
	}
	f, err := recipes.Load("../../recipes/github-runner-focal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if sec, err := CheckSecurity("V1", f.Build, SecurityOptions{ManagedImage: true}); err != nil || sec.Type != SecurityStandard {
		t.Errorf("focal recipe: %+v, %v", sec, err)
	}
}

// Build resources that name their build carry imagebake.created, so gc
// can judge their age: a managed image made with --managed-image in an
// existing resource group used to lack it and was kept forever.
func TestBuildResourcesCarryCreated(t *testing.T) {
	e := newEnv(t, azmodel.Options{}, Config{})
	tags := map[string]string{contract.TagBuildID: "b1", "imagebake.recipe": "r"}
	rg, vmID := e.vm(t, VMSpec{Tags: tags})
	ctx := context.Background()
	if err := e.c.Deallocate(ctx, rg, "ib-t-vm"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Generalize(ctx, rg, "ib-t-vm"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.CreateManagedImage(ctx, rg, "ib-b1-image", "eastus", vmID, "V1", tags); err != nil {
		t.Fatal(err)
	}
	fixed := "2026-01-02T03:04:05Z"
	if _, err := e.c.CreateManagedImage(ctx, rg, "ib-b2-image", "eastus", vmID, "V1", map[string]string{contract.TagBuildID: "b2", contract.TagCreated: fixed}); err != nil {
		t.Fatal(err)
	}
	if len(tags) != 2 {
		t.Errorf("the caller's tags were changed: %v", tags)
	}
	seen := map[string]string{}
	for _, r := range e.m.Resources() {
		seen[r.Name] = r.Tags[contract.TagCreated]
	}
	for _, name := range []string{"ib-b1-image", "ib-t-vm"} {
		if _, err := time.Parse(time.RFC3339, seen[name]); err != nil {
			t.Errorf("%s: %s = %q, want a creation time", name, contract.TagCreated, seen[name])
		}
	}
	if seen["ib-b2-image"] != fixed {
		t.Errorf("an explicit %s was replaced: %q", contract.TagCreated, seen["ib-b2-image"])
	}
	if seen["rg-test"] != "" {
		t.Errorf("an untagged group got %s", contract.TagCreated)
	}
}
