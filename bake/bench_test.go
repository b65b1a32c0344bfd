package bake

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	az "github.com/imagebake/imagebake/provision/azure"
)

// BenchmarkAzureBake bakes against the model with real-world operation
// durations scaled 1:1000 (VM create 90 s → 90 ms, version create 10 min →
// 600 ms …) and imagebake's poll interval scaled the same way (5 s → 5 ms).
// It reports the bake's wall time against its critical path — the sum of
// the operations that must run one after another — as an overhead
// percentage, and the Resource Manager requests per bake by class.
func BenchmarkAzureBake(b *testing.B) {
	const scale = 1.0 / 1000
	lat := azmodel.RealWorldLatency(scale)
	e := aztest.New(b, azmodel.Options{Latency: lat}, nil)
	cred, err := e.Server.Credential("tenant-1", "client-1", "s")
	if err != nil {
		b.Fatal(err)
	}
	clients, err := az.NewClients(az.Config{SubscriptionID: aztest.Subscription, ResourceManager: e.Server.URL(), Credential: cred,
		Transport: e.Server.HTTPClient(), PollFrequency: time.Duration(float64(5*time.Second) * scale), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	r := loadRunner(b)
	// The operations a bake cannot avoid or overlap: NSG then VNet (the
	// VNet names the NSG), the VM, deallocate, generalize, the version,
	// then deleting the build's resource group.
	var critical time.Duration
	for _, k := range []azmodel.OpKind{azmodel.OpNetworkWrite, azmodel.OpNetworkWrite, azmodel.OpVMCreate, azmodel.OpVMDeallocate,
		azmodel.OpVMGeneralize, azmodel.OpVersionCreate, azmodel.OpRGDelete} {
		critical += lat.For(k)
	}
	e.Model.ResetRequests()
	var wall time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		opts := AzureOptions{Clients: clients, SSHPort: e.Port, LogDir: b.TempDir(), Logger: slog.New(slog.DiscardHandler), CleanupTime: time.Minute}
		start := time.Now()
		if _, err := Azure(context.Background(), r, opts); err != nil {
			b.Fatal(err)
		}
		wall += time.Since(start)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(critical.Milliseconds()), "critical-ms")
	b.ReportMetric(float64(wall.Milliseconds())/n, "wall-ms")
	b.ReportMetric(100*(float64(wall)/n-float64(critical))/float64(critical), "overhead-%")
	b.ReportMetric(float64(e.Model.CountRequests(azmodel.ClassWrite))/n, "writes/bake")
	b.ReportMetric(float64(e.Model.CountRequests(azmodel.ClassRead))/n, "reads/bake")
	b.ReportMetric(float64(e.Model.CountRequests(azmodel.ClassPoll))/n, "polls/bake")
	b.ReportMetric(float64(e.Model.CountRequests(azmodel.ClassDelete))/n, "deletes/bake")
	b.ReportMetric(float64(e.Model.CountRequests())/n, "arm-requests/bake")
}
