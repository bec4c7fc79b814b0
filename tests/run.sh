#!/usr/bin/env bash
# The whole check, from any directory: install what is needed (examples/setup-debian.sh), build the
# docs site (mkdocs build --strict: a broken link or #anchor in docs/ fails), lint with ruff, then
# pytest over tests/ (unit + integration on the loopback sshd sandbox, real builds).
#
#   bash tests/run.sh                 # as root on Debian 12
#   bash tests/run.sh -x -q           # extra arguments go to pytest (-n 0: one process)
#   bash tests/run.sh tests/unit      # a subset
#
# The docs build, ruff and pytest always run; the exit code is the first failure's.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2

bash examples/setup-debian.sh || exit $?

rc=0
site=$(mktemp -d) || exit 2
echo "== mkdocs build --strict --site-dir $site"
.venv/bin/mkdocs build --strict --site-dir "$site" || rc=$?
rm -rf "$site"

echo "== ruff check ."
prc=0
.venv/bin/ruff check . || prc=$?
[ "$rc" -eq 0 ] && rc=$prc

# no global git config, as on a fresh machine (a test that commits with the developer's identity
# passed here and failed there); a developer's settings (signing, hooks) cannot change a test
export GIT_CONFIG_GLOBAL=/dev/null

# two workers (-n 2), each test file on one of them (--dist loadfile), each worker with its own
# sandboxes (tests/integration/conftest.py): most of the time is spent waiting on nodes and SSH
echo "== pytest -v -rfEs --durations=60 -n 2 --dist loadfile tests $*"
.venv/bin/pytest -v -rfEs --durations=60 -n 2 --dist loadfile tests "$@"
prc=$?
[ "$rc" -eq 0 ] && rc=$prc

[ "$rc" -eq 0 ] && echo "== tests/run.sh: all passed" || echo "== tests/run.sh: FAILED (exit $rc)"
exit "$rc"
