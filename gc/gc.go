// Package gc finds and removes what interrupted or crashed builds left
// behind: Azure resource groups tagged by a bake, and local QEMU temp
// folders and processes. It only ever touches what imagebake marks as its
// own, and only once it is older than a TTL, so running builds are safe.
package gc

import (
	"time"
)

// Actions an Item plans or took.
const (
	ActionDelete = "delete" // remove a resource group or folder
	ActionKill   = "kill"   // stop a QEMU process
	ActionKeep   = "keep"   // imagebake's, but not debris (too young, still in use)
)

// Item is one thing gc looked at.
type Item struct {
	// Kind is "resource-group", "temp-dir" or "qemu-process".
	Kind string `json:"kind"`
	// Name is the resource group's name, the folder's path, or the PID.
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Age     string    `json:"age"`
	Action  string    `json:"action"`
	Reason  string    `json:"reason"`
	// Done reports the action was carried out (only with Delete).
	Done  bool   `json:"done,omitempty"`
	Error string `json:"error,omitempty"`
}

// Options are shared by both targets.
type Options struct {
	// TTL is how old debris must be before it is touched.
	TTL time.Duration
	// Now is the reference time; zero: time.Now().
	Now time.Time
	// Delete carries the plan out; otherwise gc only plans.
	Delete bool
}

func (o Options) now() time.Time {
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

// Failed counts the items whose action failed.
func Failed(items []Item) int {
	n := 0
	for _, it := range items {
		if it.Error != "" {
			n++
		}
	}
	return n
}

func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String()
}
