package platform

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	"mvdan.cc/sh/v3/shell"
)

// The test binary doubles as the relay command (SelfRelay), the way the
// imagebake binary will: QEMU execs it with the guest's connection on
// stdin/stdout/stderr.
func TestMain(m *testing.M) {
	if os.Getenv("IMAGEBAKE_PLATFORM_TEST_RELAY") == "1" {
		os.Exit(RelayMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// slirpConnect does what libslirp's fork_exec does for one guest connection:
// a socket pair, one end as the command's stdin, stdout and stderr, the
// other end the guest's side of the connection.
func slirpConnect(t *testing.T, argv []string) (net.Conn, *exec.Cmd) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	child := os.NewFile(uintptr(fds[1]), "child")
	guest := os.NewFile(uintptr(fds[0]), "guest")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "IMAGEBAKE_PLATFORM_TEST_RELAY=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = child, child, child
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child.Close()
	conn, err := net.FileConn(guest)
	if err != nil {
		t.Fatal(err)
	}
	guest.Close()
	return conn, cmd
}

func TestRelayOneCommandPerConnection(t *testing.T) {
	f := newFixture(t, Config{})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	relay := SelfRelay(exe, "platform-relay")
	// The argv the relay is given is [subcommand, addr]; the test binary's
	// TestMain takes os.Args[1:] so drop the subcommand through a wrapper.
	argv := func(addr string) []string { return []string{exe, addr} }
	if got := relay(f.a.IMDSAddr()); len(got) != 3 || got[1] != "platform-relay" {
		t.Fatalf("SelfRelay argv %v", got)
	}
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, cmd := slirpConnect(t, argv(f.a.IMDSAddr()))
			defer conn.Close()
			fmt.Fprintf(conn, "GET /metadata/instance/compute/name?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n")
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 || string(body) != "vm-a" {
				errs <- fmt.Errorf("got %d %q", res.StatusCode, body)
			}
			if err := cmd.Wait(); err != nil {
				errs <- fmt.Errorf("relay exit: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Keep-alive: two requests on one connection, then the guest half-closes
	// and the relay ends by itself.
	conn, cmd := slirpConnect(t, argv(f.a.IMDSAddr()))
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		fmt.Fprintf(conn, "GET /metadata/instance/compute/vmSize?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n\r\n")
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		if string(b) != "Standard_D2s_v5" {
			t.Fatalf("request %d: %q", i, b)
		}
	}
	_ = conn.(*net.UnixConn).CloseWrite()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("relay exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("relay did not exit after the guest closed")
	}
	conn.Close()
	// The relay refuses to dial anywhere but loopback, and says nothing.
	conn, cmd = slirpConnect(t, argv("192.0.2.1:80"))
	out, _ := io.ReadAll(conn)
	if err := cmd.Wait(); err == nil || len(out) != 0 {
		t.Errorf("non-loopback relay: err=%v output=%q", err, out)
	}
}

func TestNetdevOptions(t *testing.T) {
	f := newFixture(t, Config{})
	exe := "/opt/odd,dir/it's here/imagebake"
	opts, err := f.a.NetdevOptions(SelfRelay(exe, "platform-relay"))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(opts, ",")
	for _, want := range []string{"net=169.254.169.0/24", "host=169.254.169.2", "dns=169.254.169.3", "dhcpstart=169.254.169.15",
		"guestfwd=tcp:169.254.169.254:80-cmd:", "guestfwd=tcp:169.254.169.253:443-cmd:"} {
		if !strings.Contains(joined, want) {
			t.Errorf("missing %q in %s", want, joined)
		}
	}
	// Undo QEMU's comma escaping and split the command as g_shell_parse_argv
	// (sh-like quoting) does: the argv must come back intact.
	for _, o := range opts {
		cmd, ok := strings.CutPrefix(o, "guestfwd=tcp:"+IMDSAddr+":80-cmd:")
		if !ok {
			continue
		}
		if strings.Contains(strings.ReplaceAll(cmd, ",,", ""), ",") {
			t.Errorf("unescaped comma in %q", cmd)
		}
		fields, err := shell.Fields(strings.ReplaceAll(cmd, ",,", ","), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{exe, "platform-relay", f.a.IMDSAddr()}
		if strings.Join(fields, "|") != strings.Join(want, "|") {
			t.Errorf("argv %q, want %q", fields, want)
		}
	}
	socat, _ := f.a.NetdevOptions(SocatRelay())
	if !strings.Contains(strings.Join(socat, ","), "-cmd:'socat' '-' 'TCP:"+f.a.IMDSAddr()+"'") {
		t.Errorf("socat: %v", socat)
	}
	if _, err := f.a.NetdevOptions(func(string) []string { return []string{"x\ny"} }); err == nil {
		t.Error("newline in relay argv accepted")
	}
}

func TestGuestCloudConfig(t *testing.T) {
	f := newFixture(t, Config{})
	if err := f.p.Mount("api.github.com", http.NotFoundHandler()); err != nil {
		t.Fatal(err)
	}
	cc := f.p.GuestCloudConfig()
	hosts := cc.HostsLines()
	for _, h := range []string{"management.azure.com", "my-keyvault.vault.azure.net", "api.github.com"} {
		if !strings.Contains(hosts, GuestHTTPSAddr+" "+h+"\n") {
			t.Errorf("hosts lacks %s:\n%s", h, hosts)
		}
	}
	doc, err := cc.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(doc), "#cloud-config\n") || !strings.Contains(string(doc), "BEGIN CERTIFICATE") {
		t.Fatalf("document:\n%s", doc)
	}
	// Validate against the schema Debian's cloud-init ships, when present.
	const schemaPath = "/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json"
	raw, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Skipf("cloud-init schema not installed: %v", err)
	}
	schemaDoc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("cloud-config.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("cloud-config.json")
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	inst, _ := jsonschema.UnmarshalJSON(strings.NewReader(string(b)))
	if err := sch.Validate(inst); err != nil {
		t.Errorf("schema: %v\n%s", err, doc)
	}
}

func TestConcurrentVMsCycleThemselves(t *testing.T) {
	p := newPlatform(t, Config{})
	c := httpsClient(t, p)
	const n = 12
	vms := make([]*VM, n)
	machines := make([]*fakeMachine, n)
	for i := range vms {
		id, err := p.AddIdentity(Identity{Name: fmt.Sprintf("id%d", i), ResourceGroup: "rg"})
		if err != nil {
			t.Fatal(err)
		}
		machines[i] = &fakeMachine{}
		if vms[i], err = p.CreateVM(VMSpec{Name: fmt.Sprintf("vm%d", i), ResourceGroup: "rg",
			Identities: []string{id.ID}, Machine: machines[i]}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := token(t, vm, armRes)
			method, path, want := "POST", vm.ResourceID()+"/deallocate"+av, StateDeallocated
			if i%2 == 1 {
				method, path, want = "DELETE", vm.ResourceID()+av+"&forceDeletion=true", StateDeleted
			}
			// Each VM also tries its neighbour, and must be refused.
			other := vms[(i+1)%n]
			if r := do(t, c, "POST", "https://management.azure.com"+other.ResourceID()+"/deallocate"+av, bearerHdr(tok), ""); r.status != 403 {
				t.Errorf("vm%d on vm%d: %d", i, (i+1)%n, r.status)
			}
			if r := do(t, c, method, "https://management.azure.com"+path, bearerHdr(tok), ""); r.status != 202 {
				t.Errorf("vm%d: %d %s", i, r.status, r.body)
				return
			}
			if _, err := vm.Wait(ctx, want); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, m := range machines {
		off, del := m.counts()
		if off+del != 1 || (i%2 == 1) != (del == 1) {
			t.Errorf("vm%d: poweroff=%d destroy=%d", i, off, del)
		}
	}
}

func TestCloseLeavesNoGoroutineOrListener(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := p.AddIdentity(Identity{Name: "id", ResourceGroup: "rg"})
	blocked := &fakeMachine{release: make(chan struct{})} // a hypervisor that never answers
	vm, err := p.CreateVM(VMSpec{Name: "vm", ResourceGroup: "rg", Identities: []string{id.ID}, Machine: blocked})
	if err != nil {
		t.Fatal(err)
	}
	vm2, _ := p.CreateVM(VMSpec{Name: "vm2", ResourceGroup: "rg"})
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	c := httpsClient(t, p)
	tok := token(t, vm, armRes)
	if r := do(t, c, "POST", "https://management.azure.com"+vm.ResourceID()+"/deallocate"+av, bearerHdr(tok), ""); r.status != 202 {
		t.Fatal(r.status)
	}
	// An idle keep-alive connection to an IMDS listener must not hold Close.
	res, err := hc.Get("http://" + vm2.IMDSAddr() + "/metadata/versions")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	addrs := []string{p.HTTPSAddr(), vm.IMDSAddr(), vm2.IMDSAddr()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if st := vm.Status(); st.State != StateFailed {
		t.Errorf("hook cancelled by Close left state %s", st.State)
	}
	for _, a := range addrs {
		if conn, err := net.Dial("tcp", a); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections", a)
		}
	}
	if _, err := p.CreateVM(VMSpec{Name: "late", ResourceGroup: "rg"}); err == nil {
		t.Error("CreateVM after Close succeeded")
	}
	tr.CloseIdleConnections()
	c.Transport.(*http.Transport).CloseIdleConnections()
	// Goroutines wind down asynchronously (connection readers); wait for the
	// count to return, then show what is left if it does not.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines: %d before, %d after Close\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}
