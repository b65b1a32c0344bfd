// Package azure is imagebake's Azure side: credentials and clouds, one
// Resource Manager transport (throttling waited out, long-running operations
// polled at Azure's pace, errors named once), and the verbs the rest of
// imagebake uses: the build machine's resources (resource group, network,
// VM, managed image), gallery image definitions and versions, tagged
// resources for gc, and the security type checks of a build.
package azure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// Clouds by --cloud name.
func Clouds() map[string]cloud.Configuration {
	return map[string]cloud.Configuration{
		"AzurePublic":       cloud.AzurePublic,
		"AzureChina":        cloud.AzureChina,
		"AzureUSGovernment": cloud.AzureGovernment,
	}
}

// Config says which cloud and subscription to use and how.
type Config struct {
	SubscriptionID string
	Cloud          string // AzurePublic (default), AzureChina, AzureUSGovernment
	// ResourceManager, when set, overrides the cloud's Resource Manager
	// endpoint (Azure Stack Hub, or the served model in tests); Audience
	// defaults to it.
	ResourceManager string
	Audience        string
	// AuthorityHost overrides the cloud's Entra ID authority.
	AuthorityHost string
	// Credential overrides DefaultAzureCredential (tests).
	Credential azcore.TokenCredential
	// Transport overrides the HTTP client (tests).
	Transport policy.Transporter
	// PollFrequency is the LRO polling interval when the service sends no
	// Retry-After; the SDK's 30 s default wastes minutes per bake.
	PollFrequency time.Duration
	// MaxThrottleWait bounds one wait on a 429's Retry-After (the SDK gives
	// up on waits above 60 s and hands the 429 back; we wait it out).
	MaxThrottleWait time.Duration
	// MaxThrottleRetries bounds how often one call is retried after 429s.
	MaxThrottleRetries int
	Logger             *slog.Logger
	// Sleep waits d or until ctx ends; tests scale time with it. Default:
	// a real timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// Clients is imagebake's Resource Manager connection: the SDK clients
// (unexported: callers use the verbs of this package, which all go through
// one transport, see transport.go) and how to wait on Azure.
type Clients struct {
	cfg   Config
	log   *slog.Logger
	cred  azcore.TokenCredential
	cloud cloud.Configuration
	sub   string

	groups         *armresources.ResourceGroupsClient
	resources      *armresources.Client
	vnets          *armnetwork.VirtualNetworksClient
	nsgs           *armnetwork.SecurityGroupsClient
	publicIPs      *armnetwork.PublicIPAddressesClient
	nics           *armnetwork.InterfacesClient
	vms            *armcompute.VirtualMachinesClient
	images         *armcompute.VirtualMachineImagesClient
	managedImages  *armcompute.ImagesClient
	galleryImages  *armcompute.GalleryImagesClient
	galleryVersion *armcompute.GalleryImageVersionsClient
}

// ErrNoCredentials means no credential in the chain could get a token.
var ErrNoCredentials = errors.New("no Azure credentials")

// NewClients builds the clients. It does not call Azure.
func NewClients(cfg Config) (*Clients, error) {
	if cfg.SubscriptionID == "" {
		return nil, errors.New("no subscription: pass --subscription or set AZURE_SUBSCRIPTION_ID")
	}
	if cfg.Cloud == "" {
		cfg.Cloud = "AzurePublic"
	}
	cl, ok := Clouds()[cfg.Cloud]
	if !ok {
		return nil, fmt.Errorf("--cloud %q: use AzurePublic, AzureChina or AzureUSGovernment (or --resource-manager-endpoint)", cfg.Cloud)
	}
	// Copy the map so the SDK's package-level configuration is never mutated.
	svc := map[cloud.ServiceName]cloud.ServiceConfiguration{}
	for k, v := range cl.Services {
		svc[k] = v
	}
	cl.Services = svc
	if cfg.ResourceManager != "" {
		aud := cfg.Audience
		if aud == "" {
			aud = cfg.ResourceManager
		}
		cl.Services[cloud.ResourceManager] = cloud.ServiceConfiguration{Endpoint: cfg.ResourceManager, Audience: aud}
	}
	if cfg.AuthorityHost != "" {
		cl.ActiveDirectoryAuthorityHost = cfg.AuthorityHost
	}
	if cfg.PollFrequency <= 0 {
		cfg.PollFrequency = 5 * time.Second
	}
	if cfg.MaxThrottleWait <= 0 {
		cfg.MaxThrottleWait = 20 * time.Minute
	}
	if cfg.MaxThrottleRetries <= 0 {
		cfg.MaxThrottleRetries = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	cred := cfg.Credential
	if cred == nil {
		var err error
		cred, err = azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions:            azcore.ClientOptions{Cloud: cl, Transport: cfg.Transport},
			DisableInstanceDiscovery: cfg.AuthorityHost != "" || cfg.ResourceManager != "",
		})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoCredentials, err)
		}
	}
	cred = hintingCredential{cred}
	opts := &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Cloud: cl, Transport: cfg.Transport,
		Retry: policy.RetryOptions{MaxRetries: 4, RetryDelay: 800 * time.Millisecond, MaxRetryDelay: 60 * time.Second}}}
	sub := cfg.SubscriptionID
	c := &Clients{cfg: cfg, log: cfg.Logger, cred: cred, cloud: cl, sub: sub}
	rf, err := armresources.NewClientFactory(sub, cred, opts)
	if err != nil {
		return nil, err
	}
	nf, err := armnetwork.NewClientFactory(sub, cred, opts)
	if err != nil {
		return nil, err
	}
	cf, err := armcompute.NewClientFactory(sub, cred, opts)
	if err != nil {
		return nil, err
	}
	c.groups, c.resources = rf.NewResourceGroupsClient(), rf.NewClient()
	c.vnets, c.nsgs, c.publicIPs, c.nics = nf.NewVirtualNetworksClient(), nf.NewSecurityGroupsClient(), nf.NewPublicIPAddressesClient(), nf.NewInterfacesClient()
	c.vms, c.images, c.managedImages = cf.NewVirtualMachinesClient(), cf.NewVirtualMachineImagesClient(), cf.NewImagesClient()
	c.galleryImages, c.galleryVersion = cf.NewGalleryImagesClient(), cf.NewGalleryImageVersionsClient()
	return c, nil
}

// CheckCredentials gets a Resource Manager token before anything is
// created, so a missing login fails fast with a message saying how to fix it.
func (c *Clients) CheckCredentials(ctx context.Context) error {
	aud := c.cloud.Services[cloud.ResourceManager].Audience
	scope := strings.TrimSuffix(aud, "/") + "/.default"
	_, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	return err
}

// loginHint says how to get credentials the default chain can use.
const loginHint = "Log in first: `az login` (Azure CLI), or set AZURE_CLIENT_ID with AZURE_TENANT_ID and AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE (workload identity, e.g. azure/login with OpenID Connect), or run on a VM with a managed identity"

// hintingCredential turns a failure to get a token into ErrNoCredentials
// with the login hint, wherever it happens: in the credentials stage of a
// bake, or in the first request of versions list, gc or rollback, which
// have no stage of their own for it.
type hintingCredential struct{ azcore.TokenCredential }

func (h hintingCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := h.TokenCredential.GetToken(ctx, opts)
	if err != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w: %v\n%s", ErrNoCredentials, firstLine(err.Error()), loginHint)
	}
	return tok, err
}

// Sleep waits one poll interval (or until ctx ends).
func (c *Clients) Sleep(ctx context.Context) error { return c.cfg.Sleep(ctx, c.cfg.PollFrequency) }
