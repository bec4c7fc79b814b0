"""Pure builders of remote shell commands for deploy hosts — the only place such strings are made.

Every value is quoted here with shlex.quote; steps never concatenate shell. Paths may be relative:
they are then relative to the SSH user's home, where every remote command starts.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping

from .. import otp
from ..model import release_file_name
from ..otp import control as otp_control
from . import control

q = shlex.quote

# Marker lines our scripts print so steps can parse results without guessing.
RC_MARK = "PDT_RC="
PROC_MARK = "PDT_PROC "


def tarball_dir(root: str) -> str:
    return f"{root.rstrip('/')}/.deliver/releases"


def tarball_path(root: str, app: str, version: str, kind: str = "release") -> str:
    return f"{tarball_dir(root)}/{release_file_name(app, version, kind)}"


# The stage/host env lives on the host in this file (mode 0600, in the release root), written
# by HostContext before the first command that sources it: no size limit from a command line,
# and no secret in `ps`. The same values as Erlang terms serve expressions run on the node.
ENV_FILE = ".deliver/env"
ENV_TERMS = ".deliver/env.eterm"
# Touched just before each boot this tool makes (daemon or foreground): a crash dump newer than
# it belongs to the last boot, one older to an earlier life of the node (doctor).
BOOT_MARK = ".deliver/boot"
MARK_BOOT = f"touch {BOOT_MARK} 2>/dev/null; "


def env_file_text(env: Mapping[str, str]) -> str:
    """The env file: one `export NAME='value'` line per entry (sourced by sh)."""
    return "".join(f"export {k}={q(val)}\n" for k, val in env.items())


def _codes(text: str) -> str:
    return "[" + ",".join(str(ord(ch)) for ch in text) + "]"


def env_terms_text(env: Mapping[str, str]) -> str:
    """The env as `{"NAME", "value"}.` terms (file:consult), strings as lists of code points."""
    return "".join(f"{{{_codes(k)}, {_codes(val)}}}.\n" for k, val in env.items())


def env_prefix(env: Mapping[str, str]) -> str:
    """Source the env file (in the release root) before a command; empty for no env."""
    return f". ./{ENV_FILE} && " if env else ""


def _node_env(builder: str, env: Mapping[str, str], source: bool = True, **extra: str) -> str:
    """The env for a bin/<app> call: the env file, `extra` values (never secrets), and for relx
    per-root pipe and log dirs unless set.

    relx's default pipe dir /tmp/erl_pipes/<node> is shared by every user and release on a host,
    so two releases with one node name would collide; a per-root dir avoids that.
    """
    parts = [f"{k}={q(val)}" for k, val in extra.items()]
    if builder == "rebar3":
        if "PIPE_DIR" not in env:
            parts.append('PIPE_DIR="$PWD/tmp/pipe/"')
        if "RUNNER_LOG_DIR" not in env:
            parts.append('RUNNER_LOG_DIR="$PWD/log"')
    return (env_prefix(env) if source else "") + (("env " + " ".join(parts) + " ") if parts else "")


def node(root: str, app: str, builder: str, env: Mapping[str, str], *args: str) -> str:
    """`bin/<app> ARGS` run in the release root with the stage's env."""
    return f"cd {q(root)} && {_bin(app, builder, env, *args)}"


def _bin(app: str, builder: str, env: Mapping[str, str], *args: str, source: bool = True) -> str:
    return f"{_node_env(builder, env, source)}bin/{q(app)} {' '.join(q(a) for a in args)}"


def control_key(app: str, builder: str, env: Mapping[str, str]) -> str:
    """Names the control file a stage env may use (otp.control): another env, another file."""
    text = "\0".join((app, builder, env_file_text(env)))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# erl_call waits this long for an answer (then exits 142, printing nothing): a hung node must not
# hang the run; the longest question we ask is release_handler's install of a big release.
QUESTION_TIMEOUT = 300


def node_eval(root: str, app: str, builder: str, env: Mapping[str, str], erlang_expr: str,
              timeout: int = QUESTION_TIMEOUT, client: bool = True) -> str:
    """Evaluate an Erlang expression on the *running* node: through erl_call when this stage env
    has reached the node before and the node answers it (no VM booted), else through the
    release's own client (mix: rpc, relx: eval), which also prepares erl_call (otp.control).
    A question erl_call was given is never asked again the slow way: only when erl_call cannot
    reach the node is the release's client used. The env file is sourced first: erl_call needs
    what it sets too (ERL_EPMD_PORT...). client=False: the release's client only once the node
    is registered with epmd (before that it would boot a VM just to hear nodedown); until then a
    node erl_call cannot reach gets no question (exit 1, no answer)."""
    key = control_key(app, builder, env)
    slow_expr = otp.combined(otp_control.setup_expr(key), erlang_expr)
    if builder == "mix":
        slow = _bin(app, builder, env, "rpc", otp.elixir_wrapper(slow_expr), source=False)
    else:
        slow = _bin(app, builder, env, "eval", slow_expr, source=False)
    ctl = otp_control.CONTROL_DIR
    call = f'HOME="$PWD/{ctl}" "$pdt_c" "-$pdt_k" "$pdt_n" -R'
    fast = f"printf %s {q(otp_control.fast_expr(erlang_expr))} | {call} -timeout {int(timeout)} -e"
    return (f"cd {q(root)} && {env_prefix(env)}if read -r pdt_n pdt_k pdt_c 2>/dev/null "
            f"< {ctl}/{key} && {call} -timeout 5 -a 'erlang node' >/dev/null 2>&1; "
            f"then {fast}; else {slow if client else _when_registered(slow)}; fi")


def _when_registered(slow: str) -> str:
    """`slow` if the node of the control file is in epmd (asked with its ERTS's own epmd, or if
    that ERTS has none), else exit 1."""
    epmd = '"${pdt_c%/*}/epmd"'
    seen = ("awk -v n=\"${pdt_n%%@*}\" '$1 == \"name\" && $2 == n { f = 1 } END { exit !f }'")
    return (f'if [ -z "${{pdt_n:-}}" ] || [ ! -x {epmd} ] || {{ {epmd} -names 2>/dev/null | '
            f"{seen}; }}; then {slow}; else false; fi")


def fresh_eval(root: str, app: str, env: Mapping[str, str], vsn: str, erlang_expr: str) -> str:
    """Evaluate an Erlang expression in a fresh, un-booted VM of mix release `vsn` (`eval`): its
    config providers (runtime.exs) run there with the stage's env, as at boot."""
    argv = " ".join(q(a) for a in ("eval", otp.elixir_wrapper(erlang_expr)))
    return f"cd {q(root)} && {_node_env('mix', env, RELEASE_VSN=vsn)}bin/{q(app)} {argv}"


def probe(root: str, release: str, app: str, builder: str, env: Mapping[str, str],
          client: bool = True) -> str:
    """One round trip for start/stop verification: node facts (is OTP application `app`
    started), their exit code, and every VM started from this release root (`-root ROOT` is on
    the command line of mix and relx BEAMs alike; a booting or hung VM shows up here even when it
    does not answer rpc yet). client: as in node_eval."""
    facts = node_eval(root, release, builder, env, otp.node_facts_expr(app), client=client)
    return f"{facts} 2>&1; echo {RC_MARK}$?; {_vm_list}"


# Every VM started from the root in the current dir, one PROC_MARK line each.
_vm_list = f'{control.ROOT_VMS} | sed "s/^ */{PROC_MARK}/" || true'


def vms(root: str) -> str:
    """Just the VMs of this root: a cheap look (no Erlang VM is booted to ask, unlike rpc)."""
    return f"cd {q(root)} 2>/dev/null && {{ {_vm_list}; }} || true"


DAEMON_TIMEOUT_RC = 124


def start(root: str, app: str, builder: str, env: Mapping[str, str], wait: int = 20) -> str:
    """`bin/<app> daemon`, given at most `wait` seconds to return (exit 124 after that).

    relx's daemon loops until the node answers — forever if it died while booting — so the
    script is cut short and the caller verifies the node itself; run_erl has detached by then.
    Once it returned 0, erl_call's files are written from the started BEAM's command line
    (commands.control), so the first question needs no helper VM.
    """
    argv = " ".join(q(a) for a in ("timeout", "-k", "2", str(int(wait)), f"bin/{app}", "daemon"))
    ready = control.from_started_node(control_key(app, builder, env))
    return (f"cd {q(root)} && {{ {MARK_BOOT}{_node_env(builder, env)}{argv}; }}; pdt_rc=$?\n"
            f"if [ $pdt_rc -eq 0 ]; then\n{ready}\nfi\nexit $pdt_rc")


def stop(root: str, app: str, builder: str, env: Mapping[str, str]) -> str:
    return node(root, app, builder, env, "stop")


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


def mkdir(path: str) -> str:
    return f"mkdir -p {q(path)}"


def bin_dir(version: str) -> str:
    """Where each version's bin/ is kept, so hot upgrades and downgrades can switch scripts
    (relx's bin/<app> has its version baked in)."""
    return f".deliver/bin/{version}"


# RELEASES for the release that boots next, as release_handler:create_RELEASES writes it (the same
# terms, no VM booted for it): that release permanent, each app's absolute lib dir under the root
# (mix ships no RELEASES, so downgrades would fail; relx's lists only the first version it built).
# Read from the .rel as mix and relx write it; anything else (a quoted app name) is refused.
_RELEASES_AWK = r"""
{ sub(/%.*/, ""); gsub(/[ \t\r]/, ""); s = s $0 }
END {
  if (!match(s, /^\{release,\{"[^"]*","[^"]*"\},\{erts,"[^"]*"\},\[/)) exit 1
  split(substr(s, 1, RLENGTH), h, "\"")
  rest = substr(s, RLENGTH + 1)
  out = "[{release,\"" h[2] "\",\"" h[4] "\",\"" h[6] "\",["
  n = 0
  while (match(rest, /^\{[a-z][a-zA-Z0-9_@]*,"[^"]*"(,[a-z_]+)?(,\[[^]]*\])?\},?/)) {
    e = substr(rest, 1, RLENGTH)
    rest = substr(rest, RLENGTH + 1)
    split(e, f, "\"")
    app = substr(f[1], 2, length(f[1]) - 2)
    out = out (n++ ? "," : "") "{" app ",\"" f[2] "\",\"" ENVIRON["PDT_ROOT"] "/lib/" app "-" f[2] "\"}"
  }
  if (n == 0 || rest != "]}.") exit 1
  print "%% coding: utf-8"
  print out "],permanent}]."
}
"""

RELEASES_RC = 6


def releases_file(app: str, version: str, rel_word: str = "") -> list[str]:
    """Script lines: write releases/RELEASES.new naming `version` permanent (exit RELEASES_RC when
    that fails; a release without sasl gets a warning, and the host's RELEASES stays).
    `rel_word`: a shell word for where releases/<version> is now (a staging dir during a
    deploy)."""
    rel = f"{rel_word or q(f'releases/{version}')}/{q(app + '.rel')}"
    fail = f"could not write releases/RELEASES for {version}"
    return [
        "set -- lib/sasl-*/ebin",
        'if [ -d "$1" ]; then',
        "  pdt_root=$(pwd -P)",
        '  case $pdt_root in *[\\"\\\\]*)',
        f"    echo {q(fail + ': the release root has a quote or backslash in its path')} >&2; "
        f"exit {RELEASES_RC};;",
        "  esac",
        f'  PDT_ROOT="$pdt_root" awk {q(_RELEASES_AWK)} {rel} > releases/RELEASES.new || {{',
        f'    echo "{fail}: "{rel}" is not a .rel as mix and relx write it" >&2; '
        f"exit {RELEASES_RC}; }}",
        "else",
        '  echo "warning: no sasl in this release: no releases/RELEASES (hot upgrades need it)" >&2',
        "fi",
    ]


def hook(root: str, env: Mapping[str, str], shell_command: str) -> str:
    """A user's hook command from config, run by sh in the root with the stage's env."""
    return f"mkdir -p {q(root)} && cd {q(root)} && {env_prefix(env)}sh -c {q(shell_command)}"
