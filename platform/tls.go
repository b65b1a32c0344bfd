package platform

import (
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strings"

	"github.com/imagebake/imagebake/internal/localca"
)

// authority is the platform's own CA (internal/localca). A guest trusts it
// for the names the platform serves and for nothing after the platform is
// gone.
type authority struct{ *localca.Authority }

func newAuthority() (*authority, error) {
	a, err := localca.New("imagebake local platform CA")
	if err != nil {
		return nil, err
	}
	return &authority{a}, nil
}

// leaf returns a server certificate for one name; an empty name (a client
// that dialled an IP address, so sent no SNI) gets the loopback and guest
// addresses.
func (a *authority) leaf(name string) (*tls.Certificate, error) {
	if name == "" {
		return a.Leaf(nil, []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(GuestHTTPSAddr)})
	}
	return a.Leaf([]string{name}, nil)
}

// serverConfig signs certificates on demand, only for names serves accepts,
// so the CA never vouches for a name the platform does not answer.
func (a *authority) serverConfig(serves func(string) bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
			if name != "" && !serves(name) {
				return nil, fmt.Errorf("platform: no certificate for %q", name)
			}
			return a.leaf(name)
		},
	}
}

func slogErrorLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}
