package gallery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// memStore is a minimal create-only Store. rivals are names "another bake"
// takes just before our Create, which is what a concurrent publisher does
// between our List and our Create.
type memStore struct {
	mu        sync.Mutex
	versions  map[string]ImageVersion
	rivals    []string
	createErr error
	creates   []string // names Create was asked for, in order
}

func newMemStore(names ...string) *memStore {
	s := &memStore{versions: map[string]ImageVersion{}}
	for _, n := range names {
		s.versions[n] = ImageVersion{Name: n, ProvisioningState: StateSucceeded}
	}
	return s
}

func (s *memStore) List(context.Context, string) ([]ImageVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ImageVersion
	for _, v := range s.versions {
		out = append(out, v)
	}
	Sort(out)
	return out, nil
}

func (s *memStore) Get(_ context.Context, image, version string) (ImageVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.versions[version]; ok {
		return v, nil
	}
	return ImageVersion{}, fmt.Errorf("gallery image %s version %s: %w", image, version, ErrNotFound)
}

func (s *memStore) Create(_ context.Context, image string, req CreateRequest) (ImageVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creates = append(s.creates, req.Version)
	if s.createErr != nil {
		return ImageVersion{}, s.createErr
	}
	for _, r := range s.rivals {
		s.versions[r] = ImageVersion{Name: r, ProvisioningState: StateCreating}
	}
	s.rivals = nil
	if _, ok := s.versions[req.Version]; ok {
		return ImageVersion{}, fmt.Errorf("gallery image %s version %s: %w", image, req.Version, ErrVersionExists)
	}
	v := ImageVersion{Name: req.Version, ProvisioningState: StateSucceeded, Path: req.Source}
	s.versions[req.Version] = v
	return v, nil
}

func (s *memStore) Update(context.Context, string, string, Update) (ImageVersion, error) {
	return ImageVersion{}, errors.ErrUnsupported
}

func (s *memStore) Delete(context.Context, string, string) error { return errors.ErrUnsupported }

func TestPublish(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name        string
		existing    []string
		rivals      []string
		createErr   error
		line        string
		pinned      string
		maxAttempts int
		want        string
		wantCreates []string
		wantErr     error // checked with errors.Is; nil with want=="" means any error
	}{
		{name: "first version", line: "1.0", want: "1.0.0", wantCreates: []string{"1.0.0"}},
		{name: "next patch", existing: []string{"1.0.0", "1.0.9", "1.0.10", "1.1.4"}, line: "1.0", want: "1.0.11", wantCreates: []string{"1.0.11"}},
		{
			name: "rivals took the next two", existing: []string{"1.0.0"}, rivals: []string{"1.0.1", "1.0.2"},
			line: "1.0", maxAttempts: 5, want: "1.0.3", wantCreates: []string{"1.0.1", "1.0.2", "1.0.3"},
		},
		{
			name: "attempts exhausted", existing: []string{"1.0.0"}, rivals: []string{"1.0.1", "1.0.2", "1.0.3"},
			line: "1.0", maxAttempts: 3, wantErr: ErrVersionExists, wantCreates: []string{"1.0.1", "1.0.2", "1.0.3"},
		},
		{name: "pinned free", existing: []string{"1.0.5"}, line: "1.0", pinned: "1.0.2", want: "1.0.2", wantCreates: []string{"1.0.2"}},
		{name: "pinned outside the line", line: "1.0", pinned: "3.1.4", want: "3.1.4", wantCreates: []string{"3.1.4"}},
		{name: "pinned taken is not moved", existing: []string{"1.0.2"}, line: "1.0", pinned: "1.0.2", maxAttempts: 5, wantErr: ErrVersionExists, wantCreates: []string{"1.0.2"}},
		{name: "pinned invalid", line: "1.0", pinned: "1.0", wantCreates: nil},
		{name: "bad line", line: "1", wantCreates: nil},
		{name: "other errors not retried", line: "1.0", createErr: boom, maxAttempts: 5, wantErr: boom, wantCreates: []string{"1.0.0"}},
		{name: "default attempts", existing: []string{"1.0.0"}, rivals: []string{"1.0.1", "1.0.2", "1.0.3", "1.0.4"}, line: "1.0", want: "1.0.5", wantCreates: []string{"1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemStore(tt.existing...)
			s.rivals, s.createErr = tt.rivals, tt.createErr
			got, err := Publish(context.Background(), s, "img", tt.line, CreateRequest{Version: tt.pinned, Source: "disk"}, tt.maxAttempts)
			if !slices.Equal(s.creates, tt.wantCreates) {
				t.Errorf("Create calls = %v, want %v", s.creates, tt.wantCreates)
			}
			if tt.want == "" {
				if err == nil {
					t.Fatalf("Publish = %s, want an error", got.Name)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("Publish error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tt.want || got.Path != "disk" {
				t.Errorf("Publish = %+v, want %s", got, tt.want)
			}
		})
	}
}

func TestPublishPatchOverflow(t *testing.T) {
	s := newMemStore("1.0.2147483646")
	s.rivals = []string{"1.0.2147483647"}
	_, err := Publish(context.Background(), s, "img", "1.0", CreateRequest{Source: "disk"}, 5)
	if err == nil || errors.Is(err, ErrVersionExists) {
		t.Fatalf("Publish at the int32 limit: %v, want a range error", err)
	}
}
