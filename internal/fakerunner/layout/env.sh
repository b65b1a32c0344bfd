#!/bin/sh
# Stand-in for actions/runner's env.sh: snapshots PATH into .path and a few
# well-known variables into .env, which the real runner gives its jobs.
DIR=$(cd "$(dirname "$0")" && pwd)
printf '%s\n' "$PATH" >"$DIR/.path"
: >"$DIR/.env"
for var in LANG JAVA_HOME ANT_HOME M2_HOME ANDROID_HOME ANDROID_SDK_ROOT GRADLE_HOME NVM_BIN NVM_PATH LD_LIBRARY_PATH PERL5LIB; do
	eval "value=\${$var:-}"
	if [ -n "$value" ]; then
		printf '%s=%s\n' "$var" "$value" >>"$DIR/.env"
	fi
done
