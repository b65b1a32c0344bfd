package contract

import "testing"

func TestResourceNamesRoundTrip(t *testing.T) {
	for _, kind := range []ResourceKind{KindVM, KindNSG, KindVNet, KindManagedImage} {
		name := ResourceName("9a7840dc9c", kind)
		id, k, ok := ParseResourceName(name)
		if !ok || id != "9a7840dc9c" || k != kind {
			t.Errorf("ParseResourceName(%q) = %q, %q, %v", name, id, k, ok)
		}
	}
	if got := ResourceName("9a7840dc9c", KindVM); got != "ib-9a7840dc9c-vm" {
		t.Errorf("VM name %q", got)
	}
	if got := BuildResourceGroup("github-runner-focal", "9a7840dc9c"); got != "imagebake-github-runner-focal-9a7840dc9c" {
		t.Errorf("resource group %q", got)
	}
}

func TestParseResourceName(t *testing.T) {
	tests := []struct {
		in     string
		id     string
		kind   ResourceKind
		wantOK bool
	}{
		{"ib-abc123-vm", "abc123", KindVM, true},
		{"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/ib-abc123-vnet", "abc123", KindVNet, true},
		{"IB-ABC123-NSG", "abc123", KindNSG, true},
		{"ib-abc123-vm-nic", "", "", false}, // Compute's inline NIC goes with the VM
		{"ib--vm", "", "", false},
		{"myvm", "", "", false},
		{"ib-abc123-disk", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		id, kind, ok := ParseResourceName(tt.in)
		if ok != tt.wantOK || id != tt.id || kind != tt.kind {
			t.Errorf("ParseResourceName(%q) = %q, %q, %v; want %q, %q, %v", tt.in, id, kind, ok, tt.id, tt.kind, tt.wantOK)
		}
	}
}

func TestStages(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Stages() {
		if seen[s] {
			t.Errorf("stage %s listed twice", s)
		}
		seen[s] = true
		if !IsStage(s) {
			t.Errorf("IsStage(%q) = false", s)
		}
	}
	for _, s := range []string{"replicate", "cleanup", "config", ""} {
		if IsStage(s) {
			t.Errorf("IsStage(%q) = true: no flow runs it", s)
		}
	}
	Stages()[0] = "changed"
	if Stages()[0] == "changed" {
		t.Error("Stages hands out the package's own slice")
	}
}
