package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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

// skipUnchanged decides --if-changed before anything is built or created.
// When the bake is skipped it prints why, writes skipped=true to
// GITHUB_OUTPUT and reports true; the caller then exits 0.
func skipUnchanged(c *cli.Context, r *recipes.Recipe) (bool, error) {
	if !c.Bool("if-changed") {
		if c.IsSet("max-age") {
			return false, usageErr("--max-age only applies with --if-changed")
		}
		return false, nil
	}
	var maxAge time.Duration
	if s := c.String("max-age"); s != "" {
		d, err := recipes.ParseDuration(s)
		if err != nil || d <= 0 {
			return false, usageErr("--max-age %q: want a positive duration such as 7d or 36h", s)
		}
		maxAge = d
	}
	jsonOut := c.String("output") == "json"
	textOut := c.App.Writer
	if jsonOut {
		textOut = c.App.ErrWriter
	}
	target := c.String("target")
	var (
		store       gallery.Store
		baseVersion string
	)
	switch target {
	case "local":
		v, ok := nightly.LocalBaseVersion(r, c.String("cache-dir"))
		if !ok {
			fmt.Fprintf(textOut, "--if-changed: baking: the base of %s is not cached yet\n", r.Name)
			return false, nil
		}
		s, err := localStore(c)
		if err != nil {
			return false, err
		}
		store, baseVersion = s, v
	case "azure":
		if r.Gallery.Azure == nil || r.Base.Azure == "" {
			return false, nil // bakeAzure reports the missing settings
		}
		clients, err := azureClients(c)
		if err != nil {
			return false, err
		}
		location := firstNonEmpty(c.String("location"), r.Build.Location)
		if location == "" {
			return false, usageErr("--if-changed: no location: set build.location in the recipe or pass --location")
		}
		base, err := clients.ResolveImage(c.Context, location, r.Base.Azure)
		if err != nil {
			return false, cli.Exit("imagebake: --if-changed: "+err.Error(), exitFailed)
		}
		store, baseVersion = galleryazure.New(clients, r.Gallery.Azure.ResourceGroup, r.Gallery.Azure.Gallery, location), base.Version
	default:
		return false, nil // the bake command reports the bad target
	}
	versions, err := store.List(c.Context, r.Gallery.Image)
	if err != nil && !errors.Is(err, gallery.ErrNotFound) {
		return false, cli.Exit("imagebake: --if-changed: "+err.Error(), exitFailed)
	}
	skip, reason := nightly.ShouldSkip(versions, r.Hash(), baseVersion, buildinfo.Get().Version, maxAge, time.Now())
	if !skip {
		fmt.Fprintf(textOut, "--if-changed: baking: %s\n", reason)
		return false, nil
	}
	fmt.Fprintf(textOut, "skipped %s: %s\n", r.Name, reason)
	if jsonOut {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]string{"result": "skipped", "reason": reason, "recipe": r.Name,
			"recipeHash": r.Hash(), "target": target, "image": r.Gallery.Image, "baseVersion": baseVersion}); err != nil {
			return false, err
		}
	}
	if err := appendGitHubOutput("skipped=true\n"); err != nil {
		return false, cli.Exit("imagebake: GITHUB_OUTPUT: "+err.Error(), exitFailed)
	}
	return true, nil
}

func appendGitHubOutput(lines string) error {
	path := os.Getenv("GITHUB_OUTPUT")
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, lines); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func gcCommand() *cli.Command {
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
			if err := checkOutput(c); err != nil {
				return err
			}
			if c.NArg() > 0 {
				return usageErr("gc takes no arguments")
			}
			ttl, err := recipes.ParseDuration(c.String("ttl"))
			if err != nil || ttl <= 0 {
				return usageErr("--ttl %q: want a positive duration such as 6h or 2d", c.String("ttl"))
			}
			opts := gc.Options{TTL: ttl, Delete: c.Bool("yes")}
			var items []gc.Item
			switch c.String("target") {
			case "local":
				items, err = gc.Local(c.Context, gc.LocalOptions{Options: opts})
			case "azure":
				clients, cerr := azureClients(c)
				if cerr != nil {
					return cerr
				}
				items, err = gc.Azure(c.Context, clients, opts)
			default:
				return usageErr("--target %q: use local or azure", c.String("target"))
			}
			if perr := printGC(c, items, opts.Delete); perr != nil {
				return perr
			}
			if err != nil {
				return cli.Exit("imagebake: gc: "+err.Error(), exitFailed)
			}
			if n := gc.Failed(items); n > 0 {
				return cli.Exit(fmt.Sprintf("imagebake: gc: %d of %d actions failed", n, len(items)), exitFailed)
			}
			return nil
		},
	}
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

func printGC(c *cli.Context, items []gc.Item, deleting bool) error {
	if c.String("output") == "json" {
		if items == nil {
			items = []gc.Item{}
		}
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"applied": deleting, "items": items})
	}
	w := c.App.Writer
	if len(items) == 0 {
		fmt.Fprintln(w, "nothing of imagebake's found")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tKIND\tNAME\tAGE\tREASON")
	pending := 0
	for _, it := range items {
		action := it.Action
		switch {
		case it.Error != "":
			action += " FAILED: " + it.Error
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
}
