package contract

// Cloud is one Azure cloud as a runner VM's scripts address it. The scripts
// pick it at boot from IMDS compute.azEnvironment, so one image serves every
// cloud; templates renders this table into them, and platform's stand-in
// (platform.LookupCloud) must agree with it (platform/script_test.go checks).
type Cloud struct {
	Environment     string // IMDS azEnvironment, e.g. "AzurePublicCloud"
	ResourceManager string // Resource Manager's host name
	ARMResource     string // the managed-identity token resource for Resource Manager
	VaultSuffix     string // Key Vault's DNS suffix: https://NAME.<suffix>
	VaultResource   string // the managed-identity token resource for Key Vault
}

// Clouds lists the clouds Azure's IMDS documents in azEnvironment.
func Clouds() []Cloud {
	return []Cloud{
		{"AzurePublicCloud", "management.azure.com", "https://management.azure.com/", "vault.azure.net", "https://vault.azure.net"},
		{"AzureUSGovernmentCloud", "management.usgovcloudapi.net", "https://management.usgovcloudapi.net/", "vault.usgovcloudapi.net", "https://vault.usgovcloudapi.net"},
		{"AzureChinaCloud", "management.chinacloudapi.cn", "https://management.chinacloudapi.cn/", "vault.azure.cn", "https://vault.azure.cn"},
	}
}
