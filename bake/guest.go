package bake

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/imagebake/imagebake/checks"
	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/provision/sshsession"
	"github.com/imagebake/imagebake/recipes"
)

// job is what every flow's build holds: the recipe, the effective
// settings, the pipeline and the manifest being filled in.
type job struct {
	r   *recipes.Recipe
	set Settings
	p   *Pipeline
	m   *Manifest
	log *slog.Logger
	// logDir holds the build's logs (cloud-init's, on a failure).
	logDir string
}

// guest is a machine reached over SSH: the cloud-init and checks stages
// every flow shares.
type guest struct {
	job
	phase   checks.Phase
	session *sshsession.Session
	// sessionCleanup closes the session at the end unless a stage
	// (deprovision) closed it first.
	sessionCleanup CleanupID
}

// opened registers the session's cleanup the moment it exists.
func (g *guest) opened(s *sshsession.Session) {
	g.session = s
	g.sessionCleanup = g.p.OnCleanup("ssh session", func(context.Context) error { s.Close(); return nil })
}

// closeSession closes the session a stage is done with (deprovisioning
// drops it anyway) and forgets its cleanup.
func (g *guest) closeSession() {
	g.session.Close()
	g.p.Forget(g.sessionCleanup)
}

// waitCloudInit waits for cloud-init and fails with its logs when it
// failed.
func (g *guest) waitCloudInit(ctx context.Context) error {
	st, err := g.session.WaitCloudInit(ctx, 3*time.Second)
	if err != nil {
		return err
	}
	if err := st.Err(g.r.Build.AllowRecoverableErrors); err != nil {
		dir := filepath.Join(g.logDir, "cloud-init")
		if cerr := g.session.CollectLogs(ctx, dir); cerr != nil {
			return fmt.Errorf("%w (and collecting cloud-init's logs failed: %v)", err, cerr)
		}
		excerpt := ""
		for _, f := range []string{"cloud-init-output.log", "cloud-init.log"} {
			if b, rerr := os.ReadFile(filepath.Join(dir, f)); rerr == nil {
				excerpt += "--- " + f + " ---\n" + strings.Join(sshsession.LogExcerpt(string(b), 20), "\n") + "\n"
			}
		}
		return fmt.Errorf("%w\ncloud-init's logs are in %s; the lines that explain it:\n%s", err, dir, excerpt)
	}
	return nil
}

// runChecks runs every check of the guest's phase and fails with every
// failed check's output.
func (g *guest) runChecks(ctx context.Context) error {
	results := g.session.RunChecks(ctx, checks.For(g.r, g.phase))
	g.m.Checks = checkReports(results)
	passed := 0
	for _, res := range results {
		if res.Passed {
			passed++
		}
	}
	g.p.Note(contract.StageChecks, fmt.Sprintf("%d/%d checks passed", passed, len(results)))
	return checksError(results)
}

// bootKeys are one boot's throwaway SSH keys: the client key imagebake logs
// in with (its public half in authLine) and the host key the VM is given,
// pinned when dialling.
type bootKeys struct {
	signer             ssh.Signer
	authLine           string
	hostPriv, hostLine string
	hostPub            ssh.PublicKey
}

func newBootKeys() (bootKeys, error) {
	var k bootKeys
	var err error
	if k.signer, k.authLine, err = sshsession.NewClientKey(); err != nil {
		return k, err
	}
	k.hostPriv, k.hostLine, k.hostPub, err = sshsession.NewHostKey()
	return k, err
}

// prepareLogDir makes the run's log folder before any stage needs it.
func prepareLogDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("log folder %s: %w", dir, err)
	}
	return nil
}
