package qemu

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/imagebake/imagebake/internal/proc"
)

// TempDirPrefix names a machine's temporary directory (overlay, seed, QMP
// socket, serial log); gc looks for it.
const TempDirPrefix = "imagebake-qemu-"

// MarkerFile is written into a machine's temporary directory the moment it
// is created: gc only touches directories that carry it, and only when the
// marker and the directory are the caller's.
const MarkerFile = ".imagebake-machine.json"

// Marker says which imagebake process made a machine directory.
type Marker struct {
	PID int `json:"pid"`
	// PIDStart is field 22 of /proc/PID/stat (start time in clock ticks
	// since boot), so a reused PID is not taken for the creator.
	PIDStart string    `json:"pidStart,omitempty"`
	UID      int       `json:"uid"`
	BuildID  string    `json:"buildId,omitempty"`
	Host     string    `json:"host"`
	Created  time.Time `json:"created"`
}

// markDir writes the marker of the current process into dir.
func markDir(dir, buildID string) error {
	host, _ := os.Hostname()
	m := Marker{PID: os.Getpid(), PIDStart: proc.Start(os.Getpid()), UID: os.Getuid(),
		BuildID: buildID, Host: host, Created: time.Now().UTC()}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, MarkerFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("marker: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("marker: %w", err)
	}
	return nil
}

// ReadMarker returns the marker of a machine directory. The marker must be
// a regular file (not a symlink) owned by the directory's owner, and name
// that owner as its UID; anything else is not imagebake's.
func ReadMarker(dir string) (Marker, error) {
	var m Marker
	dfi, err := os.Lstat(dir)
	if err != nil {
		return m, err
	}
	path := filepath.Join(dir, MarkerFile)
	fi, err := os.Lstat(path)
	if err != nil {
		return m, err
	}
	if !fi.Mode().IsRegular() {
		return m, fmt.Errorf("%s: not a regular file", path)
	}
	if !dfi.IsDir() {
		return m, fmt.Errorf("%s: not a directory", dir)
	}
	dirUID, ok1 := ownerOf(dfi)
	fileUID, ok2 := ownerOf(fi)
	if !ok1 || !ok2 || dirUID != fileUID {
		return m, fmt.Errorf("%s: not owned by the owner of %s", path, dir)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	if m.PID <= 0 || m.UID != dirUID {
		return m, fmt.Errorf("%s: names pid %d uid %d, directory owned by uid %d", path, m.PID, m.UID, dirUID)
	}
	return m, nil
}

// CreatorAlive reports whether the process that wrote m still runs on this
// host (same PID and start time).
func (m Marker) CreatorAlive() bool {
	if host, _ := os.Hostname(); m.Host != host {
		return false
	}
	start := proc.Start(m.PID)
	return start != "" && (m.PIDStart == "" || start == m.PIDStart)
}

func ownerOf(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
