package bake

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagebake/imagebake/checks"
	"github.com/imagebake/imagebake/gallery"
	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/internal/buildinfo"
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
	Timeouts     map[string]time.Duration
	CleanupTime  time.Duration
	// PublishAttempts bounds how often a concurrent bake taking our version
	// moves us to the next patch.
	PublishAttempts int
	// CleanupRetryDelay is the first pause before retrying a failed cleanup.
	CleanupRetryDelay time.Duration
}

// BuildTag marks everything a build creates, so gc can find debris.
const (
	BuildTagID      = "imagebake.build-id"
	BuildTagCreated = "imagebake.created"
	BuildTagRecipe  = "imagebake.recipe"
)

// Azure bakes r on Azure and publishes a gallery image version.
func Azure(ctx context.Context, r *recipes.Recipe, opts AzureOptions) (*Manifest, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	info := buildinfo.Get()
	m := &Manifest{Recipe: r.Name, RecipeHash: r.Hash(), Target: "azure", Image: r.Gallery.Image, Imagebake: info.Version,
		Commit: opts.GitCommit, Started: time.Now(), LogDir: opts.LogDir, Resources: map[string]string{}, BaseImage: r.Base.Azure}
	p := NewPipeline(log, opts.Sink, opts.Timeouts)
	err := bakeAzure(ctx, p, r, opts, m, NewBuildID(), log)
	return finish(p, m, err, UnwindOptions{Timeout: opts.CleanupTime, Keep: opts.KeepOnFail, Abort: opts.Abort, RetryDelay: opts.CleanupRetryDelay}, "baked")
}

func bakeAzure(ctx context.Context, p *Pipeline, r *recipes.Recipe, opts AzureOptions, m *Manifest, buildID string, log *slog.Logger) error {
	c := opts.Clients
	g := r.Gallery.Azure
	if g == nil {
		return &StageError{Stage: "config", Err: fmt.Errorf("recipe %s has no gallery.azure (resourceGroup, gallery, image)", r.Name)}
	}
	if r.Base.Azure == "" {
		return &StageError{Stage: "config", Err: fmt.Errorf("recipe %s has no base.azure marketplace URN", r.Name)}
	}
	location := firstNonEmptyStr(opts.Location, r.Build.Location)
	if location == "" {
		return &StageError{Stage: "config", Err: errors.New("no location: set build.location in the recipe or pass --location")}
	}
	if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
		return fmt.Errorf("log folder %s: %w", opts.LogDir, err)
	}
	store := galleryazure.New(c, g.ResourceGroup, g.Gallery, location)
	store.NoWait = opts.NoWait

	if err := p.Stage(ctx, "credentials", c.CheckCredentials); err != nil {
		return err
	}
	var base az.Image
	if err := p.Stage(ctx, "base", func(ctx context.Context) (err error) {
		base, err = c.ResolveImage(ctx, location, r.Base.Azure)
		m.BaseImage, m.BaseVersion = base.URN(), base.Version
		if err == nil {
			p.Note("base", "base image "+base.URN())
		}
		return err
	}); err != nil {
		return err
	}
	if err := p.Stage(ctx, "version", func(ctx context.Context) error {
		created, err := store.EnsureDefinition(ctx, r.Gallery.Image, base.HyperVGeneration, opts.CreateDefinition, "imagebake", r.Name, r.Gallery.Image)
		if err != nil {
			return err
		}
		if created {
			p.Note("version", "created image definition "+r.Gallery.Image+" ("+base.HyperVGeneration+")")
		}
		versions, err := store.List(ctx, r.Gallery.Image)
		if err != nil {
			return err
		}
		names := make([]string, len(versions))
		for i, v := range versions {
			names[i] = v.Name
			if opts.Version != "" && v.Name == opts.Version {
				return fmt.Errorf("gallery version %s of %s: %w; versions are never overwritten, choose another", v.Name, r.Gallery.Image, gallery.ErrVersionExists)
			}
		}
		if m.Version = opts.Version; m.Version == "" {
			if m.Version, err = gallery.Next(names, r.Gallery.Version); err != nil {
				return err
			}
		}
		p.Note("version", "will publish "+r.Gallery.Image+" "+m.Version)
		return nil
	}); err != nil {
		return err
	}

	mach := &azureMachine{c: c, p: p, opts: opts, m: m, r: r, location: location, buildID: buildID, log: log}
	session, err := mach.start(ctx, base, "", func(hostPriv, hostLine string) (string, error) {
		doc, err := templates.Render(r, templates.Options{HostKeyPrivate: hostPriv, HostKeyPublic: hostLine})
		if err != nil {
			return "", err
		}
		return templates.CustomData(doc)
	}, nil)
	if err != nil {
		return err
	}
	rg, vmName := mach.rg, mach.vmName
	address, port := mach.address, mach.port
	if _, err := cloudInitAndChecks(ctx, p, session, r, checks.Build, opts.LogDir, m); err != nil {
		if opts.KeepOnFail {
			p.Note("checks", azureKeepHint(rg, vmName, address, port))
		}
		return err
	}
	if err := p.Stage(ctx, "deprovision", func(ctx context.Context) error {
		err := session.Deprovision(ctx, sshsession.AzureDeprovisionSteps())
		session.Close()
		p.Forget("ssh session")
		return err
	}); err != nil {
		return err
	}
	if err := p.Stage(ctx, "deallocate", func(ctx context.Context) error { return c.Deallocate(ctx, rg, vmName) }); err != nil {
		return err
	}
	if err := p.Stage(ctx, "generalize", func(ctx context.Context) error { return c.Generalize(ctx, rg, vmName) }); err != nil {
		return err
	}
	source := m.Resources["vm"]
	if opts.ManagedImage {
		if err := p.Stage(ctx, "image", func(ctx context.Context) error {
			name := "ib-" + buildID + "-image"
			if opts.BuildResourceGroup != "" {
				p.OnCleanup("managed image "+name, func(ctx context.Context) error { return c.DeleteManagedImage(ctx, rg, name) })
			}
			id, err := c.CreateManagedImage(ctx, rg, name, location, source, base.HyperVGeneration, map[string]string{BuildTagID: buildID, BuildTagRecipe: r.Name})
			source = id
			m.Resources["managedImage"] = id
			return err
		}); err != nil {
			return err
		}
	}
	return p.Stage(ctx, "publish", func(ctx context.Context) error {
		vtags := versionTags(r, m, buildID)
		req := gallery.CreateRequest{Version: m.Version, Source: source, RecipeHash: m.RecipeHash, Tags: vtags,
			ExcludeFromLatest: r.Gallery.ExcludeFromLatest, StorageAccountType: r.Gallery.StorageType}
		for _, rg := range r.Gallery.Regions {
			req.Regions = append(req.Regions, gallery.Region{Name: rg.Name, Replicas: rg.Replicas, StorageAccountType: rg.StorageType})
		}
		if len(req.Regions) == 0 {
			req.Regions = []gallery.Region{{Name: location, Replicas: 1}}
		}
		eol, err := endOfLife(r)
		if err != nil {
			return err
		}
		req.EndOfLife = eol
		// Until it has succeeded, a version is the build's to remove.
		store.OnAccepted = func(v string) {
			p.OnCleanup("gallery version "+v, func(ctx context.Context) error {
				if err := store.Delete(ctx, r.Gallery.Image, v); err != nil && !errors.Is(err, gallery.ErrNotFound) {
					return err
				}
				return nil
			})
		}
		last := ""
		store.Progress = func(regions []gallery.RegionStatus) {
			var parts []string
			for _, rs := range regions {
				parts = append(parts, fmt.Sprintf("%s %s %d%%", rs.Name, rs.State, rs.Progress))
			}
			if line := "replication: " + strings.Join(parts, ", "); line != last {
				last = line
				p.Note("publish", line)
			}
		}
		attempts := opts.PublishAttempts
		if attempts <= 0 {
			attempts = 20
		}
		var v gallery.ImageVersion
		for attempt := 0; ; attempt++ {
			v, err = store.Create(ctx, r.Gallery.Image, req)
			if err == nil || !errors.Is(err, gallery.ErrVersionExists) || opts.Version != "" || attempt+1 >= attempts {
				break
			}
			// A concurrent bake took this version: take the next patch.
			next, nerr := nextPatch(req.Version)
			if nerr != nil {
				return nerr
			}
			p.Note("publish", fmt.Sprintf("%s %s was taken by another bake; trying %s", r.Gallery.Image, req.Version, next))
			req.Version = next
		}
		if err != nil {
			return err
		}
		p.Forget("gallery version " + v.Name)
		m.Version, m.VersionID = v.Name, v.ID
		state := "published"
		if opts.NoWait {
			state = "accepted (not waiting for replication: --no-wait)"
		}
		p.Note("publish", fmt.Sprintf("%s %s %s: %s", r.Gallery.Image, v.Name, state, v.ID))
		return nil
	})
}

func nextPatch(v string) (string, error) {
	pv, err := gallery.ParseVersion(v)
	if err != nil {
		return "", err
	}
	next, err := pv.Line().Version(pv.Patch() + 1)
	if err != nil {
		return "", err
	}
	return next.String(), nil
}

func azureKeepHint(rg, vm, address string, port int) string {
	if address == "" {
		return fmt.Sprintf("kept (--keep-on-failure): resource group %s, VM %s; delete with: az group delete -n %s", rg, vm, rg)
	}
	return fmt.Sprintf("kept (--keep-on-failure): ssh -p %d %s@%s (the build key was in memory only: add yours with `az vm user update -g %s -n %s -u you --ssh-key-value ~/.ssh/id_ed25519.pub`); resource group %s, VM %s; delete with: az group delete -n %s",
		port, AdminUser, address, rg, vm, rg, vm, rg)
}

func firstNonEmptyStr(s ...string) string {
	for _, x := range s {
		if strings.TrimSpace(x) != "" {
			return x
		}
	}
	return ""
}

// azureMachine runs the stages that bring up a VM on Azure and reach it
// over SSH: a resource group (temporary, or the one given), a network (or
// the subnet given), the VM, and the SSH session. Bake and verify share it.
type azureMachine struct {
	c        *az.Clients
	p        *Pipeline
	opts     AzureOptions
	m        *Manifest
	r        *recipes.Recipe
	location string
	buildID  string
	log      *slog.Logger

	rg, vmName, address string
	port                int
}

// start brings the machine up from a marketplace image or, with imageID, a
// gallery version; customData renders the custom data for the pinned host
// key; extraTags are added to the VM's tags.
func (a *azureMachine) start(ctx context.Context, base az.Image, imageID string, customData func(hostPriv, hostLine string) (string, error), extraTags map[string]string) (*sshsession.Session, error) {
	c, p, opts, m, r := a.c, a.p, a.opts, a.m, a.r
	tags := map[string]string{BuildTagID: a.buildID, BuildTagRecipe: r.Name, BuildTagCreated: time.Now().UTC().Format(time.RFC3339)}
	a.rg = opts.BuildResourceGroup
	prefix := "ib-" + a.buildID
	tempGroup := a.rg == ""
	if err := p.Stage(ctx, "resource-group", func(ctx context.Context) error {
		if !tempGroup {
			p.Skip("resource-group", "building in existing resource group "+a.rg+" (only what this build creates is deleted)")
			return nil
		}
		a.rg = "imagebake-" + r.Name + "-" + a.buildID
		// Register first: a create that fails half-way may still leave
		// the group behind.
		rg := a.rg
		p.OnCleanupKeepable("resource group "+rg, func(ctx context.Context) error { return c.DeleteResourceGroup(ctx, rg) })
		return c.CreateResourceGroup(ctx, rg, a.location, tags)
	}); err != nil {
		return nil, err
	}
	m.Resources["resourceGroup"] = a.rg

	subnetID := opts.SubnetID
	if err := p.Stage(ctx, "network", func(ctx context.Context) error {
		if subnetID != "" {
			return nil
		}
		if !tempGroup {
			p.OnCleanupKeepable("network "+prefix, func(ctx context.Context) error { return c.DeleteNetwork(ctx, a.rg, prefix) })
		}
		sources := opts.SSHSources
		if len(sources) == 0 {
			sources = []string{"*"}
			p.Note("network", "SSH is open to any address (the host key is pinned and only a throwaway key logs in); restrict it with --ssh-source CIDR")
		}
		n, err := c.CreateNetwork(ctx, a.rg, a.location, prefix, sources, tags)
		subnetID = n.SubnetID
		m.Resources["subnet"] = subnetID
		return err
	}); err != nil {
		return nil, err
	}

	var (
		signer  ssh.Signer
		hostPub ssh.PublicKey
	)
	a.vmName = prefix + "-vm"
	a.port = opts.SSHPort
	if a.port == 0 {
		a.port = 22
	}
	if err := p.Stage(ctx, "vm", func(ctx context.Context) error {
		var authLine string
		var err error
		if signer, authLine, err = sshsession.NewClientKey(); err != nil {
			return err
		}
		hostPriv, hostLine, pub, err := sshsession.NewHostKey()
		if err != nil {
			return err
		}
		hostPub = pub
		custom, err := customData(hostPriv, hostLine)
		if err != nil {
			return err
		}
		if !tempGroup {
			p.OnCleanupKeepable("virtual machine "+a.vmName, func(ctx context.Context) error { return c.DeleteVM(ctx, a.rg, a.vmName) })
		}
		vmTags := map[string]string{}
		for k, v := range tags {
			vmTags[k] = v
		}
		for k, v := range extraTags {
			vmTags[k] = v
		}
		spec := az.VMSpec{ResourceGroup: a.rg, Name: a.vmName, Location: a.location, Size: firstNonEmptyStr(opts.VMSize, r.Build.VMSize),
			Image: base, ImageID: imageID, SubnetID: subnetID, PublicIP: opts.SubnetID == "", AdminUser: AdminUser, AuthorizedKey: authLine,
			CustomData: custom, Spot: opts.Spot || r.Build.Spot, Identity: firstNonEmptyStr(opts.Identity, r.Build.Identity), Tags: vmTags}
		id, addr, err := c.CreateVM(ctx, spec)
		m.Resources["vm"] = id
		a.address = addr
		return err
	}); err != nil {
		if opts.KeepOnFail {
			p.Note("vm", azureKeepHint(a.rg, a.vmName, a.address, a.port))
		}
		return nil, err
	}

	var session *sshsession.Session
	if err := p.Stage(ctx, "ssh", func(ctx context.Context) error {
		var err error
		session, err = sshsession.Dial(ctx, sshsession.Config{Addr: net.JoinHostPort(a.address, strconv.Itoa(a.port)), User: AdminUser, Signer: signer, HostKey: hostPub, Logger: a.log})
		if err == nil {
			p.OnCleanup("ssh session", func(context.Context) error { session.Close(); return nil })
		}
		return err
	}); err != nil {
		if opts.KeepOnFail {
			p.Note("ssh", azureKeepHint(a.rg, a.vmName, a.address, a.port))
		}
		return nil, err
	}
	return session, nil
}
