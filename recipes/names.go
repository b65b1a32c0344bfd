package recipes

import "fmt"

// The Azure name rules a recipe's gallery.azure is validated with, for
// names that come from elsewhere (command-line flags). A name that passes
// cannot hold '/' or be "..", so it cannot path-join into another
// resource in a Resource Manager URL.

// ValidateResourceGroupName checks an Azure resource group name.
func ValidateResourceGroupName(name string) error {
	if !rgRe.MatchString(name) {
		return fmt.Errorf("%q is not a resource group name (1-90 letters, digits, '-', '_', '.', '(', ')', not ending in '.')", name)
	}
	return nil
}

// ValidateGalleryName checks an Azure Compute Gallery name.
func ValidateGalleryName(name string) error {
	if !galleryRe.MatchString(name) {
		return fmt.Errorf("%q is not a gallery name (letters, digits, '.' and '_', 2-80; no '-')", name)
	}
	return nil
}

// ValidateSubscriptionID checks an Azure subscription ID (a GUID).
func ValidateSubscriptionID(id string) error {
	if !uuidRe.MatchString(id) {
		return fmt.Errorf("%q is not a subscription ID (a GUID)", id)
	}
	return nil
}

// ValidateRegionName checks an Azure region name as build.location is
// checked (lower case, no spaces: eastus).
func ValidateRegionName(name string) error {
	if !regionRe.MatchString(name) {
		return fmt.Errorf("%q is not an Azure region name (e.g. eastus)", name)
	}
	return nil
}
