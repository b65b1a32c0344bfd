package templates

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"

	"github.com/imagebake/imagebake/recipes"
)

// MaxCustomDataBytes is Azure's limit on custom data, decoded: 65,535 bytes
// (87,380 characters once base64-encoded).
const MaxCustomDataBytes = 65535

// CustomData gzips then base64-encodes a rendered document for Azure's
// osProfile.customData; cloud-init decompresses it. A document still over
// Azure's limit is refused with its size and its biggest parts.
func CustomData(doc *Document) (string, error) {
	var gz bytes.Buffer
	w, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return "", err
	}
	// A zero header (no name, no time) keeps the output deterministic.
	if _, err := w.Write(doc.CloudConfig); err != nil {
		return "", fmt.Errorf("custom data: gzip: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("custom data: gzip: %w", err)
	}
	if gz.Len() > MaxCustomDataBytes {
		return "", &TooLargeError{Size: gz.Len(), Raw: len(doc.CloudConfig), Parts: biggest(doc.Parts, 3)}
	}
	return base64.StdEncoding.EncodeToString(gz.Bytes()), nil
}

// TooLargeError says custom data is over Azure's limit and what to shrink.
type TooLargeError struct {
	Size, Raw int
	Parts     []Part
}

func (e *TooLargeError) Error() string {
	var names []string
	for _, p := range e.Parts {
		names = append(names, fmt.Sprintf("%s (%d bytes)", p.Path, len(p.Content)))
	}
	return fmt.Sprintf("custom data is %d bytes gzipped (%d raw), over Azure's limit of %d; the biggest parts are %s — ship large files in a package or fetch them at build time",
		e.Size, e.Raw, MaxCustomDataBytes, strings.Join(names, ", "))
}

func biggest(parts []Part, n int) []Part {
	sorted := append([]Part(nil), parts...)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].Content) > len(sorted[j].Content) })
	if len(sorted) > n {
		sorted = sorted[:n]
	}
	return sorted
}

// CheckTargets applies the limits of the targets a recipe is baked for to
// its rendered document. Azure's custom-data limit applies only when the
// recipe has base.azure: the local target serves the document to its guest
// over NoCloud, where no such limit exists.
func CheckTargets(r *recipes.Recipe, doc *Document) error {
	if r.Base.Azure == "" {
		return nil
	}
	if _, err := CustomData(doc); err != nil {
		return fmt.Errorf("target azure: %w", err)
	}
	return nil
}
