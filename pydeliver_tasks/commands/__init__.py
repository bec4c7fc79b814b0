"""Pure builders of remote shell commands for deploy hosts — the only place such strings are made.

Every value is quoted here with shlex.quote; steps never concatenate shell. Paths may be relative:
they are then relative to the SSH user's home, where every remote command starts.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from .. import otp
from ..model import release_file_name

q = shlex.quote

# Marker lines our scripts print so steps can parse results without guessing.
RC_MARK = "PDT_RC="
PROC_MARK = "PDT_PROC "


def tarball_dir(root: str) -> str:
    return f"{root.rstrip('/')}/.deliver/releases"


def tarball_path(root: str, app: str, version: str, kind: str = "release") -> str:
    return f"{tarball_dir(root)}/{release_file_name(app, version, kind)}"


def env_prefix(env: Mapping[str, str]) -> str:
    """`env K=V ... ` (values quoted) to put before a command; empty for no env."""
    return ("env " + " ".join(f"{k}={q(val)}" for k, val in env.items()) + " ") if env else ""


def _node_env(builder: str, env: Mapping[str, str]) -> str:
    """`env K=V ...` for a bin/<app> call; relx gets per-root pipe and log dirs unless set.

    relx's default pipe dir /tmp/erl_pipes/<node> is shared by every user and release on a host,
    so two releases with one node name would collide; a per-root dir avoids that.
    """
    parts = [f"{k}={q(val)}" for k, val in env.items()]
    if builder == "rebar3":
        if "PIPE_DIR" not in env:
            parts.append('PIPE_DIR="$PWD/tmp/pipe/"')
        if "RUNNER_LOG_DIR" not in env:
            parts.append('RUNNER_LOG_DIR="$PWD/log"')
    return ("env " + " ".join(parts) + " ") if parts else ""


def node(root: str, app: str, builder: str, env: Mapping[str, str], *args: str) -> str:
    """`bin/<app> ARGS` run in the release root with the stage's env."""
    argv = " ".join(q(a) for a in args)
    return f"cd {q(root)} && {_node_env(builder, env)}bin/{q(app)} {argv}"


def node_eval(root: str, app: str, builder: str, env: Mapping[str, str], erlang_expr: str) -> str:
    """Evaluate an Erlang expression on the *running* node (mix: rpc, relx: eval)."""
    if builder == "mix":
        return node(root, app, builder, env, "rpc", otp.elixir_wrapper(erlang_expr))
    return node(root, app, builder, env, "eval", erlang_expr)


def fresh_eval(root: str, app: str, env: Mapping[str, str], vsn: str, erlang_expr: str) -> str:
    """Evaluate an Erlang expression in a fresh, un-booted VM of mix release `vsn` (`eval`): its
    config providers (runtime.exs) run there with the stage's env, as at boot."""
    return node(root, app, "mix", {**env, "RELEASE_VSN": vsn}, "eval",
                otp.elixir_wrapper(erlang_expr))


def probe(root: str, app: str, builder: str, env: Mapping[str, str]) -> str:
    """One round trip for start/stop verification: node facts, their exit code, and every VM
    started from this release root (`-root ROOT` is on the command line of mix and relx BEAMs
    alike; a booting or hung VM shows up here even when it does not answer rpc yet)."""
    facts = node_eval(root, app, builder, env, otp.node_facts_expr(app))
    return f"{facts} 2>&1; echo {RC_MARK}$?; {_vm_list}"


# Every VM started from the root in the current dir, one PROC_MARK line each.
_vm_list = (
    'r="-root $(pwd -P) "; ps -ww -eo pid=,args= | grep -F -- "$r" | grep -v -e "grep -F" '
    f'-e "ps -ww" | sed "s/^ */{PROC_MARK}/" || true'
)


def vms(root: str) -> str:
    """Just the VMs of this root: a cheap look (no Erlang VM is booted to ask, unlike rpc)."""
    return f"cd {q(root)} 2>/dev/null && {{ {_vm_list}; }} || true"


DAEMON_TIMEOUT_RC = 124


def start(root: str, app: str, builder: str, env: Mapping[str, str], wait: int = 20) -> str:
    """`bin/<app> daemon`, given at most `wait` seconds to return (exit 124 after that).

    relx's daemon loops until the node answers — forever if it died while booting — so the
    script is cut short and the caller verifies the node itself; run_erl has detached by then.
    """
    argv = " ".join(q(a) for a in ("timeout", "-k", "2", str(int(wait)), f"bin/{app}", "daemon"))
    return f"cd {q(root)} && {_node_env(builder, env)}{argv}"


def stop(root: str, app: str, builder: str, env: Mapping[str, str]) -> str:
    return node(root, app, builder, env, "stop")


def process_alive(pid: int) -> str:
    """Exit 0 while the OS process exists."""
    return f"kill -0 {int(pid)} 2>/dev/null"


def boot_version(root: str) -> str:
    """What the next start boots: `<erts> <release>` from start_erl.data."""
    return f"cat {q(root)}/releases/start_erl.data 2>/dev/null || true"


def log_tail(root: str, lines: int = 30) -> str:
    """The newest node log (relx: log/erlang.log.N, mix: tmp/log/erlang.log.N)."""
    return (
        f"cd {q(root)} 2>/dev/null && f=$(ls -t log/erlang.log.* tmp/log/erlang.log.* "
        f"2>/dev/null | head -n 1) && [ -n \"$f\" ] && echo \"== $f\" && tail -n {int(lines)} \"$f\""
        " || true"
    )


def remote_sha256(path: str) -> str:
    """The sha256 of a remote file, or nothing when it does not exist."""
    return f"test -f {q(path)} && sha256sum {q(path)} | cut -d' ' -f1 || true"


def mkdir(path: str) -> str:
    return f"mkdir -p {q(path)}"


def _checked_extract(root: str, tarball: str, sha256: str, stage: str, uploaded: bool) -> list[str]:
    """Script lines: check the uploaded tarball's sha256 on the host, extract it into `stage`."""
    return [
        "set -eu",
        f"cd {q(root)}",
        f"t={q(tarball.removeprefix(root.rstrip('/') + '/'))}",
        # a .part left by an interrupted upload is stale when this run uploaded nothing
        "" if uploaded else 'rm -f "$t.part"',
        'if [ -f "$t.part" ]; then',
        f'  echo {q(sha256)}"  $t.part" | sha256sum --check --status || '
        '{ echo "sha256 mismatch: the uploaded $t.part is not the built release" >&2; '
        'rm -f "$t.part"; exit 3; }',
        '  mv -f "$t.part" "$t"',
        "fi",
        f'echo {q(sha256)}"  $t" | sha256sum --check --status || '
        '{ echo "sha256 mismatch: $t on this host is not the built release" >&2; exit 3; }',
        f"rm -rf {q(stage)} && mkdir -p {q(stage)}",
        f'tar -xzf "$t" -C {q(stage)}',
    ]


def bin_dir(version: str) -> str:
    """Where each version's bin/ is kept, so hot upgrades and downgrades can switch scripts
    (relx's bin/<app> has its version baked in)."""
    return f".deliver/bin/{version}"


# Write releases/RELEASES for the release that boots next, with absolute lib paths: mix ships
# none (downgrades then fail) and relx's lists only the first version it built.
_CREATE_RELEASES = (
    'R = os:getenv("PDT_ROOT"), V = os:getenv("PDT_VSN"), A = os:getenv("PDT_APP"), '
    'ok = release_handler:create_RELEASES(R, R ++ "/releases", '
    'R ++ "/releases/" ++ V ++ "/" ++ A ++ ".rel", []), halt().'
)


def _releases_file(app: str, version: str) -> list[str]:
    """Script lines: (re)create releases/RELEASES naming `version` permanent (needs sasl)."""
    return [
        "set -- lib/sasl-*/ebin",
        'if [ -d "$1" ] && [ -x "erts-$erts/bin/erl" ]; then',
        f'  PDT_ROOT="$(pwd -P)" PDT_VSN={q(version)} PDT_APP={q(app)} "erts-$erts/bin/erl" '
        f'-noshell -boot releases/{q(version)}/start_clean -boot_var RELEASE_LIB "$(pwd -P)/lib" '
        f'-pa "$1" -eval {q(_CREATE_RELEASES)} >/dev/null 2>&1 && mv -f releases/RELEASES '
        "releases/RELEASES.pdt && mv -f releases/RELEASES.pdt releases/RELEASES "
        '|| echo "warning: could not write releases/RELEASES (hot upgrades need it)" >&2',
        "fi",
    ]


def install_release(root: str, app: str, version: str, sha256: str, uploaded: bool = True,
                    kind: str = "release") -> str:
    """Verify the uploaded tarball's sha256 on the host, then extract it so `version` boots next.

    Extraction goes to a staging dir first; only a complete, checked tree is moved into the root,
    and start_erl.data — what decides the next boot — is replaced last, atomically (rename).
    """
    tarball = tarball_path(root, app, version, kind)
    stage = f".deliver/staging/{version}"
    rel = f"{stage}/releases/{version}"
    return "\n".join(
        _checked_extract(root, tarball, sha256, stage, uploaded)
        + [
            f"test -d {q(rel)} && test -x {q(stage)}/bin/{q(app)} || "
            f"{{ echo {q(f'tarball lacks releases/{version} or bin/{app}')} >&2; exit 4; }}",
            "mkdir -p lib releases .deliver/trash .deliver/bin",
            f"for d in {q(stage)}/lib/*; do",
            '  n=${d##*/}; if [ -e "lib/$n" ]; then rm -rf ".deliver/trash/$n"; '
            'mv "lib/$n" ".deliver/trash/$n"; fi; mv "$d" "lib/$n"',
            "done",
            f"for d in {q(stage)}/erts-*; do",
            '  [ -e "$d" ] || continue; n=${d##*/}; [ -e "$n" ] || mv "$d" "$n"',
            "done",
            f"for f in {q(stage)}/releases/*; do",
            '  n=${f##*/}',
            '  case "$n" in',
            "    start_erl.data) ;;",
            '    COOKIE|RELEASES) [ -e "releases/$n" ] || mv "$f" "releases/$n" ;;',
            '    *) rm -rf ".deliver/trash/$n"; [ ! -e "releases/$n" ] || '
            'mv "releases/$n" ".deliver/trash/$n"; mv "$f" "releases/$n" ;;',
            "  esac",
            "done",
            f"erts=$(cut -d' ' -f1 {q(stage)}/releases/start_erl.data 2>/dev/null || true)",
            f'[ -n "$erts" ] || erts=$(ls -d {q(stage)}/erts-* erts-* 2>/dev/null | head -n 1 '
            "| sed 's/.*erts-//')",
            f"rm -rf {q(bin_dir(version))} && cp -a {q(stage)}/bin {q(bin_dir(version))}",
            "rm -rf bin.new bin.old",
            f'mv {q(stage)}/bin bin.new && {{ [ ! -d bin ] || mv bin bin.old; }} && mv bin.new bin',
            *_releases_file(app, version),
            f'echo "$erts {version}" > releases/start_erl.data.new',
            "mv -f releases/start_erl.data.new releases/start_erl.data",
            f"rm -rf bin.old .deliver/trash {q(stage)}",
            f"echo {q(f'PDT{{installed={version}}}')}",
        ]
    )


def stage_upgrade(root: str, app: str, old: str, new: str, sha256: str, uploaded: bool,
                  new_lib_dirs: list[str]) -> str:
    """Put release `new` beside the running `old` without touching what `old` uses, so that
    release_handler can install it hot: lib dirs `new` adds (new_lib_dirs, never in use by
    `old`) are replaced, other lib dirs are only added when missing; releases/<new> is replaced;
    bin/ is kept aside for the switch after make_permanent. Nothing here changes what boots.
    """
    tarball = tarball_path(root, app, new, "upgrade")
    stage = f".deliver/staging/{new}"
    fresh = " ".join(q(d) for d in new_lib_dirs if d and "/" not in d and d not in (".", ".."))
    return "\n".join(
        _checked_extract(root, tarball, sha256, stage, uploaded)
        + [
            f"test -f {q(stage)}/releases/{q(new)}/relup && test -x {q(stage)}/bin/{q(app)} || "
            f"{{ echo {q(f'upgrade tarball lacks releases/{new}/relup or bin/{app}')} >&2; exit 4; }}",
            "mkdir -p .deliver/bin",
            # roots deployed before bin/ was kept per version: the running version's is bin/
            f"[ -d {q(bin_dir(old))} ] || cp -a bin {q(bin_dir(old))}",
            f"for n in {fresh}; do rm -rf \"lib/$n\"; done" if fresh else ":",
            f"for d in {q(stage)}/lib/*; do",
            '  n=${d##*/}; [ -e "lib/$n" ] || mv "$d" "lib/$n"',
            "done",
            f"rm -rf releases/{q(new)} && mv {q(stage)}/releases/{q(new)} releases/{q(new)}",
            f"rm -rf {q(bin_dir(new))} && mv {q(stage)}/bin {q(bin_dir(new))}",
            f"rm -rf {q(stage)}",
            f"echo {q(f'PDT{{staged={new}}}')}",
        ]
    )


def activate_bin(root: str, version: str) -> str:
    """Make `version`'s start script the one bin/ holds (after a hot upgrade or downgrade)."""
    src = bin_dir(version)
    return (
        f"cd {q(root)} && test -d {q(src)} && rm -rf bin.new bin.old && cp -a {q(src)} bin.new "
        "&& mv bin bin.old && mv bin.new bin && rm -rf bin.old"
    )


def hook(root: str, env: Mapping[str, str], shell_command: str) -> str:
    """A user's hook command from config, run by sh in the root with the stage's env."""
    return f"mkdir -p {q(root)} && cd {q(root)} && {env_prefix(env)}sh -c {q(shell_command)}"
