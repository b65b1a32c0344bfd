package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/gallery"
	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/gc"
	"github.com/imagebake/imagebake/internal/buildinfo"
	"github.com/imagebake/imagebake/nightly"
	"github.com/imagebake/imagebake/recipes"
)

// ifChangedFlags are bake's flags for nightly jobs.
func ifChangedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "if-changed", Usage: "skip the bake when the newest version has the same recipe hash, base version and imagebake version", EnvVars: envs("IF_CHANGED")},
		&cli.StringFlag{Name: "max-age", Usage: "with --if-changed, bake anyway when the newest version is older than this (e.g. 7d, 36h)", EnvVars: envs("MAX_AGE")},
	}
}

type ifChanged struct {
	ifChanged bool
	maxAge    time.Duration // 0: no limit
}

func readIfChanged(c *cli.Context) (ifChanged, error) {
	if !c.Bool("if-changed") {
		if c.IsSet("max-age") {
			return ifChanged{}, usageErr("--max-age only applies with --if-changed")
		}
		return ifChanged{}, nil
	}
	f := ifChanged{ifChanged: true}
	if s := c.String("max-age"); s != "" {
		d, err := recipes.ParseDuration(s)
		if err != nil || d <= 0 {
			return ifChanged{}, usageErr("--max-age %q: want a positive duration such as 7d or 36h", s)
		}
		f.maxAge = d
	}
	return f, nil
}

// skipUnchanged decides --if-changed before anything is built or created:
// it gathers what to compare, and nightly.Check decides. When the bake is
// skipped it prints why, writes skipped=true to GITHUB_OUTPUT and reports
// true; the caller then exits 0.
func (a *app) skipUnchanged(ctx context.Context, f bakeFlags, r *recipes.Recipe) (bool, error) {
	if !f.ifChanged.ifChanged {
		return false, nil
	}
	store, baseVersion, err := a.ifChangedInputs(ctx, f, r)
	if err != nil || store == nil {
		return false, err
	}
	textOut := f.out.text()
	skip, reason, err := nightly.Check(ctx, store, r.Gallery.Image,
		nightly.Current{RecipeHash: r.Hash(), BaseVersion: baseVersion, Imagebake: buildinfo.Get().Version}, f.maxAge, time.Now())
	if err != nil {
		return false, failed("--if-changed: %v", err)
	}
	if !skip {
		fmt.Fprintf(textOut, "--if-changed: baking: %s\n", reason)
		return false, nil
	}
	fmt.Fprintf(textOut, "skipped %s: %s\n", r.Name, reason)
	if f.out.json {
		if err := f.out.result(map[string]string{"result": "skipped", "reason": reason, "recipe": r.Name,
			"recipeHash": r.Hash(), "target": f.target, "image": r.Gallery.Image, "baseVersion": baseVersion}, nil); err != nil {
			return false, err
		}
	}
	if err := writeGitHubOutput([2]string{"skipped", "true"}); err != nil {
		return false, failed("GITHUB_OUTPUT: %v", err)
	}
	return true, nil
}

// ifChangedInputs returns the gallery and the base version a bake of r
// would record. A nil store means: bake, there is nothing to compare (the
// reason is printed, or the bake reports the bad settings).
func (a *app) ifChangedInputs(ctx context.Context, f bakeFlags, r *recipes.Recipe) (gallery.Store, string, error) {
	switch f.target {
	case "local":
		v, ok := nightly.LocalBaseVersion(r, f.cacheDir)
		if !ok {
			fmt.Fprintf(f.out.text(), "--if-changed: baking: the base of %s is not cached yet\n", r.Name)
			return nil, "", nil
		}
		s, err := a.localStore(f.galleryDir)
		if err != nil {
			return nil, "", err
		}
		return s, v, nil
	case "azure":
		if r.Gallery.Azure == nil || r.Base.Azure == "" {
			return nil, "", nil // bakeAzure reports the missing settings
		}
		clients, err := a.azureClients(f.azure.azureConnFlags)
		if err != nil {
			return nil, "", err
		}
		location := firstNonEmpty(f.azure.location, r.Build.Location)
		if location == "" {
			return nil, "", usageErr("--if-changed: no location: set build.location in the recipe or pass --location")
		}
		base, err := clients.ResolveImage(ctx, location, r.Base.Azure)
		if err != nil {
			return nil, "", failed("--if-changed: %v", err)
		}
		return galleryazure.New(clients, r.Gallery.Azure.ResourceGroup, r.Gallery.Azure.Gallery, location), base.Version, nil
	}
	return nil, "", nil // the bake command reports the bad target
}

type gcFlags struct {
	target string
	opts   gc.Options
	azure  azureConnFlags
	out    output
}

func (a *app) gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "find (and with --yes remove) what interrupted builds left behind",
		Description: "Azure: resource groups tagged imagebake.build-id whose imagebake.created is older than --ttl; groups\n" +
			"without that tag are never touched. Local: build folders $TMPDIR/imagebake-qemu-* last written longer ago\n" +
			"than --ttl and not used by a running QEMU, and QEMU processes older than --ttl that use such a folder.\n" +
			"Without --yes it only prints the plan. Exit codes: 0 done, 1 something could not be removed, 2 bad usage.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "target", Value: "local", Usage: "local or azure", EnvVars: envs("TARGET")},
			&cli.StringFlag{Name: "ttl", Value: "6h", Usage: "how old debris must be before it is removed (e.g. 6h, 2d)", EnvVars: envs("GC_TTL")},
			&cli.BoolFlag{Name: "yes", Usage: "remove what the plan lists (default: only print the plan)", EnvVars: envs("GC_YES")},
			outputFlag(),
		}, gcAzureFlags()...),
		Action: func(c *cli.Context) error {
			out, err := a.readOutput(c)
			if err != nil {
				return err
			}
			if c.NArg() > 0 {
				return usageErr("gc takes no arguments")
			}
			ttl, err := recipes.ParseDuration(c.String("ttl"))
			if err != nil || ttl <= 0 {
				return usageErr("--ttl %q: want a positive duration such as 6h or 2d", c.String("ttl"))
			}
			f := gcFlags{target: c.String("target"), opts: gc.Options{TTL: ttl, Delete: c.Bool("yes")}, azure: readAzureConnFlags(c), out: out}
			if err := checkTarget(f.target); err != nil {
				return err
			}
			return a.runGC(c.Context, f)
		},
	}
}

func (a *app) runGC(ctx context.Context, f gcFlags) error {
	var (
		items []gc.Item
		err   error
	)
	switch f.target {
	case "local":
		items, err = gc.Local(ctx, gc.LocalOptions{Options: f.opts})
	case "azure":
		clients, cerr := a.azureClients(f.azure)
		if cerr != nil {
			return cerr
		}
		items, err = gc.Azure(ctx, clients, f.opts)
	}
	if perr := printGC(f.out, items, f.opts.Delete, err); perr != nil {
		return perr
	}
	if err != nil {
		return failed("gc: %v", err)
	}
	if n := gc.Failed(items); n > 0 {
		return failed("gc: %d of %d actions failed", n, len(items))
	}
	return nil
}

// gcAzureFlags are the Azure flags gc needs: which cloud and subscription,
// and how to wait on Azure.
func gcAzureFlags() []cli.Flag {
	want := map[string]bool{"subscription": true, "cloud": true, "resource-manager-endpoint": true,
		"resource-manager-audience": true, "poll-interval": true, "max-throttle-wait": true}
	var out []cli.Flag
	for _, f := range azureFlags() {
		if want[f.Names()[0]] {
			out = append(out, f)
		}
	}
	return out
}

// gcResult is gc's --output json. Error is set when gc could not finish
// (a failed list, say): the items are then only what it found before.
type gcResult struct {
	Applied bool      `json:"applied"`
	Items   []gc.Item `json:"items"`
	Error   string    `json:"error,omitempty"`
}

func printGC(out output, items []gc.Item, deleting bool, gcErr error) error {
	res := gcResult{Applied: deleting, Items: items}
	if res.Items == nil {
		res.Items = []gc.Item{}
	}
	if gcErr != nil {
		res.Error = gcErr.Error()
	}
	return out.result(res, func(w io.Writer) error {
		if len(items) == 0 {
			if gcErr == nil {
				fmt.Fprintln(w, "nothing of imagebake's found")
			}
			return nil
		}
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "ACTION\tKIND\tNAME\tAGE\tREASON")
		pending := 0
		for _, it := range items {
			action := it.Action
			switch {
			case it.Error != "":
				action += " FAILED: " + printable(it.Error)
			case it.Done:
				action += " (done)"
			case it.Action != gc.ActionKeep:
				pending++
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", action, it.Kind, it.Name, dash(it.Age), it.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if !deleting && pending > 0 {
			fmt.Fprintf(w, "plan only: run again with --yes to carry out %d action(s)\n", pending)
		}
		return nil
	})
}
