#!/usr/bin/env bash
# The test command: unit tests and integration tests against a real local control plane.
# Extra arguments go to pytest (for example: hack/test.sh tests/unit -k resolve).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
prepare_node
_started=$SECONDS
status=0
python -m pytest "$@" || status=$?
echo "[test] pytest finished in $((SECONDS - _started))s with exit code $status" >&2
exit "$status"
