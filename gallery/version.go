package gallery

import (
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strconv"

	"github.com/hashicorp/go-version"
)

// Azure names gallery image versions MAJOR.MINOR.PATCH, each part a 32-bit
// integer. Leading zeros are refused so that one version has exactly one name:
// "1.0.01" and "1.0.1" would compare equal yet be two directories (or two
// resources) with different names.
var (
	versionPattern = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
	linePattern    = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)
)

// MaxPart is the largest value Azure accepts for MAJOR, MINOR or PATCH.
const MaxPart = math.MaxInt32

// Version is a gallery image version in Azure's MAJOR.MINOR.PATCH form. The
// zero value is 0.0.0.
type Version struct {
	v *version.Version
}

// ParseVersion parses a gallery image version name. It accepts only the form
// Azure accepts: three non-negative decimal integers within int32 range,
// separated by dots, with no prerelease or metadata suffix.
func ParseVersion(s string) (Version, error) {
	m := versionPattern.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("gallery version %q: want MAJOR.MINOR.PATCH (non-negative integers without leading zeros)", s)
	}
	for _, part := range m[1:] {
		if err := checkPart(part); err != nil {
			return Version{}, fmt.Errorf("gallery version %q: %w", s, err)
		}
	}
	v, err := version.NewVersion(s)
	if err != nil {
		return Version{}, fmt.Errorf("gallery version %q: %w", s, err)
	}
	return Version{v: v}, nil
}

func checkPart(part string) error {
	if _, err := strconv.ParseInt(part, 10, 32); err != nil {
		return fmt.Errorf("part %s exceeds %d", part, MaxPart)
	}
	return nil
}

func (v Version) ver() *version.Version {
	if v.v == nil {
		return version.Must(version.NewVersion("0.0.0"))
	}
	return v.v
}

func (v Version) segment(i int) int { return v.ver().Segments()[i] }

// Major returns MAJOR.
func (v Version) Major() int { return v.segment(0) }

// Minor returns MINOR.
func (v Version) Minor() int { return v.segment(1) }

// Patch returns PATCH.
func (v Version) Patch() int { return v.segment(2) }

// String returns the canonical name, which is the name ParseVersion accepted.
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major(), v.Minor(), v.Patch())
}

// Compare returns -1, 0 or +1 as v is lower than, equal to or higher than o,
// comparing the parts numerically (1.0.10 is higher than 1.0.9).
func (v Version) Compare(o Version) int { return v.ver().Compare(o.ver()) }

// Line returns the MAJOR.MINOR line the version belongs to.
func (v Version) Line() Line { return Line{major: v.Major(), minor: v.Minor()} }

// Line is a MAJOR.MINOR release line, within which Next increments the patch.
type Line struct {
	major, minor int
}

// ParseLine parses a MAJOR.MINOR line such as "1.0".
func ParseLine(s string) (Line, error) {
	m := linePattern.FindStringSubmatch(s)
	if m == nil {
		return Line{}, fmt.Errorf("gallery version line %q: want MAJOR.MINOR (non-negative integers without leading zeros)", s)
	}
	var parts [2]int
	for i, part := range m[1:] {
		if err := checkPart(part); err != nil {
			return Line{}, fmt.Errorf("gallery version line %q: %w", s, err)
		}
		parts[i], _ = strconv.Atoi(part)
	}
	return Line{major: parts[0], minor: parts[1]}, nil
}

// String returns the line as MAJOR.MINOR.
func (l Line) String() string { return fmt.Sprintf("%d.%d", l.major, l.minor) }

// Contains reports whether v is in the line.
func (l Line) Contains(v Version) bool { return v.Major() == l.major && v.Minor() == l.minor }

// Version returns the line's version with the given patch.
func (l Line) Version(patch int) (Version, error) {
	return ParseVersion(fmt.Sprintf("%d.%d.%d", l.major, l.minor, patch))
}

// NextWithLogger returns the version a new image in line should get: the
// highest patch among existing names in that line plus one, or LINE.0 when
// the line is empty. Names in other lines are ignored, and so are names that
// are not gallery versions; those are reported to log. Bakes reach it
// through an Allocator.
func NextWithLogger(log *slog.Logger, existing []string, line string) (string, error) {
	l, err := ParseLine(line)
	if err != nil {
		return "", err
	}
	highest := -1
	for _, name := range existing {
		v, err := ParseVersion(name)
		if err != nil {
			log.Warn("ignoring a gallery version name that is not MAJOR.MINOR.PATCH", "name", name, "err", err)
			continue
		}
		if l.Contains(v) && v.Patch() > highest {
			highest = v.Patch()
		}
	}
	if highest >= MaxPart {
		return "", fmt.Errorf("gallery version line %s: patch %d is the largest Azure allows; start a new line", l, highest)
	}
	v, err := l.Version(highest + 1)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}
