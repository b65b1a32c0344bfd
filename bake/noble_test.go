package bake

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	az "github.com/imagebake/imagebake/provision/azure"
	"github.com/imagebake/imagebake/recipes"
)

type vmPuts struct {
	next *http.Client
	mu   sync.Mutex
	sec  []string
}

func (v *vmPuts) Do(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && strings.Contains(strings.ToLower(req.URL.Path), "/virtualmachines/") && req.Body != nil {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		var vm struct {
			Properties struct {
				SecurityProfile json.RawMessage `json:"securityProfile"`
			} `json:"properties"`
		}
		_ = json.Unmarshal(body, &vm)
		v.mu.Lock()
		v.sec = append(v.sec, string(vm.Properties.SecurityProfile))
		v.mu.Unlock()
	}
	return v.next.Do(req)
}

func TestAzureNobleTrustedLaunchEndToEnd(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	e.Model.AddMarketplaceImage(azmodel.MarketplaceImage{Publisher: "Canonical", Offer: "ubuntu-24_04-lts", SKU: "server", Version: "24.04.202511150", HyperVGeneration: "V2"})
	r, err := recipes.Load("../recipes/github-runner-noble.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := e.Server.Credential("tenant-1", "client-1", "s")
	rec := &vmPuts{next: e.Server.HTTPClient()}
	c, err := az.NewClients(az.Config{SubscriptionID: aztest.Subscription, ResourceManager: e.Server.URL(), Credential: cred, Transport: rec,
		PollFrequency: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	opts := options(t, e)
	opts.Clients, opts.CreateDefinition = c, true
	m, err := Azure(context.Background(), r, opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err := galleryazure.New(c, "image-gallery-rg", "runner_images", "eastus").Definition(context.Background(), "github-runner-noble")
	if err != nil || d.SecurityType != "TrustedLaunch" || d.HyperVGeneration != "V2" {
		t.Errorf("definition %+v %v", d, err)
	}
	if _, err := VerifyAzure(context.Background(), r, m.Version, opts); err != nil {
		t.Fatal(err)
	}
	want := `{"securityType":"TrustedLaunch","uefiSettings":{"secureBootEnabled":true,"vTpmEnabled":true}}`
	if len(rec.sec) != 2 || rec.sec[0] != want || rec.sec[1] != want {
		t.Errorf("VM security profiles %v, want both %s", rec.sec, want)
	}
	if left := e.BuildLeftovers(); len(left) > 0 {
		t.Errorf("leftovers %v", left)
	}

	// Trusted Launch on focal's Gen1 base fails before anything exists.
	f := loadRunner(t)
	f.Build.SecurityType = "TrustedLaunch"
	before := len(e.Model.Resources())
	_, err = Azure(context.Background(), f, options(t, e))
	if err == nil || !strings.Contains(err.Error(), "build.securityType TrustedLaunch needs a Gen2 base image") || !strings.Contains(err.Error(), "build.vmSize Standard_D2s_v3") {
		t.Errorf("err = %v", err)
	}
	if after := len(e.Model.Resources()); after != before {
		t.Errorf("a refused bake created %d resources", after-before)
	}
}
