package recipes

import "testing"

func TestAzureNameValidators(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) error
		in    string
		ok    bool
	}{
		{"rg", ValidateResourceGroupName, "image-gallery-rg", true},
		{"rg parens", ValidateResourceGroupName, "rg_(1).x", true},
		{"rg dotdot", ValidateResourceGroupName, "..", false},
		{"rg slash", ValidateResourceGroupName, "a/../b", false},
		{"rg trailing dot", ValidateResourceGroupName, "rg.", false},
		{"rg empty", ValidateResourceGroupName, "", false},
		{"gallery", ValidateGalleryName, "runner_images", true},
		{"gallery dotdot", ValidateGalleryName, "..", false},
		{"gallery dash", ValidateGalleryName, "runner-images", false},
		{"gallery slash", ValidateGalleryName, "g/versions", false},
		{"subscription", ValidateSubscriptionID, "00000000-0000-0000-0000-00000000abcd", true},
		{"subscription dotdot", ValidateSubscriptionID, "..", false},
		{"region", ValidateRegionName, "eastus2", true},
		{"region dotdot", ValidateRegionName, "..", false},
		{"region display name", ValidateRegionName, "East US", false},
	}
	for _, tt := range tests {
		if err := tt.check(tt.in); (err == nil) != tt.ok {
			t.Errorf("%s: %q: err %v, want ok=%t", tt.name, tt.in, err, tt.ok)
		}
	}
}
