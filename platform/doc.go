// Package platform plays, on loopback, what Azure provides to a runner VM, so
// that the scripts baked into an image are the same bytes on a local QEMU
// guest and on Azure. It serves:
//
//   - the Instance Metadata Service (IMDS): one plain-HTTP listener per VM on
//     127.0.0.1, because IMDS answers "who am I" from the caller's address and
//     a per-VM listener is how the stand-in knows which VM is asking. It keeps
//     Azure's contract: the `Metadata: true` header, no X-Forwarded-For,
//     a supported api-version, route filtering (/metadata/instance/compute/
//     tagsList), format=text for leaves, userData in base64, and managed
//     identity tokens per resource, with Azure's 400 "Identity not found" for
//     a VM without an identity;
//   - Resource Manager for the VM's own lifecycle (GET, PATCH tags, the tags
//     API, POST deallocate, DELETE with forceDeletion) and Key Vault secrets
//     (GET /secrets/{name}), on one HTTPS listener with the platform's own CA.
//     Bearer tokens are checked the way those services check them: only a
//     token minted by this platform's IMDS, for the right audience, for an
//     identity that holds the scope (the VMs it is attached to, plus any
//     scopes it was granted) or was granted the vault, is accepted. Other
//     host names (the GitHub stand-in) can be mounted on the same listener.
//
// A VM's deallocate and delete reach the hypervisor through the Machine
// interface; the platform keeps each VM's state, tags and outcome and an event
// log with one line per call (tokens and secret values never appear in it).
//
// # Guest plumbing
//
// A QEMU user-network (slirp) guest reaches these listeners through slirp's
// guestfwd, which intercepts TCP connections to an address inside the guest's
// virtual network and hands them to the host. Two facts from the QEMU and
// libslirp sources decide how:
//
//   - libslirp accepts a guestfwd address only inside the virtual network and
//     not equal to its host or DNS address (check_guestfwd), and answers ARP
//     for it only there. With QEMU's default 10.0.2.0/24 a rule for
//     169.254.169.254 is refused, and a guest route to it via 10.0.2.2 would
//     leave through the host's sockets to the host's own link-local metadata
//     address (on a CI runner in a cloud, the real IMDS). So the guest network
//     is 169.254.169.0/24 (GuestNetwork): 169.254.169.254 is then an
//     slirp-internal address that never leaves QEMU.
//   - guestfwd with a chardev (tcp:IP:PORT-tcp:127.0.0.1:HOSTPORT) shares one
//     character device among all guest connections (QEMU net/slirp.c registers
//     one write callback per rule), so requests interleave and, once the
//     chardev's connection ends, later ones fail: unusable for curl --retry
//     and HTTP clients that open many connections. The "cmd:" form makes
//     libslirp fork_exec the command for every connection, with the
//     connection on its stdin, stdout and stderr (the command line is split
//     by g_shell_parse_argv, no shell). The platform uses that form with a
//     relay that dials 127.0.0.1:PORT: either `imagebake platform-relay
//     ADDR` (RelayMain, built into the binary, no extra package) or
//     `socat - TCP:ADDR` (Debian package socat).
//
// Per VM, NetdevOptions returns the -netdev user fragments: the network, a
// guestfwd for 169.254.169.254:80 to that VM's IMDS listener, and one for
// GuestHTTPSAddr:443 to the shared HTTPS listener. GuestCloudConfig returns
// the per-boot cloud-config additions the guest needs: /etc/hosts entries
// mapping the served names (the cloud's Resource Manager, each vault, each
// mounted host) to GuestHTTPSAddr, because the scripts call those names and
// the guest has no other way to resolve them to the stand-in; and the
// platform's CA in ca_certs, because the scripts' curl verifies TLS against
// the system store. Nothing in the image changes.
package platform
