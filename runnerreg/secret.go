package runnerreg

import (
	"fmt"
	"log/slog"
)

// Secret holds a credential GitHub returned or was given (a JIT config, a
// registration token, an installation token, a PAT). Every way of printing
// it (String, GoString, fmt verbs, JSON, slog) yields "[REDACTED]", so a
// Secret that ends up in a log line or an error by accident leaks nothing.
// Reveal is the one, deliberate way to get the value.
type Secret struct{ v string }

const redacted = "[REDACTED]"

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the secret's value. Call it only where the value leaves
// the process on purpose (an HTTP header, a VM's userData).
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

// String redacts.
func (s Secret) String() string { return redacted }

// GoString redacts (%#v).
func (s Secret) GoString() string { return redacted }

// Format redacts for every verb, including %x and %q.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON redacts: a manifest or JSON log never holds the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts (encoding.TextMarshaler users such as YAML encoders).
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue redacts in log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
