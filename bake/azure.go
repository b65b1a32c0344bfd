package bake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/imagebake/imagebake/checks"
	"github.com/imagebake/imagebake/gallery"
	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/internal/buildinfo"
	"github.com/imagebake/imagebake/internal/contract"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// AdminUser is the build VM's admin login on Azure; waagent's deprovision
// deletes it.
const AdminUser = "imagebake"

// AzureOptions configure an Azure bake.
type AzureOptions struct {
	Clients            *az.Clients
	Location           string   // default: the recipe's build.location
	BuildResourceGroup string   // existing group to build in; empty: a temporary one
	SubnetID           string   // existing subnet; the VM then gets only a private address
	SSHSources         []string // CIDRs admitted to SSH; empty: any
	SSHPort            int      // 22; tests point it at a stand-in VM
	VMSize             string
	Spot               bool
	Identity           string
	Version            string // pinned X.Y.Z
	CreateDefinition   bool
	// ManagedImage captures a managed image first and publishes the
	// version from it (by default the version is captured from the VM).
	ManagedImage bool
	NoWait       bool
	KeepOnFail   bool
	Abort        <-chan struct{}
	LogDir       string
	Logger       *slog.Logger
	Sink         Sink
	GitCommit    string
	// Timeouts bound stages by name (StageTimeouts gives the defaults
	// with the recipe's over them); nil bounds none.
	Timeouts    map[string]time.Duration
	CleanupTime time.Duration
	// PublishAttempts bounds how often a concurrent bake taking our version
	// moves us to the next patch (gallery.DefaultPublishAttempts when 0).
	PublishAttempts int
	// CleanupRetryDelay is the first pause before retrying a failed cleanup.
	CleanupRetryDelay time.Duration
}

// azureBake is the Azure bake's build: what its stages (azureBakeStages)
// hand one another.
type azureBake struct {
	azureVM
	store *galleryazure.Store
	alloc *gallery.Allocator
	// managedImageID is the managed image's ID (--managed-image): the
	// version's source instead of the VM.
	managedImageID string
	// accepted holds the cleanup of each version the gallery accepted,
	// until one has succeeded.
	accepted map[string]CleanupID
	// sec is the build's security choice, checked in the base stage
	// before anything is created.
	sec az.Security
}

// Azure bakes r on Azure and publishes a gallery image version.
func Azure(ctx context.Context, r *recipes.Recipe, opts AzureOptions) (*Manifest, error) {
	log := loggerOr(opts.Logger)
	set := azureSettings(r, opts)
	m := &Manifest{Recipe: r.Name, RecipeHash: r.Hash(), Target: "azure", Image: r.Gallery.Image, Imagebake: buildinfo.Get().Version,
		Commit: opts.GitCommit, Started: time.Now(), LogDir: opts.LogDir, Resources: map[string]string{}, BaseImage: r.Base.Azure, Settings: &set}
	p := NewPipeline(opts.Sink, set.timeouts())
	err := bakeAzure(ctx, p, r, set, opts, m, log)
	return finish(p, m, err, UnwindOptions{Timeout: opts.CleanupTime, Keep: opts.KeepOnFail, Abort: opts.Abort, RetryDelay: opts.CleanupRetryDelay}, "baked")
}

func bakeAzure(ctx context.Context, p *Pipeline, r *recipes.Recipe, set Settings, opts AzureOptions, m *Manifest, log *slog.Logger) error {
	g := r.Gallery.Azure
	if g == nil {
		return &StageError{Stage: "config", Err: fmt.Errorf("recipe %s has no gallery.azure (resourceGroup, gallery, image)", r.Name)}
	}
	if r.Base.Azure == "" {
		return &StageError{Stage: "config", Err: fmt.Errorf("recipe %s has no base.azure marketplace URN", r.Name)}
	}
	if set.Location == "" {
		return &StageError{Stage: "config", Err: errors.New("no location: set build.location in the recipe or pass --location")}
	}
	if err := prepareLogDir(opts.LogDir); err != nil {
		return err
	}
	store := galleryazure.New(opts.Clients, g.ResourceGroup, g.Gallery, set.Location)
	store.NoWait = opts.NoWait
	b := &azureBake{
		azureVM: newAzureVM(guest{job: job{r: r, set: set, p: p, m: m, log: log, logDir: opts.LogDir}, phase: checks.Build},
			opts, NewBuildID(), time.Now().UTC().Format(time.RFC3339)),
		store: store, accepted: map[string]CleanupID{},
		alloc: &gallery.Allocator{Store: store, Image: r.Gallery.Image, Line: r.Gallery.Version, Pinned: opts.Version,
			Attempts: opts.PublishAttempts, Log: log, Taken: takenNote(p, r.Gallery.Image)},
	}
	b.customData = func(hostPriv, hostLine string) (string, error) {
		doc, err := templates.Render(r, templates.Options{HostKeyPrivate: hostPriv, HostKeyPublic: hostLine})
		if err != nil {
			return "", err
		}
		return templates.CustomData(doc)
	}
	return Run(ctx, p, b, azureBakeStages, func(b *azureBake, stage string) {
		b.hintKept(stage, map[string]string{contract.StageVM: contract.StageVM, contract.StageSSH: contract.StageSSH,
			contract.StageCloudInit: contract.StageChecks, contract.StageChecks: contract.StageChecks})
	})
}

func (b *azureBake) resolveBase(ctx context.Context) error {
	base, err := b.c.ResolveImage(ctx, b.set.Location, b.r.Base.Azure)
	b.base = base
	b.m.BaseImage, b.m.BaseVersion = base.URN(), base.Version
	if err != nil {
		return err
	}
	b.p.Note(contract.StageBase, "base image "+base.URN())
	// Security type, Hyper-V generation, size and --managed-image are
	// checked together before anything is created.
	if b.sec, err = az.CheckSecurity(base.HyperVGeneration, b.r.Build, az.SecurityOptions{VMSize: b.set.VMSize, ManagedImage: b.opts.ManagedImage}); err != nil {
		return err
	}
	b.securityType = b.sec.Type
	return nil
}

func (b *azureBake) previewVersion(ctx context.Context) error {
	image := b.r.Gallery.Image
	created, err := b.store.EnsureDefinitionFor(ctx, image, b.sec, b.opts.CreateDefinition, "imagebake", b.r.Name, image)
	if err != nil {
		return err
	}
	if created {
		b.p.Note(contract.StageVersion, "created image definition "+image+" ("+strings.TrimSpace(b.sec.HyperVGeneration+" "+b.sec.DefinitionType())+")")
	}
	if b.m.Version, err = b.alloc.Preview(ctx); err != nil {
		return err
	}
	b.p.Note(contract.StageVersion, "will publish "+image+" "+b.m.Version)
	return nil
}

func (b *azureBake) deprovision(ctx context.Context) error {
	err := b.session.Deprovision(ctx, sshsession.AzureDeprovisionSteps())
	b.closeSession()
	return err
}

func (b *azureBake) deallocate(ctx context.Context) error { return b.c.Deallocate(ctx, b.rg, b.vmName) }

func (b *azureBake) generalize(ctx context.Context) error { return b.c.Generalize(ctx, b.rg, b.vmName) }

func (b *azureBake) managedImage(ctx context.Context) error {
	if !b.opts.ManagedImage {
		return Skip("the version is captured straight from the VM (--managed-image captures a managed image first)")
	}
	name := contract.ResourceName(b.buildID, contract.KindManagedImage)
	if !b.tempGroup {
		b.p.OnCleanup("managed image "+name, func(ctx context.Context) error { return b.c.DeleteManagedImage(ctx, b.rg, name) })
	}
	// The build's tags, imagebake.created included: gc finds an image a
	// killed bake left in an existing group by them.
	id, err := b.c.CreateManagedImage(ctx, b.rg, name, b.set.Location, b.vmID, b.base.HyperVGeneration, b.tags)
	b.managedImageID = id
	b.m.Resources["managedImage"] = id
	return err
}

// versionSource is what the version is captured from.
func (b *azureBake) versionSource() string {
	if b.managedImageID != "" {
		return b.managedImageID
	}
	return b.vmID
}

// versionRequest describes the version to create from the recipe.
func (b *azureBake) versionRequest() (gallery.CreateRequest, error) {
	r := b.r
	req := gallery.CreateRequest{Source: b.versionSource(), RecipeHash: b.m.RecipeHash, Tags: versionTags(r, b.m, b.buildID),
		ExcludeFromLatest: r.Gallery.ExcludeFromLatest, StorageAccountType: r.Gallery.StorageType}
	for _, rg := range r.Gallery.Regions {
		req.Regions = append(req.Regions, gallery.Region{Name: rg.Name, Replicas: rg.Replicas, StorageAccountType: rg.StorageType})
	}
	if len(req.Regions) == 0 {
		req.Regions = []gallery.Region{{Name: b.set.Location, Replicas: 1}}
	}
	eol, err := endOfLife(r)
	req.EndOfLife = eol
	return req, err
}

// watchStore hooks the store's Create: a version Azure accepted is the
// build's to remove until it has succeeded, and replication progress is
// shown as it changes.
func (b *azureBake) watchStore() {
	image := b.r.Gallery.Image
	b.store.OnAccepted = func(v string) {
		b.accepted[v] = b.p.OnCleanup("gallery version "+v, func(ctx context.Context) error {
			if err := b.store.Delete(ctx, image, v); err != nil && !errors.Is(err, gallery.ErrNotFound) {
				return err
			}
			return nil
		})
	}
	b.store.OnReleased = func(v string) {
		b.p.Forget(b.accepted[v])
		delete(b.accepted, v)
	}
	last := ""
	b.store.Progress = func(regions []gallery.RegionStatus) {
		var parts []string
		for _, rs := range regions {
			parts = append(parts, fmt.Sprintf("%s %s %d%%", rs.Name, rs.State, rs.Progress))
		}
		if line := "replication: " + strings.Join(parts, ", "); line != last {
			last = line
			b.p.Note(contract.StagePublish, line)
		}
	}
}

func (b *azureBake) publish(ctx context.Context) error {
	req, err := b.versionRequest()
	if err != nil {
		return err
	}
	b.watchStore()
	v, err := b.alloc.Publish(ctx, req)
	if err != nil {
		return err
	}
	b.p.Forget(b.accepted[v.Name])
	b.m.Version, b.m.VersionID = v.Name, v.ID
	state := "published"
	if b.opts.NoWait {
		state = "accepted (not waiting for replication: --no-wait)"
	}
	b.p.Note(contract.StagePublish, fmt.Sprintf("%s %s %s: %s", b.r.Gallery.Image, v.Name, state, v.ID))
	return nil
}

// takenNote reports, under the publish stage, that a concurrent bake took
// the version we were about to create.
func takenNote(p *Pipeline, image string) func(taken, next string) {
	return func(taken, next string) {
		p.Note(contract.StagePublish, fmt.Sprintf("%s %s was taken by another bake; trying %s", image, taken, next))
	}
}

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
