package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/gallery"
	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/release"
)

// releaseFlags are the store selection flags shared by promote, rollback
// and prune.
func releaseFlags() []cli.Flag {
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

// storeFor returns the gallery the command works on: the local gallery, or
// with --target azure the Azure Compute Gallery named by the flags or by
// the recipe's gallery.azure.
func storeFor(c *cli.Context, image string) (gallery.Store, error) {
	if err := gallery.ValidateImageName(image); err != nil {
		return nil, usageErr("%v", err)
	}
	switch c.String("target") {
	case "local":
		return localStore(c)
	case "azure":
		return azureStoreFor(c, c.String("gallery-resource-group"), c.String("gallery"))
	default:
		return nil, usageErr("--target %q: use local or azure", c.String("target"))
	}
}

// azureStoreFor opens one Azure gallery; empty names come from --recipe.
func azureStoreFor(c *cli.Context, resourceGroup, galleryName string) (gallery.Store, error) {
	if (resourceGroup == "" || galleryName == "") && c.String("recipe") != "" {
		r, err := recipes.Load(c.String("recipe"))
		if err != nil {
			return nil, cli.Exit(fmt.Sprintf("imagebake: %v", err), exitUsage)
		}
		g := r.Gallery.Azure
		if g == nil {
			return nil, usageErr("%s has no gallery.azure; name the gallery with --gallery-resource-group and --gallery", r.Source)
		}
		resourceGroup = firstNonEmpty(resourceGroup, g.ResourceGroup)
		galleryName = firstNonEmpty(galleryName, g.Gallery)
		if !c.IsSet("subscription") && g.Subscription != "" {
			if err := c.Set("subscription", g.Subscription); err != nil {
				return nil, err
			}
		}
	}
	if resourceGroup == "" || galleryName == "" {
		return nil, usageErr("--target azure needs --gallery-resource-group and --gallery, or a --recipe with gallery.azure")
	}
	clients, err := azureClients(c)
	if err != nil {
		return nil, err
	}
	return galleryazure.New(clients, resourceGroup, galleryName, c.String("location")), nil
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
func reportRelease(c *cli.Context, store gallery.Store, res releaseResult, err error) error {
	if res.Changes == nil {
		res.Changes = []release.Change{}
	}
	if err != nil {
		res.Error = err.Error()
	} else if all, lerr := store.List(c.Context, res.Image); lerr == nil {
		if l, ok := gallery.Latest(all); ok {
			res.Latest = l.Name
		}
	}
	if c.String("output") == "json" {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if eerr := enc.Encode(res); eerr != nil {
			return eerr
		}
	} else {
		printReleaseChanges(c.App.Writer, res)
	}
	if err != nil {
		return cli.Exit(fmt.Sprintf("imagebake: %s %s: %v", res.Command, res.Image, err), exitFailed)
	}
	return nil
}

func printReleaseChanges(w io.Writer, res releaseResult) {
	switch {
	case len(res.Changes) == 0 && res.Error == "":
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

func promoteCommand() *cli.Command {
	return &cli.Command{
		Name:      "promote",
		Usage:     "put a version into use: make it live, replicate it to more regions, or copy it to another image",
		ArgsUsage: "IMAGE@VERSION",
		Description: "--live clears excludeFromLatest (\"latest\" then resolves to the highest live version).\n" +
			"--add-region NAME=REPLICAS adds a target region or raises its replicas (never removes or lowers).\n" +
			"--copy-to IMAGE creates the same version in another image definition (create-only), in the same\n" +
			"gallery or in --copy-to-gallery-dir (local) / --copy-to-gallery[-resource-group] (azure).\n" +
			"Running it again changes nothing.",
		Flags: append(releaseFlags(),
			&cli.BoolFlag{Name: "live", Usage: "clear excludeFromLatest"},
			&cli.StringSliceFlag{Name: "add-region", Usage: "NAME[=REPLICAS] to replicate to (repeatable)"},
			&cli.StringFlag{Name: "copy-to", Usage: "copy the version to this image definition"},
			&cli.StringFlag{Name: "copy-to-gallery-dir", Usage: "with --copy-to: the local gallery to copy into (default the same)"},
			&cli.StringFlag{Name: "copy-to-gallery", Usage: "with --copy-to: the Azure gallery to copy into (default the same)"},
			&cli.StringFlag{Name: "copy-to-resource-group", Usage: "with --copy-to-gallery: its resource group (default the source's)"},
		),
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			if c.NArg() != 1 {
				return usageErr("promote needs IMAGE@VERSION, e.g. imagebake promote local-demo@1.0.3 --live")
			}
			image, version := parseImageRef(c.Args().First())
			if _, err := gallery.ParseVersion(version); err != nil {
				return usageErr("promote %s: give an exact @VERSION: %v", c.Args().First(), err)
			}
			var regions []gallery.Region
			for _, s := range c.StringSlice("add-region") {
				r, err := parseRegion(s)
				if err != nil {
					return usageErr("%v", err)
				}
				regions = append(regions, r)
			}
			copyTo := c.String("copy-to")
			if !c.Bool("live") && len(regions) == 0 && copyTo == "" {
				return usageErr("promote: nothing to do; give --live, --add-region or --copy-to")
			}
			store, err := storeFor(c, image)
			if err != nil {
				return err
			}
			var dst gallery.Store
			if copyTo != "" {
				if dst, err = copyTarget(c, store, copyTo); err != nil {
					return err
				}
			}
			res := releaseResult{Command: "promote", Image: image, Applied: true}
			steps := []func() ([]release.Change, error){}
			if copyTo != "" {
				// First, so a failed copy leaves the source as it was.
				steps = append(steps, func() ([]release.Change, error) {
					return release.Copy(c.Context, store, image, version, dst, copyTo)
				})
			}
			if len(regions) > 0 {
				steps = append(steps, func() ([]release.Change, error) {
					return release.AddRegions(c.Context, store, image, version, regions)
				})
			}
			if c.Bool("live") {
				steps = append(steps, func() ([]release.Change, error) {
					return release.MakeLive(c.Context, store, image, version)
				})
			}
			for _, step := range steps {
				ch, err := step()
				res.Changes = append(res.Changes, ch...)
				if err != nil {
					return reportRelease(c, store, res, err)
				}
			}
			return reportRelease(c, store, res, nil)
		},
	}
}

// copyTarget is the store promote --copy-to creates the copy in.
func copyTarget(c *cli.Context, store gallery.Store, image string) (gallery.Store, error) {
	if err := gallery.ValidateImageName(image); err != nil {
		return nil, usageErr("--copy-to: %v", err)
	}
	switch c.String("target") {
	case "local":
		if d := c.String("copy-to-gallery-dir"); d != "" {
			return localStoreAt(c, d), nil
		}
	case "azure":
		if g := c.String("copy-to-gallery"); g != "" {
			rg := firstNonEmpty(c.String("copy-to-resource-group"), c.String("gallery-resource-group"))
			return azureStoreFor(c, rg, g)
		}
	}
	return store, nil
}

func rollbackCommand() *cli.Command {
	return &cli.Command{
		Name:      "rollback",
		Usage:     "make \"latest\" resolve to an older version again",
		ArgsUsage: "IMAGE",
		Description: "Makes --to live and sets excludeFromLatest on every succeeded version numbered above it.\n" +
			"Nothing is deleted: promote --live undoes it. Running it again changes nothing.",
		Flags: append(releaseFlags(),
			&cli.StringFlag{Name: "to", Usage: "the version \"latest\" should resolve to (required)"},
		),
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			if c.NArg() != 1 || c.String("to") == "" {
				return usageErr("rollback needs IMAGE and --to VERSION, e.g. imagebake rollback local-demo --to 1.0.2")
			}
			image := c.Args().First()
			if _, err := gallery.ParseVersion(c.String("to")); err != nil {
				return usageErr("--to: %v", err)
			}
			store, err := storeFor(c, image)
			if err != nil {
				return err
			}
			ch, err := release.Rollback(c.Context, store, image, c.String("to"))
			return reportRelease(c, store, releaseResult{Command: "rollback", Image: image, Applied: true, Changes: ch}, err)
		},
	}
}

func pruneCommand() *cli.Command {
	return &cli.Command{
		Name:      "prune",
		Usage:     "delete old versions (prints the plan; deletes only with --yes)",
		ArgsUsage: "IMAGE",
		Description: "Never deletes the version \"latest\" resolves to, nor the --keep highest versions; with\n" +
			"--older-than only versions published longer ago than that (30d, 12h).",
		Flags: append(releaseFlags(),
			&cli.IntFlag{Name: "keep", Usage: "how many of the highest versions to keep (required)"},
			&cli.StringFlag{Name: "older-than", Usage: "only delete versions published longer ago than this (e.g. 30d)"},
			&cli.BoolFlag{Name: "yes", Usage: "delete; without it prune only prints what it would delete"},
		),
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			if c.NArg() != 1 || !c.IsSet("keep") {
				return usageErr("prune needs IMAGE and --keep N, e.g. imagebake prune local-demo --keep 5 --older-than 30d")
			}
			opts := release.PruneOptions{Keep: c.Int("keep")}
			if opts.Keep < 0 {
				return usageErr("--keep %d: must not be negative", opts.Keep)
			}
			if s := c.String("older-than"); s != "" {
				d, err := recipes.ParseDuration(s)
				if err != nil || d <= 0 {
					return usageErr("--older-than %q: want a positive duration such as 30d or 12h", s)
				}
				opts.OlderThan = d
			}
			image := c.Args().First()
			store, err := storeFor(c, image)
			if err != nil {
				return err
			}
			plan, err := release.PlanPrune(c.Context, store, image, opts)
			if err != nil || !c.Bool("yes") {
				return reportRelease(c, store, releaseResult{Command: "prune", Image: image, Changes: plan}, err)
			}
			done, err := release.ApplyPrune(c.Context, store, image, plan)
			return reportRelease(c, store, releaseResult{Command: "prune", Image: image, Applied: true, Changes: done}, err)
		},
	}
}

// localStoreAt is the local gallery in dir.
func localStoreAt(c *cli.Context, dir string) gallery.Store {
	return local.New(dir, logger(c))
}
