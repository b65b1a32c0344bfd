#!/bin/sh
# Stand-in for actions/runner's config.sh (built by imagebake's tests).
# Like the real one it refuses root unless RUNNER_ALLOW_RUNASROOT is set,
# then hands every argument to the listener's "configure" command.
DIR=$(cd "$(dirname "$0")" && pwd)
if [ "$(id -u)" -eq 0 ] && [ -z "${RUNNER_ALLOW_RUNASROOT:-}" ]; then
	echo "Must not run with sudo"
	exit 1
fi
cd "$DIR" || exit 1
exec "$DIR/bin/Runner.Listener" configure "$@"
