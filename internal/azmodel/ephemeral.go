package azmodel

import (
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
)

// localDisks are the local disks (GiB) an ephemeral OS disk can be placed on,
// for the sizes imagebake's recipes use. Sizes not listed are not checked.
// Figures from the Azure size documentation (not verified here).
var localDisks = map[string]struct{ cache, resource int32 }{
	"standard_ds1_v2": {43, 7}, "standard_ds2_v2": {86, 14}, "standard_ds3_v2": {172, 28},
	"standard_d2s_v3": {50, 16}, "standard_d4s_v3": {100, 32}, "standard_d8s_v3": {200, 64},
	"standard_d2ds_v5": {0, 75}, "standard_d4ds_v5": {0, 150}, "standard_d2ads_v5": {0, 75}, "standard_d4ads_v5": {0, 150},
	// No local disk at all: ephemeral OS disks are not supported.
	"standard_d2s_v5": {0, 0}, "standard_d4s_v5": {0, 0}, "standard_d2as_v5": {0, 0}, "standard_b2s": {0, 0}, "standard_b2ms": {0, 0},
}

// checkEphemeral applies the ephemeral OS disk rules to a new VM's OS disk
// (diffDiskSettings.option Local) and fills in Compute's defaults: caching
// ReadOnly, deleteOption Delete, placement CacheDisk where the size has a
// cache, else ResourceDisk. Message texts unverified.
func checkEphemeral(size string, osd *armcompute.OSDisk, imageGB int32) *reply {
	dd := osd.DiffDiskSettings
	if dd == nil || dd.Option == nil {
		return nil
	}
	if *dd.Option != armcompute.DiffDiskOptionsLocal {
		return invalidParam(fmt.Sprintf("The value '%s' of diffDiskSettings.option is not valid.", *dd.Option), "osDisk.diffDiskSettings.option")
	}
	switch {
	case osd.Caching == nil:
		osd.Caching = ptr(armcompute.CachingTypesReadOnly)
	case *osd.Caching != armcompute.CachingTypesReadOnly:
		return invalidParam("Ephemeral OS disk supports only 'ReadOnly' caching.", "osDisk.caching")
	}
	switch {
	case osd.DeleteOption == nil:
		osd.DeleteOption = ptr(armcompute.DiskDeleteOptionTypesDelete)
	case *osd.DeleteOption != armcompute.DiskDeleteOptionTypesDelete:
		return invalidParam("Ephemeral OS disk supports only deleteOption 'Delete'.", "osDisk.deleteOption")
	}
	ld, known := localDisks[strings.ToLower(size)]
	if dd.Placement == nil {
		dd.Placement = ptr(armcompute.DiffDiskPlacementCacheDisk)
		if known && ld.cache == 0 {
			dd.Placement = ptr(armcompute.DiffDiskPlacementResourceDisk)
		}
	}
	if !known {
		return nil
	}
	capGB := ld.cache
	if *dd.Placement == armcompute.DiffDiskPlacementResourceDisk {
		capGB = ld.resource
	}
	need := imageGB
	if osd.DiskSizeGB != nil {
		need = *osd.DiskSizeGB
	}
	switch {
	case ld.cache == 0 && ld.resource == 0:
		return invalidParam(fmt.Sprintf("The VM size '%s' does not support ephemeral OS disks: it has no local storage.", size), "osDisk.diffDiskSettings")
	case capGB == 0:
		return invalidParam(fmt.Sprintf("DiffDiskPlacement '%s' is not supported for VM size '%s'.", *dd.Placement, size), "osDisk.diffDiskSettings.placement")
	case need > capGB:
		return invalidParam(fmt.Sprintf("OS disk of Ephemeral VM with size greater than %d GB is not allowed for VM size %s when the DiffDiskPlacement is %s.", capGB, size, *dd.Placement), "osDisk.diskSizeGB")
	}
	return nil
}

func isEphemeral(osd *armcompute.OSDisk) bool {
	return osd != nil && osd.DiffDiskSettings != nil && osd.DiffDiskSettings.Option != nil
}
