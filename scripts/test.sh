#!/usr/bin/env bash
# Sets everything up (idempotent) and runs the whole suite: ruff, mypy --strict, pytest
# including the netns interop lab with real FRR, GoBGP and BIRD. Needs root for the lab.
# Extra arguments go to pytest, e.g.  scripts/test.sh tests/lab -k bfd
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export PATH="$PWD/.venv/bin:$PATH"

fail=0
echo "== ruff"; ruff check . && ruff format --check . || fail=1
echo "== mypy --strict"; mypy || fail=1
echo "== pytest"
pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    rc=1
fi
[ $rc -ne 0 ] && fail=1
exit $fail
