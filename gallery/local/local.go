// Package local is a gallery kept in a directory, with the Azure Compute
// Gallery's semantics: create-only versions (also across processes), a
// provisioning state, "latest" by version number and excludeFromLatest.
//
// Layout:
//
//	<root>/<image>/<version>/disk.qcow2     the image
//	<root>/<image>/<version>/version.json   metadata, written last
//
// os.Mkdir of the version directory reserves the name atomically, so two
// processes can never both create one version. A version directory without
// version.json but with the creator's marker (.creating) is being created
// and is listed as Creating, or as Failed once its creator is gone; a
// Creating version cannot be deleted.
//
// The directory name is the version: metadata that names another version
// or image marks a damaged version (listed as Failed under its directory's
// name). Only what imagebake made is a version: a folder with neither
// version.json nor a marker is ignored, and symbolic links (image folder,
// version folder, metadata) are never followed.
package local

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/internal/ctxio"
	"github.com/imagebake/imagebake/internal/proc"
)

// File names inside a version directory.
const (
	DiskFile     = "disk.qcow2"
	MetadataFile = "version.json"
	// creatingFile says who is creating the version, so that List can tell
	// a crashed creation (Failed) from one in progress (Creating).
	creatingFile = ".creating"
)

// Region is the only region of a local gallery.
const Region = "local"

// A version directory whose creatingFile is unreadable is taken to be in
// progress for this long after the file was written, and crashed after
// that.
const markerGrace = time.Minute

// A creation started on another host (a shared gallery folder) cannot be
// checked for a live creator: it counts as in progress for this long.
const foreignHostGrace = 24 * time.Hour

// ErrInProgress means a version is still being created by a live process:
// Delete refuses it.
var ErrInProgress = errors.New("being created by a live process")

// errNotVersion marks directory entries that are not versions imagebake
// made; it is returned wrapped together with gallery.ErrNotFound.
var errNotVersion = errors.New("not a version imagebake made")

const metadataSchema = 1

// Store is a directory gallery. It implements gallery.Store.
type Store struct {
	root string
	log  *slog.Logger
}

var _ gallery.Store = (*Store)(nil)

// New returns a store rooted at root, which is created on the first Create.
// A nil log discards messages.
func New(root string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{root: root, log: log}
}

// DefaultRoot is the gallery directory used without --gallery-dir:
// $XDG_DATA_HOME/imagebake/gallery, or ~/.local/share/imagebake/gallery.
func DefaultRoot() (string, error) {
	// The XDG base directory spec says to ignore a relative XDG_DATA_HOME.
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "imagebake", "gallery"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("local gallery directory: %w", err)
	}
	return filepath.Join(home, ".local", "share", "imagebake", "gallery"), nil
}

// Root returns the gallery directory.
func (s *Store) Root() string { return s.root }

type metadata struct {
	Schema            int               `json:"schema"`
	Image             string            `json:"image"`
	Version           string            `json:"version"`
	ProvisioningState string            `json:"provisioningState"`
	CreatedAt         time.Time         `json:"createdAt"`
	UpdatedAt         *time.Time        `json:"updatedAt,omitempty"`
	RecipeHash        string            `json:"recipeHash,omitempty"`
	Tags              map[string]string `json:"tags,omitempty"`
	ExcludeFromLatest bool              `json:"excludeFromLatest"`
	EndOfLife         *time.Time        `json:"endOfLife,omitempty"`
	Regions           []string          `json:"regions"`
	Disk              diskInfo          `json:"disk"`
	Source            string            `json:"source,omitempty"`
}

type diskInfo struct {
	File      string `json:"file"`
	SizeBytes int64  `json:"sizeBytes"`
	SHA256    string `json:"sha256"`
}

type marker struct {
	PID int `json:"pid"`
	// PIDStart is the creator's start time as /proc shows it, so that a
	// later process reusing the PID is not taken for the creator.
	PIDStart  string    `json:"pidStart,omitempty"`
	Host      string    `json:"host"`
	StartedAt time.Time `json:"startedAt"`
}

func versionErr(image, version string, err error) error {
	return fmt.Errorf("gallery image %s version %s: %w", image, version, err)
}

// imageDir validates image and returns its directory, which must not be a
// symbolic link: deleting through one would delete outside the gallery.
func (s *Store) imageDir(image string) (string, error) {
	if err := gallery.ValidateImageName(image); err != nil {
		return "", err
	}
	dir := filepath.Join(s.root, image)
	if err := checkRealDir(dir); err != nil {
		return "", fmt.Errorf("gallery image %s: %w", image, err)
	}
	return dir, nil
}

// checkRealDir accepts a missing path or a real directory, nothing else.
func checkRealDir(dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; the local gallery never follows one", dir)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// versionDir validates image and version and returns the version's directory.
func (s *Store) versionDir(image, version string) (string, error) {
	dir, err := s.imageDir(image)
	if err != nil {
		return "", err
	}
	// ParseVersion accepts only canonical digits-and-dots names, so a
	// version cannot name a path outside dir either.
	if _, err := gallery.ParseVersion(version); err != nil {
		return "", fmt.Errorf("gallery image %s: %w", image, err)
	}
	return filepath.Join(dir, version), nil
}

// List returns all versions of image, sorted; none if the image has no directory.
func (s *Store) List(ctx context.Context, image string) ([]gallery.ImageVersion, error) {
	dir, err := s.imageDir(image)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		// Like a missing image definition on Azure: a misspelt image or
		// --gallery-dir must not read as "no versions yet".
		return nil, fmt.Errorf("gallery image %s: no such image in %s: %w", image, s.root, gallery.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("gallery image %s: %w", image, err)
	}
	versions := make([]gallery.ImageVersion, 0, len(entries))
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		if strings.HasPrefix(name, ".") { // our temporary and deleting entries
			continue
		}
		if _, err := gallery.ParseVersion(name); err != nil || !e.IsDir() {
			s.log.Warn("ignoring an entry of the local gallery that is not a version directory",
				"image", image, "name", name, "err", err)
			continue
		}
		iv, err := s.read(image, name)
		if errors.Is(err, errNotVersion) {
			s.log.Warn("ignoring a folder of the local gallery that imagebake did not make",
				"image", image, "name", name, "err", err)
			continue
		}
		if errors.Is(err, gallery.ErrNotFound) { // deleted while we listed
			continue
		}
		if err != nil {
			return nil, err
		}
		versions = append(versions, iv)
	}
	gallery.Sort(versions)
	return versions, nil
}

// Get returns one version; gallery.ErrNotFound if it does not exist.
func (s *Store) Get(ctx context.Context, image, version string) (gallery.ImageVersion, error) {
	if _, err := s.versionDir(image, version); err != nil {
		return gallery.ImageVersion{}, err
	}
	if err := ctx.Err(); err != nil {
		return gallery.ImageVersion{}, err
	}
	return s.read(image, version)
}

// read returns the version in dir as it is now: from its metadata once
// written, else as a creation in progress or crashed. The name is always
// the directory's.
func (s *Store) read(image, version string) (gallery.ImageVersion, error) {
	dir := filepath.Join(s.root, image, version)
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return gallery.ImageVersion{}, versionErr(image, version, gallery.ErrNotFound)
	}
	if err != nil {
		return gallery.ImageVersion{}, versionErr(image, version, err)
	}
	if !fi.IsDir() { // a symlink too: never followed
		return gallery.ImageVersion{}, versionErr(image, version,
			fmt.Errorf("%w: %w: %s is not a directory (symbolic links are never followed)", gallery.ErrNotFound, errNotVersion, dir))
	}
	m, err := readMetadata(dir)
	switch {
	case err == nil:
		if damage := checkMetadata(image, version, dir, m); damage != "" {
			// Listed under the directory's name, so that it can be seen and
			// deleted, but never usable: it cannot move latest or stand in
			// for the version its metadata names.
			s.log.Warn("local gallery version is damaged", "image", image, "version", version, "reason", damage)
			return gallery.ImageVersion{Name: version, ID: dir, ProvisioningState: gallery.StateFailed, PublishedAt: m.CreatedAt}, nil
		}
		return toImageVersion(dir, version, m), nil
	case errors.Is(err, fs.ErrNotExist):
		return s.readIncomplete(image, version, dir)
	default:
		// A damaged version must still be visible, so that it can be
		// deleted and its name is not reused.
		s.log.Warn("local gallery version has unreadable metadata", "image", image, "version", version, "err", err)
		return gallery.ImageVersion{Name: version, ID: dir, ProvisioningState: gallery.StateFailed}, nil
	}
}

// checkMetadata says what is wrong with a version's metadata, or "".
func checkMetadata(image, version, dir string, m metadata) string {
	switch {
	case m.Version != version:
		return fmt.Sprintf("%s names version %q, but its directory is %s", MetadataFile, m.Version, version)
	case m.Image != image:
		return fmt.Sprintf("%s names image %q, but it is in %s", MetadataFile, m.Image, image)
	case m.Disk.File != DiskFile:
		return fmt.Sprintf("%s names disk file %q, not %s", MetadataFile, m.Disk.File, DiskFile)
	}
	if m.ProvisioningState == gallery.StateSucceeded {
		if fi, err := os.Lstat(filepath.Join(dir, DiskFile)); err != nil || !fi.Mode().IsRegular() {
			return fmt.Sprintf("its disk %s is missing or not a regular file", DiskFile)
		}
	}
	return ""
}

// readFileNoFollow reads dir/name, refusing a symbolic link.
func readFileNoFollow(dir, name string) ([]byte, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDONLY|openNoFollow, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func readMetadata(dir string) (metadata, error) {
	var m metadata
	data, err := readFileNoFollow(dir, MetadataFile)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, MetadataFile), err)
	}
	return m, nil
}

// readIncomplete reads a version directory without metadata: Creating
// while its creator (named by the marker) lives, Failed after. Without a
// marker it is not a version at all: imagebake writes one right after the
// reservation, so a bare folder is someone else's (or from a creator killed
// in that instant), and is neither listed nor deleted.
func (s *Store) readIncomplete(image, version, dir string) (gallery.ImageVersion, error) {
	fi, err := os.Lstat(filepath.Join(dir, creatingFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) { // deleted meanwhile
			return gallery.ImageVersion{}, versionErr(image, version, gallery.ErrNotFound)
		}
		return gallery.ImageVersion{}, versionErr(image, version,
			fmt.Errorf("%w: %w: %s has neither %s nor %s", gallery.ErrNotFound, errNotVersion, dir, MetadataFile, creatingFile))
	}
	if err != nil {
		return gallery.ImageVersion{}, versionErr(image, version, err)
	}
	iv := gallery.ImageVersion{Name: version, ID: dir, ProvisioningState: gallery.StateCreating, PublishedAt: fi.ModTime().UTC()}
	var mk marker
	data, err := readFileNoFollow(dir, creatingFile)
	if err == nil {
		err = json.Unmarshal(data, &mk)
	}
	if err == nil && (mk.PID <= 0 || mk.Host == "") {
		err = errors.New("incomplete marker")
	}
	if err != nil {
		if time.Since(fi.ModTime()) > markerGrace {
			iv.ProvisioningState = gallery.StateFailed
		}
		return iv, nil
	}
	iv.PublishedAt = mk.StartedAt
	if !creatorAlive(mk) {
		iv.ProvisioningState = gallery.StateFailed
	}
	return iv, nil
}

// creatorAlive reports whether the process named by a creation marker may
// still be creating the version.
func creatorAlive(mk marker) bool {
	if host, _ := os.Hostname(); mk.Host != host {
		return time.Since(mk.StartedAt) < foreignHostGrace
	}
	if !processAlive(mk.PID) {
		return false
	}
	if mk.PIDStart != "" {
		if now := proc.Start(mk.PID); now != "" && now != mk.PIDStart {
			return false // the PID was reused
		}
	}
	return true
}

func toImageVersion(dir, version string, m metadata) gallery.ImageVersion {
	iv := gallery.ImageVersion{
		Name:              version,
		ID:                dir,
		ProvisioningState: m.ProvisioningState,
		PublishedAt:       m.CreatedAt,
		ExcludeFromLatest: m.ExcludeFromLatest,
		EndOfLife:         m.EndOfLife,
		Tags:              maps.Clone(m.Tags),
		RecipeHash:        m.RecipeHash,
		Path:              filepath.Join(dir, m.Disk.File),
		SizeBytes:         m.Disk.SizeBytes,
		SHA256:            m.Disk.SHA256,
	}
	for _, r := range m.Regions {
		iv.Regions = append(iv.Regions, gallery.RegionStatus{Name: r, Replicas: 1, State: gallery.ReplicationCompleted, Progress: 100})
	}
	return iv
}

func checkRegions(regions []gallery.Region) error {
	for _, r := range regions {
		if r.Name != Region {
			return fmt.Errorf("a local gallery has only the region %q, not %q", Region, r.Name)
		}
	}
	return nil
}

// Create creates req.Version from the disk file req.Source, copying it (or
// renaming it, with req.MoveSource on the same filesystem) and computing its
// SHA-256. It fails with gallery.ErrVersionExists, touching nothing, when
// the version directory exists in any state.
func (s *Store) Create(ctx context.Context, image string, req gallery.CreateRequest) (gallery.ImageVersion, error) {
	dir, err := s.versionDir(image, req.Version)
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	if err := checkRegions(req.Regions); err != nil {
		return gallery.ImageVersion{}, versionErr(image, req.Version, err)
	}
	if req.Source == "" {
		return gallery.ImageVersion{}, versionErr(image, req.Version, errors.New("no source disk file"))
	}
	if fi, err := os.Stat(req.Source); err != nil {
		return gallery.ImageVersion{}, versionErr(image, req.Version, fmt.Errorf("source disk: %w", err))
	} else if !fi.Mode().IsRegular() {
		return gallery.ImageVersion{}, versionErr(image, req.Version, fmt.Errorf("source disk %s is not a regular file", req.Source))
	}
	if err := ctx.Err(); err != nil {
		return gallery.ImageVersion{}, err
	}
	// The root may hold disks with host keys: keep it private.
	if err := os.MkdirAll(s.root, 0o700); err != nil {
		return gallery.ImageVersion{}, fmt.Errorf("local gallery: %w", err)
	}
	if err := os.Mkdir(filepath.Dir(dir), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return gallery.ImageVersion{}, fmt.Errorf("gallery image %s: %w", image, err)
	}
	// Mkdir of an existing symlink says "exists": check again.
	if err := checkRealDir(filepath.Dir(dir)); err != nil {
		return gallery.ImageVersion{}, fmt.Errorf("gallery image %s: %w", image, err)
	}
	// The reservation: exactly one Mkdir of a name succeeds, across processes.
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return gallery.ImageVersion{}, versionErr(image, req.Version, gallery.ErrVersionExists)
		}
		return gallery.ImageVersion{}, versionErr(image, req.Version, err)
	}
	c := creation{store: s, dir: dir, req: req}
	if err := c.run(ctx); err != nil {
		c.undo()
		return gallery.ImageVersion{}, versionErr(image, req.Version, err)
	}
	if c.copiedForMove {
		// The version is safe; only now is the source no longer needed.
		if err := os.Remove(req.Source); err != nil {
			s.log.Warn("could not remove the moved source disk", "path", req.Source, "err", err)
		}
	}
	return s.read(image, req.Version)
}

// creation fills a reserved version directory.
type creation struct {
	store *Store
	dir   string
	req   gallery.CreateRequest
	// movedTo is where a renamed source is now, to put it back on failure.
	movedTo string
	// copiedForMove says a move fell back to a copy across filesystems.
	copiedForMove bool
}

func (c *creation) run(ctx context.Context) error {
	host, _ := os.Hostname()
	now := time.Now().UTC()
	mk := marker{PID: os.Getpid(), PIDStart: proc.Start(os.Getpid()), Host: host, StartedAt: now}
	if err := writeJSON(c.dir, creatingFile, mk, 0o644); err != nil {
		return err
	}
	size, sum, err := c.ingest(ctx)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m := metadata{
		Schema:            metadataSchema,
		Image:             filepath.Base(filepath.Dir(c.dir)),
		Version:           c.req.Version,
		ProvisioningState: gallery.StateSucceeded,
		CreatedAt:         now,
		RecipeHash:        c.req.RecipeHash,
		Tags:              maps.Clone(c.req.Tags),
		ExcludeFromLatest: c.req.ExcludeFromLatest,
		EndOfLife:         utc(c.req.EndOfLife),
		Regions:           []string{Region},
		Disk:              diskInfo{File: DiskFile, SizeBytes: size, SHA256: sum},
		Source:            c.req.Source,
	}
	// Written last: its presence is what makes the version Succeeded.
	if err := writeJSON(c.dir, MetadataFile, m, 0o644); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(c.dir, creatingFile)); err != nil {
		return err
	}
	return syncDir(c.dir)
}

// ingest puts the source disk at DiskFile and returns its size and SHA-256.
func (c *creation) ingest(ctx context.Context) (int64, string, error) {
	tmp := filepath.Join(c.dir, "."+DiskFile+".tmp")
	final := filepath.Join(c.dir, DiskFile)
	var (
		size int64
		sum  string
		err  error
	)
	moved := false
	if c.req.MoveSource {
		err = os.Rename(c.req.Source, tmp)
		switch {
		case err == nil:
			moved, c.movedTo = true, tmp
		case errors.Is(err, syscall.EXDEV):
			c.copiedForMove = true
		default:
			return 0, "", fmt.Errorf("moving source disk: %w", err)
		}
	}
	if moved {
		// A renamed disk keeps its mode: make it private, as a copy is
		// (the disk holds the guest's SSH host private keys).
		if err := os.Chmod(tmp, 0o600); err != nil {
			return 0, "", err
		}
		size, sum, err = hashFile(ctx, tmp)
	} else {
		size, sum, err = copyFile(ctx, c.req.Source, tmp)
	}
	if err != nil {
		return 0, "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return 0, "", err
	}
	if moved {
		c.movedTo = final
	}
	return size, sum, nil
}

// undo releases a failed creation: a moved source goes back where it was
// and the version directory is removed, which frees the name again.
func (c *creation) undo() {
	if c.movedTo != "" {
		if err := os.Rename(c.movedTo, c.req.Source); err != nil {
			// Keep the directory: it now holds the only copy of the disk.
			c.store.log.Error("could not return the source disk after a failed create; it stays in the gallery",
				"path", c.movedTo, "source", c.req.Source, "err", err)
			return
		}
	}
	if err := removeVersionDir(c.dir); err != nil {
		c.store.log.Warn("could not remove a failed local gallery version", "dir", c.dir, "err", err)
	}
}

const copyBufferSize = 1 << 20

func copyFile(ctx context.Context, src, dst string) (int64, string, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, "", fmt.Errorf("source disk: %w", err)
	}
	defer in.Close()
	// The disk may contain secrets such as SSH host keys.
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(out, h), ctxio.Reader(ctx, in), make([]byte, copyBufferSize))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", fmt.Errorf("copying source disk: %w", err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(ctx context.Context, path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, ctxio.Reader(ctx, f), make([]byte, copyBufferSize))
	if err != nil {
		return 0, "", fmt.Errorf("hashing disk: %w", err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// writeJSON replaces dir/name atomically: readers see the old or the new
// content, never a partial file.
func writeJSON(dir, name string, v any, perm os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return syncDir(dir)
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Update changes the fields set in u. Only Succeeded versions can change,
// and Regions may only name "local".
// Each update replaces the metadata atomically; of two concurrent updates
// of one version, the last one wins.
func (s *Store) Update(ctx context.Context, image, version string, u gallery.Update) (gallery.ImageVersion, error) {
	dir, err := s.versionDir(image, version)
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	if err := checkRegions(u.Regions); err != nil {
		return gallery.ImageVersion{}, versionErr(image, version, err)
	}
	if err := ctx.Err(); err != nil {
		return gallery.ImageVersion{}, err
	}
	// read applies every check (a real directory, imagebake's, metadata
	// that matches its directory).
	iv, err := s.read(image, version)
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	if iv.ProvisioningState != gallery.StateSucceeded {
		return gallery.ImageVersion{}, versionErr(image, version, fmt.Errorf("provisioning state %s: cannot update", iv.ProvisioningState))
	}
	m, err := readMetadata(dir)
	if err != nil {
		return gallery.ImageVersion{}, versionErr(image, version, err)
	}
	if m.ProvisioningState != gallery.StateSucceeded {
		return gallery.ImageVersion{}, versionErr(image, version, fmt.Errorf("provisioning state %s: cannot update", m.ProvisioningState))
	}
	if u.ExcludeFromLatest != nil {
		m.ExcludeFromLatest = *u.ExcludeFromLatest
	}
	if u.EndOfLife != nil {
		m.EndOfLife = utc(u.EndOfLife)
	}
	if u.Tags != nil {
		m.Tags = maps.Clone(u.Tags)
	}
	now := time.Now().UTC()
	m.UpdatedAt = &now
	if err := writeJSON(dir, MetadataFile, m, 0o644); err != nil {
		if errors.Is(err, fs.ErrNotExist) { // deleted meanwhile
			err = gallery.ErrNotFound
		}
		return gallery.ImageVersion{}, versionErr(image, version, err)
	}
	return s.read(image, version)
}

// Delete removes a version in any state but Creating; gallery.ErrNotFound
// if it does not exist or is not a version imagebake made (a plain folder,
// a symbolic link), and ErrInProgress while a live process creates it.
func (s *Store) Delete(ctx context.Context, image, version string) error {
	dir, err := s.versionDir(image, version)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	iv, err := s.read(image, version)
	if err != nil {
		return err
	}
	if iv.ProvisioningState == gallery.StateCreating {
		return versionErr(image, version, ErrInProgress)
	}
	if err := removeVersionDir(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = gallery.ErrNotFound
		}
		return versionErr(image, version, err)
	}
	return nil
}

// removeVersionDir first renames dir to a hidden name, so that readers never
// see a half-removed version and the name is free at once.
func removeVersionDir(dir string) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	trash := filepath.Join(filepath.Dir(dir), ".deleting-"+filepath.Base(dir)+"-"+hex.EncodeToString(rnd[:]))
	if err := os.Rename(dir, trash); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
