#!/bin/sh
# Stand-in for actions/runner's run.sh: relaunches the helper while it
# answers 2 (retryable), passes 7 through only when
# ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1, and otherwise exits
# 0, as the real run.sh (2.336.0) does. The stand-in's own code 66 (a
# secret was seen leaked) also passes through so a test can see it. The
# restarts are bounded (RUNNER_STANDIN_MAX_RESTARTS, default 3) where the
# real one loops forever.
DIR=$(cd "$(dirname "$0")" && pwd)
restarts=0
while :; do
	cp -f "$DIR/run-helper.sh.template" "$DIR/run-helper.sh"
	"$DIR/run-helper.sh" "$@"
	returnCode=$?
	if [ "$returnCode" -eq 2 ]; then
		restarts=$((restarts + 1))
		if [ "$restarts" -gt "${RUNNER_STANDIN_MAX_RESTARTS:-3}" ]; then
			echo "Stand-in runner: giving up after $restarts restarts."
			exit 2
		fi
		echo "Restarting runner..."
	elif [ "${ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE:-}" = "1" ] && [ "$returnCode" -eq 7 ]; then
		echo "Exiting runner..."
		exit "$returnCode"
	elif [ "$returnCode" -eq 66 ]; then
		echo "Exiting runner... (a secret was seen leaked)"
		exit 66
	else
		echo "Exiting runner..."
		exit 0
	fi
done
