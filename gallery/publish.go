package gallery

import (
	"context"
	"errors"
	"fmt"
)

// DefaultPublishAttempts is how many names Publish tries when maxAttempts is not positive.
const DefaultPublishAttempts = 10

// Publish creates a new version of image in the MAJOR.MINOR line: the next
// patch after the highest existing one. When another bake takes that name
// first (ErrVersionExists), it moves on to the following patch, trying at most
// maxAttempts names. A pinned req.Version is created exactly, or fails with
// ErrVersionExists; line is then ignored. It returns the created version.
func Publish(ctx context.Context, store Store, image, line string, req CreateRequest, maxAttempts int) (ImageVersion, error) {
	if req.Version != "" {
		if _, err := ParseVersion(req.Version); err != nil {
			return ImageVersion{}, err
		}
		return store.Create(ctx, image, req)
	}
	l, err := ParseLine(line)
	if err != nil {
		return ImageVersion{}, err
	}
	if maxAttempts <= 0 {
		maxAttempts = DefaultPublishAttempts
	}
	existing, err := store.List(ctx, image)
	if err != nil {
		return ImageVersion{}, err
	}
	names := make([]string, len(existing))
	for i, iv := range existing {
		names[i] = iv.Name
	}
	next, err := Next(names, l.String())
	if err != nil {
		return ImageVersion{}, err
	}
	candidate, err := ParseVersion(next)
	if err != nil {
		return ImageVersion{}, err
	}
	first := candidate
	for attempt := 1; ; attempt++ {
		req.Version = candidate.String()
		iv, err := store.Create(ctx, image, req)
		if err == nil {
			return iv, nil
		}
		if !errors.Is(err, ErrVersionExists) {
			return ImageVersion{}, err
		}
		if attempt >= maxAttempts {
			return ImageVersion{}, fmt.Errorf("gallery image %s line %s: versions %s to %s were all taken by concurrent publishers (%d attempts): %w",
				image, l, first, candidate, attempt, err)
		}
		// Another publisher took the name between our List and Create.
		// Rivals that listed the same versions try the same names in the
		// same order, so stepping by one finds a free name after at most
		// one conflict per rival, without another List call.
		if candidate, err = l.Version(candidate.Patch() + 1); err != nil {
			return ImageVersion{}, fmt.Errorf("gallery image %s line %s: %w", image, l, err)
		}
	}
}
