#!/bin/sh
# Stand-in for actions/runner's bin/installdependencies.sh: the stand-in
# listener needs only python3, which a cloud-init guest has.
echo "--------OS Information--------"
if [ -r /etc/os-release ]; then
	# shellcheck source=/dev/null
	. /etc/os-release
	echo "${PRETTY_NAME:-unknown}"
fi
echo "------------------------------"
if ! command -v python3 >/dev/null 2>&1; then
	echo "Stand-in runner: python3 is missing" >&2
	exit 1
fi
echo "-----------------------------"
echo " Finish Install Dependencies"
echo "-----------------------------"
