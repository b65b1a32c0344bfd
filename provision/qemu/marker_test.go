package qemu

import (
	"os"
	"path/filepath"
	"testing"
)

// Start marks its temporary directory for gc at once (issue 12 #2).
func TestStartMarksTempDir(t *testing.T) {
	needQEMU(t)
	m, _ := startTiny(t, MachineOptions{Base: tinyBase(t), BuildID: "build-42"})
	mk, err := ReadMarker(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	if mk.PID != os.Getpid() || mk.UID != os.Getuid() || mk.BuildID != "build-42" || mk.PIDStart == "" {
		t.Errorf("marker %+v", mk)
	}
	if !mk.CreatorAlive() {
		t.Error("the creator (this test) is not alive")
	}
	dead := mk
	dead.PIDStart = "1" // same PID, another process
	if dead.CreatorAlive() {
		t.Error("a reused PID counts as the creator")
	}
	fi, err := os.Stat(filepath.Join(m.dir, MarkerFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("marker file %v, %v", fi, err)
	}
}

func TestReadMarkerRefuses(t *testing.T) {
	good := t.TempDir()
	if err := markDir(good, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMarker(good); err != nil {
		t.Fatalf("good marker: %v", err)
	}
	if _, err := ReadMarker(t.TempDir()); err == nil {
		t.Error("a folder without a marker is marked")
	}
	link := t.TempDir()
	if err := os.Symlink(filepath.Join(good, MarkerFile), filepath.Join(link, MarkerFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadMarker(link); err == nil {
		t.Error("a symlinked marker counts")
	}
	if os.Getuid() == 0 {
		other := t.TempDir()
		if err := markDir(other, "b"); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadMarker(other); err == nil {
			t.Error("a marker of another owner than the folder's counts")
		}
	}
}
