package fakevm

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"
)

// maxUserData bounds decompressed user-data; Azure's limit is 64 KiB
// compressed, so 16 MiB is far beyond any real document.
const maxUserData = 16 << 20

// HostKeyFromCloudConfig reads ssh_keys.ed25519_private from a #cloud-config
// document (gzip-compressed or not), so a fake VM can present exactly the
// host key the renderer put into the user-data. If ssh_keys.ed25519_public
// is present it must be the same key.
func HostKeyFromCloudConfig(userData []byte) (ssh.Signer, error) {
	if bytes.HasPrefix(userData, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(userData))
		if err != nil {
			return nil, fmt.Errorf("cloud-config gzip: %w", err)
		}
		data, err := io.ReadAll(io.LimitReader(zr, maxUserData+1))
		if err != nil {
			return nil, fmt.Errorf("cloud-config gzip: %w", err)
		}
		if len(data) > maxUserData {
			return nil, fmt.Errorf("cloud-config: more than %d bytes decompressed", maxUserData)
		}
		userData = data
	}
	if !bytes.HasPrefix(userData, []byte("#cloud-config")) {
		return nil, errors.New("cloud-config: user-data does not start with #cloud-config")
	}
	var doc struct {
		SSHKeys map[string]string `yaml:"ssh_keys"`
	}
	if err := yaml.Unmarshal(userData, &doc); err != nil {
		return nil, fmt.Errorf("cloud-config: %w", err)
	}
	priv := doc.SSHKeys["ed25519_private"]
	if priv == "" {
		return nil, errors.New("cloud-config: no ssh_keys.ed25519_private")
	}
	signer, err := ssh.ParsePrivateKey([]byte(priv))
	if err != nil {
		return nil, fmt.Errorf("cloud-config ssh_keys.ed25519_private: %w", err)
	}
	if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("cloud-config ssh_keys.ed25519_private: a %s key", signer.PublicKey().Type())
	}
	if line := doc.SSHKeys["ed25519_public"]; line != "" {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			return nil, fmt.Errorf("cloud-config ssh_keys.ed25519_public: %w", err)
		}
		if !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
			return nil, errors.New("cloud-config: ssh_keys.ed25519_public is not the public half of ed25519_private")
		}
	}
	return signer, nil
}
