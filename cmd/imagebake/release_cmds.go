package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/gallery"
	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/release"
)

// releaseFlagDefs are the store selection flags shared by versions list,
// promote, rollback and prune.
func releaseFlagDefs() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "target", Value: "local", Usage: "local (the --gallery-dir gallery) or azure", EnvVars: envs("TARGET")},
		&cli.StringFlag{Name: "gallery-dir", Usage: "the local gallery folder (default $XDG_DATA_HOME/imagebake/gallery)", EnvVars: envs("GALLERY_DIR")},
		&cli.StringFlag{Name: "gallery-resource-group", Usage: "the Azure gallery's resource group (default: the recipe's gallery.azure)", EnvVars: envs("GALLERY_RESOURCE_GROUP")},
		&cli.StringFlag{Name: "gallery", Usage: "the Azure Compute Gallery (default: the recipe's gallery.azure)", EnvVars: envs("GALLERY")},
		&cli.StringFlag{Name: "recipe", Usage: "read the Azure gallery from this recipe's gallery.azure", EnvVars: envs("RECIPE")},
		outputFlag(),
	}
	// Only the flags azureClients and the store read; the build flags mean
	// nothing here.
	keep := []string{"subscription", "cloud", "resource-manager-endpoint", "resource-manager-audience", "location", "poll-interval", "max-throttle-wait"}
	for _, f := range azureFlags() {
		if slices.Contains(keep, f.Names()[0]) {
			flags = append(flags, f)
		}
	}
	return flags
}

// storeFlags select the gallery a release command works on.
type storeFlags struct {
	target        string
	galleryDir    string
	resourceGroup string
	gallery       string
	recipe        string
	azure         azureConnFlags
	out           output
}

func (a *app) readStoreFlags(c *cli.Context) (storeFlags, error) {
	out, err := a.readOutput(c)
	if err != nil {
		return storeFlags{}, err
	}
	return storeFlags{target: c.String("target"), galleryDir: c.String("gallery-dir"), resourceGroup: c.String("gallery-resource-group"),
		gallery: c.String("gallery"), recipe: c.String("recipe"), azure: readAzureConnFlags(c), out: out}, nil
}

// store returns the gallery the command works on: the local gallery, or
// with --target azure the Azure Compute Gallery named by the flags or by
// the recipe's gallery.azure.
func (a *app) store(f *storeFlags, image string) (gallery.Store, error) {
	if err := gallery.ValidateImageName(image); err != nil {
		return nil, usageErr("%v", err)
	}
	switch f.target {
	case "local":
		return a.localStore(f.galleryDir)
	case "azure":
		return a.azureStore(f, f.resourceGroup, f.gallery, "--gallery-resource-group", "--gallery")
	default:
		return nil, usageErr("--target %q: use local or azure", f.target)
	}
}

// azureStore opens one Azure gallery; empty names come from --recipe. The
// names are checked with the recipe's rules, since the SDK joins them into
// the URL: ".." would reach another resource. rgFlag and galleryFlag name
// the flags they came from.
func (a *app) azureStore(f *storeFlags, resourceGroup, galleryName, rgFlag, galleryFlag string) (gallery.Store, error) {
	if resourceGroup != "" {
		if err := recipes.ValidateResourceGroupName(resourceGroup); err != nil {
			return nil, usageErr("%s: %v", rgFlag, err)
		}
	}
	if galleryName != "" {
		if err := recipes.ValidateGalleryName(galleryName); err != nil {
			return nil, usageErr("%s: %v", galleryFlag, err)
		}
	}
	if (resourceGroup == "" || galleryName == "") && f.recipe != "" {
		r, err := recipes.Load(f.recipe)
		if err != nil {
			return nil, cli.Exit(fmt.Sprintf("imagebake: %v", err), exitUsage)
		}
		g := r.Gallery.Azure
		if g == nil {
			return nil, usageErr("%s has no gallery.azure; name the gallery with --gallery-resource-group and --gallery", r.Source)
		}
		resourceGroup = firstNonEmpty(resourceGroup, g.ResourceGroup)
		galleryName = firstNonEmpty(galleryName, g.Gallery)
		if !f.azure.subscriptionSet && g.Subscription != "" {
			f.azure.subscription, f.azure.subscriptionSet = g.Subscription, true
		}
	}
	if resourceGroup == "" || galleryName == "" {
		return nil, usageErr("--target azure needs --gallery-resource-group and --gallery, or a --recipe with gallery.azure")
	}
	clients, err := a.azureClients(f.azure)
	if err != nil {
		return nil, err
	}
	return galleryazure.New(clients, resourceGroup, galleryName, f.azure.location), nil
}

type versionsListFlags struct {
	storeFlags
	image string
}

func (a *app) versionsCommand() *cli.Command {
	return &cli.Command{
		Name:  "versions",
		Usage: "list and manage image versions",
		Subcommands: []*cli.Command{{
			Name:      "list",
			Usage:     "list an image's versions, marking the one \"latest\" resolves to",
			ArgsUsage: "IMAGE",
			Flags:     releaseFlagDefs(),
			Action: func(c *cli.Context) error {
				sf, err := a.readStoreFlags(c)
				if err != nil {
					return err
				}
				if c.NArg() != 1 {
					return usageErr("versions list needs IMAGE")
				}
				return a.runVersionsList(c.Context, versionsListFlags{storeFlags: sf, image: c.Args().First()})
			},
		}},
	}
}

func (a *app) runVersionsList(ctx context.Context, f versionsListFlags) error {
	store, err := a.store(&f.storeFlags, f.image)
	if err != nil {
		return err
	}
	rows, err := release.List(ctx, store, f.image)
	if err != nil {
		return failed("%v", err)
	}
	return f.out.result(rows, func(w io.Writer) error {
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tLATEST\tSTATE\tPUBLISHED\tEXCLUDED\tEND OF LIFE\tREGIONS\tRECIPE HASH\tRUNNER\tBASE\tSIZE")
		for _, v := range rows {
			mark := ""
			if v.Latest {
				mark = "*"
			}
			eol := "-"
			if v.EndOfLife != nil {
				eol = v.EndOfLife.Format("2006-01-02")
			}
			var regions []string
			for _, r := range v.Regions {
				regions = append(regions, fmt.Sprintf("%s×%d:%s", r.Name, r.Replicas, dash(r.State)))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\t%.12s\t%s\t%s\t%d MiB\n", v.Name, mark, v.ProvisioningState,
				v.PublishedAt.Format(time.RFC3339), v.ExcludeFromLatest, eol, strings.Join(regions, ","), printable(v.RecipeHash), printable(dash(v.Tags[contract.TagRunner])), printable(dash(v.Tags[contract.TagBaseVersion])), v.SizeBytes>>20)
		}
		return tw.Flush()
	})
}

// releaseResult is what promote, rollback and prune print with --output json.
type releaseResult struct {
	Command string `json:"command"`
	Image   string `json:"image"`
	// Applied is false for a prune plan that was not carried out.
	Applied bool             `json:"applied"`
	Changes []release.Change `json:"changes"`
	// Latest is the version "latest" resolves to afterwards.
	Latest string `json:"latest,omitempty"`
	Error  string `json:"error,omitempty"`
}

// reportRelease prints the changes (also those made before a failure) and maps
// err to the exit code.
func (a *app) reportRelease(ctx context.Context, out output, store gallery.Store, res releaseResult, err error) error {
	if res.Changes == nil {
		res.Changes = []release.Change{}
	}
	if err != nil {
		res.Error = err.Error()
		// Changes made before a failure were applied; a failure before
		// any change applied nothing.
		res.Applied = res.Applied && len(res.Changes) > 0
	} else if all, lerr := store.List(ctx, res.Image); lerr == nil {
		if l, ok := gallery.Latest(all); ok {
			res.Latest = l.Name
		}
	}
	if eerr := out.result(res, func(w io.Writer) error { printReleaseChanges(w, res); return nil }); eerr != nil {
		return eerr
	}
	if err != nil {
		return failed("%s %s: %v", res.Command, res.Image, err)
	}
	return nil
}

func printReleaseChanges(w io.Writer, res releaseResult) {
	switch {
	case len(res.Changes) == 0 && res.Error != "":
		return // the error says it, on stderr
	case len(res.Changes) == 0:
		fmt.Fprintf(w, "%s: nothing to change\n", res.Image)
	case !res.Applied:
		fmt.Fprintf(w, "%s: would delete %d versions (run again with --yes to delete them):\n", res.Image, len(res.Changes))
	default:
		fmt.Fprintf(w, "%s: %d changes:\n", res.Image, len(res.Changes))
	}
	for _, ch := range res.Changes {
		fmt.Fprintf(w, "  %s\n", ch)
	}
	if res.Latest != "" {
		fmt.Fprintf(w, "latest resolves to %s\n", res.Latest)
	}
}

// parseRegion parses NAME or NAME=REPLICAS.
func parseRegion(s string) (gallery.Region, error) {
	name, n, hasN := strings.Cut(s, "=")
	r := gallery.Region{Name: strings.TrimSpace(name), Replicas: 1}
	if r.Name == "" {
		return r, fmt.Errorf("--add-region %q: want NAME or NAME=REPLICAS", s)
	}
	if hasN {
		replicas, err := strconv.Atoi(n)
		if err != nil || replicas < 1 {
			return r, fmt.Errorf("--add-region %q: replicas must be a whole number of at least 1", s)
		}
		r.Replicas = replicas
	}
	return r, nil
}

type promoteFlags struct {
	storeFlags
	image, version string
	live           bool
	regions        []gallery.Region
	copyTo         string
	// Where --copy-to copies to; empty: the source's gallery.
	copyToGalleryDir, copyToGallery, copyToResourceGroup string
}

func (a *app) promoteCommand() *cli.Command {
	return &cli.Command{
		Name:      "promote",
		Usage:     "put a version into use: make it live, replicate it to more regions, or copy it to another image",
		ArgsUsage: "IMAGE@VERSION",
		Description: "--live clears excludeFromLatest (\"latest\" then resolves to the highest live version).\n" +
			"--add-region NAME=REPLICAS adds a target region or raises its replicas (never removes or lowers).\n" +
			"--copy-to IMAGE creates the same version in another image definition (create-only), in the same\n" +
			"gallery or in --copy-to-gallery-dir (local) / --copy-to-gallery[-resource-group] (azure).\n" +
			"Running it again changes nothing.",
		Flags: append(releaseFlagDefs(),
			&cli.BoolFlag{Name: "live", Usage: "clear excludeFromLatest"},
			&cli.StringSliceFlag{Name: "add-region", Usage: "NAME[=REPLICAS] to replicate to (repeatable)"},
			&cli.StringFlag{Name: "copy-to", Usage: "copy the version to this image definition"},
			&cli.StringFlag{Name: "copy-to-gallery-dir", Usage: "with --copy-to: the local gallery to copy into (default the same)"},
			&cli.StringFlag{Name: "copy-to-gallery", Usage: "with --copy-to: the Azure gallery to copy into (default the same)"},
			&cli.StringFlag{Name: "copy-to-resource-group", Usage: "with --copy-to-gallery: its resource group (default the source's)"},
		),
		Action: func(c *cli.Context) error {
			sf, err := a.readStoreFlags(c)
			if err != nil {
				return err
			}
			if c.NArg() != 1 {
				return usageErr("promote needs IMAGE@VERSION, e.g. imagebake promote local-demo@1.0.3 --live")
			}
			f := promoteFlags{storeFlags: sf, live: c.Bool("live"), copyTo: c.String("copy-to"),
				copyToGalleryDir: c.String("copy-to-gallery-dir"), copyToGallery: c.String("copy-to-gallery"), copyToResourceGroup: c.String("copy-to-resource-group")}
			f.image, f.version = parseImageRef(c.Args().First())
			if _, err := gallery.ParseVersion(f.version); err != nil {
				return usageErr("promote %s: give an exact @VERSION: %v", c.Args().First(), err)
			}
			for _, s := range c.StringSlice("add-region") {
				r, err := parseRegion(s)
				if err != nil {
					return usageErr("%v", err)
				}
				f.regions = append(f.regions, r)
			}
			if !f.live && len(f.regions) == 0 && f.copyTo == "" {
				return usageErr("promote: nothing to do; give --live, --add-region or --copy-to")
			}
			return a.runPromote(c.Context, f)
		},
	}
}

func (a *app) runPromote(ctx context.Context, f promoteFlags) error {
	store, err := a.store(&f.storeFlags, f.image)
	if err != nil {
		return err
	}
	opts := release.PromoteOptions{AddRegions: f.regions, Live: f.live}
	if f.copyTo != "" {
		dst, err := a.copyTarget(&f, store)
		if err != nil {
			return err
		}
		opts.CopyTo = release.CopyTarget{Store: dst, Image: f.copyTo}
	}
	changes, err := release.Promote(ctx, store, f.image, f.version, opts)
	return a.reportRelease(ctx, f.out, store, releaseResult{Command: "promote", Image: f.image, Applied: true, Changes: changes}, err)
}

// copyTarget is the store promote --copy-to creates the copy in.
func (a *app) copyTarget(f *promoteFlags, store gallery.Store) (gallery.Store, error) {
	if err := gallery.ValidateImageName(f.copyTo); err != nil {
		return nil, usageErr("--copy-to: %v", err)
	}
	switch f.target {
	case "local":
		if f.copyToGalleryDir != "" {
			return a.localStore(f.copyToGalleryDir)
		}
	case "azure":
		if f.copyToGallery != "" {
			rg, rgFlag := f.copyToResourceGroup, "--copy-to-resource-group"
			if rg == "" {
				rg, rgFlag = f.resourceGroup, "--gallery-resource-group"
			}
			return a.azureStore(&f.storeFlags, rg, f.copyToGallery, rgFlag, "--copy-to-gallery")
		}
	}
	return store, nil
}

type rollbackFlags struct {
	storeFlags
	image, to string
}

func (a *app) rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:      "rollback",
		Usage:     "make \"latest\" resolve to an older version again",
		ArgsUsage: "IMAGE",
		Description: "Makes --to live and sets excludeFromLatest on every succeeded version numbered above it.\n" +
			"Nothing is deleted: promote --live undoes it. Running it again changes nothing.",
		Flags: append(releaseFlagDefs(),
			&cli.StringFlag{Name: "to", Usage: "the version \"latest\" should resolve to (required)"},
		),
		Action: func(c *cli.Context) error {
			sf, err := a.readStoreFlags(c)
			if err != nil {
				return err
			}
			if c.NArg() != 1 || c.String("to") == "" {
				return usageErr("rollback needs IMAGE and --to VERSION, e.g. imagebake rollback local-demo --to 1.0.2")
			}
			f := rollbackFlags{storeFlags: sf, image: c.Args().First(), to: c.String("to")}
			if _, err := gallery.ParseVersion(f.to); err != nil {
				return usageErr("--to: %v", err)
			}
			return a.runRollback(c.Context, f)
		},
	}
}

func (a *app) runRollback(ctx context.Context, f rollbackFlags) error {
	store, err := a.store(&f.storeFlags, f.image)
	if err != nil {
		return err
	}
	ch, err := release.Rollback(ctx, store, f.image, f.to)
	return a.reportRelease(ctx, f.out, store, releaseResult{Command: "rollback", Image: f.image, Applied: true, Changes: ch}, err)
}

type pruneFlags struct {
	storeFlags
	image string
	opts  release.PruneOptions
	yes   bool
}

func (a *app) pruneCommand() *cli.Command {
	return &cli.Command{
		Name:      "prune",
		Usage:     "delete old versions (prints the plan; deletes only with --yes)",
		ArgsUsage: "IMAGE",
		Description: "Never deletes the version \"latest\" resolves to, nor the --keep highest versions; with\n" +
			"--older-than only versions published longer ago than that (30d, 12h).",
		Flags: append(releaseFlagDefs(),
			&cli.IntFlag{Name: "keep", Usage: "how many of the highest versions to keep (required)"},
			&cli.StringFlag{Name: "older-than", Usage: "only delete versions published longer ago than this (e.g. 30d)"},
			&cli.BoolFlag{Name: "yes", Usage: "delete; without it prune only prints what it would delete"},
		),
		Action: func(c *cli.Context) error {
			sf, err := a.readStoreFlags(c)
			if err != nil {
				return err
			}
			if c.NArg() != 1 || !c.IsSet("keep") {
				return usageErr("prune needs IMAGE and --keep N, e.g. imagebake prune local-demo --keep 5 --older-than 30d")
			}
			f := pruneFlags{storeFlags: sf, image: c.Args().First(), opts: release.PruneOptions{Keep: c.Int("keep")}, yes: c.Bool("yes")}
			if f.opts.Keep < 0 {
				return usageErr("--keep %d: must not be negative", f.opts.Keep)
			}
			if s := c.String("older-than"); s != "" {
				d, err := recipes.ParseDuration(s)
				if err != nil || d <= 0 {
					return usageErr("--older-than %q: want a positive duration such as 30d or 12h", s)
				}
				f.opts.OlderThan = d
			}
			return a.runPrune(c.Context, f)
		},
	}
}

func (a *app) runPrune(ctx context.Context, f pruneFlags) error {
	store, err := a.store(&f.storeFlags, f.image)
	if err != nil {
		return err
	}
	plan, err := release.PlanPrune(ctx, store, f.image, f.opts)
	if err != nil || !f.yes {
		return a.reportRelease(ctx, f.out, store, releaseResult{Command: "prune", Image: f.image, Changes: plan}, err)
	}
	done, err := release.ApplyPrune(ctx, store, f.image, plan)
	return a.reportRelease(ctx, f.out, store, releaseResult{Command: "prune", Image: f.image, Applied: true, Changes: done}, err)
}
