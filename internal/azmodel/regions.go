package azmodel

// regionDisplayNames maps region names to the display names Azure returns
// in places such as a gallery image version's targetRegions[].name (recorded:
// "eastus2" came back as "East US 2"). Names not listed come back unchanged.
var regionDisplayNames = map[string]string{
	"eastus": "East US", "eastus2": "East US 2", "westus": "West US", "westus2": "West US 2", "westus3": "West US 3",
	"centralus": "Central US", "northcentralus": "North Central US", "southcentralus": "South Central US",
	"westcentralus": "West Central US", "canadacentral": "Canada Central", "canadaeast": "Canada East",
	"brazilsouth": "Brazil South", "northeurope": "North Europe", "westeurope": "West Europe",
	"uksouth": "UK South", "ukwest": "UK West", "francecentral": "France Central", "germanywestcentral": "Germany West Central",
	"swedencentral": "Sweden Central", "switzerlandnorth": "Switzerland North", "norwayeast": "Norway East",
	"polandcentral": "Poland Central", "italynorth": "Italy North", "eastasia": "East Asia", "southeastasia": "Southeast Asia",
	"japaneast": "Japan East", "japanwest": "Japan West", "koreacentral": "Korea Central", "australiaeast": "Australia East",
	"australiasoutheast": "Australia Southeast", "centralindia": "Central India", "southindia": "South India",
	"uaenorth": "UAE North", "southafricanorth": "South Africa North", "qatarcentral": "Qatar Central",
}

// regionDisplayName returns Azure's display name of a region ("eastus2" or
// "East US 2" → "East US 2").
func regionDisplayName(name string) string {
	if d, ok := regionDisplayNames[normLoc(name)]; ok {
		return d
	}
	return name
}
