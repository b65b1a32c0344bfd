#!/bin/sh
# Stand-in for actions/runner's safe_sleep.sh.
sleep "${1:-1}"
