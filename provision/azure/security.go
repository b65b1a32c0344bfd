package azure

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"

	"github.com/imagebake/imagebake/recipes"
)

// Security types of a VM (recipe build.securityType).
const (
	SecurityStandard       = "Standard"
	SecurityTrustedLaunch  = "TrustedLaunch"
	SecurityConfidentialVM = "ConfidentialVM"
)

// Security types of a gallery image definition (its SecurityType feature).
// A definition without the feature is Standard.
const (
	DefinitionTrustedLaunchSupported  = "TrustedLaunchSupported"
	DefinitionTrustedLaunch           = "TrustedLaunch"
	DefinitionConfidentialVMSupported = "ConfidentialVmSupported"
	DefinitionConfidentialVM          = "ConfidentialVM"
	// DefinitionTrustedLaunchAndConfidentialVMSupported takes Standard
	// Gen2 versions that both kinds of VM can boot.
	DefinitionTrustedLaunchAndConfidentialVMSupported = "TrustedLaunchAndConfidentialVmSupported"
)

const (
	definitionFeatureSecurityType = "SecurityType"
	definitionStandard            = "Standard"
	hyperVGen1, hyperVGen2        = "V1", "V2"
)

// tlUnsupportedSize matches the Dv2/DSv2 and Dv3/Dsv3 families
// (Standard_D2_v3, Standard_D2s_v3, Standard_DS2_v2, Standard_D11_v2), which
// Trusted Launch does not support.
var tlUnsupportedSize = regexp.MustCompile(`(?i)^Standard_DS?\d+[a-z]*_v[23]$`)

// confidentialSize matches the confidential VM families (DCasv5, DCadsv5,
// ECasv5, ECadsv5, and later).
var confidentialSize = regexp.MustCompile(`(?i)^Standard_[DE]C\d+[a-z]*_v\d+$`)

// Security is a build's security choice, made once from the recipe, the
// base image and the flags: the build VM's security type, and the Hyper-V
// generation and security type of the image definition it publishes to.
type Security struct {
	// Type is the build VM's: SecurityStandard, SecurityTrustedLaunch or
	// SecurityConfidentialVM.
	Type string
	// HyperVGeneration is the base image's, "V1" or "V2"; the definition's
	// must be the same.
	HyperVGeneration string
}

// SecurityOptions are the flags that bear on the security choice, already
// resolved (flag over recipe).
type SecurityOptions struct {
	// VMSize is the build VM's size.
	VMSize string
	// ManagedImage is --managed-image: capture a managed image first.
	ManagedImage bool
}

// CheckSecurity chooses and checks the build's security before anything
// is created: baseGeneration is the resolved base image's Hyper-V
// generation (Image.HyperVGeneration). An unset build.securityType is
// Standard, as imagebake has always built.
func CheckSecurity(baseGeneration string, b recipes.Build, o SecurityOptions) (Security, error) {
	s := Security{Type: b.SecurityType, HyperVGeneration: strings.ToUpper(baseGeneration)}
	if s.Type == "" {
		s.Type = SecurityStandard
	}
	if s.HyperVGeneration == "" {
		s.HyperVGeneration = hyperVGen1
	}
	size := o.VMSize
	if size == "" {
		size = b.VMSize
	}
	var problems []string
	switch s.Type {
	case SecurityStandard:
	case SecurityTrustedLaunch, SecurityConfidentialVM:
		if s.HyperVGeneration != hyperVGen2 {
			problems = append(problems, fmt.Sprintf("build.securityType %s needs a Gen2 base image, and base.azure is %s (Gen1): use a Gen2 SKU (Ubuntu's end in -gen2, e.g. 22_04-lts-gen2; Noble's server SKU is Gen2), or set build.securityType: Standard", s.Type, s.HyperVGeneration))
		}
		if o.ManagedImage {
			problems = append(problems, fmt.Sprintf("build.securityType %s cannot go through a managed image (Azure does not support managed images of %s VMs): drop --managed-image, the version is captured from the VM", s.Type, s.Type))
		}
		if s.Type == SecurityTrustedLaunch && tlUnsupportedSize.MatchString(size) {
			problems = append(problems, fmt.Sprintf("build.vmSize %s: Trusted Launch does not support the Dv2 and Dv3 size families; with build.securityType TrustedLaunch choose e.g. Standard_D2s_v5 (or pass another --vm-size)", size))
		}
		if s.Type == SecurityConfidentialVM && !confidentialSize.MatchString(size) {
			problems = append(problems, fmt.Sprintf("build.vmSize %s is not a confidential VM size; build.securityType ConfidentialVM needs e.g. Standard_DC2as_v5", size))
		}
	default:
		problems = append(problems, fmt.Sprintf("build.securityType %q: use Standard, TrustedLaunch or ConfidentialVM", s.Type))
	}
	if len(problems) > 0 {
		return s, fmt.Errorf("security type: %s", strings.Join(problems, "; "))
	}
	return s, nil
}

// DefinitionType is the SecurityType feature a definition created for
// this build gets: TrustedLaunch for a Trusted Launch VM, ConfidentialVM
// for a confidential one, TrustedLaunchSupported for a Standard Gen2 VM
// (Azure's default for new definitions since galleries API 2025-03-03),
// and none for Gen1.
func (s Security) DefinitionType() string {
	switch {
	case s.Type == SecurityTrustedLaunch:
		return DefinitionTrustedLaunch
	case s.Type == SecurityConfidentialVM:
		return DefinitionConfidentialVM
	case s.HyperVGeneration == hyperVGen2:
		return DefinitionTrustedLaunchSupported
	}
	return ""
}

// accepts lists the definition security types a VM of this security can
// publish to: a Trusted Launch (or confidential) VM carries VM guest state
// and only goes to a definition of its own type; a Standard VM goes to a
// Standard definition or, if Gen2, to one that merely supports the others.
func (s Security) accepts() []string {
	switch s.Type {
	case SecurityTrustedLaunch:
		return []string{DefinitionTrustedLaunch}
	case SecurityConfidentialVM:
		return []string{DefinitionConfidentialVM}
	}
	if s.HyperVGeneration == hyperVGen2 {
		return []string{definitionStandard, DefinitionTrustedLaunchSupported, DefinitionConfidentialVMSupported, DefinitionTrustedLaunchAndConfidentialVMSupported}
	}
	return []string{definitionStandard}
}

// CheckDefinition checks that an existing image definition (its security
// type as DefinitionSecurity reads it, and its Hyper-V generation) can take
// this build's versions.
func (s Security) CheckDefinition(name, defType, defGeneration string) error {
	if defType == "" {
		defType = definitionStandard
	}
	var problems []string
	if defGeneration == "" {
		defGeneration = hyperVGen1
	}
	if !strings.EqualFold(defGeneration, s.HyperVGeneration) {
		problems = append(problems, fmt.Sprintf("its Hyper-V generation is %s and base.azure is %s", defGeneration, s.HyperVGeneration))
	}
	ok := false
	for _, a := range s.accepts() {
		ok = ok || strings.EqualFold(a, defType)
	}
	if !ok {
		problems = append(problems, fmt.Sprintf("its security type is %s and build.securityType %s publishes only to %s", defType, s.Type, strings.Join(s.accepts(), " or ")))
	}
	if len(problems) > 0 {
		return fmt.Errorf("image definition %s does not match the recipe: %s (set build.securityType and base.azure to match it, or publish to another gallery.azure.image)", name, strings.Join(problems, "; "))
	}
	return nil
}

// DefinitionSecurity reads a definition's security type (its SecurityType
// feature, "" when it has none) and Hyper-V generation ("V1" when unset,
// Azure's old default).
func DefinitionSecurity(def armcompute.GalleryImage) (securityType, generation string) {
	generation = hyperVGen1
	if p := def.Properties; p != nil {
		if p.HyperVGeneration != nil {
			generation = string(*p.HyperVGeneration)
		}
		for _, f := range p.Features {
			if f != nil && strings.EqualFold(deref(f.Name), definitionFeatureSecurityType) {
				securityType = deref(f.Value)
			}
		}
	}
	return securityType, generation
}

// DefinitionFeatures are the features a definition created for this build
// gets.
func (s Security) DefinitionFeatures() []*armcompute.GalleryImageFeature {
	t := s.DefinitionType()
	if t == "" {
		return nil
	}
	return []*armcompute.GalleryImageFeature{{Name: to.Ptr(definitionFeatureSecurityType), Value: to.Ptr(t)}}
}

// BootSecurity is the VM security type to boot a definition's image with
// (verify): a TrustedLaunch or ConfidentialVM definition's images boot
// only as such VMs; every other type boots Standard.
func BootSecurity(definitionType string) string {
	switch {
	case strings.EqualFold(definitionType, DefinitionTrustedLaunch):
		return SecurityTrustedLaunch
	case strings.EqualFold(definitionType, DefinitionConfidentialVM):
		return SecurityConfidentialVM
	}
	return SecurityStandard
}

// securityProfile is a VM's securityProfile for its security type. Standard
// sends none, as the Azure CLI does for --security-type Standard (the API
// knows only TrustedLaunch and ConfidentialVM).
func securityProfile(securityType string) *armcompute.SecurityProfile {
	switch securityType {
	case SecurityTrustedLaunch, SecurityConfidentialVM:
		return &armcompute.SecurityProfile{
			SecurityType: to.Ptr(armcompute.SecurityTypes(securityType)),
			UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)},
		}
	}
	return nil
}
