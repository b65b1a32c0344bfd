package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagebake/imagebake/gallery"
)

// countingStore counts the name conflicts Publish ran into, to show that the
// concurrency tests really raced.
type countingStore struct {
	gallery.Store
	conflicts atomic.Int64
}

func (c *countingStore) Create(ctx context.Context, image string, req gallery.CreateRequest) (gallery.ImageVersion, error) {
	iv, err := c.Store.Create(ctx, image, req)
	if errors.Is(err, gallery.ErrVersionExists) {
		c.conflicts.Add(1)
	}
	return iv, err
}

// staleStore lists nothing, like a List made before other bakes published.
type staleStore struct{ gallery.Store }

func (staleStore) List(context.Context, string) ([]gallery.ImageVersion, error) { return nil, nil }

// diskContent is a distinct disk per publisher, large enough that copies overlap.
func diskContent(who string) []byte {
	return append([]byte(who+"\n"), bytes.Repeat([]byte(who), 64<<10/len(who))...)
}

// verifyPublished checks that the gallery holds exactly the published
// versions, 1.0.0 upwards without gaps, each with the disk its publisher gave.
func verifyPublished(t *testing.T, s *Store, image string, published map[string]string) {
	t.Helper()
	vs, err := s.List(context.Background(), image)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range len(published) {
		want = append(want, fmt.Sprintf("1.0.%d", i))
	}
	if got := names(vs); !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	for _, iv := range vs {
		disk := readFile(t, iv.Path)
		if iv.ProvisioningState != gallery.StateSucceeded || sum(disk) != published[iv.Name] || iv.SHA256 != published[iv.Name] {
			t.Errorf("version %s: state %s, disk sha256 %s, metadata sha256 %s; its publisher gave %s",
				iv.Name, iv.ProvisioningState, sum(disk), iv.SHA256, published[iv.Name])
		}
	}
}

func TestPublishStaleListing(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	s := New(t.TempDir(), nil)
	published := map[string]string{}
	for _, v := range []string{"1.0.0", "1.0.1"} {
		content := diskContent("first " + v)
		if _, err := s.Create(ctx, "img", gallery.CreateRequest{Version: v, Source: writeSource(t, src, v, content)}); err != nil {
			t.Fatal(err)
		}
		published[v] = sum(content)
	}
	meta := readFile(t, filepath.Join(s.Root(), "img", "1.0.1", MetadataFile))
	content := diskContent("late")
	iv, err := gallery.Publish(ctx, staleStore{s}, "img", "1.0", gallery.CreateRequest{Source: writeSource(t, src, "late", content)}, 3)
	if err != nil || iv.Name != "1.0.2" {
		t.Fatalf("Publish = %s, %v; want 1.0.2", iv.Name, err)
	}
	published["1.0.2"] = sum(content)
	verifyPublished(t, s, "img", published)
	if !bytes.Equal(readFile(t, filepath.Join(s.Root(), "img", "1.0.1", MetadataFile)), meta) {
		t.Error("metadata of 1.0.1 changed")
	}
	// Out of attempts, Publish gives up with ErrVersionExists.
	_, err = gallery.Publish(ctx, staleStore{s}, "img", "1.0", gallery.CreateRequest{Source: writeSource(t, src, "later", content)}, 3)
	if !errors.Is(err, gallery.ErrVersionExists) {
		t.Errorf("Publish with too few attempts: %v, want ErrVersionExists", err)
	}
	// A pinned version is created exactly or not at all.
	if _, err := gallery.Publish(ctx, s, "img", "1.0", gallery.CreateRequest{Version: "1.0.1", Source: writeSource(t, src, "pin", content)}, 5); !errors.Is(err, gallery.ErrVersionExists) {
		t.Errorf("pinned Publish of a taken version: %v, want ErrVersionExists", err)
	}
	verifyPublished(t, s, "img", published)
}

func TestPublishConcurrentGoroutines(t *testing.T) {
	const goroutines, each = 8, 3
	src := t.TempDir()
	s := &countingStore{Store: New(t.TempDir(), nil)}
	var (
		mu        sync.Mutex
		published = map[string]string{}
		wg        sync.WaitGroup
		start     = make(chan struct{})
	)
	// Sources are written here: t.Fatal must not run in the goroutines.
	var sources, sums [goroutines][each]string
	for g := range goroutines {
		for i := range each {
			content := diskContent(fmt.Sprintf("goroutine %d publish %d", g, i))
			sources[g][i] = writeSource(t, src, fmt.Sprintf("g%d-%d", g, i), content)
			sums[g][i] = sum(content)
		}
	}
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for i := range each {
				iv, err := gallery.Publish(context.Background(), s, "img", "1.0", gallery.CreateRequest{Source: sources[g][i]}, goroutines*each)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if _, dup := published[iv.Name]; dup {
					t.Errorf("version %s published twice", iv.Name)
				}
				published[iv.Name] = sums[g][i]
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d publishes, %d name conflicts resolved", len(published), s.conflicts.Load())
	verifyPublished(t, s.Store.(*Store), "img", published)
}

// The child side of TestPublishAcrossProcesses: the test binary runs
// itself with these variables set.
const (
	childRootEnv = "IMAGEBAKE_TEST_GALLERY_CHILD_ROOT"
	childWorkEnv = "IMAGEBAKE_TEST_GALLERY_CHILD_WORK"
	childIDEnv   = "IMAGEBAKE_TEST_GALLERY_CHILD_ID"
)

const (
	processes       = 4
	perProcess      = 3
	barrierDeadline = 60 * time.Second
)

type childResult struct {
	Published map[string]string // version → sha256 of the disk given
	Conflicts int64
}

func TestPublishAcrossProcesses(t *testing.T) {
	if root := os.Getenv(childRootEnv); root != "" {
		publishChild(t, root, os.Getenv(childWorkEnv), os.Getenv(childIDEnv))
		return
	}
	root, work := t.TempDir(), t.TempDir()
	type child struct {
		cmd *exec.Cmd
		out bytes.Buffer
	}
	children := make([]*child, processes)
	for i := range children {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestPublishAcrossProcesses$", "-test.count=1")}
		c.cmd.Env = append(os.Environ(), childRootEnv+"="+root, childWorkEnv+"="+work, childIDEnv+"="+strconv.Itoa(i))
		c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children[i] = c
	}
	// Release all children at once, once they are all ready, so that they race.
	deadline := time.Now().Add(barrierDeadline)
	for i := 0; i < processes; {
		if _, err := os.Stat(filepath.Join(work, fmt.Sprintf("ready-%d", i))); err == nil {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatal("children did not get ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	published := map[string]string{}
	var conflicts int64
	for i, c := range children {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, c.out.String())
		}
		var res childResult
		if err := json.Unmarshal(readFile(t, filepath.Join(work, fmt.Sprintf("result-%d.json", i))), &res); err != nil {
			t.Fatalf("child %d result: %v\n%s", i, err, c.out.String())
		}
		for v, h := range res.Published {
			if _, dup := published[v]; dup {
				t.Errorf("version %s published by two processes", v)
			}
			published[v] = h
		}
		conflicts += res.Conflicts
	}
	if len(published) != processes*perProcess {
		t.Fatalf("%d versions published, want %d: %v", len(published), processes*perProcess, published)
	}
	t.Logf("%d processes published %d versions, %d name conflicts resolved", processes, len(published), conflicts)
	verifyPublished(t, New(root, nil), "img", published)
}

func publishChild(t *testing.T, root, work, id string) {
	src := t.TempDir()
	s := &countingStore{Store: New(root, nil)}
	var sources []string
	var sums []string
	for i := range perProcess {
		content := diskContent(fmt.Sprintf("process %s (pid %d) publish %d", id, os.Getpid(), i))
		sources = append(sources, writeSource(t, src, strconv.Itoa(i), content))
		sums = append(sums, sum(content))
	}
	if err := os.WriteFile(filepath.Join(work, "ready-"+id), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(barrierDeadline)
	for {
		if _, err := os.Stat(filepath.Join(work, "go")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never released")
		}
		time.Sleep(time.Millisecond)
	}
	res := childResult{Published: map[string]string{}}
	for i, p := range sources {
		iv, err := gallery.Publish(context.Background(), s, "img", "1.0", gallery.CreateRequest{Source: p}, processes*perProcess)
		if err != nil {
			t.Fatal(err)
		}
		res.Published[iv.Name] = sums[i]
	}
	res.Conflicts = s.conflicts.Load()
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "result-"+id+".json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkPublish(b *testing.B) {
	for _, size := range []int{64 << 10, 16 << 20} {
		for _, move := range []bool{false, true} {
			b.Run(fmt.Sprintf("size=%dKiB/move=%v", size>>10, move), func(b *testing.B) {
				ctx := context.Background()
				content := bytes.Repeat([]byte{0xab}, size)
				src := b.TempDir()
				s := New(b.TempDir(), nil)
				b.SetBytes(int64(size))
				i := 0
				for b.Loop() {
					b.StopTimer()
					p := writeSource(b, src, strconv.Itoa(i), content)
					i++
					b.StartTimer()
					if _, err := gallery.Publish(ctx, s, "img", "1.0", gallery.CreateRequest{Source: p, MoveSource: move}, 1); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
