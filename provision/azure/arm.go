// Package azure is imagebake's Azure side: credentials and clouds, the
// Resource Manager clients, throttling and long-running-operation polling
// tuned for bakes, and the build machine's resources (resource group,
// network, VM).
package azure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
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

// Clients are the Resource Manager clients a bake uses.
type Clients struct {
	cfg            Config
	log            *slog.Logger
	Cred           azcore.TokenCredential
	Cloud          cloud.Configuration
	Subscription   string
	Groups         *armresources.ResourceGroupsClient
	Resources      *armresources.Client
	VNets          *armnetwork.VirtualNetworksClient
	Subnets        *armnetwork.SubnetsClient
	NSGs           *armnetwork.SecurityGroupsClient
	PublicIPs      *armnetwork.PublicIPAddressesClient
	NICs           *armnetwork.InterfacesClient
	VMs            *armcompute.VirtualMachinesClient
	Images         *armcompute.VirtualMachineImagesClient
	ManagedImages  *armcompute.ImagesClient
	Disks          *armcompute.DisksClient
	GalleryImages  *armcompute.GalleryImagesClient
	GalleryVersion *armcompute.GalleryImageVersionsClient
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
	opts := &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Cloud: cl, Transport: cfg.Transport,
		Retry: policy.RetryOptions{MaxRetries: 4, RetryDelay: 800 * time.Millisecond, MaxRetryDelay: 60 * time.Second}}}
	sub := cfg.SubscriptionID
	c := &Clients{cfg: cfg, log: cfg.Logger, Cred: cred, Cloud: cl, Subscription: sub}
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
	c.Groups, c.Resources = rf.NewResourceGroupsClient(), rf.NewClient()
	c.VNets, c.Subnets, c.NSGs, c.PublicIPs, c.NICs = nf.NewVirtualNetworksClient(), nf.NewSubnetsClient(), nf.NewSecurityGroupsClient(), nf.NewPublicIPAddressesClient(), nf.NewInterfacesClient()
	c.VMs, c.Images, c.ManagedImages, c.Disks = cf.NewVirtualMachinesClient(), cf.NewVirtualMachineImagesClient(), cf.NewImagesClient(), cf.NewDisksClient()
	c.GalleryImages, c.GalleryVersion = cf.NewGalleryImagesClient(), cf.NewGalleryImageVersionsClient()
	return c, nil
}

// CheckCredentials gets a Resource Manager token before anything is
// created, so a missing login fails fast with a message saying how to fix it.
func (c *Clients) CheckCredentials(ctx context.Context) error {
	aud := c.Cloud.Services[cloud.ResourceManager].Audience
	scope := strings.TrimSuffix(aud, "/") + "/.default"
	if _, err := c.Cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}}); err != nil {
		return fmt.Errorf("%w: %v\nLog in first: `az login` (Azure CLI), or set AZURE_CLIENT_ID with AZURE_TENANT_ID and AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE (workload identity, e.g. azure/login with OpenID Connect), or run on a VM with a managed identity", ErrNoCredentials, firstLine(err.Error()))
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Do runs one Resource Manager call, waiting out throttling: a 429 whose
// Retry-After exceeds the SDK's retry cap comes straight back from the SDK,
// and a nightly bake should wait, not fail.
func (c *Clients) Do(ctx context.Context, what string, call func(ctx context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return nil
		}
		wait, throttled := retryAfter(err)
		if !throttled || attempt >= c.cfg.MaxThrottleRetries {
			return fmt.Errorf("%s: %w", what, err)
		}
		if wait > c.cfg.MaxThrottleWait {
			return fmt.Errorf("%s: throttled for %s, more than the %s imagebake waits: %w", what, wait, c.cfg.MaxThrottleWait, err)
		}
		c.log.Warn("throttled by Azure; waiting", "call", what, "retry-after", wait)
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return fmt.Errorf("%s: waiting out throttling: %w", what, err)
		}
	}
}

// Sleep waits one poll interval (or until ctx ends).
func (c *Clients) Sleep(ctx context.Context) error { return c.cfg.Sleep(ctx, c.cfg.PollFrequency) }

// retryAfter reads a 429's Retry-After (seconds or HTTP date).
func retryAfter(err error) (time.Duration, bool) {
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusTooManyRequests {
		return 0, false
	}
	d := 10 * time.Second
	if re.RawResponse != nil {
		h := re.RawResponse.Header.Get("Retry-After")
		if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
			d = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(h); err == nil {
			d = time.Until(t)
		}
		if ms := re.RawResponse.Header.Get("Retry-After-Ms"); ms != "" {
			if v, err := strconv.Atoi(ms); err == nil {
				d = time.Duration(v) * time.Millisecond
			}
		}
	}
	return d, true
}

// Poll waits for a long-running operation at the service's Retry-After or
// the configured frequency, and waits out throttling on the polls too.
func Poll[T any](ctx context.Context, c *Clients, what string, p *runtime.Poller[T]) (T, error) {
	var zero T
	for {
		if p.Done() {
			var res T
			err := c.Do(ctx, what, func(ctx context.Context) error {
				var err error
				res, err = p.Result(ctx)
				return err
			})
			return res, err
		}
		var resp *http.Response
		err := c.Do(ctx, what+" (poll)", func(ctx context.Context) error {
			var err error
			resp, err = p.Poll(ctx)
			return err
		})
		if err != nil {
			return zero, err
		}
		if p.Done() {
			continue
		}
		wait := c.cfg.PollFrequency
		if resp != nil {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = min(time.Duration(s)*time.Second, 60*time.Second)
			}
		}
		if err := c.cfg.Sleep(ctx, wait); err != nil {
			return zero, fmt.Errorf("%s: %w", what, err)
		}
	}
}

// IsNotFound reports a 404.
func IsNotFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// IsStatus reports an Azure response with the given status code.
func IsStatus(err error, code int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}
