#!/usr/bin/env bash
# One step of `make setup`: one progress line; the step's output is kept aside and shown
# only when the step fails. V=1 (`make run V=1`) shows every step's output as it comes.
# Usage: bash scripts/step.sh "What the step does" COMMAND [ARGUMENT ...]
set -u
label=$1
shift
if [ "${V:-}" = 1 ]; then
    echo "==> $label"
    exec "$@"
fi
output=$(mktemp)  # owner-only; removed on exit
trap 'rm -f "$output"' EXIT
printf '%s ... ' "$label"
if "$@" >"$output" 2>&1; then
    echo "done"
else
    status=$?
    echo "failed (exit status $status). Its output:"
    cat "$output"
    exit "$status"
fi
