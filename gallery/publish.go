package gallery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// DefaultPublishAttempts is how many names an Allocator tries when Attempts
// is not positive: every target's bake uses it.
const DefaultPublishAttempts = 20

// Allocator is the one place a new version's name is chosen. A bake asks it
// twice: Preview, early, to show (and check) the version it will publish
// before spending time on a build; Publish, at the end, to create that
// version create-only, moving to the next patch when a concurrent bake took
// the name in between.
type Allocator struct {
	Store Store
	Image string
	// Line is the MAJOR.MINOR line whose next patch is allocated.
	Line string
	// Pinned is an exact MAJOR.MINOR.PATCH to create instead; it is never
	// moved, and Line is then ignored.
	Pinned string
	// Attempts bounds how many names Publish tries (DefaultPublishAttempts
	// when not positive).
	Attempts int
	// Log hears about version names in the store that are not
	// MAJOR.MINOR.PATCH; nil discards.
	Log *slog.Logger
	// Taken, when set, hears that a concurrent bake took a name and which
	// name is tried next.
	Taken func(taken, next string)

	// next is Preview's answer: Publish's first candidate.
	next string
}

func (a *Allocator) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// Preview returns the version Publish will try first: the pinned version,
// refused with ErrVersionExists when it is taken, or the next patch in the
// line. It remembers its answer for Publish.
func (a *Allocator) Preview(ctx context.Context) (string, error) {
	versions, err := a.Store.List(ctx, a.Image)
	if err != nil && !errors.Is(err, ErrNotFound) { // a first bake creates the image
		return "", err
	}
	names := make([]string, len(versions))
	for i, v := range versions {
		names[i] = v.Name
	}
	if a.Pinned != "" {
		if _, err := ParseVersion(a.Pinned); err != nil {
			return "", err
		}
		for _, n := range names {
			if n == a.Pinned {
				return "", fmt.Errorf("gallery version %s of %s: %w; versions are never overwritten, choose another", a.Pinned, a.Image, ErrVersionExists)
			}
		}
		a.next = a.Pinned
		return a.next, nil
	}
	if a.next, err = NextWithLogger(a.log(), names, a.Line); err != nil {
		return "", err
	}
	return a.next, nil
}

// Publish creates the version req describes (req.Version is ignored) and
// returns it. It starts from Preview's answer (calling Preview first when it
// has not run). When another bake takes that name first (ErrVersionExists),
// it moves on to the following patch, trying at most Attempts names; a
// pinned version is created exactly, or fails with ErrVersionExists.
func (a *Allocator) Publish(ctx context.Context, req CreateRequest) (ImageVersion, error) {
	if a.next == "" {
		if _, err := a.Preview(ctx); err != nil {
			return ImageVersion{}, err
		}
	}
	candidate, err := ParseVersion(a.next)
	if err != nil {
		return ImageVersion{}, err
	}
	if a.Pinned != "" {
		req.Version = a.Pinned
		return a.Store.Create(ctx, a.Image, req)
	}
	attempts := a.Attempts
	if attempts <= 0 {
		attempts = DefaultPublishAttempts
	}
	l, first := candidate.Line(), candidate
	for attempt := 1; ; attempt++ {
		req.Version = candidate.String()
		iv, err := a.Store.Create(ctx, a.Image, req)
		if err == nil {
			a.next = iv.Name
			return iv, nil
		}
		if !errors.Is(err, ErrVersionExists) {
			return ImageVersion{}, err
		}
		if attempt >= attempts {
			return ImageVersion{}, fmt.Errorf("gallery image %s line %s: versions %s to %s were all taken by concurrent publishers (%d attempts): %w",
				a.Image, l, first, candidate, attempt, err)
		}
		// Another publisher took the name between our List and Create.
		// Rivals that listed the same versions try the same names in the
		// same order, so stepping by one finds a free name after at most
		// one conflict per rival, without another List call.
		next, err := l.Version(candidate.Patch() + 1)
		if err != nil {
			return ImageVersion{}, fmt.Errorf("gallery image %s line %s: %w", a.Image, l, err)
		}
		if a.Taken != nil {
			a.Taken(candidate.String(), next.String())
		}
		candidate = next
	}
}

// Publish creates a new version of image in the MAJOR.MINOR line with an
// Allocator: the next patch after the highest existing one, moving on when
// a concurrent publisher takes it, at most maxAttempts names. A pinned
// req.Version is created exactly, or fails with ErrVersionExists; line is
// then ignored.
func Publish(ctx context.Context, store Store, image, line string, req CreateRequest, maxAttempts int) (ImageVersion, error) {
	a := &Allocator{Store: store, Image: image, Line: line, Attempts: maxAttempts}
	if req.Version != "" {
		if _, err := ParseVersion(req.Version); err != nil {
			return ImageVersion{}, err
		}
		// A pinned version is created without listing first, as before:
		// the store refuses a taken name.
		a.Pinned, a.next = req.Version, req.Version
	}
	return a.Publish(ctx, req)
}
