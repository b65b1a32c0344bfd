package qemu

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// readISO is an independent reader for the images isoImage writes: it
// follows the primary volume descriptor to the root directory and returns
// the volume label and the files, named as Linux's default mapping shows
// them (lower case, without ".;1").
func readISO(t *testing.T, img []byte) (string, map[string][]byte) {
	t.Helper()
	if len(img)%isoSector != 0 || len(img) < 21*isoSector {
		t.Fatalf("image of %d bytes is not whole sectors past the descriptors", len(img))
	}
	pvd := img[16*isoSector:]
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" || pvd[6] != 1 {
		t.Fatalf("no primary volume descriptor at sector 16: % x", pvd[:8])
	}
	if term := img[17*isoSector:]; term[0] != 255 || string(term[1:6]) != "CD001" {
		t.Fatalf("no terminator at sector 17")
	}
	if n := binary.LittleEndian.Uint32(pvd[80:]); int(n)*isoSector != len(img) || binary.BigEndian.Uint32(pvd[84:]) != n {
		t.Fatalf("volume space size %d sectors, image %d bytes", n, len(img))
	}
	if binary.LittleEndian.Uint16(pvd[128:]) != isoSector {
		t.Fatalf("block size %d", binary.LittleEndian.Uint16(pvd[128:]))
	}
	label := strings.TrimRight(string(pvd[40:72]), " ")
	rootRec := pvd[156:190]
	rootLBA := binary.LittleEndian.Uint32(rootRec[2:])
	rootLen := binary.LittleEndian.Uint32(rootRec[10:])
	if binary.BigEndian.Uint32(rootRec[6:]) != rootLBA || rootRec[25]&2 == 0 {
		t.Fatalf("bad root directory record % x", rootRec)
	}
	dir := img[rootLBA*isoSector : rootLBA*isoSector+rootLen]
	files := map[string][]byte{}
	for off := 0; off < len(dir) && dir[off] != 0; off += int(dir[off]) {
		r := dir[off : off+int(dir[off])]
		id := r[33 : 33+int(r[32])]
		if len(id) == 1 && id[0] <= 1 {
			continue // "." and ".."
		}
		lba, size := binary.LittleEndian.Uint32(r[2:]), binary.LittleEndian.Uint32(r[10:])
		if binary.BigEndian.Uint32(r[6:]) != lba || binary.BigEndian.Uint32(r[14:]) != size {
			t.Fatalf("record %q: byte orders disagree", id)
		}
		name := strings.ToLower(strings.TrimSuffix(string(id), ".;1"))
		files[name] = img[lba*isoSector : lba*isoSector+size]
	}
	return label, files
}

func TestWriteSeed(t *testing.T) {
	// Larger than a sector, so that extents and sizes are exercised.
	userData := "#cloud-config\nwrite_files: []\n# " + strings.Repeat("x", 5000) + "\n"
	path := filepath.Join(t.TempDir(), "seed.iso")
	s, err := WriteSeed(path, SeedConfig{UserData: []byte(userData), Hostname: "bake-1"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Path() != path || !strings.HasPrefix(s.InstanceID(), "iid-") {
		t.Errorf("seed %+v", s)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("seed mode %v, want 0600 (it holds the host private key)", fi.Mode().Perm())
	}
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	label, files := readISO(t, img)
	if label != "cidata" {
		t.Errorf("label %q, want cidata", label)
	}
	if string(files["user-data"]) != userData {
		t.Errorf("user-data differs (%d bytes, want %d)", len(files["user-data"]), len(userData))
	}
	var md map[string]string
	if err := yaml.Unmarshal(files["meta-data"], &md); err != nil {
		t.Fatal(err)
	}
	if md["local-hostname"] != "bake-1" || md["instance-id"] != s.InstanceID() {
		t.Errorf("meta-data %q", files["meta-data"])
	}
	if len(files) != 2 {
		t.Errorf("files %v, want meta-data and user-data", files)
	}
	// blkid is what the guest's udev and cloud-init use to find the seed.
	if _, err := exec.LookPath("blkid"); err == nil {
		out, err := exec.Command("blkid", "-p", "-o", "export", path).Output()
		if err != nil {
			t.Fatalf("blkid: %v", err)
		}
		for _, want := range []string{"TYPE=iso9660", "LABEL=cidata"} {
			if !bytes.Contains(out, []byte(want+"\n")) {
				t.Errorf("blkid says %q, want %s", out, want)
			}
		}
	}
	if _, err := WriteSeed(path, SeedConfig{}); err == nil {
		t.Error("WriteSeed over an existing file succeeded")
	}
}

func TestSeedInstanceIDsAndQuoting(t *testing.T) {
	dir := t.TempDir()
	a, err := WriteSeed(filepath.Join(dir, "a.iso"), SeedConfig{Hostname: "evil\ninstance-id: fixed"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := WriteSeed(filepath.Join(dir, "b.iso"), SeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if a.InstanceID() == b.InstanceID() {
		t.Errorf("two seeds share instance-id %q", a.InstanceID())
	}
	var md map[string]string
	body := metaData(SeedConfig{InstanceID: "i-1", Hostname: "evil\ninstance-id: fixed"})
	if err := yaml.Unmarshal(body, &md); err != nil {
		t.Fatalf("meta-data %q: %v", body, err)
	}
	if md["instance-id"] != "i-1" || md["local-hostname"] != "evil\ninstance-id: fixed" {
		t.Errorf("hostname leaked into other keys: %q", body)
	}
}

func TestISOEmptyFile(t *testing.T) {
	img := isoImage("cidata", []isoFile{{Name: "vendor-data"}, {Name: "meta-data", Data: []byte("x")}}, time.Now())
	_, files := readISO(t, img)
	if d, ok := files["vendor-data"]; !ok || len(d) != 0 {
		t.Errorf("vendor-data %q %v", d, ok)
	}
	if string(files["meta-data"]) != "x" {
		t.Errorf("meta-data %q", files["meta-data"])
	}
}
