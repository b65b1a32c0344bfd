package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/fleet"
	fleetazure "github.com/imagebake/imagebake/fleet/azure"
	"github.com/imagebake/imagebake/gallery"
	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/internal/contract"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/release"
	"github.com/imagebake/imagebake/runnerreg"
)

// appKeyEnv holds a GitHub App's private key (PEM) when no key file is
// given: a key is never a flag value, where other processes could read it.
const appKeyEnv = "IMAGEBAKE_GITHUB_APP_KEY"

// labelRe is what a runner label may be (the recipe's runner.labels rule).
var labelRe = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]{0,99}$`)

// fleetConnFlags are the flags every fleet command has: where the runner
// VMs are and how to reach that platform.
func fleetConnFlags(rgUsage string) []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "target", Value: "local", Usage: "local or azure", EnvVars: envs("TARGET")},
		&cli.StringFlag{Name: "resource-group", Usage: rgUsage, EnvVars: envs("RESOURCE_GROUP")},
		&cli.StringFlag{Name: "runners-dir", Usage: "local target: where runner VMs' records and kept disks are (default $XDG_DATA_HOME/imagebake/runners)", EnvVars: envs("RUNNERS_DIR")},
		outputFlag(),
	}
	// Only the flags azureClients reads; the build flags mean nothing here.
	keep := []string{"subscription", "cloud", "resource-manager-endpoint", "resource-manager-audience", "poll-interval", "max-throttle-wait"}
	for _, f := range azureFlags() {
		if slices.Contains(keep, f.Names()[0]) {
			flags = append(flags, f)
		}
	}
	return flags
}

type launchFlags struct {
	target, resourceGroup  string
	azure                  azureConnFlags
	out                    output
	image, version         string
	recipe                 string
	galleryDir             string
	galleryRG, galleryName string
	count                  int
	cycle                  string
	subnetID, identityID   string
	vmSize                 string
	spot, ephemeral        bool
	labels                 []string
	runnerGroupID          int64
	appID, appKeyFile      string
	apiURL                 string
	parallel               int
	namePrefix             string
	// local target
	runnersDir, cacheDir string
	standIn              bool
	memoryMiB, cpus      int
}

func (a *app) launchCommand() *cli.Command {
	return &cli.Command{
		Name:      "launch",
		Usage:     "create runner VMs from a published version, each registered once with GitHub",
		ArgsUsage: "IMAGE[@VERSION]",
		Description: "Without @VERSION, launches the version \"latest\" resolves to. For a recipe with runner.registration jit,\n" +
			"each VM's runner is registered first (one just-in-time configuration, in that VM's userData only): a VM whose\n" +
			"registration failed is not created, and a registration whose VM could not be created is deleted.\n" +
			"GitHub credential: --github-app-id with --github-app-key-file or the key in $" + appKeyEnv + ", else $GITHUB_TOKEN.\n" +
			"In GitHub Actions it appends vms=[…] and runner-ids=[…] to $GITHUB_OUTPUT.\n" +
			"Exit codes: 0 every VM launched, 1 some failed (each is listed), 2 bad usage.",
		Flags: append(fleetConnFlags("the runner VMs' resource group (default: the recipe's runner.env RESOURCE_GROUP)"),
			&cli.StringFlag{Name: "location", Usage: "the runner VMs' region (default: the recipe's build.location)", EnvVars: envs("LOCATION")},
			&cli.StringFlag{Name: "recipe", Usage: "the image's recipe: registration, REPO_URL, labels, gallery (default recipes/IMAGE.yaml)", EnvVars: envs("RECIPE")},
			&cli.StringFlag{Name: "gallery-dir", Usage: "the local gallery folder (default $XDG_DATA_HOME/imagebake/gallery)", EnvVars: envs("GALLERY_DIR")},
			&cli.StringFlag{Name: "gallery-resource-group", Usage: "the Azure gallery's resource group (default: the recipe's gallery.azure)", EnvVars: envs("GALLERY_RESOURCE_GROUP")},
			&cli.StringFlag{Name: "gallery", Usage: "the Azure Compute Gallery (default: the recipe's gallery.azure)", EnvVars: envs("GALLERY")},
			&cli.IntFlag{Name: "count", Value: 1, Usage: fmt.Sprintf("how many runner VMs (1 to %d)", fleet.MaxCount), EnvVars: envs("COUNT")},
			&cli.StringFlag{Name: "cycle", Value: contract.CycleDelete, Usage: "what each VM does after its job: delete, deallocate or running", EnvVars: envs("CYCLE")},
			&cli.StringFlag{Name: "subnet-id", Usage: "the existing subnet the VMs join (azure; no public address)", EnvVars: envs("SUBNET_ID")},
			&cli.StringFlag{Name: "identity-id", Usage: "the user-assigned identity every VM gets (its cycle script acts through it)", EnvVars: envs("IDENTITY_ID")},
			&cli.StringFlag{Name: "vm-size", Usage: "runner VM size (default: the recipe's build.vmSize)", EnvVars: envs("RUNNER_VM_SIZE")},
			&cli.BoolFlag{Name: "spot", Usage: "Spot VMs (evicted ones are deallocated, or deleted with --ephemeral-os-disk)", EnvVars: envs("SPOT")},
			&cli.BoolFlag{Name: "ephemeral-os-disk", Usage: "OS disk on the host (such a VM cannot be deallocated: not with --cycle deallocate)", EnvVars: envs("EPHEMERAL_OS_DISK")},
			&cli.StringSliceFlag{Name: "labels", Usage: "runner labels added to the recipe's runner.labels (comma separated or repeated)", EnvVars: envs("LABELS")},
			&cli.Int64Flag{Name: "runner-group-id", Usage: "the runner group (default: the recipe's runner.groupId)", EnvVars: envs("RUNNER_GROUP_ID")},
			&cli.StringFlag{Name: "github-app-id", Usage: "register with this GitHub App (its key from --github-app-key-file or $" + appKeyEnv + ")", EnvVars: envs("GITHUB_APP_ID")},
			&cli.StringFlag{Name: "github-app-key-file", Usage: "the GitHub App's private key (PEM file)", EnvVars: envs("GITHUB_APP_KEY_FILE")},
			&cli.StringFlag{Name: "github-api-url", Usage: "the GitHub REST API (default: from the recipe's REPO_URL)", EnvVars: envs("GITHUB_API_URL")},
			&cli.IntFlag{Name: "parallel", Value: fleet.DefaultParallel, Usage: "VMs created at a time", EnvVars: envs("PARALLEL")},
			&cli.StringFlag{Name: "name-prefix", Usage: "VM and runner names are PREFIX-LAUNCHID-N (default: the image name)", EnvVars: envs("NAME_PREFIX")},
			&cli.BoolFlag{Name: "github-stand-in", Usage: "local target: play GitHub with imagebake's built-in stand-in (no GitHub account; the runners take one stand-in job each)"},
			&cli.StringFlag{Name: "cache-dir", Value: defaultCacheDir(), Usage: "local target: base images (the kernel a Debian-based image boots with)", EnvVars: envs("CACHE_DIR")},
			&cli.IntFlag{Name: "memory", Usage: "local target: memory per runner VM in MiB (default 1024)", EnvVars: envs("MEMORY")},
			&cli.IntFlag{Name: "cpus", Usage: "local target: CPUs per runner VM (default 1)", EnvVars: envs("CPUS")},
		),
		Action: func(c *cli.Context) error {
			f, err := a.readLaunchFlags(c)
			if err != nil {
				return err
			}
			return a.runLaunch(c, f)
		},
	}
}

func (a *app) readLaunchFlags(c *cli.Context) (launchFlags, error) {
	out, err := a.readOutput(c)
	if err != nil {
		return launchFlags{}, err
	}
	if c.NArg() != 1 {
		return launchFlags{}, usageErr("launch needs IMAGE[@VERSION], e.g. imagebake launch github-runner-noble --target azure --count 2")
	}
	f := launchFlags{target: c.String("target"), resourceGroup: c.String("resource-group"), azure: readAzureConnFlags(c), out: out,
		recipe: c.String("recipe"), galleryDir: c.String("gallery-dir"), galleryRG: c.String("gallery-resource-group"), galleryName: c.String("gallery"),
		count: c.Int("count"), cycle: c.String("cycle"), subnetID: c.String("subnet-id"), identityID: c.String("identity-id"),
		vmSize: c.String("vm-size"), spot: c.Bool("spot"), ephemeral: c.Bool("ephemeral-os-disk"), runnerGroupID: c.Int64("runner-group-id"),
		appID: c.String("github-app-id"), appKeyFile: c.String("github-app-key-file"), apiURL: c.String("github-api-url"),
		parallel: c.Int("parallel"), namePrefix: c.String("name-prefix"),
		runnersDir: c.String("runners-dir"), cacheDir: c.String("cache-dir"), standIn: c.Bool("github-stand-in"),
		memoryMiB: c.Int("memory"), cpus: c.Int("cpus")}
	if f.standIn && f.target != "local" {
		return f, usageErr("--github-stand-in is for the local target: on Azure the runners register with GitHub itself")
	}
	f.image, f.version = parseImageRef(c.Args().First())
	if err := gallery.ValidateImageName(f.image); err != nil {
		return f, usageErr("%v", err)
	}
	if f.version != "" && f.version != "latest" {
		if _, err := gallery.ParseVersion(f.version); err != nil {
			return f, usageErr("launch %s: %v", c.Args().First(), err)
		}
	}
	if err := checkTarget(f.target); err != nil {
		return f, err
	}
	if f.count < 1 || f.count > fleet.MaxCount {
		return f, usageErr("--count %d: want 1 to %d", f.count, fleet.MaxCount)
	}
	switch f.cycle {
	case contract.CycleDelete, contract.CycleDeallocate, contract.CycleRunning:
	default:
		return f, usageErr("--cycle %q: use delete, deallocate or running", f.cycle)
	}
	if f.ephemeral && f.cycle == contract.CycleDeallocate {
		return f, usageErr("--ephemeral-os-disk with --cycle deallocate: a VM with an ephemeral OS disk cannot be deallocated; use --cycle delete or running, or a managed OS disk")
	}
	if f.parallel < 1 {
		return f, usageErr("--parallel %d: want at least 1", f.parallel)
	}
	if f.namePrefix != "" {
		if err := fleet.ValidatePrefix(f.namePrefix); err != nil {
			return f, usageErr("--name-prefix: %v", err)
		}
	}
	if c.IsSet("runner-group-id") && f.runnerGroupID < 1 {
		return f, usageErr("--runner-group-id %d: a runner group ID is positive (1 is GitHub's Default group)", f.runnerGroupID)
	}
	for _, l := range c.StringSlice("labels") {
		l = strings.TrimSpace(l)
		if !labelRe.MatchString(l) {
			return f, usageErr("--labels %q: labels use letters, digits, '.', '_' and '-', and do not start with '-'", l)
		}
		f.labels = append(f.labels, l)
	}
	if f.resourceGroup != "" {
		if err := recipes.ValidateResourceGroupName(f.resourceGroup); err != nil {
			return f, usageErr("--resource-group: %v", err)
		}
	}
	if f.recipe == "" {
		f.recipe = filepath.Join("recipes", f.image+".yaml")
	}
	return f, nil
}

// launchResult is what launch prints with --output json.
type launchResult struct {
	Image     string `json:"image"`
	Version   string `json:"version"`
	VersionID string `json:"versionId"`
	// Resolved is what was asked for: an exact version or "latest".
	Resolved     string           `json:"resolvedFrom"`
	LaunchID     string           `json:"launchId"`
	Cycle        string           `json:"cycle"`
	Registration string           `json:"registration"`
	Labels       []string         `json:"labels,omitempty"`
	Launched     []fleet.Launched `json:"launched"`
	Error        string           `json:"error,omitempty"`
}

func (a *app) runLaunch(c *cli.Context, f launchFlags) error {
	ctx := c.Context
	r, err := recipes.Load(f.recipe)
	if err != nil {
		return cli.Exit(fmt.Sprintf("%v\n(launch reads the runner's registration, REPO_URL and labels from the image's recipe; name it with --recipe)", err), exitUsage)
	}
	if r.Runner == nil {
		return usageErr("%s has no runner: launch makes runner VMs", r.Source)
	}
	if r.Gallery.Image != f.image {
		fmt.Fprintf(f.out.text(), "note: %s publishes image %s, not %s\n", r.Source, r.Gallery.Image, f.image)
	}
	labels := slices.Clone(r.Runner.Labels)
	for _, l := range f.labels {
		if !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	groupID := int64(r.Runner.GroupID)
	if f.runnerGroupID > 0 {
		groupID = f.runnerGroupID
	}
	mode := r.Runner.Registration.Mode
	if mode == contract.RegistrationJIT && len(labels) == 0 {
		return usageErr("%s has no runner.labels: give jit runners at least one label (--labels)", r.Source)
	}
	// The GitHub client comes first: a missing credential must stop the
	// launch before anything is created.
	var reg fleet.Registrar
	if mode == contract.RegistrationJIT && !f.standIn {
		client, err := a.registrar(f, r)
		if err != nil {
			return err
		}
		reg = client
	}

	var (
		target fleet.Target
		iv     gallery.ImageVersion
		where  string
	)
	switch f.target {
	case "azure":
		target, iv, err = a.azureFleet(ctx, &f, r)
		if err != nil {
			return err
		}
		where = iv.ID
	default:
		store, err := a.localStore(f.galleryDir)
		if err != nil {
			return err
		}
		if iv, err = release.Resolve(ctx, store, f.image, f.version); err != nil {
			return failed("%v", err)
		}
		where = iv.Path
		env, err := a.localLaunchEnv(ctx, f, r, reg)
		if err != nil {
			return failed("%v", err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
			defer cancel()
			if err := env.Close(cctx); err != nil {
				a.log.Warn("local runner VMs: closing", "err", err)
			}
		}()
		target, reg = env.Target, env.Registrar
		if f.identityID != "" {
			fmt.Fprintf(f.out.text(), "note: --identity-id is for Azure; local runner VMs get the platform stand-in's identity\n")
		}
	}
	asked := firstNonEmpty(f.version, "latest")
	textOut := f.out.text()
	if f.target == "azure" && f.identityID == "" && (f.cycle != contract.CycleRunning || mode == contract.RegistrationKeyVaultPAT) {
		fmt.Fprintf(textOut, "note: no --identity-id: the VMs' cycle script cannot tag, deallocate or delete its VM (nor read Key Vault)\n")
	}
	fmt.Fprintf(textOut, "launching %d runner VMs of %s %s (%s), cycle %s, registration %s\n", f.count, f.image, iv.Name, asked, f.cycle, mode)

	spec := fleet.LaunchSpec{Image: f.image, Version: iv.Name, ImageID: where, Count: f.count, NamePrefix: f.namePrefix,
		Cycle: f.cycle, Registration: mode, Labels: labels, RunnerGroupID: groupID, Parallel: f.parallel}
	if spec.NamePrefix == "" {
		spec.NamePrefix = fleet.DefaultPrefix(f.image)
	}
	spec.LaunchID = fleet.NewLaunchID()
	launched, lerr := fleet.Launch(ctx, spec, target, reg, a.log)
	// A local target's VMs live only while this process serves them: wait
	// for those that were created, also when others failed.
	if w, ok := target.(fleet.Waiter); ok && ctx.Err() == nil && slices.ContainsFunc(launched, func(l fleet.Launched) bool { return l.VM != nil }) {
		fmt.Fprintf(textOut, "serving the runner VMs until each has finished its cycle (Ctrl-C stops them)\n")
		if err := w.Wait(ctx); err != nil {
			lerr = errors.Join(lerr, err)
		}
	}
	res := launchResult{Image: f.image, Version: iv.Name, VersionID: iv.ID, Resolved: asked, LaunchID: spec.LaunchID, Cycle: f.cycle,
		Registration: mode, Labels: labels, Launched: launched}
	if res.Launched == nil {
		res.Launched = []fleet.Launched{}
	}
	if lerr != nil {
		res.Error = lerr.Error()
	}
	var names []string
	ids := []int64{}
	var failures []string
	for _, l := range launched {
		if l.VM == nil {
			msg := l.Error
			if !strings.Contains(msg, l.Name) {
				msg = l.Name + ": " + msg // "not started: …" names no VM
			}
			failures = append(failures, msg)
			continue
		}
		names = append(names, l.Name)
		if l.RunnerID != 0 {
			ids = append(ids, l.RunnerID)
		}
	}
	if names == nil {
		names = []string{}
	}
	if err := f.out.result(res, func(w io.Writer) error { return printLaunched(w, res) }); err != nil {
		return err
	}
	vmsJSON, _ := json.Marshal(names)
	idsJSON, _ := json.Marshal(ids)
	if err := writeGitHubOutput([2]string{"vms", string(vmsJSON)}, [2]string{"runner-ids", string(idsJSON)}); err != nil {
		return failed("GITHUB_OUTPUT: %v", err)
	}
	switch {
	case len(failures) > 0:
		return failed("launch %s: %d of %d runner VMs failed:\n  - %s", spec.LaunchID, len(failures), f.count, printable(strings.Join(failures, "\n  - ")))
	case lerr != nil:
		return failed("launch %s: %s", spec.LaunchID, printable(lerr.Error()))
	}
	return nil
}

func printLaunched(w io.Writer, res launchResult) error {
	ok := 0
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRUNNER\tSTATE")
	for _, l := range res.Launched {
		runner := "-"
		if l.RunnerID != 0 {
			runner = strconv.FormatInt(l.RunnerID, 10)
		}
		state := "created"
		if l.VM == nil {
			state = "failed"
		} else {
			ok++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Name, runner, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "launch %s: %d of %d runner VMs of %s %s created\n", res.LaunchID, ok, len(res.Launched), res.Image, res.Version)
	return nil
}

// registrar is the GitHub client that mints the JIT configurations, for
// the scope in the recipe's runner.env REPO_URL.
func (a *app) registrar(f launchFlags, r *recipes.Recipe) (*runnerreg.Client, error) {
	repoURL := r.Runner.Env["REPO_URL"]
	if repoURL == "" {
		return nil, usageErr("%s: runner.env REPO_URL is not set: jit registration needs the repository or organization to register with", r.Source)
	}
	scope, err := runnerreg.ParseScope(repoURL)
	if err != nil {
		return nil, usageErr("%s: runner.env REPO_URL: %v", r.Source, err)
	}
	if f.apiURL != "" {
		scope = scope.WithAPIBase(f.apiURL)
	}
	if f.appID == "" && f.appKeyFile != "" {
		return nil, usageErr("--github-app-key-file needs --github-app-id")
	}
	keyEnv := ""
	if f.appKeyFile == "" {
		keyEnv = appKeyEnv
	}
	app, token, err := runnerreg.CredentialsFromEnv(f.appID, f.appKeyFile, keyEnv, os.Getenv)
	if err != nil {
		return nil, usageErr("%v", err)
	}
	client, err := runnerreg.New(runnerreg.Options{Scope: scope, App: app, Token: token, Logger: a.log, UserAgent: "imagebake"})
	if err != nil {
		return nil, usageErr("%v", err)
	}
	return client, nil
}

// azureFleet connects to Azure, resolves the version in the recipe's
// gallery (or --gallery-resource-group/--gallery), and returns the Azure
// target for the runner VMs, booting with the definition's security type.
func (a *app) azureFleet(ctx context.Context, f *launchFlags, r *recipes.Recipe) (fleet.Target, gallery.ImageVersion, error) {
	var none gallery.ImageVersion
	rg := firstNonEmpty(f.resourceGroup, r.Runner.Env["RESOURCE_GROUP"])
	if rg == "" {
		return nil, none, usageErr("launch --target azure needs --resource-group (or runner.env RESOURCE_GROUP in the recipe)")
	}
	if err := recipes.ValidateResourceGroupName(rg); err != nil {
		return nil, none, usageErr("resource group: %v", err)
	}
	if f.subnetID == "" {
		return nil, none, usageErr("launch --target azure needs --subnet-id: the runner VMs join an existing subnet")
	}
	f.azure.location = firstNonEmpty(f.azure.location, r.Build.Location)
	if f.azure.location == "" {
		return nil, none, usageErr("launch --target azure needs --location (or build.location in the recipe)")
	}
	galRG, galName := f.galleryRG, f.galleryName
	if g := r.Gallery.Azure; g != nil {
		galRG, galName = firstNonEmpty(galRG, g.ResourceGroup), firstNonEmpty(galName, g.Gallery)
		if !f.azure.subscriptionSet && g.Subscription != "" {
			f.azure.subscription, f.azure.subscriptionSet = g.Subscription, true
		}
	}
	if galRG == "" || galName == "" {
		return nil, none, usageErr("launch --target azure needs the gallery: gallery.azure in the recipe, or --gallery-resource-group and --gallery")
	}
	if err := recipes.ValidateResourceGroupName(galRG); err != nil {
		return nil, none, usageErr("--gallery-resource-group: %v", err)
	}
	if err := recipes.ValidateGalleryName(galName); err != nil {
		return nil, none, usageErr("--gallery: %v", err)
	}
	clients, err := a.azureClients(f.azure)
	if err != nil {
		return nil, none, err
	}
	store := galleryazure.New(clients, galRG, galName, f.azure.location)
	iv, err := release.Resolve(ctx, store, f.image, f.version)
	if err != nil {
		return nil, none, failed("%v", err)
	}
	if iv.ProvisioningState != "" && iv.ProvisioningState != gallery.StateSucceeded {
		return nil, none, failed("%s %s is %s: only a succeeded version can be launched", f.image, iv.Name, iv.ProvisioningState)
	}
	if !replicatedTo(iv, f.azure.location) {
		var names []string
		for _, reg := range iv.Regions {
			names = append(names, reg.Name)
		}
		return nil, none, failed("%s %s is not replicated to %s (regions: %s): promote it with --add-region %s, or launch with --location",
			f.image, iv.Name, f.azure.location, strings.Join(names, ", "), f.azure.location)
	}
	// A TrustedLaunch definition's images boot only on Trusted Launch VMs.
	def, err := store.Definition(ctx, f.image)
	if err != nil {
		return nil, none, failed("%v", err)
	}
	t := fleetazure.New(clients, fleetazure.Options{ResourceGroup: rg, Location: f.azure.location,
		VMSize: firstNonEmpty(f.vmSize, r.Build.VMSize), SubnetID: f.subnetID, IdentityID: f.identityID, Spot: f.spot,
		EphemeralOSDisk: f.ephemeral, SecurityType: az.BootSecurity(def.SecurityType), Logger: a.log})
	return t, iv, nil
}

// replicatedTo reports whether the version has a replica in location
// (regions come back as display names, "East US"); a version that lists
// no regions is not judged.
func replicatedTo(iv gallery.ImageVersion, location string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }
	for _, r := range iv.Regions {
		if norm(r.Name) == norm(location) {
			return true
		}
	}
	return len(iv.Regions) == 0
}

// fleetTarget is the target runners list and prune work on.
func (a *app) fleetTarget(c *cli.Context, target string, conn azureConnFlags) (fleet.Target, error) {
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	if target == "local" {
		t, err := localFleet(c, a.log)
		if err != nil {
			return nil, failed("%v", err)
		}
		return t, nil
	}
	clients, err := a.azureClients(conn)
	if err != nil {
		return nil, err
	}
	return fleetazure.New(clients, fleetazure.Options{Logger: a.log}), nil
}

const listRGUsage = "only runner VMs in this resource group (default: every group of the subscription)"

func (a *app) runnersCommand() *cli.Command {
	return &cli.Command{
		Name:  "runners",
		Usage: "list and prune the runner VMs imagebake launched",
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "list an image's runner VMs: version, power state, cycle, outcome, age",
				ArgsUsage: "IMAGE",
				Flags:     fleetConnFlags(listRGUsage),
				Action: func(c *cli.Context) error {
					out, err := a.readOutput(c)
					if err != nil {
						return err
					}
					image, rg, err := runnersArgs(c, "runners list")
					if err != nil {
						return err
					}
					t, err := a.fleetTarget(c, c.String("target"), readAzureConnFlags(c))
					if err != nil {
						return err
					}
					return a.runRunnersList(c.Context, t, image, rg, out)
				},
			},
			{
				Name:      "prune",
				Usage:     "delete deallocated runner VMs imagebake launched (prints the plan; deletes only with --yes)",
				ArgsUsage: "IMAGE",
				Description: "Only VMs tagged as launched from IMAGE and deallocated are ever selected: running, starting, stopped\n" +
					"or unknown ones never. Each is deleted with its OS disk.",
				Flags: append(fleetConnFlags(listRGUsage),
					&cli.StringFlag{Name: "older-than", Usage: "only VMs launched longer ago than this (e.g. 72h, 3d)"},
					&cli.StringSliceFlag{Name: "outcome", Usage: "only VMs whose recorded outcome is one of these (" + strings.Join(contract.Outcomes(), ", ") + "; comma separated)"},
					&cli.BoolFlag{Name: "yes", Usage: "delete; without it prune only prints what it would delete"},
				),
				Action: func(c *cli.Context) error {
					out, err := a.readOutput(c)
					if err != nil {
						return err
					}
					image, rg, err := runnersArgs(c, "runners prune")
					if err != nil {
						return err
					}
					var opts fleet.PruneOptions
					if s := c.String("older-than"); s != "" {
						d, err := recipes.ParseDuration(s)
						if err != nil || d <= 0 {
							return usageErr("--older-than %q: want a positive duration such as 72h or 3d", s)
						}
						opts.OlderThan = d
					}
					for _, o := range c.StringSlice("outcome") {
						o = strings.TrimSpace(o)
						if !slices.Contains(contract.Outcomes(), o) {
							return usageErr("--outcome %q: use %s", o, strings.Join(contract.Outcomes(), ", "))
						}
						opts.Outcomes = append(opts.Outcomes, o)
					}
					t, err := a.fleetTarget(c, c.String("target"), readAzureConnFlags(c))
					if err != nil {
						return err
					}
					return a.runRunnersPrune(c.Context, t, image, rg, opts, c.Bool("yes"), out)
				},
			},
		},
	}
}

func runnersArgs(c *cli.Context, cmd string) (image, rg string, err error) {
	if c.NArg() != 1 {
		return "", "", usageErr("%s needs IMAGE, e.g. imagebake %s github-runner-noble --target azure", cmd, cmd)
	}
	image = c.Args().First()
	if err := gallery.ValidateImageName(image); err != nil {
		return "", "", usageErr("%v", err)
	}
	rg = c.String("resource-group")
	if rg != "" {
		if err := recipes.ValidateResourceGroupName(rg); err != nil {
			return "", "", usageErr("--resource-group: %v", err)
		}
	}
	return image, rg, nil
}

func inGroup(vm fleet.VM, rg string) bool { return rg == "" || strings.EqualFold(vm.ResourceGroup, rg) }

func (a *app) runRunnersList(ctx context.Context, t fleet.Target, image, rg string, out output) error {
	all, err := t.List(ctx, image)
	if err != nil {
		return failed("runner VMs of %s: %v", image, err)
	}
	vms := []fleet.VM{}
	for _, vm := range all {
		if vm.Image == image && inGroup(vm, rg) {
			vms = append(vms, vm)
		}
	}
	slices.SortFunc(vms, func(x, y fleet.VM) int { return strings.Compare(x.Name, y.Name) })
	now := time.Now()
	return out.result(vms, func(w io.Writer) error {
		if len(vms) == 0 {
			fmt.Fprintf(w, "%s: no runner VMs\n", image)
			return nil
		}
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVERSION\tPOWER\tCYCLE\tOUTCOME\tAGE")
		for _, vm := range vms {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(vm.Name), printable(dash(vm.Version)), vm.Power,
				printable(dash(vm.Cycle)), printable(dash(vm.Outcome)), age(now, vm.Created))
		}
		return tw.Flush()
	})
}

// age is how long ago t was, in the largest fitting unit ("-" unknown).
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// pruneResult is what runners prune prints with --output json.
type pruneResult struct {
	Image   string         `json:"image"`
	Applied bool           `json:"applied"`
	Pruned  []fleet.Pruned `json:"pruned"`
	Error   string         `json:"error,omitempty"`
}

func (a *app) runRunnersPrune(ctx context.Context, t fleet.Target, image, rg string, opts fleet.PruneOptions, yes bool, out output) error {
	all, err := fleet.PlanPrune(ctx, t, image, opts)
	if err != nil {
		return failed("runner VMs of %s: %v", image, err)
	}
	plan := []fleet.Pruned{}
	for _, p := range all {
		if inGroup(p.VM, rg) {
			plan = append(plan, p)
		}
	}
	res := pruneResult{Image: image, Pruned: plan}
	if yes && len(plan) > 0 {
		res.Applied = true
		res.Pruned, err = fleet.ApplyPrune(ctx, t, plan)
		if err != nil {
			res.Error = err.Error()
		}
	}
	if perr := out.result(res, func(w io.Writer) error { printPruned(w, res); return nil }); perr != nil {
		return perr
	}
	if err != nil {
		return failed("runners prune %s: %s", image, printable(err.Error()))
	}
	return nil
}

func printPruned(w io.Writer, res pruneResult) {
	switch {
	case len(res.Pruned) == 0:
		fmt.Fprintf(w, "%s: no runner VM to prune\n", res.Image)
		return
	case !res.Applied:
		fmt.Fprintf(w, "%s: would delete %d runner VMs (run again with --yes to delete them):\n", res.Image, len(res.Pruned))
	default:
		n := 0
		for _, p := range res.Pruned {
			if p.Deleted {
				n++
			}
		}
		fmt.Fprintf(w, "%s: deleted %d of %d runner VMs:\n", res.Image, n, len(res.Pruned))
	}
	for _, p := range res.Pruned {
		state := ""
		switch {
		case p.Deleted:
			state = " (deleted)"
		case p.Error != "":
			state = " (failed: " + p.Error + ")"
		}
		fmt.Fprintf(w, "  %s in %s: %s%s\n", printable(p.VM.Name), printable(dash(p.VM.ResourceGroup)), printable(p.Reason), printable(state))
	}
}
