package platform

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The guest's network under QEMU user networking (see the package comment
// for why it is 169.254.169.0/24 rather than QEMU's 10.0.2.0/24).
const (
	GuestNetwork   = "169.254.169.0/24"
	GuestHostAddr  = "169.254.169.2"   // the host (slirp's gateway): QEMU's 10.0.2.2
	GuestDNSAddr   = "169.254.169.3"   // slirp's DNS forwarder
	GuestDHCPAddr  = "169.254.169.15"  // the first (only) DHCP lease
	IMDSAddr       = "169.254.169.254" // Azure's metadata address, port 80
	GuestHTTPSAddr = "169.254.169.253" // Resource Manager, Key Vault, mounted hosts, port 443

	guestSubnetAddr   = "169.254.169.0"
	guestSubnetPrefix = "24"
	guestMACHex       = "525400123456" // QEMU's default first NIC MAC, as IMDS writes it
)

// RelayCommand builds, for one loopback address, the argv of a command that
// joins its stdin and stdout to a TCP connection to that address; QEMU runs
// it once per guest connection (guestfwd "cmd:").
type RelayCommand func(addr string) []string

// SelfRelay runs this binary's relay subcommand (RelayMain): no package
// beyond QEMU is needed. exe is usually os.Executable().
func SelfRelay(exe, subcommand string) RelayCommand {
	return func(addr string) []string { return []string{exe, subcommand, addr} }
}

// SocatRelay runs socat (Debian package socat).
func SocatRelay() RelayCommand {
	return func(addr string) []string { return []string{"socat", "-", "TCP:" + addr} }
}

// NetdevOptions returns the comma-separated parts of a "-netdev user,…"
// option that give this VM the platform: the 169.254.169.0/24 network, its
// IMDS at 169.254.169.254:80 and the HTTPS services at GuestHTTPSAddr:443.
// The caller adds id= and its own hostfwd= parts. Values are already escaped
// for QEMU's option syntax (a literal comma doubled) and each argv element
// is single-quoted for g_shell_parse_argv, libslirp's command splitter.
func (vm *VM) NetdevOptions(relay RelayCommand) ([]string, error) {
	if relay == nil {
		return nil, errors.New("netdev options: no relay command")
	}
	imds, err := guestfwd(IMDSAddr, 80, relay(vm.IMDSAddr()))
	if err != nil {
		return nil, fmt.Errorf("vm %s: imds guestfwd: %w", vm.name, err)
	}
	https, err := guestfwd(GuestHTTPSAddr, 443, relay(vm.p.HTTPSAddr()))
	if err != nil {
		return nil, fmt.Errorf("vm %s: https guestfwd: %w", vm.name, err)
	}
	return []string{
		"net=" + GuestNetwork,
		"host=" + GuestHostAddr,
		"dns=" + GuestDNSAddr,
		"dhcpstart=" + GuestDHCPAddr,
		imds, https,
	}, nil
}

func guestfwd(addr string, port int, argv []string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("empty relay command")
	}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		if strings.ContainsAny(a, "\x00\n") {
			return "", fmt.Errorf("relay argument %q: control character", a)
		}
		quoted[i] = shellQuote(a)
	}
	cmd := strings.Join(quoted, " ")
	return strings.ReplaceAll(fmt.Sprintf("guestfwd=tcp:%s:%d-cmd:%s", addr, port, cmd), ",", ",,"), nil
}

// shellQuote single-quotes s the way g_shell_parse_argv (like sh) reads it.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// CloudConfig is what a guest's per-boot cloud-config must add so that the
// image's scripts reach the platform: host names resolved to GuestHTTPSAddr
// and the platform CA trusted.
type CloudConfig struct {
	Hosts     []string // names mapped to GuestHTTPSAddr in /etc/hosts
	CACertPEM string
}

// GuestCloudConfig returns the additions for the names served now (call it
// after AddVault and Mount).
func (p *Platform) GuestCloudConfig() CloudConfig {
	return CloudConfig{Hosts: p.ServedHosts(), CACertPEM: string(p.CACertPEM())}
}

// HostsLines is the /etc/hosts text for the served names.
func (c CloudConfig) HostsLines() string {
	var b strings.Builder
	b.WriteString("# imagebake local platform\n")
	for _, h := range c.Hosts {
		fmt.Fprintf(&b, "%s %s\n", GuestHTTPSAddr, h)
	}
	return b.String()
}

// Map returns the cloud-config keys to merge into the guest's document:
// ca_certs.trusted (cc_ca_certs, once per instance) and a write_files entry
// appending to /etc/hosts (the base's manage_etc_hosts: localhost only edits
// the hostname line, so the appended lines stay).
func (c CloudConfig) Map() map[string]any {
	return map[string]any{
		"ca_certs": map[string]any{"trusted": []string{c.CACertPEM}},
		"write_files": []map[string]any{{
			"path": "/etc/hosts", "append": true, "permissions": "0644", "content": c.HostsLines(),
		}},
	}
}

// YAML renders Map as a complete "#cloud-config" document.
func (c CloudConfig) YAML() ([]byte, error) {
	b, err := yaml.Marshal(c.Map())
	if err != nil {
		return nil, fmt.Errorf("platform cloud-config: %w", err)
	}
	return append([]byte("#cloud-config\n"), b...), nil
}

// Relay joins in and out to a TCP connection to addr, which must be a
// loopback address: the relay runs for a guest's connection and must never
// become a way out of the host. It returns when the far side has finished
// sending (or ctx ends); the copy from in may then still be blocked in a
// read, which is why RelayMain is meant to exit right after.
func Relay(ctx context.Context, addr string, in io.Reader, out io.Writer) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().IsLoopback() {
		return fmt.Errorf("relay %q: not a loopback host:port", addr)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		return fmt.Errorf("relay %s: %w", addr, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	go func() {
		// The guest finished its request: pass the half-close on, so an HTTP
		// server sees EOF and ends the connection.
		_, _ = io.Copy(conn, in)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	if _, err := io.Copy(out, conn); err != nil && ctx.Err() == nil {
		return fmt.Errorf("relay %s: %w", addr, err)
	}
	return ctx.Err()
}

// RelayMain is the body of the relay subcommand that SelfRelay names:
// args is [addr]. QEMU gives the command the guest's connection as stdin,
// stdout and stderr, so it never writes a diagnostic anywhere (it would go to
// the guest); the exit status is all it reports.
func RelayMain(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) int {
	if len(args) != 1 {
		return 2
	}
	if err := Relay(ctx, args[0], stdin, stdout); err != nil {
		return 1
	}
	return 0
}
