// Command azmodel serves the in-memory Azure Resource Manager model
// (internal/azmodel) over HTTPS on the loopback interface, for end-to-end
// tests of the real imagebake binary.
//
//	go run ./internal/azmodel/cmd/azmodel -addr 127.0.0.1:0 -ca-out ca.pem -state-out state.json \
//	    -seed-rg images -seed-gallery bakery -seed-image runner
//
// It prints the base URL on stdout, writes the CA certificate (point
// SSL_CERT_FILE at it), seeds a gallery and image definition when asked, and
// serves until SIGINT or SIGTERM, then writes the final state to -state-out.
// The accepted client secret comes from $AZMODEL_CLIENT_SECRET, never argv.
// The /_model/ admin API (see the azmodel package) steers it at run time.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/imagebake/imagebake/internal/azmodel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "azmodel:", err)
		os.Exit(1)
	}
}

type config struct {
	addr, caOut, stateOut, urlOut  string
	tenant, clientID               string
	noAuth                         bool
	location, subscription         string
	seedRG, seedGallery, seedImage string
	seedHyperV, seedOSState        string
	seedVersions                   string
	vmIP                           string
	polls, pageSize, lroRetryAfter int
	latencyScale, retryAfterScale  float64
	verbose                        bool
}

func parse(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("azmodel", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:0", "listen address")
	fs.StringVar(&c.caOut, "ca-out", "", "write the CA certificate (PEM) to this file")
	fs.StringVar(&c.stateOut, "state-out", "", "write the final state (JSON snapshot and request log) to this file on exit")
	fs.StringVar(&c.urlOut, "url-out", "", "also write the base URL to this file")
	fs.StringVar(&c.tenant, "tenant", "", "accept only this tenant ID (default: any)")
	fs.StringVar(&c.clientID, "client-id", "", "accept only this client ID (default: any); the secret comes from $AZMODEL_CLIENT_SECRET")
	fs.BoolVar(&c.noAuth, "no-auth", false, "serve Resource Manager requests without a bearer token")
	fs.StringVar(&c.location, "location", "eastus", "default region")
	fs.StringVar(&c.subscription, "subscription", azmodel.DefaultSubscriptionID, "subscription of the seeded gallery")
	fs.StringVar(&c.seedRG, "seed-rg", "", "seed: resource group of the gallery")
	fs.StringVar(&c.seedGallery, "seed-gallery", "", "seed: gallery name")
	fs.StringVar(&c.seedImage, "seed-image", "", "seed: image definition name")
	fs.StringVar(&c.seedHyperV, "seed-hyperv", "V1", "seed: image definition hyperVGeneration")
	fs.StringVar(&c.seedOSState, "seed-os-state", "Generalized", "seed: image definition osState")
	fs.StringVar(&c.seedVersions, "seed-versions", "", "seed: comma-separated existing versions (a trailing '!' excludes one from latest)")
	fs.StringVar(&c.vmIP, "vm-ip", "", "public IP address every VM gets (default 203.0.113.N)")
	fs.IntVar(&c.polls, "polls", 1, "InProgress answers before an operation may finish")
	fs.IntVar(&c.pageSize, "page-size", 2, "page size of paged lists")
	fs.IntVar(&c.lroRetryAfter, "lro-retry-after", 0, "Retry-After seconds on every long-running operation (0: Azure's recorded cadence per operation; -1: none)")
	fs.Float64Var(&c.retryAfterScale, "retry-after-scale", 0, "test clock: add retry-after-ms = Retry-After × 1000 × scale to non-error answers, so clients wait scaled (0: real time)")
	fs.Float64Var(&c.latencyScale, "latency-scale", 0, "apply real-world operation durations times this scale (0: no latency)")
	fs.BoolVar(&c.verbose, "v", false, "log requests to stderr")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.retryAfterScale < 0 || c.retryAfterScale >= 1 {
		return c, fmt.Errorf("-retry-after-scale %g: want 0 (real time) or a fraction below 1", c.retryAfterScale)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if (c.seedRG != "" || c.seedGallery != "" || c.seedImage != "") && (c.seedRG == "" || c.seedGallery == "" || c.seedImage == "") {
		return c, errors.New("-seed-rg, -seed-gallery and -seed-image go together")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	c, err := parse(args)
	if err != nil {
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	if c.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	polls := c.polls
	if polls == 0 {
		polls = -1 // Options: 0 means the default, -1 none
	}
	opts := azmodel.Options{Location: c.location, PageSize: c.pageSize, InProgressPolls: polls, LRORetryAfter: c.lroRetryAfter, Logger: logger}
	if c.latencyScale > 0 {
		opts.Latency = azmodel.RealWorldLatency(c.latencyScale)
	}
	if ip := c.vmIP; ip != "" {
		opts.PublicIP = func(azmodel.VMInfo) string { return ip }
	}
	m := azmodel.New(opts)
	if c.seedRG != "" {
		seed := azmodel.GallerySeed{SubscriptionID: c.subscription, ResourceGroup: c.seedRG, Location: c.location, Gallery: c.seedGallery, Image: c.seedImage,
			HyperVGeneration: c.seedHyperV, OSState: c.seedOSState}
		for _, v := range strings.Split(c.seedVersions, ",") {
			if v = strings.TrimSpace(v); v != "" {
				name, excluded := strings.CutSuffix(v, "!")
				seed.Versions = append(seed.Versions, azmodel.VersionSeed{Name: name, ExcludeFromLatest: excluded})
			}
		}
		if err := m.SeedGallery(seed); err != nil {
			return err
		}
	}
	srv := azmodel.NewServer(m, azmodel.ServerOptions{Addr: c.addr, TenantID: c.tenant, ClientID: c.clientID, ClientSecret: getenv("AZMODEL_CLIENT_SECRET"), DisableAuth: c.noAuth, Logger: logger,
		RetryAfterScale: c.retryAfterScale, ScaleOnWire: true})
	if err := srv.Start(); err != nil {
		return err
	}
	defer srv.Close()
	if c.caOut != "" {
		if err := os.WriteFile(c.caOut, srv.CACertPEM(), 0o644); err != nil {
			return fmt.Errorf("ca-out: %w", err)
		}
	}
	if c.urlOut != "" {
		if err := os.WriteFile(c.urlOut, []byte(srv.URL()+"\n"), 0o644); err != nil {
			return fmt.Errorf("url-out: %w", err)
		}
	}
	if _, err := fmt.Fprintln(stdout, srv.URL()); err != nil {
		return err
	}
	<-ctx.Done()
	if c.stateOut != "" {
		state := struct {
			azmodel.Snapshot
			Meter azmodel.Meter     `json:"meter"`
			Log   []azmodel.Request `json:"log"`
		}{m.Snapshot(), m.Meter(), m.Requests()}
		b, err := json.MarshalIndent(state, "", "  ")
		if err != nil {
			return fmt.Errorf("state-out: %w", err)
		}
		if err := os.WriteFile(c.stateOut, b, 0o644); err != nil {
			return fmt.Errorf("state-out: %w", err)
		}
	}
	return nil
}
