package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/bake"
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

func azureClients(c *cli.Context) (*az.Clients, error) {
	clients, err := az.NewClients(az.Config{
		SubscriptionID: c.String("subscription"), Cloud: c.String("cloud"),
		ResourceManager: c.String("resource-manager-endpoint"), Audience: c.String("resource-manager-audience"),
		AuthorityHost: os.Getenv("AZURE_AUTHORITY_HOST"), PollFrequency: c.Duration("poll-interval"),
		MaxThrottleWait: c.Duration("max-throttle-wait"), Logger: logger(c),
	})
	if errors.Is(err, az.ErrNoCredentials) {
		return nil, cli.Exit("imagebake: "+err.Error(), exitFailed)
	}
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return clients, nil
}

func verifyAzure(c *cli.Context, r *recipes.Recipe, version string) error {
	if r.Gallery.Azure == nil {
		return cli.Exit(fmt.Sprintf("%s: verify --target azure needs gallery.azure in the recipe", r.Source), exitUsage)
	}
	opts, textOut, jsonOut, err := azureOptions(c, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(textOut, "verifying %s %s on Azure\n", r.Gallery.Image, firstNonEmpty(version, "latest"))
	m, err := bake.VerifyAzure(c.Context, r, version, opts)
	if err := finish(c, "verify", m, err, textOut, jsonOut); err != nil {
		return err
	}
	fmt.Fprintf(textOut, "verified %s %s: %d checks passed\n", r.Gallery.Image, m.Version, len(m.Checks))
	return nil
}

// azureOptions builds the Azure options shared by bake and verify.
func azureOptions(c *cli.Context, r *recipes.Recipe) (bake.AzureOptions, io.Writer, bool, error) {
	for _, s := range c.StringSlice("ssh-source") {
		if err := recipes.SSHSourceCIDR(s); err != nil {
			return bake.AzureOptions{}, nil, false, usageErr("--ssh-source: %v", err)
		}
	}
	clients, err := azureClients(c)
	if err != nil {
		return bake.AzureOptions{}, nil, false, err
	}
	jsonOut := c.String("output") == "json"
	textOut := c.App.Writer
	if jsonOut {
		textOut = c.App.ErrWriter
	}
	opts := bake.AzureOptions{
		Clients: clients, Location: c.String("location"), BuildResourceGroup: c.String("build-resource-group"),
		SubnetID: c.String("subnet-id"), SSHSources: c.StringSlice("ssh-source"), SSHPort: c.Int("ssh-port"),
		VMSize: c.String("vm-size"), Spot: c.Bool("spot"), Identity: c.String("identity"),
		CreateDefinition: c.Bool("create-definition"), NoWait: c.Bool("no-wait"), ManagedImage: c.Bool("managed-image"), KeepOnFail: c.Bool("keep-on-failure"),
		Abort: abortChan(c), LogDir: logDir(c, r.Name, c.Command.Name), Logger: logger(c), Sink: bake.NewTextSink(textOut, isTerminal(textOut)),
		GitCommit: gitCommit(r.Source), Timeouts: stageTimeouts(r), CleanupTime: c.Duration("cleanup-timeout"),
	}
	if c.IsSet("version") {
		opts.Version = c.String("version")
	}
	return opts, textOut, jsonOut, nil
}

func bakeAzure(c *cli.Context, r *recipes.Recipe) error {
	if r.Gallery.Azure == nil || r.Base.Azure == "" {
		return cli.Exit(fmt.Sprintf("%s: the azure target needs base.azure and gallery.azure in the recipe", r.Source), exitUsage)
	}
	opts, textOut, jsonOut, err := azureOptions(c, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(textOut, "baking %s (%.12s) on Azure\n", r.Name, r.Hash())
	m, err := bake.Azure(c.Context, r, opts)
	return finish(c, "bake", m, err, textOut, jsonOut)
}
