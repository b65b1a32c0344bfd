package sshsession

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// NewClientKey makes a throwaway ed25519 key for one build. It lives only in
// memory: the private half is never written anywhere, so nothing can leak it
// after the build VM is gone. The returned line goes into the VM's
// authorized_keys (ssh_authorized_keys in the cloud-config).
func NewClientKey() (ssh.Signer, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("ssh client key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", fmt.Errorf("ssh client key: %w", err)
	}
	return signer, authorizedLine(signer.PublicKey()) + " imagebake-build", nil
}

// NewHostKey makes an ed25519 host key pair that imagebake installs into the
// build VM through cloud-config (ssh_keys.ed25519_private / ed25519_public,
// with ssh_deletekeys: false), so the first connection can already pin the
// host key instead of trusting whatever answers first.
//
// privatePEM is a secret (OpenSSH private key format); publicLine is the
// "ssh-ed25519 AAAA…" line; pub is what Config.HostKey expects.
func NewHostKey() (privatePEM, publicLine string, pub ssh.PublicKey, err error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", nil, fmt.Errorf("ssh host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "imagebake-host")
	if err != nil {
		return "", "", nil, fmt.Errorf("ssh host key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return "", "", nil, fmt.Errorf("ssh host key: %w", err)
	}
	pub = signer.PublicKey()
	return string(pem.EncodeToMemory(block)), authorizedLine(pub), pub, nil
}

func authorizedLine(pub ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}
