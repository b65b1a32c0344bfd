package platform

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/imagebake/imagebake/templates"
)

// TestCompletedCycleScriptAgainstThePlatform runs the image's own
// completed-cycle.sh (rendered from templates/files, the bytes that run on
// Azure) with the real curl and jq against the platform. Only name
// resolution and trust differ, as in a guest: a curl wrapper adds
// --connect-to and --cacert, the job of guestfwd, /etc/hosts and ca_certs.
func TestCompletedCycleScriptAgainstThePlatform(t *testing.T) {
	for _, tool := range []string{"curl", "jq", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	src, err := os.ReadFile("../templates/files/completed-cycle.sh.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	tpl := template.Must(template.New("cycle").Funcs(template.FuncMap{"shq": templates.ShellQuote}).Parse(string(src)))
	var script bytes.Buffer
	if err := tpl.Execute(&script, map[string]any{"Recipe": "platform-test"}); err != nil {
		t.Fatal(err)
	}
	realCurl, _ := exec.LookPath("curl")

	p := newPlatform(t, Config{})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, p.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	scriptPath := filepath.Join(dir, "completed_cycle.sh")
	if err := os.WriteFile(scriptPath, script.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cycle string
		want  State
	}{
		{"delete", StateDeleted},
		{"", StateDeallocated},
		{"deallocate", StateDeallocated},
		{"running", StateRunning},
	} {
		t.Run("cycle="+tc.cycle, func(t *testing.T) {
			name := "runner-" + tc.cycle
			if tc.cycle == "" {
				name = "runner-untagged"
			}
			id, err := p.AddIdentity(Identity{Name: name + "-id", ResourceGroup: "runners"})
			if err != nil {
				t.Fatal(err)
			}
			tags := map[string]string{"purpose": "ci"}
			if tc.cycle != "" {
				tags["cycle"] = tc.cycle
			}
			m := &fakeMachine{}
			vm, err := p.CreateVM(VMSpec{Name: name, ResourceGroup: "runners", Tags: tags, Identities: []string{id.ID}, Machine: m})
			if err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(t.TempDir())
			wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --connect-to 169.254.169.254:80:%s --connect-to management.azure.com:443:%s --cacert %s \"$@\"\n",
				shellQuote(realCurl), vm.IMDSAddr(), p.HTTPSAddr(), shellQuote(ca))
			if err := os.WriteFile(filepath.Join(bin, "curl"), []byte(wrapper), 0o755); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sh", scriptPath)
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("script: %v\n%s", err, out)
			}
			st, err := vm.Wait(ctx, tc.want)
			if err != nil {
				t.Fatalf("%v\nscript output:\n%s", err, out)
			}
			off, del := m.counts()
			switch tc.want {
			case StateDeleted:
				if del != 1 || off != 0 {
					t.Errorf("poweroff=%d destroy=%d", off, del)
				}
			case StateDeallocated:
				if off != 1 || del != 0 {
					t.Errorf("poweroff=%d destroy=%d", off, del)
				}
			case StateRunning:
				if off+del != 0 || !strings.Contains(string(out), "keeping") {
					t.Errorf("poweroff=%d destroy=%d, output %s", off, del, out)
				}
			}
			t.Logf("%s → %s; script said: %s", tc.cycle, st.State, strings.TrimSpace(string(out)))
		})
	}
	for _, e := range p.Events() {
		t.Log(e)
	}
}
