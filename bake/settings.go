package bake

import (
	"strings"
	"time"

	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/recipes"
)

// Settings are a run's effective settings: a flag over the recipe over the
// default, resolved once when the run starts and recorded in the manifest.
// Stages read them from here, never from the options or the recipe.
type Settings struct {
	// Azure.
	Location string `json:"location,omitempty"`
	VMSize   string `json:"vmSize,omitempty"`
	Spot     bool   `json:"spot,omitempty"`
	Identity string `json:"identity,omitempty"`
	// Local.
	MemoryMiB int `json:"memoryMiB,omitempty"`
	CPUs      int `json:"cpus,omitempty"`
	// Timeouts bound stages by name (see StageTimeouts); a stage without
	// one is bounded only by the run's context.
	Timeouts map[string]Duration `json:"timeouts,omitempty"`
}

// Duration prints as "10m0s" in the manifest.
type Duration time.Duration

// MarshalText writes d the way time.Duration prints.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (s Settings) timeouts() map[string]time.Duration {
	out := make(map[string]time.Duration, len(s.Timeouts))
	for k, v := range s.Timeouts {
		out[k] = time.Duration(v)
	}
	return out
}

func settingsTimeouts(t map[string]time.Duration) map[string]Duration {
	if len(t) == 0 {
		return nil
	}
	out := make(map[string]Duration, len(t))
	for k, v := range t {
		out[k] = Duration(v)
	}
	return out
}

func azureSettings(r *recipes.Recipe, opts AzureOptions) Settings {
	return Settings{
		Location: firstNonEmptyStr(opts.Location, r.Build.Location),
		VMSize:   firstNonEmptyStr(opts.VMSize, r.Build.VMSize),
		Spot:     opts.Spot || r.Build.Spot,
		Identity: firstNonEmptyStr(opts.Identity, r.Build.Identity),
		Timeouts: settingsTimeouts(opts.Timeouts),
	}
}

func localSettings(r *recipes.Recipe, opts LocalOptions) Settings {
	s := Settings{MemoryMiB: r.Build.MemoryMiB, CPUs: r.Build.CPUs, Timeouts: settingsTimeouts(opts.Timeouts)}
	if opts.MemoryMiB > 0 {
		s.MemoryMiB = opts.MemoryMiB
	}
	if opts.CPUs > 0 {
		s.CPUs = opts.CPUs
	}
	return s
}

// defaultTimeouts bound every stage that waits on a machine, so a hung VM
// fails the bake (and is cleaned up) instead of blocking a nightly job.
// Publishing has no default bound: Azure replication has been seen to take
// hours.
var defaultTimeouts = map[string]time.Duration{
	contract.StageBoot: 10 * time.Minute, contract.StageSSH: 15 * time.Minute, contract.StageCloudInit: 45 * time.Minute,
	contract.StageChecks: 20 * time.Minute, contract.StageDeprovision: 10 * time.Minute, contract.StageCapture: 30 * time.Minute,
	contract.StageGeneralized: 5 * time.Minute, contract.StageFirstBoot: 5 * time.Minute,
}

// StageTimeouts are the default stage timeouts with the recipe's
// build.timeouts over them: what the CLI passes as Options.Timeouts.
// Recipe validation has checked the names against contract.Stages and the
// durations; an unparsable one is ignored here.
func StageTimeouts(r *recipes.Recipe) map[string]time.Duration {
	out := make(map[string]time.Duration, len(defaultTimeouts)+len(r.Build.Timeouts))
	for k, v := range defaultTimeouts {
		out[k] = v
	}
	for stage, s := range r.Build.Timeouts {
		if d, err := recipes.ParseDuration(s); err == nil {
			out[stage] = d
		}
	}
	return out
}

func firstNonEmptyStr(s ...string) string {
	for _, x := range s {
		if strings.TrimSpace(x) != "" {
			return x
		}
	}
	return ""
}
