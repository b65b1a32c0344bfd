package bake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/imagebake/imagebake/checks"
	"github.com/imagebake/imagebake/gallery"
	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/internal/buildinfo"
	"github.com/imagebake/imagebake/internal/contract"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// azureVerify is the Azure verify's build: what its stages
// (azureVerifyStages) hand one another.
type azureVerify struct {
	azureVM
	store *galleryazure.Store
	// version is what to verify: X.Y.Z, or "" or "latest".
	version string
}

// VerifyAzure boots a VM from a published gallery version, tagged
// cycle=delete like the runbook's test VMs, runs the recipe's checks on it
// and removes everything afterwards. version "" or "latest" verifies what
// "latest" resolves to.
func VerifyAzure(ctx context.Context, r *recipes.Recipe, version string, opts AzureOptions) (*Manifest, error) {
	log := loggerOr(opts.Logger)
	set := azureSettings(r, opts)
	m := &Manifest{Recipe: r.Name, RecipeHash: r.Hash(), Target: "azure", Image: r.Gallery.Image, Imagebake: buildinfo.Get().Version,
		Started: time.Now(), LogDir: opts.LogDir, Resources: map[string]string{}, Settings: &set}
	p := NewPipeline(opts.Sink, set.timeouts())
	err := verifyAzure(ctx, p, r, set, version, opts, m, log)
	return finish(p, m, err, UnwindOptions{Timeout: opts.CleanupTime, Keep: opts.KeepOnFail, Abort: opts.Abort, RetryDelay: opts.CleanupRetryDelay}, "verified")
}

func verifyAzure(ctx context.Context, p *Pipeline, r *recipes.Recipe, set Settings, version string, opts AzureOptions, m *Manifest, log *slog.Logger) error {
	g := r.Gallery.Azure
	if g == nil {
		return &StageError{Stage: "config", Err: fmt.Errorf("recipe %s has no gallery.azure", r.Name)}
	}
	if set.Location == "" {
		return &StageError{Stage: "config", Err: errors.New("no location: set build.location in the recipe or pass --location")}
	}
	if err := prepareLogDir(opts.LogDir); err != nil {
		return err
	}
	b := &azureVerify{
		azureVM: newAzureVM(guest{job: job{r: r, set: set, p: p, m: m, log: log, logDir: opts.LogDir}, phase: checks.Verify},
			opts, NewBuildID(), time.Now().UTC().Format(time.RFC3339)),
		store: galleryazure.New(opts.Clients, g.ResourceGroup, g.Gallery, set.Location), version: version,
	}
	// The image already holds the recipe: the custom data only pins
	// the host key. cycle=delete makes the runner's lifecycle delete
	// the VM if its unit ever runs a job.
	b.vmTags = map[string]string{contract.TagCycle: contract.CycleDelete}
	b.customData = func(hostPriv, hostLine string) (string, error) {
		cc, err := templates.RenderAccess(templates.Options{HostKeyPrivate: hostPriv, HostKeyPublic: hostLine})
		if err != nil {
			return "", err
		}
		return templates.CustomData(&templates.Document{CloudConfig: cc})
	}
	return Run(ctx, p, b, azureVerifyStages, func(b *azureVerify, stage string) {
		b.hintKept(stage, map[string]string{contract.StageVM: contract.StageVM, contract.StageSSH: contract.StageSSH})
	})
}

func (b *azureVerify) resolveVersion(ctx context.Context) error {
	image := b.r.Gallery.Image
	var v gallery.ImageVersion
	if b.version != "" && b.version != "latest" {
		var err error
		if v, err = b.store.Get(ctx, image, b.version); err != nil {
			return err
		}
	} else {
		all, err := b.store.List(ctx, image)
		if err != nil {
			return err
		}
		var ok bool
		if v, ok = gallery.Latest(all); !ok {
			return fmt.Errorf("gallery image %s: no version that \"latest\" resolves to", image)
		}
	}
	b.imageID = v.ID
	b.m.Version, b.m.VersionID = v.Name, v.ID
	// Boot with the definition's security type: a TrustedLaunch
	// definition's images boot only on Trusted Launch VMs.
	def, err := b.store.Definition(ctx, image)
	if err != nil {
		return err
	}
	b.securityType = az.BootSecurity(def.SecurityType)
	return nil
}
