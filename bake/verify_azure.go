package bake

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/imagebake/imagebake/checks"
	"github.com/imagebake/imagebake/gallery"
	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/internal/buildinfo"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// VerifyAzure boots a VM from a published gallery version, tagged
// cycle=delete like the runbook's test VMs, runs the recipe's checks on it
// and removes everything afterwards. version "" or "latest" verifies what
// "latest" resolves to.
func VerifyAzure(ctx context.Context, r *recipes.Recipe, version string, opts AzureOptions) (*Manifest, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	m := &Manifest{Recipe: r.Name, RecipeHash: r.Hash(), Target: "azure", Image: r.Gallery.Image, Imagebake: buildinfo.Get().Version,
		Started: time.Now(), LogDir: opts.LogDir, Resources: map[string]string{}}
	p := NewPipeline(log, opts.Sink, opts.Timeouts)
	err := verifyAzure(ctx, p, r, version, opts, m, log)
	return finish(p, m, err, UnwindOptions{Timeout: opts.CleanupTime, Keep: opts.KeepOnFail, Abort: opts.Abort, RetryDelay: opts.CleanupRetryDelay}, "verified")
}

func verifyAzure(ctx context.Context, p *Pipeline, r *recipes.Recipe, version string, opts AzureOptions, m *Manifest, log *slog.Logger) error {
	c, g := opts.Clients, r.Gallery.Azure
	if g == nil {
		return &StageError{Stage: "config", Err: fmt.Errorf("recipe %s has no gallery.azure", r.Name)}
	}
	location := firstNonEmptyStr(opts.Location, r.Build.Location)
	if location == "" {
		return &StageError{Stage: "config", Err: fmt.Errorf("no location: set build.location in the recipe or pass --location")}
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return fmt.Errorf("log folder %s: %w", opts.LogDir, err)
	}
	store := galleryazure.New(c, g.ResourceGroup, g.Gallery, location)
	if err := p.Stage(ctx, "credentials", c.CheckCredentials); err != nil {
		return err
	}
	var v gallery.ImageVersion
	if err := p.Stage(ctx, "version", func(ctx context.Context) error {
		var err error
		if version != "" && version != "latest" {
			v, err = store.Get(ctx, r.Gallery.Image, version)
			return err
		}
		all, err := store.List(ctx, r.Gallery.Image)
		if err != nil {
			return err
		}
		var ok bool
		if v, ok = gallery.Latest(all); !ok {
			return fmt.Errorf("gallery image %s: no version that \"latest\" resolves to", r.Gallery.Image)
		}
		return nil
	}); err != nil {
		return err
	}
	m.Version, m.VersionID = v.Name, v.ID
	mach := &azureMachine{c: c, p: p, opts: opts, m: m, r: r, location: location, buildID: NewBuildID(), log: log}
	// The image already holds the recipe: the custom data only pins the
	// host key. cycle=delete makes the runner's lifecycle delete the VM if
	// its unit ever runs a job.
	session, err := mach.start(ctx, az.Image{}, v.ID, func(hostPriv, hostLine string) (string, error) {
		cc, err := templates.RenderAccess(templates.Options{HostKeyPrivate: hostPriv, HostKeyPublic: hostLine})
		if err != nil {
			return "", err
		}
		return templates.CustomData(&templates.Document{CloudConfig: cc})
	}, map[string]string{"cycle": "delete"})
	if err != nil {
		return err
	}
	_, err = cloudInitAndChecks(ctx, p, session, r, checks.Verify, opts.LogDir, m)
	return err
}
