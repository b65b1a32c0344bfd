package gallery

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

// countingStore counts List calls: Publish must start from Preview's
// answer, not list again.
type countingStore struct {
	*memStore
	lists int
}

func (s *countingStore) List(ctx context.Context, image string) ([]ImageVersion, error) {
	s.lists++
	return s.memStore.List(ctx, image)
}

func TestAllocator(t *testing.T) {
	tests := []struct {
		name        string
		existing    []string
		rivals      []string // taken between Preview and Publish
		pinned      string
		attempts    int
		wantPreview string
		wantPreErr  error
		want        string
		wantTaken   []string // "taken→next"
		wantCreates []string
		wantErr     error
	}{
		{name: "preview is what is published", existing: []string{"1.0.0", "1.0.1"}, wantPreview: "1.0.2", want: "1.0.2", wantCreates: []string{"1.0.2"}},
		{
			name: "a concurrent bake took the previewed name", existing: []string{"1.0.0"}, rivals: []string{"1.0.1", "1.0.2"},
			wantPreview: "1.0.1", want: "1.0.3", wantTaken: []string{"1.0.1→1.0.2", "1.0.2→1.0.3"}, wantCreates: []string{"1.0.1", "1.0.2", "1.0.3"},
		},
		{
			name: "attempts bound the names tried", existing: []string{"1.0.0"}, rivals: []string{"1.0.1", "1.0.2"}, attempts: 2,
			wantPreview: "1.0.1", wantTaken: []string{"1.0.1→1.0.2"}, wantCreates: []string{"1.0.1", "1.0.2"}, wantErr: ErrVersionExists,
		},
		{name: "pinned free", existing: []string{"1.0.0"}, pinned: "1.0.7", wantPreview: "1.0.7", want: "1.0.7", wantCreates: []string{"1.0.7"}},
		{name: "pinned taken is refused at preview", existing: []string{"1.0.7"}, pinned: "1.0.7", wantPreErr: ErrVersionExists},
		{
			name: "pinned taken later is not moved", pinned: "1.0.7", rivals: []string{"1.0.7"},
			wantPreview: "1.0.7", wantCreates: []string{"1.0.7"}, wantErr: ErrVersionExists,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &countingStore{memStore: newMemStore(tt.existing...)}
			var taken []string
			a := &Allocator{Store: s, Image: "img", Line: "1.0", Pinned: tt.pinned, Attempts: tt.attempts,
				Taken: func(t, n string) { taken = append(taken, t+"→"+n) }}
			got, err := a.Preview(context.Background())
			if tt.wantPreErr != nil {
				if !errors.Is(err, tt.wantPreErr) {
					t.Fatalf("Preview = %q, %v; want %v", got, err, tt.wantPreErr)
				}
				return
			}
			if err != nil || got != tt.wantPreview {
				t.Fatalf("Preview = %q, %v; want %s", got, err, tt.wantPreview)
			}
			s.rivals = tt.rivals
			v, err := a.Publish(context.Background(), CreateRequest{Source: "disk"})
			if s.lists != 1 {
				t.Errorf("the store was listed %d times; want once, by Preview", s.lists)
			}
			if !slices.Equal(s.creates, tt.wantCreates) {
				t.Errorf("Create calls = %v, want %v", s.creates, tt.wantCreates)
			}
			if !slices.Equal(taken, tt.wantTaken) {
				t.Errorf("taken reports = %v, want %v", taken, tt.wantTaken)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Publish = %v, %v; want %v", v.Name, err, tt.wantErr)
				}
				return
			}
			if err != nil || v.Name != tt.want {
				t.Fatalf("Publish = %q, %v; want %s", v.Name, err, tt.want)
			}
		})
	}
}

func TestAllocatorLogsToItsLogger(t *testing.T) {
	var buf bytes.Buffer
	a := &Allocator{Store: newMemStore("1.0.0", "not-a-version"), Image: "img", Line: "1.0", Log: slog.New(slog.NewTextHandler(&buf, nil))}
	if v, err := a.Preview(context.Background()); err != nil || v != "1.0.1" {
		t.Fatalf("Preview = %q, %v", v, err)
	}
	if !strings.Contains(buf.String(), "not-a-version") {
		t.Errorf("the unparsable name was not reported to the allocator's logger: %q", buf.String())
	}
}
