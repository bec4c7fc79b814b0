#!/usr/bin/env bash
# The pydeliver_tasks demo, as a user lives it, on a loopback sandbox (2 hosts + a build host,
# each a real sshd with its own Unix user): build the hello_ex release from git tag 0.0.1 on the
# build host, deploy it to both hosts, start it (verified), ping, version, fetch each host's page,
# then hot-upgrade to 0.0.2 (page text changes, same OS pid of each node) and stop.
#
#   bash examples/demo.sh           # as root on Debian 12; tears the sandbox down at the end
#   bash examples/demo.sh --keep    # leave the sandbox and the nodes running to explore
#
# Runs examples/setup-debian.sh first. Exits non-zero if any step fails; the sandbox is torn down
# whatever happens (--keep leaves it only after a successful run). Safe to run again and again.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

APP=hello_ex
WORK=/tmp/pydeliver-demo
PROJECT=$WORK/$APP
SANDBOX=/tmp/pydeliver-sandbox-2222   # inv sandbox.up's default dir (port 2222)
INV=$REPO/.venv/bin/inv
PY=$REPO/.venv/bin/python
T0=$SECONDS
STEP_T=$SECONDS

section() {
  echo
  echo "== $*"
  STEP_T=$SECONDS
}
took() { echo "   ($((SECONDS - STEP_T)) s)"; }

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$KEEP" = 1 ] && [ "$rc" = 0 ]; then
    cat <<EOF

== sandbox left running (--keep). Explore it:
   cd $PROJECT
   export INVOKE_RUNTIME_CONFIG=$SANDBOX/invoke.json
   $INV --list            # or: source $REPO/.venv/bin/activate, then inv ...
   $INV ping; $INV version; $INV restart
   curl http://127.0.0.3:4000/              # host h1's page (h2: 127.0.0.4)
   ssh -F $SANDBOX/ssh_config h1        # a shell on host h1 (also: build, h2)
== tear it down with:
   cd $PROJECT && $INV sandbox.down --purge
EOF
    exit 0
  fi
  if [ -f "$SANDBOX/state.json" ] && [ -d "$PROJECT" ]; then
    [ "$KEEP" = 1 ] && echo "demo failed: tearing the sandbox down despite --keep" >&2
    section "teardown: inv sandbox.down --purge (ends the nodes, sshds and sandbox users by pid)"
    if ! (cd "$PROJECT" && env -u INVOKE_RUNTIME_CONFIG "$INV" sandbox.down --purge); then
      echo "demo: sandbox teardown failed" >&2
      [ "$rc" = 0 ] && rc=1
    fi
  fi
  echo
  if [ "$rc" = 0 ]; then
    echo "== demo finished OK in $((SECONDS - T0)) s"
  else
    echo "== demo FAILED (exit $rc) after $((SECONDS - T0)) s" >&2
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section "setup: Debian packages, rebar3, the venv (examples/setup-debian.sh)"
bash "$REPO/examples/setup-debian.sh"
took

section "project: $APP as a git repository with tags 0.0.1 and 0.0.2 ($PROJECT)"
rm -rf "$PROJECT"
mkdir -p "$WORK"
"$PY" "$REPO/examples/make_repo.py" "$APP" "$PROJECT"
cd "$PROJECT"
git log --oneline --decorate | sed 's/^/   /'
echo "   tasks.py:    $(grep -v '^\s*$' tasks.py | head -1)"
echo "   invoke.yaml: $(tr '\n' ' ' <invoke.yaml)"

section "sandbox: 2 hosts + a build host, each a real sshd on loopback (inv sandbox.up --hosts 2 --fresh)"
unset INVOKE_RUNTIME_CONFIG
up_out=$("$INV" sandbox.up --hosts 2 --fresh)
echo "$up_out"
cfg=$(sed -n 's/^use it with: INVOKE_RUNTIME_CONFIG=\([^ ]*\) .*/\1/p' <<<"$up_out")
if [ -z "$cfg" ] || [ ! -f "$cfg" ]; then
  echo "demo: sandbox.up did not name its runtime config file" >&2
  exit 1
fi
export INVOKE_RUNTIME_CONFIG=$cfg
echo "   export INVOKE_RUNTIME_CONFIG=$cfg"
took

section "1. build 0.0.1 on the build host (inv build.release --tag 0.0.1)"
"$INV" build.release --tag 0.0.1
took

section "2. deploy 0.0.1 to every host (inv deploy.release --version 0.0.1)"
"$INV" deploy.release --version 0.0.1
took

section "3. start the nodes, verified: node answers, app started, health ok (inv start)"
"$INV" start
took

section "4. ping and version (inv ping; inv version)"
"$INV" ping
"$INV" version
took

# show_pages EXPECTED: each host's page text and its node's OS pid (from inv ping); fails unless
# every page contains EXPECTED. Sets PIDS[host]=pid.
declare -A PIDS
show_pages() {
  local expected=$1 ping_json hosts name ip port pid page owner text
  ping_json=$(mktemp)
  "$INV" ping --json "$ping_json" >/dev/null
  # one line per host: name address port pid   (names/addresses from the runtime config)
  hosts=$("$PY" - "$cfg" "$ping_json" <<'EOF'
import json, re, sys
deliver = json.load(open(sys.argv[1]))["deliver"]
pings = {r["host"]: r for r in json.load(open(sys.argv[2]))["hosts"]}
for h in deliver["stages"]["sandbox"]["hosts"]:
    r = pings.get(h["host"], {})
    m = re.search(r"\(pid (\d+)", r.get("message", "")) if r.get("ok") else None
    print(h["host"], h["env"]["HTTP_IP"], h["env"]["HTTP_PORT"], m.group(1) if m else "-")
EOF
)
  rm -f "$ping_json"
  while read -r name ip port pid; do
    page=$(curl -fsS --max-time 5 "http://$ip:$port/")
    owner=$(ps -o user= -p "$pid" 2>/dev/null || echo "?")
    text=$(sed -n 's:.*<h1>\(.*\)</h1>.*:\1:p' <<<"$page")
    echo "   $name  http://$ip:$port/  node OS pid $pid (user $owner)"
    echo "      page: ${text:-$page}"
    if [[ "$text" != *"$expected"* ]]; then
      echo "demo: unexpected page on $name (expected \"$expected\")" >&2
      exit 1
    fi
    PIDS[$name]=$pid
  done <<<"$hosts"
}

section "5. each host's page (curl) and the OS pid of its node (from inv ping)"
show_pages "Hello from $APP 0.0.1"
declare -A PIDS_BEFORE
for h in "${!PIDS[@]}"; do PIDS_BEFORE[$h]=${PIDS[$h]}; done
took

section "6. HOT upgrade 0.0.1 -> 0.0.2 while the nodes serve (inv upgrade --from 0.0.1 --to 0.0.2)"
echo "   builds 0.0.2 with a relup from the stored 0.0.1 (appups generated), stages it on each host,"
echo "   installs it through release_handler, verifies pid, loaded code, health; then permanent"
"$INV" upgrade --from 0.0.1 --to 0.0.2
took

section "7. after the upgrade: each host's page and node pid (the SAME pid: no restart), inv version"
show_pages "Howdy from $APP 0.0.2"
for h in "${!PIDS[@]}"; do
  if [ "${PIDS[$h]}" != "${PIDS_BEFORE[$h]}" ]; then
    echo "demo: $h's node pid changed (${PIDS_BEFORE[$h]} -> ${PIDS[$h]}): not a hot upgrade" >&2
    exit 1
  fi
  echo "   $h: node OS pid ${PIDS_BEFORE[$h]} before, ${PIDS[$h]} after: same process"
done
"$INV" version
took

if [ "$KEEP" = 1 ]; then
  exit 0   # teardown() prints how to explore and how to tear down
fi

section "8. stop the nodes, verified: each node's OS process is gone (inv stop)"
"$INV" stop
took
