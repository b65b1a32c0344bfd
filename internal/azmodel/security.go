package azmodel

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
)

// Security types of VMs (securityProfile.securityType) and of gallery image
// definitions (the SecurityType feature).
const (
	SecurityStandard      = "Standard"
	SecurityTrustedLaunch = "TrustedLaunch"
	SecurityConfidential  = "ConfidentialVM"

	DefTrustedLaunchSupported            = "TrustedLaunchSupported"
	DefTrustedLaunchAndConfidentialVMSup = "TrustedLaunchAndConfidentialVmSupported"
	DefConfidentialVMSupported           = "ConfidentialVMSupported"
)

// definitionSecurityTypes are the SecurityType feature values a definition
// may carry ("" is a definition without the feature: Standard).
var definitionSecurityTypes = map[string]bool{
	SecurityStandard: true, SecurityTrustedLaunch: true, SecurityConfidential: true,
	DefTrustedLaunchSupported: true, DefTrustedLaunchAndConfidentialVMSup: true, DefConfidentialVMSupported: true,
}

// noTrustedLaunchSizeRE matches the sizes Trusted Launch does not support:
// the Dv2 and Dv3 families (Standard_D2_v3, Standard_D2s_v3, Standard_DS1_v2,
// Standard_D11_v2, …), besides the Av2 family.
var noTrustedLaunchSizeRE = regexp.MustCompile(`(?i)^Standard_(D\d+s?_v[23]|DS\d+_v2|D\d+_v2_Promo|DS\d+_v2_Promo|A\d+m?_v2)$`)

// confidentialSizeRE matches the AMD SEV-SNP confidential sizes (DCasv5,
// DCadsv5, ECasv5, ECadsv5 and their v6 successors).
var confidentialSizeRE = regexp.MustCompile(`(?i)^Standard_(DC|EC)\d+a[d]?s_v[56]$`)

// vmSecurityType is the VM's securityProfile.securityType ("Standard" when
// absent: Trusted Launch is not the API default).
func vmSecurityType(p *armcompute.VirtualMachineProperties) string {
	if p == nil || p.SecurityProfile == nil || p.SecurityProfile.SecurityType == nil {
		return SecurityStandard
	}
	return string(*p.SecurityProfile.SecurityType)
}

// definitionSecurityType reads a definition's SecurityType feature ("" when
// it has none).
func definitionSecurityType(def *armcompute.GalleryImage) string {
	if def == nil || def.Properties == nil {
		return ""
	}
	for _, f := range def.Properties.Features {
		if f != nil && strings.EqualFold(str(f.Name), "SecurityType") {
			return str(f.Value)
		}
	}
	return ""
}

// checkVMSecurity applies the Trusted Launch and confidential VM rules to a
// new VM: the size must support the type and the image must be Gen2 with a
// definition that allows it. Message texts are unverified.
func checkVMSecurity(p *armcompute.VirtualMachineProperties, src *imageSource) *reply {
	st := vmSecurityType(p)
	size := string(*p.HardwareProfile.VMSize)
	switch st {
	case SecurityStandard:
		if src.defSecurity == SecurityTrustedLaunch || src.defSecurity == SecurityConfidential {
			return errTarget(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
				"The gallery image '%s' has security type '%s'; a VM created from it must set securityProfile.securityType '%s'.", src.desc, src.defSecurity, src.defSecurity), "securityProfile.securityType") // unverified wording
		}
		return nil
	case SecurityTrustedLaunch, SecurityConfidential:
	default:
		return invalidParam(fmt.Sprintf("The value '%s' of securityProfile.securityType is not valid. Allowed values: Standard, TrustedLaunch, ConfidentialVM.", st), "securityProfile.securityType") // unverified wording
	}
	if st == SecurityTrustedLaunch && noTrustedLaunchSizeRE.MatchString(size) {
		return errTarget(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
			"The VM size '%s' is not supported for creation of VMs and Virtual Machine Scale Set with '%s' security type.", size, st), "hardwareProfile.vmSize") // unverified wording
	}
	if st == SecurityConfidential && !confidentialSizeRE.MatchString(size) {
		return errTarget(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
			"The VM size '%s' is not supported for creation of VMs and Virtual Machine Scale Set with '%s' security type.", size, st), "hardwareProfile.vmSize") // unverified wording
	}
	if !strings.EqualFold(src.hyperV, "V2") {
		return errTarget(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
			"Security type '%s' requires a Hyper-V generation 2 image; the image '%s' is generation %s.", st, src.desc, strings.TrimPrefix(src.hyperV, "V")), "storageProfile.imageReference") // unverified wording
	}
	if src.managed {
		return errTarget(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
			"Managed images are not supported for VMs with security type '%s'; use an Azure Compute Gallery image (image '%s').", st, src.desc), "storageProfile.imageReference") // unverified wording
	}
	if src.gallery && !definitionAllows(src.defSecurity, st) {
		return errTarget(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
			"The gallery image '%s' with security type '%s' does not support VMs with security type '%s'.", src.desc, firstNonEmpty(src.defSecurity, SecurityStandard), st), "securityProfile.securityType") // unverified wording
	}
	return nil
}

// definitionAllows: a VM of security type vm may boot from a gallery image
// whose definition has security type def.
func definitionAllows(def, vm string) bool {
	switch vm {
	case SecurityTrustedLaunch:
		return def == SecurityTrustedLaunch || def == DefTrustedLaunchSupported || def == DefTrustedLaunchAndConfidentialVMSup
	case SecurityConfidential:
		return def == SecurityConfidential || def == DefConfidentialVMSupported || def == DefTrustedLaunchAndConfidentialVMSup
	}
	return true
}

// checkVersionSecurity: what a definition of security type def may capture
// from a source of security type src (Standard for managed images and
// Standard VMs). A Trusted Launch VM publishes only to a TrustedLaunch (or
// TrustedLaunchAndConfidentialVmSupported) definition; a TrustedLaunch
// definition takes only Trusted Launch sources. Message texts unverified.
func checkVersionSecurity(def, src, srcID string) *reply {
	ok := true
	switch src {
	case SecurityTrustedLaunch:
		ok = def == SecurityTrustedLaunch || def == DefTrustedLaunchAndConfidentialVMSup
	case SecurityConfidential:
		ok = def == SecurityConfidential || def == DefTrustedLaunchAndConfidentialVMSup
	default:
		ok = def != SecurityTrustedLaunch && def != SecurityConfidential
	}
	if ok {
		return nil
	}
	return errTarget(http.StatusBadRequest, "BadRequest", fmt.Sprintf(
		"The source '%s' has security type '%s', which the gallery image definition's security type '%s' does not accept.", srcID, src, firstNonEmpty(def, SecurityStandard)),
		"galleryImageVersion.properties.storageProfile.source") // unverified wording
}
