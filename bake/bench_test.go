package bake

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	az "github.com/imagebake/imagebake/provision/azure"
)

// BenchmarkAzureBake bakes the shipped recipe against the served model, with
// Azure's recorded Retry-After cadence, on a virtual clock of real-world
// seconds, and reports the bake's overhead over its critical path in those
// seconds. See the README's "Benchmarks" section for the definitions.
//
// The clock (vclock) is real time plus everything Azure makes a client
// wait, added at 1:1 without waiting it: the model's operations run their
// real-world durations on it, every sleep of the client (Retry-After, or
// its poll interval) advances it, and every Resource Manager request
// advances it by Azure's typical latency for its class. What is not
// simulated (TLS, SSH to the stand-in VM, CPU, our own pauses) passes at
// its real speed. So a bake's reading on the clock is its expected wall
// time on Azure, minus what the guest itself spends (the stand-in VM's
// cloud-init is instant) and minus network round trips beyond loopback.
//
// Sub-benchmarks set the client's poll interval where Azure sends no
// Retry-After (--poll-interval, 5 s by default): finer polling costs
// requests and saves seconds.
func BenchmarkAzureBake(b *testing.B) {
	for _, poll := range []time.Duration{5 * time.Second, 3 * time.Second, 2 * time.Second} {
		b.Run("poll="+poll.String(), func(b *testing.B) { benchAzureBake(b, poll) })
	}
}

func benchAzureBake(b *testing.B, pollFrequency time.Duration) {
	real1 := azmodel.RealWorldLatency(1)
	clock := newVClock()
	e := aztest.New(b, azmodel.Options{Latency: jittered(real1, 0, 1), Now: clock.Now}, nil)
	cred, err := e.Server.Credential("tenant-1", "client-1", "not-a-real-secret")
	if err != nil {
		b.Fatal(err)
	}
	tr := &azureLatency{next: aztest.LoopbackOnly(b.Errorf, e.Server.HTTPClientScaled(1).Transport), clock: clock,
		read: real1.For(azmodel.OpRequestRead), write: real1.For(azmodel.OpRequestWrite), generalize: real1.For(azmodel.OpVMGeneralize)}
	clients, err := az.NewClients(az.Config{SubscriptionID: aztest.Subscription, ResourceManager: e.Server.URL(), Credential: cred,
		Transport: &http.Client{Transport: tr}, PollFrequency: pollFrequency, Sleep: clock.Sleep, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	r := loadRunner(b)
	e.Model.ResetRequests()
	var wall, critical, fixed, slept, latency time.Duration
	var stages *stageClock
	var each []string
	stageOver := map[string]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stages = &stageClock{clock: clock}
		opts := AzureOptions{Clients: clients, SSHPort: e.Port, LogDir: b.TempDir(), Logger: slog.New(slog.DiscardHandler),
			CleanupTime: time.Minute, Sink: stages}
		lat := jittered(real1, i, b.N)
		e.Model.SetLatency(lat)
		critical += criticalPath(lat, tr.generalize)
		v0, s0, l0 := clock.Now(), clock.slept(), clock.latency()
		start := time.Now()
		if _, err := Azure(context.Background(), r, opts); err != nil {
			b.Fatal(err)
		}
		fixed += time.Since(start)
		w := clock.Now().Sub(v0)
		wall += w
		each = append(each, fmt.Sprintf("%.1f", (w-criticalPath(lat, tr.generalize)).Seconds()))
		for name, d := range stages.overheads(lat, tr.generalize) {
			stageOver[name] += d
		}
		slept += clock.slept() - s0
		latency += clock.latency() - l0
	}
	b.StopTimer()
	n := time.Duration(b.N)
	mt := e.Model.Meter()
	perBake := func(c azmodel.Class) float64 { return float64(mt.Requests[c]) / float64(b.N) }
	overhead := (wall - critical) / n
	b.ReportMetric((critical / n).Seconds(), "critical-s")
	b.ReportMetric((wall / n).Seconds(), "wall-s")
	b.ReportMetric(overhead.Seconds(), "overhead-s")
	b.ReportMetric(100*overhead.Seconds()/(critical/n).Seconds(), "overhead-%")
	b.ReportMetric((fixed / n).Seconds(), "fixed-s")
	b.ReportMetric((slept / n).Seconds(), "waited-s")
	b.ReportMetric((latency / n).Seconds(), "latency-s")
	b.ReportMetric((mt.AdvertisedWait / n).Seconds(), "retry-after-s")
	b.ReportMetric(perBake(azmodel.ClassWrite), "writes/bake")
	b.ReportMetric(perBake(azmodel.ClassRead), "reads/bake")
	b.ReportMetric(perBake(azmodel.ClassPoll), "polls/bake")
	b.ReportMetric(perBake(azmodel.ClassDelete), "deletes/bake")
	b.ReportMetric(float64(mt.Requests[azmodel.ClassWrite]+mt.Requests[azmodel.ClassRead]+mt.Requests[azmodel.ClassPoll]+mt.Requests[azmodel.ClassDelete])/float64(b.N), "arm-requests/bake")
	var over []string
	for _, name := range stages.order {
		over = append(over, fmt.Sprintf("%s %.1f", name, (stageOver[name]/n).Seconds()))
	}
	b.Logf("poll every %s; overhead of each bake (s): %s; mean overhead by stage (s): %s", pollFrequency, strings.Join(each, " "), strings.Join(over, ", "))
	b.Logf("busiest operations (all bakes):%s", byOp(mt))
}

// criticalPath is what a perfect client could not avoid waiting under lat:
// the operations a bake cannot skip or overlap, one after another, at their
// durations: NSG then VNet (the VNet names the NSG), the VM, deallocate,
// generalize (which the transport times, see jittered), the version, then
// deleting the build's resource group.
func criticalPath(lat azmodel.LatencyProfile, generalize time.Duration) time.Duration {
	d := generalize
	for _, k := range []azmodel.OpKind{azmodel.OpNetworkWrite, azmodel.OpNetworkWrite, azmodel.OpVMCreate, azmodel.OpVMDeallocate,
		azmodel.OpVersionCreate, azmodel.OpRGDelete} {
		d += lat.For(k)
	}
	return d
}

// jittered is the model's latency profile for bake i of n: real-world
// durations moved by up to ±7.5 s (at most ±half the duration), so that
// over the bakes each operation ends at evenly spread points between two
// of the client's polls. With the nominal round durations every bake would
// end its operations at the same point of the polling grid, and the
// overhead would be that one point's, not the expected one. The mean
// duration stays nominal. Request latencies and generalize (a synchronous
// call) are dropped from the model: they would be real sleeps inside it;
// the client's transport puts them on the virtual clock instead.
func jittered(real1 azmodel.LatencyProfile, i, n int) azmodel.LatencyProfile {
	const window = 15 * time.Second
	// Decorrelate the kinds: each starts its sequence of phases at a
	// different offset (multiples of the golden ratio's fraction).
	kinds := make([]string, 0, len(real1.Durations))
	for k := range real1.Durations {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	out := azmodel.LatencyProfile{Durations: map[azmodel.OpKind]time.Duration{}}
	for j, name := range kinds {
		k := azmodel.OpKind(name)
		d := real1.Durations[k]
		switch k {
		case azmodel.OpRequestRead, azmodel.OpRequestWrite:
			continue
		case azmodel.OpVMGeneralize:
			out.Durations[k] = 0
			continue
		}
		u := math.Mod((float64(i)+0.5)/float64(n)+0.618034*float64(j), 1)
		w := min(window, d)
		out.Durations[k] = d + time.Duration((u-0.5)*float64(w))
	}
	return out
}

// vclock is the benchmark's clock of real-world time: real time since it
// started plus every wait it was asked to take, which it takes at once.
// Waits advance it to the waiter's wake time; they are meant for one
// waiter at a time (the bake's stages run one after another), and waits
// that overlap in a bake would be added up rather than overlapped.
type vclock struct {
	realStart time.Time
	base      time.Time

	mu               sync.Mutex
	ahead            time.Duration
	sleptD, latencyD time.Duration
}

func newVClock() *vclock {
	now := time.Now()
	return &vclock{realStart: now, base: now}
}

// Now is the virtual time (the model's clock).
func (c *vclock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *vclock) nowLocked() time.Time { return c.base.Add(time.Since(c.realStart) + c.ahead) }

// Sleep is the client's wait (az.Config.Sleep): it passes d on the clock
// and returns.
func (c *vclock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ahead += max(d, 0)
	c.sleptD += max(d, 0)
	return nil
}

// spend passes d of request latency on the clock.
func (c *vclock) spend(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ahead += d
	c.latencyD += d
}

func (c *vclock) slept() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sleptD
}

func (c *vclock) latency() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.latencyD
}

// azureLatency is the client's transport on the virtual clock: each
// Resource Manager request first costs Azure's typical latency for its
// class (and generalize its run time, which Azure spends before it
// answers), as the model would have slept it before handling the request.
// It also undoes the served model's on-wire scaling (retry-after-ms next
// to Retry-After): the client lives the real cadence, on the virtual clock.
type azureLatency struct {
	next                    http.RoundTripper
	clock                   *vclock
	read, write, generalize time.Duration
}

func (t *azureLatency) RoundTrip(req *http.Request) (*http.Response, error) {
	d := t.write
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		d = t.read
	}
	if req.Method == http.MethodPost && strings.HasSuffix(strings.ToLower(req.URL.Path), "/generalize") {
		d += t.generalize
	}
	t.clock.spend(d)
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp.StatusCode < 400 && resp.Header.Get("Retry-After") != "" {
		resp.Header.Del("Retry-After-Ms")
	}
	return resp, err
}

// stageClock is a Sink that times each stage (and the cleanup) on the
// virtual clock.
type stageClock struct {
	clock *vclock

	mu    sync.Mutex
	order []string
	start map[string]time.Time
	took  map[string]time.Duration
}

func (s *stageClock) Event(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start == nil {
		s.start, s.took = map[string]time.Time{}, map[string]time.Duration{}
	}
	now := s.clock.Now()
	switch e.Kind {
	case StageStart, CleanupStart:
		s.order = append(s.order, e.Stage)
		s.start[e.Stage] = now
	case StageDone, StageSkip, StageFailed:
		s.took[e.Stage] = now.Sub(s.start[e.Stage])
	case CleanupDone, CleanupFail, CleanupLeft:
		s.took[e.Stage] = now.Sub(s.start[e.Stage])
	}
}

// overheads are each stage's time on the clock minus the Azure-side run
// time of the operations on the critical path it waits for.
func (s *stageClock) overheads(lat azmodel.LatencyProfile, generalize time.Duration) map[string]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := map[string]time.Duration{
		"network": 2 * lat.For(azmodel.OpNetworkWrite), "vm": lat.For(azmodel.OpVMCreate), "deallocate": lat.For(azmodel.OpVMDeallocate),
		"generalize": generalize, "publish": lat.For(azmodel.OpVersionCreate), "cleanup": lat.For(azmodel.OpRGDelete),
	}
	out := map[string]time.Duration{}
	for name, d := range s.took {
		out[name] = d - ops[name]
	}
	return out
}

func (s *stageClock) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sb strings.Builder
	for _, name := range s.order {
		fmt.Fprintf(&sb, " %s %.1f", name, s.took[name].Seconds())
	}
	return sb.String()
}

func byOp(mt azmodel.Meter) string {
	ops := append([]azmodel.OpMeter(nil), mt.ByOp...)
	sort.Slice(ops, func(i, j int) bool { return ops[i].Requests > ops[j].Requests })
	var sb strings.Builder
	for _, o := range ops[:min(len(ops), 6)] {
		fmt.Fprintf(&sb, " %s %s×%d (Retry-After %.0f s, %d without);", o.Op, o.Class, o.Requests, o.AdvertisedWait.Seconds(), o.PendingWithoutRetryAfter)
	}
	return sb.String()
}
