package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
)

func TestRunServesSeedsAndWritesState(t *testing.T) {
	dir := t.TempDir()
	ca, state := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "state.json")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-ca-out", ca, "-state-out", state, "-seed-rg", "images", "-seed-gallery", "bakery", "-seed-image", "runner",
			"-seed-versions", "1.0.0,1.0.1!", "-vm-ip", "127.0.0.9"}, pw, func(k string) string {
			if k == "AZMODEL_CLIENT_SECRET" {
				return "from-env"
			}
			return ""
		})
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSpace(line)
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("url %q", base)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("ca-out is not a PEM certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}

	resp, err := hc.Get(base + "/_model/versions?imageId=" + azmodel.GalleryImageID("", "images", "bakery", "runner"))
	if err != nil {
		t.Fatal(err)
	}
	var versions []azmodel.GalleryVersion
	_ = json.NewDecoder(resp.Body).Decode(&versions)
	_ = resp.Body.Close()
	if len(versions) != 2 || versions[1].Name != "1.0.1" || !versions[1].ExcludeFromLatest {
		t.Fatalf("seeded versions %+v", versions)
	}
	// The client secret comes from the environment.
	form := "grant_type=client_credentials&client_id=x&scope=" + base + "/.default&client_secret="
	for secret, want := range map[string]int{"wrong": http.StatusUnauthorized, "from-env": http.StatusOK} {
		resp, err := hc.Post(base+"/t/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form+secret))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("secret %q: %d", secret, resp.StatusCode)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var snap azmodel.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Resources) != 5 || snap.Requests != 2 {
		t.Fatalf("state: %d resources, %d requests", len(snap.Resources), snap.Requests)
	}
}

func TestParseRejects(t *testing.T) {
	for _, args := range [][]string{{"-seed-rg", "x"}, {"extra"}, {"-nope"}, {"-retry-after-scale", "1.5"}, {"-retry-after-scale", "-1"}} {
		if _, err := parse(args); err == nil {
			t.Errorf("parse(%v) accepted", args)
		}
	}
}
