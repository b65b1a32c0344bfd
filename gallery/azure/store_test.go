package azure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/contract"
	az "github.com/imagebake/imagebake/provision/azure"
)

const (
	sub   = "00000000-0000-0000-0000-00000000abcd"
	rg    = "image-gallery-rg"
	gal   = "runner_images"
	image = "runner"
)

// hook is a Transporter that counts requests and can act after one.
type hook struct {
	next  *http.Client
	mu    sync.Mutex
	count map[string]int // "METHOD lastPathSegment-kind"
	after func(req *http.Request, resp *http.Response)
}

func (h *hook) Do(req *http.Request) (*http.Response, error) {
	resp, err := h.next.Do(req)
	h.mu.Lock()
	h.count[req.Method+" "+kind(req.URL.Path)]++
	after := h.after
	h.mu.Unlock()
	if err == nil && after != nil {
		after(req, resp)
	}
	return resp, err
}

func (h *hook) n(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count[key]
}

// kind names what a path addresses: "version" for one gallery image version.
func kind(path string) string {
	p := strings.ToLower(path)
	switch {
	case strings.Contains(p, "/versions/"):
		return "version"
	case strings.HasSuffix(p, "/versions"):
		return "versions"
	}
	return p
}

// newModel serves a model with the gallery seeded; sources has the IDs of
// versions of another definition, usable as distinct sources (the model
// checks that a source exists).
func newModel(t *testing.T, opts azmodel.Options) (*azmodel.Model, *azmodel.Server, []string) {
	t.Helper()
	m := azmodel.New(opts)
	srv := azmodel.NewServer(m, azmodel.ServerOptions{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var seeds []azmodel.VersionSeed
	var sources []string
	for i := 1; i <= 8; i++ {
		v := fmt.Sprintf("0.0.%d", i)
		seeds = append(seeds, azmodel.VersionSeed{Name: v})
		sources = append(sources, azmodel.GalleryImageID(sub, rg, gal, "sources")+"/versions/"+v)
	}
	for _, s := range []azmodel.GallerySeed{
		{SubscriptionID: sub, ResourceGroup: rg, Location: "eastus", Gallery: gal, Image: image},
		{SubscriptionID: sub, ResourceGroup: rg, Location: "eastus", Gallery: gal, Image: "sources", Versions: seeds},
	} {
		if err := m.SeedGallery(s); err != nil {
			t.Fatal(err)
		}
	}
	return m, srv, sources
}

func newStore(t *testing.T, srv *azmodel.Server) (*Store, *hook) {
	t.Helper()
	cred, err := srv.Credential("tenant-1", "client-1", "not-a-real-secret")
	if err != nil {
		t.Fatal(err)
	}
	h := &hook{next: srv.HTTPClient(), count: map[string]int{}}
	c, err := az.NewClients(az.Config{SubscriptionID: sub, ResourceManager: srv.URL(), Credential: cred, Transport: h,
		PollFrequency: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return New(c, rg, gal, "eastus"), h
}

func req(version, source, buildID string) gallery.CreateRequest {
	return gallery.CreateRequest{Version: version, Source: source, RecipeHash: "h-" + buildID,
		Tags: map[string]string{contract.TagBuildID: buildID, "team": "t-" + buildID}, Regions: []gallery.Region{{Name: "eastus", Replicas: 1}}}
}

func versions(m *azmodel.Model) map[string]azmodel.GalleryVersion {
	out := map[string]azmodel.GalleryVersion{}
	for _, v := range m.GalleryVersions(azmodel.GalleryImageID(sub, rg, gal, image)) {
		out[v.Name] = v
	}
	return out
}

func TestCreateAndRead(t *testing.T) {
	m, srv, src := newModel(t, azmodel.Options{})
	s, _ := newStore(t, srv)
	var accepted []string
	var progress int
	s.OnAccepted = func(v string) { accepted = append(accepted, v) }
	s.Progress = func([]gallery.RegionStatus) { progress++ }
	m.SetInProgressPolls(3)
	ctx := context.Background()
	v, err := s.Create(ctx, image, req("1.0.0", src[0], "a"))
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "1.0.0" || v.ProvisioningState != gallery.StateSucceeded || v.Tags[contract.TagBuildID] != "a" || v.RecipeHash != "h-a" {
		t.Errorf("created %+v", v)
	}
	if len(accepted) != 1 || accepted[0] != "1.0.0" || progress == 0 {
		t.Errorf("accepted %v, progress reads %d", accepted, progress)
	}
	got, err := s.Get(ctx, image, "1.0.0")
	if err != nil || len(got.Regions) != 1 || got.Regions[0].State != gallery.ReplicationCompleted {
		t.Errorf("get: %+v %v", got, err)
	}
	list, err := s.List(ctx, image)
	if err != nil || len(list) != 1 {
		t.Errorf("list: %+v %v", list, err)
	}
	if _, err := s.Get(ctx, image, "9.9.9"); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("get missing: %v", err)
	}
	if _, err := s.List(ctx, "nosuch"); !errors.Is(err, gallery.ErrNotFound) || !strings.Contains(err.Error(), "--create-definition") {
		t.Errorf("list of a missing definition: %v", err)
	}
	if err := s.Delete(ctx, image, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	// Azure answers 204 to a DELETE of what is already gone.
	if err := s.Delete(ctx, image, "1.0.0"); err != nil {
		t.Errorf("second delete: %v", err)
	}
	if vs := versions(m); len(vs) != 0 {
		t.Errorf("left %+v", vs)
	}
}

// An existing version is never written to: not by another build, and not
// by a re-run with the same source and another build ID (a PUT would be an
// update that replaces its tags). A build's own earlier attempt is adopted.
func TestCreateNeverWritesAnExistingVersion(t *testing.T) {
	m, srv, src := newModel(t, azmodel.Options{})
	if err := m.SeedVersion(sub, rg, gal, image, azmodel.VersionSeed{Name: "1.0.0", Tags: map[string]string{contract.TagBuildID: "seeded"}}); err != nil {
		t.Fatal(err)
	}
	s, h := newStore(t, srv)
	ctx := context.Background()
	if _, err := s.Create(ctx, image, req("1.0.0", src[0], "a")); !errors.Is(err, gallery.ErrVersionExists) || !strings.Contains(err.Error(), "by build seeded") {
		t.Fatalf("create over another build's version: %v", err)
	}
	if _, err := s.Create(ctx, image, req("1.0.1", src[1], "a")); err != nil {
		t.Fatal(err)
	}
	// Someone re-runs with the same source but is another build.
	if _, err := s.Create(ctx, image, req("1.0.1", src[1], "b")); !errors.Is(err, gallery.ErrVersionExists) {
		t.Fatalf("re-run with the same source: %v", err)
	}
	// The same build again (a retried publish) adopts its own version.
	if v, err := s.Create(ctx, image, req("1.0.1", src[1], "a")); err != nil || v.Name != "1.0.1" {
		t.Fatalf("own earlier attempt: %+v %v", v, err)
	}
	if n := h.n("PUT version"); n != 1 {
		t.Errorf("%d version PUTs, want only the one that created 1.0.1", n)
	}
	vs := versions(m)
	if vs["1.0.0"].Tags[contract.TagBuildID] != "seeded" || vs["1.0.1"].Tags[contract.TagBuildID] != "a" || vs["1.0.1"].Tags["team"] != "t-a" {
		t.Errorf("tags were overwritten: %+v", vs)
	}
}

// Another build takes the name between the read and the PUT. Azure has no
// create-only PUT: the PUT is refused (409, another source) and the
// version stays the rival's.
func TestCreateRaceBetweenReadAndPut(t *testing.T) {
	for _, rivalWaits := range []bool{true, false} {
		t.Run(fmt.Sprintf("rival finished %v", rivalWaits), func(t *testing.T) {
			m, srv, src := newModel(t, azmodel.Options{InProgressPolls: 2})
			s, h := newStore(t, srv)
			rival, _ := newStore(t, srv)
			var once sync.Once
			h.after = func(r *http.Request, resp *http.Response) {
				if r.Method != http.MethodGet || resp.StatusCode != http.StatusNotFound || kind(r.URL.Path) != "version" {
					return
				}
				once.Do(func() {
					if rivalWaits {
						if _, err := rival.Create(context.Background(), image, req("1.0.0", src[1], "rival")); err != nil {
							t.Errorf("rival: %v", err)
						}
						return
					}
					if _, err := rival.c.BeginGalleryVersion(context.Background(), rival.image(image), "1.0.0", rival.body(req("1.0.0", src[1], "rival"))); err != nil {
						t.Errorf("rival: %v", err)
					}
				})
			}
			released := false
			s.OnReleased = func(string) { released = true }
			_, err := s.Create(context.Background(), image, req("1.0.0", src[0], "a"))
			if !errors.Is(err, gallery.ErrVersionExists) {
				t.Fatalf("want ErrVersionExists, got %v", err)
			}
			v := versions(m)["1.0.0"]
			if v.Source != src[1] || v.Tags[contract.TagBuildID] != "rival" {
				t.Errorf("the rival's version changed: %+v", v)
			}
			if n := h.n("PUT version"); n != 1 {
				t.Errorf("%d version PUTs: the race between read and PUT was not exercised", n)
			}
			if n := h.n("DELETE version"); n != 0 || released {
				t.Errorf("%d deletes of a version that is not ours", n)
			}
		})
	}
}

// After the create, the version must still be this build's; when another
// writer re-tagged it meanwhile, Create says it is taken, releases it, and
// neither deletes nor changes it.
func TestCreateConfirmsTheVersionIsOurs(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("create fails %v", fail), func(t *testing.T) {
			m, srv, src := newModel(t, azmodel.Options{InProgressPolls: 2})
			if fail {
				m.MustAddRule(azmodel.Rule{Op: "GalleryImageVersions_CreateOrUpdate", FailLRO: true, Code: "InjectedFailure", Message: "replication failed"})
			}
			s, h := newStore(t, srv)
			id := azmodel.GalleryImageID(sub, rg, gal, image) + "/versions/1.0.0"
			var released []string
			s.OnAccepted = func(string) {
				if err := m.SetTags(id, map[string]string{contract.TagBuildID: "someone-else"}); err != nil {
					t.Error(err)
				}
			}
			s.OnReleased = func(v string) { released = append(released, v) }
			_, err := s.Create(context.Background(), image, req("1.0.0", src[0], "a"))
			if err == nil {
				t.Fatal("no error")
			}
			if !fail && (!errors.Is(err, gallery.ErrVersionExists) || len(released) != 1) {
				t.Errorf("err %v, released %v", err, released)
			}
			if fail && !strings.Contains(err.Error(), "InjectedFailure: replication failed") {
				t.Errorf("err %v", err)
			}
			if _, ok := versions(m)["1.0.0"]; !ok || h.n("DELETE version") != 0 {
				t.Errorf("a version that is not ours was deleted")
			}
		})
	}
}

// A failed create of this build's version is removed, and the error is
// ARM's, named once.
func TestFailedCreateIsRemoved(t *testing.T) {
	m, srv, src := newModel(t, azmodel.Options{})
	m.MustAddRule(azmodel.Rule{Op: "GalleryImageVersions_CreateOrUpdate", FailLRO: true, Code: "InjectedFailure", Message: "replication failed"})
	s, _ := newStore(t, srv)
	_, err := s.Create(context.Background(), image, req("1.0.0", src[0], "a"))
	want := "create gallery runner_images image runner version 1.0.0: InjectedFailure: replication failed"
	if err == nil || err.Error() != want {
		t.Fatalf("err\n got %v\nwant %s", err, want)
	}
	if vs := versions(m); len(vs) != 0 {
		t.Errorf("a failed version remains: %+v", vs)
	}
}

// Concurrent publishers moving on from taken names (as the allocator
// does) each get their own version, and none is overwritten.
func TestConcurrentCreatesNeverOverwrite(t *testing.T) {
	m, srv, src := newModel(t, azmodel.Options{InProgressPolls: 2})
	const n = 6
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, _ := newStore(t, srv)
			for p := 0; p < 3*n; p++ {
				v, err := s.Create(context.Background(), image, req(fmt.Sprintf("1.0.%d", p), src[i], fmt.Sprintf("b%d", i)))
				if errors.Is(err, gallery.ErrVersionExists) {
					continue
				}
				if err != nil {
					t.Errorf("publisher %d: %v", i, err)
					return
				}
				got[i] = v.Name
				return
			}
		}(i)
	}
	wg.Wait()
	vs := versions(m)
	if len(vs) != n {
		t.Errorf("%d versions, want %d: %+v", len(vs), n, vs)
	}
	for i, name := range got {
		v := vs[name]
		if v.Source != src[i] || v.Tags[contract.TagBuildID] != fmt.Sprintf("b%d", i) || v.ProvisioningState != gallery.StateSucceeded {
			t.Errorf("publisher %d's version %s is %+v", i, name, v)
		}
	}
}

func TestNoWaitReturnsAtTheHomeRegion(t *testing.T) {
	m, srv, src := newModel(t, azmodel.Options{InProgressPolls: 4})
	s, _ := newStore(t, srv)
	s.NoWait = true
	v, err := s.Create(context.Background(), image, req("1.0.0", src[0], "a"))
	if err != nil || v.Name != "1.0.0" {
		t.Fatalf("%+v %v", v, err)
	}
	if _, ok := versions(m)["1.0.0"]; !ok {
		t.Error("no version")
	}
}

// Definitions: an existing one is checked against the build's security;
// --create-definition makes one that matches.
func TestEnsureDefinitionForSecurity(t *testing.T) {
	_, srv, _ := newModel(t, azmodel.Options{})
	s, _ := newStore(t, srv)
	ctx := context.Background()
	tl := az.Security{Type: az.SecurityTrustedLaunch, HyperVGeneration: "V2"}
	std2 := az.Security{Type: az.SecurityStandard, HyperVGeneration: "V2"}
	// The seeded definition is Gen1 Standard.
	if _, err := s.EnsureDefinitionFor(ctx, image, tl, true, "p", "o", "s"); err == nil || !strings.Contains(err.Error(), "build.securityType") || !strings.Contains(err.Error(), "generation is V1") {
		t.Errorf("Trusted Launch into a Gen1 Standard definition: %v", err)
	}
	if created, err := s.EnsureDefinition(ctx, image, "V1", false, "p", "o", "s"); err != nil || created {
		t.Errorf("Standard Gen1 into Gen1: %v %v", created, err)
	}
	if _, err := s.EnsureDefinitionFor(ctx, "noble", tl, false, "p", "o", "s"); !errors.Is(err, gallery.ErrNotFound) || !strings.Contains(err.Error(), "--create-definition") {
		t.Errorf("missing without create: %v", err)
	}
	for _, tc := range []struct {
		name string
		sec  az.Security
		want string
	}{{"noble", tl, "TrustedLaunch"}, {"jammy-std", std2, "TrustedLaunchSupported"}, {"focal-std", az.Security{Type: az.SecurityStandard, HyperVGeneration: "V1"}, ""}} {
		created, err := s.EnsureDefinitionFor(ctx, tc.name, tc.sec, true, "imagebake", tc.name, tc.name)
		if err != nil || !created {
			t.Fatalf("%s: %v %v", tc.name, created, err)
		}
		d, err := s.Definition(ctx, tc.name)
		if err != nil || d.SecurityType != tc.want || d.HyperVGeneration != tc.sec.HyperVGeneration {
			t.Errorf("%s: definition %+v %v, want %q %s", tc.name, d, err, tc.want, tc.sec.HyperVGeneration)
		}
		if created, err := s.EnsureDefinitionFor(ctx, tc.name, tc.sec, true, "imagebake", tc.name, tc.name); err != nil || created {
			t.Errorf("%s again: %v %v", tc.name, created, err)
		}
	}
	if _, err := s.EnsureDefinitionFor(ctx, "noble", std2, false, "p", "o", "s"); err == nil || !strings.Contains(err.Error(), "security type is TrustedLaunch") {
		t.Errorf("Standard into a TrustedLaunch definition: %v", err)
	}
	if _, err := s.EnsureDefinitionFor(ctx, "jammy-std", tl, false, "p", "o", "s"); err == nil {
		t.Error("Trusted Launch into a TrustedLaunchSupported definition was accepted")
	}
	if _, err := s.Definition(ctx, "nosuch"); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("Definition of a missing one: %v", err)
	}
}
