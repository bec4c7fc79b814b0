#!/usr/bin/env bash
# The whole check, from any directory: install what is needed (examples/setup-debian.sh), lint with
# ruff, then pytest over tests/ (unit + integration on the loopback sshd sandbox, real builds).
#
#   bash tests/run.sh                 # as root on Debian 12
#   bash tests/run.sh -x -q           # extra arguments go to pytest
#   bash tests/run.sh tests/unit      # a subset
#
# Both ruff and pytest always run; the exit code is the first failure's.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2

bash examples/setup-debian.sh || exit $?

rc=0
echo "== ruff check ."
.venv/bin/ruff check . || rc=$?

echo "== pytest -v -rfEs --durations=25 tests $*"
.venv/bin/pytest -v -rfEs --durations=25 tests "$@"
prc=$?
[ "$rc" -eq 0 ] && rc=$prc

[ "$rc" -eq 0 ] && echo "== tests/run.sh: all passed" || echo "== tests/run.sh: FAILED (exit $rc)"
exit "$rc"
