package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/bake"
	"github.com/imagebake/imagebake/internal/buildinfo"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/recipes"
)

func azureFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "subscription", Usage: "Azure subscription ID", EnvVars: []string{"IMAGEBAKE_SUBSCRIPTION", "AZURE_SUBSCRIPTION_ID"}},
		&cli.StringFlag{Name: "cloud", Value: "AzurePublic", Usage: "AzurePublic, AzureChina or AzureUSGovernment", EnvVars: envs("CLOUD")},
		&cli.StringFlag{Name: "resource-manager-endpoint", Usage: "a custom Resource Manager endpoint (Azure Stack Hub)", EnvVars: envs("RESOURCE_MANAGER_ENDPOINT")},
		&cli.StringFlag{Name: "resource-manager-audience", Usage: "the token audience for a custom endpoint (default: the endpoint)", EnvVars: envs("RESOURCE_MANAGER_AUDIENCE")},
		&cli.StringFlag{Name: "location", Usage: "build region (default: the recipe's build.location)", EnvVars: envs("LOCATION")},
		&cli.StringFlag{Name: "build-resource-group", Usage: "build in this existing resource group (default: a temporary one, deleted afterwards)", EnvVars: envs("BUILD_RESOURCE_GROUP")},
		&cli.StringFlag{Name: "subnet-id", Usage: "use this existing subnet and a private address instead of a new network", EnvVars: envs("SUBNET_ID")},
		&cli.StringSliceFlag{Name: "ssh-source", Usage: "CIDR allowed to reach the build VM's SSH (repeatable)", EnvVars: envs("SSH_SOURCE")},
		&cli.IntFlag{Name: "ssh-port", Value: 22, Usage: "the build VM's SSH port", EnvVars: envs("SSH_PORT"), Hidden: true},
		&cli.StringFlag{Name: "vm-size", Usage: "build VM size (default: the recipe's build.vmSize)", EnvVars: envs("VM_SIZE")},
		&cli.BoolFlag{Name: "spot", Usage: "use a Spot VM for the build", EnvVars: envs("SPOT")},
		&cli.StringFlag{Name: "identity", Usage: "user-assigned identity resource ID for the build VM", EnvVars: envs("IDENTITY")},
		&cli.BoolFlag{Name: "create-definition", Usage: "create the gallery image definition when it is missing", EnvVars: envs("CREATE_DEFINITION")},
		&cli.BoolFlag{Name: "managed-image", Usage: "capture a managed image first and publish the version from it", EnvVars: envs("MANAGED_IMAGE")},
		&cli.BoolFlag{Name: "no-wait", Usage: "do not wait for the version's replication", EnvVars: envs("NO_WAIT")},
		&cli.DurationFlag{Name: "poll-interval", Value: 5 * time.Second, Usage: "long-running operation polling when Azure sends no Retry-After", EnvVars: envs("POLL_INTERVAL")},
		&cli.DurationFlag{Name: "max-throttle-wait", Value: 20 * time.Minute, Usage: "longest single wait on a throttled (429) call", EnvVars: envs("MAX_THROTTLE_WAIT")},
	}
}

// azureConnFlags say how to reach Azure: which cloud, subscription and
// endpoint, and how to wait on it. Every Azure command has them.
type azureConnFlags struct {
	subscription    string
	subscriptionSet bool
	cloud           string
	endpoint        string
	audience        string
	location        string
	pollInterval    time.Duration
	maxThrottleWait time.Duration
}

// azureBuildFlags are what bake and verify build with on Azure.
type azureBuildFlags struct {
	azureConnFlags
	buildResourceGroup string
	subnetID           string
	sshSources         []string
	sshPort            int
	vmSize             string
	spot               bool
	identity           string
	createDefinition   bool
	managedImage       bool
	noWait             bool
}

func readAzureConnFlags(c *cli.Context) azureConnFlags {
	return azureConnFlags{
		subscription: c.String("subscription"), subscriptionSet: c.IsSet("subscription"), cloud: c.String("cloud"),
		endpoint: c.String("resource-manager-endpoint"), audience: c.String("resource-manager-audience"),
		location: c.String("location"), pollInterval: c.Duration("poll-interval"), maxThrottleWait: c.Duration("max-throttle-wait"),
	}
}

func readAzureBuildFlags(c *cli.Context) azureBuildFlags {
	return azureBuildFlags{
		azureConnFlags: readAzureConnFlags(c), buildResourceGroup: c.String("build-resource-group"), subnetID: c.String("subnet-id"),
		sshSources: c.StringSlice("ssh-source"), sshPort: c.Int("ssh-port"), vmSize: c.String("vm-size"), spot: c.Bool("spot"),
		identity: c.String("identity"), createDefinition: c.Bool("create-definition"), managedImage: c.Bool("managed-image"), noWait: c.Bool("no-wait"),
	}
}

// azureClients connects to Azure. The subscription and location are
// checked first with the recipe's rules: the SDK joins them into URLs, so
// ".." would reach another resource.
func (a *app) azureClients(f azureConnFlags) (*az.Clients, error) {
	if f.subscription != "" {
		if err := recipes.ValidateSubscriptionID(f.subscription); err != nil {
			return nil, usageErr("--subscription: %v", err)
		}
	}
	if f.location != "" {
		if err := recipes.ValidateRegionName(f.location); err != nil {
			return nil, usageErr("--location: %v", err)
		}
	}
	clients, err := az.NewClients(az.Config{
		SubscriptionID: f.subscription, Cloud: f.cloud, ResourceManager: f.endpoint, Audience: f.audience,
		AuthorityHost: os.Getenv("AZURE_AUTHORITY_HOST"), PollFrequency: f.pollInterval,
		MaxThrottleWait: f.maxThrottleWait, Logger: a.log,
	})
	if errors.Is(err, az.ErrNoCredentials) {
		return nil, failed("%v", err)
	}
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return clients, nil
}

// azureOptions builds the Azure options shared by bake and verify.
func (a *app) azureOptions(f localFlags, azf azureBuildFlags, r *recipes.Recipe, kind string) (bake.AzureOptions, error) {
	for _, s := range azf.sshSources {
		if err := recipes.SSHSourceCIDR(s); err != nil {
			return bake.AzureOptions{}, usageErr("--ssh-source: %v", err)
		}
	}
	if azf.buildResourceGroup != "" {
		if err := recipes.ValidateResourceGroupName(azf.buildResourceGroup); err != nil {
			return bake.AzureOptions{}, usageErr("--build-resource-group: %v", err)
		}
	}
	clients, err := a.azureClients(azf.azureConnFlags)
	if err != nil {
		return bake.AzureOptions{}, err
	}
	textOut := f.out.text()
	return bake.AzureOptions{
		Clients: clients, Location: azf.location, BuildResourceGroup: azf.buildResourceGroup,
		SubnetID: azf.subnetID, SSHSources: azf.sshSources, SSHPort: azf.sshPort,
		VMSize: azf.vmSize, Spot: azf.spot, Identity: azf.identity,
		CreateDefinition: azf.createDefinition, NoWait: azf.noWait, ManagedImage: azf.managedImage, KeepOnFail: f.keepOnFailure,
		Abort: a.abort, LogDir: f.logDirFor(r.Name, kind), Logger: a.log, Sink: bake.NewTextSink(textOut, isTerminal(textOut)),
		GitCommit: buildinfo.SourceCommit(r.Source), Timeouts: bake.StageTimeouts(r), CleanupTime: f.cleanupTimeout,
	}, nil
}

func (a *app) bakeAzure(ctx context.Context, f bakeFlags, r *recipes.Recipe) error {
	if r.Gallery.Azure == nil || r.Base.Azure == "" {
		return cli.Exit(fmt.Sprintf("%s: the azure target needs base.azure and gallery.azure in the recipe", r.Source), exitUsage)
	}
	opts, err := a.azureOptions(f.localFlags, f.azure, r, "bake")
	if err != nil {
		return err
	}
	opts.Version = f.version
	fmt.Fprintf(f.out.text(), "baking %s (%.12s) on Azure\n", r.Name, r.Hash())
	m, err := bake.Azure(ctx, r, opts)
	return a.finish("bake", m, err, f.out)
}

func (a *app) verifyAzure(ctx context.Context, f verifyFlags, r *recipes.Recipe) error {
	if r.Gallery.Azure == nil {
		return cli.Exit(fmt.Sprintf("%s: verify --target azure needs gallery.azure in the recipe", r.Source), exitUsage)
	}
	opts, err := a.azureOptions(f.localFlags, f.azure, r, "verify")
	if err != nil {
		return err
	}
	fmt.Fprintf(f.out.text(), "verifying %s %s on Azure\n", r.Gallery.Image, firstNonEmpty(f.version, "latest"))
	m, err := bake.VerifyAzure(ctx, r, f.version, opts)
	if err := a.finish("verify", m, err, f.out); err != nil {
		return err
	}
	fmt.Fprintf(f.out.text(), "verified %s %s: %d checks passed\n", r.Gallery.Image, m.Version, len(m.Checks))
	return nil
}
