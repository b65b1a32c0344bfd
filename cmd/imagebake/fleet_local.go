package main

import (
	"errors"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/fleet"
)

// localFleet is the local target of launch and runners list|prune: runner
// VMs under QEMU, with imagebake playing their platform. This build has
// none; the local fleet replaces this file.
func localFleet(c *cli.Context, log *slog.Logger) (fleet.Target, error) {
	return nil, errors.New("local runner VMs: not available in this build")
}
