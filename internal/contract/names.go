package contract

import (
	"regexp"
	"strings"
)

// A build's Azure resources are named after its build ID, so that a person
// (or gc) looking at a resource group can tell which build made what:
//
//	imagebake-<recipe>-<id>   the temporary resource group
//	ib-<id>-vm                the build VM
//	ib-<id>-nsg, ib-<id>-vnet its network (when no --subnet-id is given)
//	ib-<id>-image             the managed image (--managed-image)
const (
	// ResourceGroupPrefix starts a temporary build resource group's name.
	ResourceGroupPrefix = "imagebake-"
	// ResourcePrefix starts the name of every other resource a build makes.
	ResourcePrefix = "ib-"
)

// ResourceKind is the suffix that says what a build resource is.
type ResourceKind string

// The kinds of resource a build names.
const (
	KindVM           ResourceKind = "vm"
	KindNSG          ResourceKind = "nsg"
	KindVNet         ResourceKind = "vnet"
	KindManagedImage ResourceKind = "image"
)

// BuildResourceGroup is the name of a build's temporary resource group.
func BuildResourceGroup(recipe, buildID string) string {
	return ResourceGroupPrefix + recipe + "-" + buildID
}

// NetworkPrefix is what provision/azure's CreateNetwork and DeleteNetwork
// take: it appends "-" + KindNSG and "-" + KindVNet.
func NetworkPrefix(buildID string) string { return ResourcePrefix + buildID }

// ResourceName is the name of a build's resource of the given kind.
func ResourceName(buildID string, kind ResourceKind) string {
	return NetworkPrefix(buildID) + "-" + string(kind)
}

// resourceNamePattern matches ResourceName's output. Build IDs are
// lowercase hex (bake.NewBuildID); accept any run of letters and digits so
// that IDs of other lengths still parse.
var resourceNamePattern = regexp.MustCompile(`^ib-([0-9A-Za-z]+)-(vm|nsg|vnet|image)$`)

// ParseResourceName is ResourceName's inverse: the build ID and kind of a
// build resource's name (the last segment of a resource ID is accepted as
// well as the whole ID). ok is false for any other name.
func ParseResourceName(name string) (buildID string, kind ResourceKind, ok bool) {
	name = name[strings.LastIndex(name, "/")+1:]
	m := resourceNamePattern.FindStringSubmatch(strings.ToLower(name))
	if m == nil {
		return "", "", false
	}
	return m[1], ResourceKind(m[2]), true
}
