package platform

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// qemuMachine is the smallest Machine over a real QEMU process: both
// deallocate and delete end the process (the test needs no restart).
type qemuMachine struct {
	cmd   *exec.Cmd
	once  sync.Once
	done  chan struct{}
	asked atomic.Bool // the platform (or cleanup) stopped it
}

func (m *qemuMachine) stop() error {
	m.asked.Store(true)
	m.once.Do(func() { _ = m.cmd.Process.Kill() })
	<-m.done
	return nil
}
func (m *qemuMachine) PowerOff(ctx context.Context) error { return m.stop() }
func (m *qemuMachine) Destroy(ctx context.Context) error  { return m.stop() }

// guestCheck runs inside the guest from runcmd, with only python3 (which
// cloud-init needs anyway). It opens many connections to 169.254.169.254,
// sequential and concurrent, reaches Resource Manager and Key Vault by name
// over HTTPS (the hosts entries and ca_certs of GuestCloudConfig), records
// the result as the VM's outcome tag and deletes its own VM.
const guestCheck = `import concurrent.futures, json, sys, urllib.request
IM = "http://169.254.169.254/metadata"
def imds(path):
    r = urllib.request.Request(IM + path, headers={"Metadata": "true"})
    with urllib.request.urlopen(r, timeout=60) as f:
        return f.read().decode()
def call(method, url, tok, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method,
        headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=60) as f:
        return f.status, f.read()
n = 0
for i in range(8):
    assert imds("/instance/compute/name?api-version=2021-02-01&format=text") == sys.argv[1]
    n += 1
with concurrent.futures.ThreadPoolExecutor(4) as ex:
    for v in ex.map(lambda _: imds("/instance/compute/vmSize?api-version=2021-02-01&format=text"), range(8)):
        assert v
        n += 1
rid = json.loads(imds("/instance/compute?api-version=2021-02-01"))["resourceId"]
arm = json.loads(imds("/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"))["access_token"]
kv = json.loads(imds("/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net"))["access_token"]
st, _ = call("GET", "https://management.azure.com" + rid + "?api-version=2025-04-01", arm)
assert st == 200
st, body = call("GET", "https://" + sys.argv[2] + ".vault.azure.net/secrets/probe?api-version=7.4", kv)
assert json.loads(body)["value"] == sys.argv[3]
call("PATCH", "https://management.azure.com" + rid + "/providers/Microsoft.Resources/tags/default?api-version=2021-04-01",
     arm, {"operation": "Merge", "properties": {"tags": {"outcome": "guest-ok-%d" % n}}})
call("DELETE", "https://management.azure.com" + rid + "?forceDeletion=true&api-version=2025-04-01", arm)
`

// TestQEMUGuestReachesPlatform boots the Debian base under QEMU with the
// platform's -netdev parts and cloud-config additions, and watches the guest
// use IMDS over many connections, then Resource Manager and Key Vault over
// HTTPS, then delete itself.
func TestQEMUGuestReachesPlatform(t *testing.T) {
	if os.Getenv("IMAGEBAKE_QEMU_TESTS") != "1" {
		t.Skip("set IMAGEBAKE_QEMU_TESTS=1 to boot a real guest")
	}
	bases, _ := filepath.Glob("/root/.cache/imagebake/debian-bookworm-*/base.json")
	if len(bases) == 0 {
		t.Skip("no Debian base image in /root/.cache/imagebake")
	}
	base := filepath.Dir(bases[0])
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip(tool + " not installed")
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := newPlatform(t, Config{})
	id, err := p.AddIdentity(Identity{Name: "runner-id", ResourceGroup: "runners"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AddVault(VaultSpec{Name: "probe-vault", Secrets: map[string]string{"probe": "probe-value-123"}, Readers: []string{id.ID}}); err != nil {
		t.Fatal(err)
	}
	vm, err := p.CreateVM(VMSpec{Name: "qemu-runner", ResourceGroup: "runners", Identities: []string{id.ID},
		Tags: map[string]string{"cycle": "delete"}, UserData: []byte("jit")})
	if err != nil {
		t.Fatal(err)
	}
	// The test binary is the relay (TestMain), as the imagebake binary will be.
	opts, err := vm.NetdevOptions(func(addr string) []string { return []string{exe, addr} })
	if err != nil {
		t.Fatal(err)
	}

	cc := p.GuestCloudConfig().Map()
	cc["write_files"] = append(cc["write_files"].([]map[string]any),
		map[string]any{"path": "/root/platform-check.py", "permissions": "0700", "content": guestCheck})
	cc["runcmd"] = []any{[]string{"python3", "/root/platform-check.py", "qemu-runner", "probe-vault", "probe-value-123"}}
	userData, err := yaml.Marshal(cc)
	if err != nil {
		t.Fatal(err)
	}
	seed := http.NewServeMux()
	seed.HandleFunc("/meta-data", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "instance-id: %s\nlocal-hostname: qemu-runner\n", newGUID())
	})
	seed.HandleFunc("/user-data", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(append([]byte("#cloud-config\n"), userData...))
	})
	seed.HandleFunc("/vendor-data", func(w http.ResponseWriter, r *http.Request) {})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: seed}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	seedPort := ln.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	overlay := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", filepath.Join(base, "disk.qcow2"), "-F", "qcow2", overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	serial := filepath.Join(dir, "serial.log")
	args := []string{"-nodefaults", "-display", "none", "-no-user-config",
		"-machine", "q35,accel=tcg", "-cpu", "max", "-m", "1024", "-smp", "2",
		"-drive", "file=" + overlay + ",if=virtio,format=qcow2",
		"-netdev", "user,id=n0," + strings.Join(opts, ","),
		"-device", "virtio-net-pci,netdev=n0",
		"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
		"-serial", "file:" + serial,
		"-kernel", filepath.Join(base, "vmlinuz"), "-initrd", filepath.Join(base, "initrd.img"),
		"-append", fmt.Sprintf("root=/dev/vda rw console=ttyS0 ds=nocloud-net;s=http://%s:%d/", GuestHostAddr, seedPort),
	}
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Env = append(os.Environ(), "IMAGEBAKE_PLATFORM_TEST_RELAY=1")
	out, _ := os.Create(filepath.Join(dir, "qemu.out"))
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &qemuMachine{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(m.done) }()
	defer func() { _ = m.stop() }()
	vm.SetMachine(m)
	start := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	go func() {
		select {
		case <-m.done: // QEMU ended by itself: stop waiting
			if !m.asked.Load() {
				cancel()
			}
		case <-ctx.Done():
		}
	}()
	st, err := vm.Wait(ctx, StateDeleted)
	if err != nil {
		log, _ := os.ReadFile(serial)
		qo, _ := os.ReadFile(filepath.Join(dir, "qemu.out"))
		tail := string(log)
		if len(tail) > 6000 {
			tail = tail[len(tail)-6000:]
		}
		for _, e := range p.Events() {
			t.Log(e)
		}
		t.Fatalf("%v (outcome %q)\nqemu: %s\nserial tail:\n%s", err, st.Outcome, qo, tail)
	}
	if st.Outcome != "guest-ok-16" {
		t.Errorf("outcome %q, want guest-ok-16", st.Outcome)
	}
	imdsCalls := 0
	for _, e := range p.Events() {
		if e.VM == "qemu-runner" && e.Source == "imds" && strings.Contains(e.Line, " 200") {
			imdsCalls++
		}
		t.Log(e)
	}
	if imdsCalls < 19 {
		t.Errorf("%d IMDS calls answered, want at least 19", imdsCalls)
	}
	t.Logf("guest booted, checked the platform and deleted itself in %s", time.Since(start).Round(time.Second))
}
