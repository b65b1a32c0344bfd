#!/bin/sh
# Installs what imagebake's local target and its tests use, from Debian's
# packages: QEMU, qemu-img, mmdebstrap (offline base images), cloud-init
# (schema validation), sudo (visudo), shellcheck, OpenSSH (tests' sshd).
set -eu
pkgs="qemu-system-x86 qemu-utils mmdebstrap e2fsprogs cloud-init sudo shellcheck openssh-server openssh-client systemd ca-certificates"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "install-tools: need root to install:$missing (run: sudo $0)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is wanted
apt-get install -y $missing
