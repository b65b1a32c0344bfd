package qemu

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SeedLabel is the volume label cloud-init's NoCloud datasource looks for.
const SeedLabel = "cidata"

// SeedConfig is what a seed holds.
type SeedConfig struct {
	UserData   []byte
	Hostname   string // local-hostname; "imagebake" when empty
	InstanceID string // a fresh random id when empty, so every boot is a first boot
}

// Seed is a NoCloud seed on a small ISO 9660 volume labelled "cidata",
// attached to the guest as a read-only disk.
//
// The user-data holds the build VM's SSH host private key. An HTTP seed on
// loopback served it to any local user who found the port, and a secret URL
// path would not help: the URL reaches the guest through QEMU's argv
// (-append or -smbios), which /proc/PID/cmdline shows to every user. A file
// in the machine's 0700 temporary directory is readable by its owner only,
// and only its path is in argv. (QEMU's -fw_cfg keeps content out of argv
// too, but cloud-init does not read fw_cfg.)
type Seed struct {
	path       string
	instanceID string
}

// WriteSeed writes cfg as a cidata ISO image to path (mode 0600).
func WriteSeed(path string, cfg SeedConfig) (*Seed, error) {
	if cfg.Hostname == "" {
		cfg.Hostname = "imagebake"
	}
	if cfg.InstanceID == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("seed: instance id: %w", err)
		}
		cfg.InstanceID = "iid-imagebake-" + hex.EncodeToString(b[:])
	}
	img := isoImage(SeedLabel, []isoFile{
		{Name: "meta-data", Data: metaData(cfg)},
		{Name: "user-data", Data: cfg.UserData},
	}, time.Now().UTC())
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	_, err = f.Write(img)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	return &Seed{path: path, instanceID: cfg.InstanceID}, nil
}

// metaData renders meta-data. Both values are written as JSON strings,
// which YAML reads verbatim, so a hostname cannot inject other keys.
func metaData(cfg SeedConfig) []byte {
	id, _ := json.Marshal(cfg.InstanceID)
	host, _ := json.Marshal(cfg.Hostname)
	return fmt.Appendf(nil, "instance-id: %s\nlocal-hostname: %s\n", id, host)
}

// Path is the seed image's file.
func (s *Seed) Path() string { return s.path }

// InstanceID is the instance-id in meta-data.
func (s *Seed) InstanceID() string { return s.instanceID }

// isoFile is one file in the root directory of an ISO image.
type isoFile struct {
	Name string
	Data []byte
}

const isoSector = 2048

// isoImage builds a minimal ISO 9660 image: a primary volume descriptor,
// a terminator, path tables and one root directory holding files. Names
// are stored as NAME.;1 in upper case; Linux's default name mapping shows
// them in lower case without ".;1", and blkid reports the label from the
// volume identifier. No Rock Ridge or Joliet: cloud-init only needs the
// names, which fit level 2 identifiers.
func isoImage(label string, files []isoFile, now time.Time) []byte {
	const (
		pvdLBA   = 16
		lPathLBA = 18
		mPathLBA = 19
		rootLBA  = 20
	)
	lba := uint32(rootLBA + 1)
	extents := make([]uint32, len(files))
	for i, f := range files {
		if len(f.Data) == 0 {
			continue // an empty file has no extent
		}
		extents[i] = lba
		lba += uint32((len(f.Data) + isoSector - 1) / isoSector)
	}
	total := lba
	img := make([]byte, int(total)*isoSector)
	sector := func(n uint32) []byte { return img[n*isoSector : (n+1)*isoSector] }

	date := []byte{byte(now.Year() - 1900), byte(now.Month()), byte(now.Day()), byte(now.Hour()), byte(now.Minute()), byte(now.Second()), 0}
	record := func(extent, size uint32, flags byte, id []byte) []byte {
		n := 33 + len(id)
		if n%2 == 1 {
			n++
		}
		r := make([]byte, n)
		r[0] = byte(n)
		both32(r[2:], extent)
		both32(r[10:], size)
		copy(r[18:25], date)
		r[25] = flags
		both16(r[28:], 1)
		r[32] = byte(len(id))
		copy(r[33:], id)
		return r
	}

	root := sector(rootLBA)
	off := 0
	for _, r := range [][]byte{
		record(rootLBA, isoSector, 2, []byte{0}), // "."
		record(rootLBA, isoSector, 2, []byte{1}), // ".."
	} {
		off += copy(root[off:], r)
	}
	for i, f := range files {
		off += copy(root[off:], record(extents[i], uint32(len(f.Data)), 0, []byte(strings.ToUpper(f.Name)+".;1")))
		if extents[i] != 0 {
			copy(img[extents[i]*isoSector:], f.Data)
		}
	}

	// One path table entry: the root, its own parent.
	pathTable := func(order binary.ByteOrder) []byte {
		e := make([]byte, 10)
		e[0] = 1
		order.PutUint32(e[2:], rootLBA)
		order.PutUint16(e[6:], 1)
		return e
	}
	copy(sector(lPathLBA), pathTable(binary.LittleEndian))
	copy(sector(mPathLBA), pathTable(binary.BigEndian))

	pvd := sector(pvdLBA)
	pvd[0] = 1
	copy(pvd[1:6], "CD001")
	pvd[6] = 1
	padded := func(b []byte, s string) {
		for i := range b {
			b[i] = ' '
		}
		copy(b, s)
	}
	padded(pvd[8:40], "LINUX")
	padded(pvd[40:72], label)
	both32(pvd[80:], total)
	both16(pvd[120:], 1)
	both16(pvd[124:], 1)
	both16(pvd[128:], isoSector)
	both32(pvd[132:], 10)
	binary.LittleEndian.PutUint32(pvd[140:], lPathLBA)
	binary.BigEndian.PutUint32(pvd[148:], mPathLBA)
	copy(pvd[156:190], record(rootLBA, isoSector, 2, []byte{0}))
	padded(pvd[190:318], "")
	padded(pvd[318:446], "")
	padded(pvd[446:574], "")
	padded(pvd[574:702], "IMAGEBAKE")
	padded(pvd[702:813], "")
	stamp := []byte(now.Format("20060102150405") + "00")
	for _, at := range []int{813, 830, 864} {
		copy(pvd[at:at+16], stamp)
	}
	copy(pvd[847:863], "0000000000000000") // no expiration
	pvd[881] = 1

	term := sector(pvdLBA + 1)
	term[0] = 255
	copy(term[1:6], "CD001")
	term[6] = 1
	return img
}

// both32 and both16 write ISO 9660's both-byte-order numbers.
func both32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func both16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

// seedFile is where Start writes a machine's seed.
func seedFile(dir string) string { return filepath.Join(dir, "seed.iso") }
