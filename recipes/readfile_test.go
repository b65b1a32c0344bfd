package recipes

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A recipe path that is a FIFO or a device is refused at once: opening a
// FIFO blocks forever, and /dev/zero never ends (it used to fill memory).
func TestLoadRefusesWhatIsNotARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "recipe.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero", t.TempDir()} {
		done := make(chan error, 1)
		go func() { _, err := Load(p); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("Load(%s) = %v, want not a regular file", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) is still reading", p)
		}
	}
}

// A file over the limit is reported without reading all of it.
func TestLoadBoundsTheRead(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, 3*MaxRecipeBytes), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(big)
	if err == nil || !strings.Contains(err.Error(), "over 1048576 bytes") {
		t.Fatalf("Load(big) = %v", err)
	}
}
