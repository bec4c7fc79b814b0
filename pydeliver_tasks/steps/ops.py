"""Operator steps: read the node's logs, run a shell command, evaluate an expression on the node,
and get the exact ssh line for a remote console — on every host of a stage, output prefixed.

Input is checked before any connection (InvalidInput: exit code 2).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from invoke.exceptions import Exit

from ..commands import ops as cmds
from ..config import Settings
from ..fleet import HostContext, HostFailure, HostResult, RunResult, close_connections, for_each_host, say
from ..model import Stage
from ..validation import InvalidInput, lines_count
from .frame import Ctx, settings_of, target

Handler = Callable[[int, FrameType | None], object] | int | None

# relx `eval` (erl_call -e) exits 0 even when the expression fails. Success prints {ok, V}, which
# the start script strips to V when it fits on one line; failure prints erl_eval:eval_str's
# {error, "<reason>"}, the reason starting like one of these (syntax error / exception, extra
# forms, missing dot) — text no real value starts with. Multi-line `{error, ` output (a stack
# trace) is always an error: a multi-line value keeps its `{ok, ` wrapper.
_RELX_ERROR_RE = re.compile(r'^\{error, "(\*\*\* |Incomplete form|Non-white space found)')
_NOT_RUNNING_RE = re.compile(r"Node is not running|nodedown|Node .* not responding", re.I)
_NO_ROOT_RE = re.compile(r"can't cd to|cd: .*No such file")


def check_text(value: str | None, what: str, usage: str) -> str:
    if value is None or not str(value).strip():
        raise InvalidInput(f"empty {what}: {usage}")
    if "\0" in value:
        raise InvalidInput(f"invalid {what}: it contains a NUL byte")
    return str(value)


# ---- logs -----------------------------------------------------------------------------------

def show_log(hc: HostContext, lines: int) -> str:
    root = hc.host.deploy_path
    res = hc.run(cmds.logs(root, lines), changes=False)
    if res.exited == cmds.NO_ROOT_RC:
        raise HostFailure(f"no deploy path {root} on this host: nothing is deployed here",
                          hint="inv deploy.release --version VERSION")
    if res.exited == cmds.NO_LOG_RC:
        return cmds.no_log_message(root) + " (the node never ran as a daemon here)"
    if not res.ok:
        raise HostFailure(f"reading the node log failed (exit {res.exited})", res.tail())
    header, _, body = res.stdout.partition("\n")
    path = header.removeprefix(cmds.LOG_HEADER)
    shown = body.rstrip("\n").splitlines()
    hc.say(header)
    for line in shown:
        hc.say(line)
    files = [path]
    if hc.settings.log_files:  # deliver.log_files: the app's own logs
        extra = hc.run(cmds.extra_logs(root, hc.settings.log_files, lines), changes=False)
        for line in extra.stdout.rstrip("\n").splitlines():
            hc.say(line)
            if line.startswith(cmds.LOG_HEADER):
                files.append(line.removeprefix(cmds.LOG_HEADER))
    return f"last {len(shown)} line(s) of {', '.join(files)}"


def follow_log(hc: HostContext, lines: int, stopped: threading.Event) -> str:
    root = hc.host.deploy_path
    try:
        res = hc.run(cmds.follow_logs(root, lines), changes=False, stream=True, whole_lines=False)
    except HostFailure:
        if stopped.is_set():
            return "stopped following (interrupted)"
        raise
    if stopped.is_set():
        return "stopped following (interrupted)"
    if res.exited == cmds.NO_ROOT_RC:
        raise HostFailure(f"no deploy path {root} on this host: nothing is deployed here",
                          hint="inv deploy.release --version VERSION")
    if res.exited == cmds.NO_LOG_RC:
        return cmds.no_log_message(root) + " (the node never ran as a daemon here)"
    raise HostFailure(f"following the log ended (exit {res.exited})")


def _follow(settings: Settings, stage: Stage, lines: int, json_path: str | None) -> RunResult:
    """Every host at once until SIGINT/SIGTERM; then close the connections so each remote tail
    ends (see commands.ops.follow_logs) and the per-host summary is printed as usual."""
    stopped, done = threading.Event(), threading.Event()
    every = dataclasses.replace(settings, parallel=max(settings.parallel, len(stage.hosts)))
    previous: dict[int, Handler] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: hard stop

    def closer() -> None:  # not in the signal handler: closing takes locks
        while not done.is_set():
            if stopped.wait(0.2):
                close_connections()
                return

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    threading.Thread(target=closer, daemon=True).start()
    try:
        return for_each_host("logs", every, stage.name, stage.hosts,
                             lambda hc: follow_log(hc, lines, stopped), json_path=json_path)
    finally:
        done.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if stopped.is_set():
            say("stopped following the logs")


def logs(c: Ctx, lines: int = 50, follow: bool = False, stage: str | None = None,
         host: str | None = None, json_path: str | None = None) -> RunResult:
    """Show the last LINES lines of the node's newest run_erl log on every host, or follow it.

    A host whose deploy path exists but holds no log (never started as a daemon) is reported,
    not failed; a host without the deploy path fails: nothing is deployed there.
    """
    lines = lines_count(lines)
    settings = settings_of(c)
    st = settings.stage(stage, host)
    if follow:
        return _follow(settings, st, lines, json_path)
    return for_each_host("logs", settings, st.name, st.hosts, lambda hc: show_log(hc, lines),
                         json_path=json_path)


# ---- exec -----------------------------------------------------------------------------------

def exec_(c: Ctx, cmd: str, stage: str | None = None, host: str | None = None,
          json_path: str | None = None) -> RunResult:
    """Run `sh -c CMD` in the deploy path of every host with the stage env; fail on non-zero."""
    command = check_text(cmd, "command", "inv exec -- 'CMD' (or --cmd 'CMD')")
    settings = settings_of(c)
    st = settings.stage(stage, host)

    def one(hc: HostContext) -> str:
        res = hc.run(cmds.exec_(hc.host.deploy_path, hc.host.env, command), stream=True)
        if not res.ok:
            raise HostFailure(f"exit {res.exited}: {command}")
        return f"exit 0: {command}"

    return for_each_host("exec", settings, st.name, st.hosts, one, json_path=json_path)


# ---- eval -----------------------------------------------------------------------------------

def relx_eval_result(output: str) -> tuple[bool, str]:
    """(ok, value or error) from relx `eval` output (exit 0 either way, see _RELX_ERROR_RE)."""
    text = output.strip()
    multiline = "\n" in text
    if _RELX_ERROR_RE.match(text) or (multiline and text.startswith("{error, ")):
        reason = text.removeprefix('{error, "').removesuffix('"}').removeprefix("*** ")
        return False, reason
    if multiline and text.startswith("{ok, ") and text.endswith("}"):
        text = text[len("{ok, "):-1]  # the start script strips {ok, V} only from one-line output
    return True, text


_EXIT_RE = re.compile(r"^eval: \{'EXIT',\s*(?:\{(.*?),\s*\[\{|(.*)\}$)")


def relx_error_summary(reason: str) -> str:
    """One line for eval_str's reason: `exception boom` for `eval: {'EXIT',{boom,[stack]}}`,
    `exit bye` for exit(bye), `uncaught throw x` for throw(x); else the (syntax) error text."""
    flat = " ".join(reason.split())
    m = _EXIT_RE.match(flat)
    if m and m.group(1):
        return f"exception {_short(m.group(1), 120)} (stack trace below)"
    if m:
        return f"exit {_short(m.group(2), 120)}"
    if flat.startswith("eval: "):
        return f"uncaught throw {_short(flat.removeprefix('eval: '), 120)}"
    return _short(flat)


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def eval_on(hc: HostContext, builder: str, expr: str) -> str:
    h, app = hc.host, hc.settings.release
    res = hc.run(cmds.eval_expr(h.deploy_path, app, builder, h.env, expr), changes=False)
    out = (res.stdout + ("\n" + res.stderr if res.stderr.strip() else "")).strip()
    if not res.ok:
        if _NO_ROOT_RE.search(out):
            raise HostFailure(f"no release in {h.deploy_path}: nothing is deployed here",
                              hint="inv deploy.release --version VERSION")
        if _NOT_RUNNING_RE.search(out):
            raise HostFailure("node not running: nothing answers the eval", out[-800:],
                              f"inv start --host {h.name}")
        errors = [ln for ln in out.splitlines() if ln.startswith("** (")]
        raise HostFailure(f"error: {_short(errors[0]) if errors else f'exit {res.exited}'}",
                          res.tail(20))
    ok, value = (True, res.stdout.strip()) if builder == "mix" else relx_eval_result(res.stdout)
    if not ok:
        raise HostFailure(f"error: {relx_error_summary(value)}", value if "\n" in value else "")
    for line in value.splitlines() or [""]:
        hc.say(line)
    return _short(value) if "\n" not in value else f"{len(value.splitlines())} lines (above)"


def eval_(c: Ctx, expr: str, stage: str | None = None, host: str | None = None,
          json_path: str | None = None) -> RunResult:
    """Evaluate EXPR on the running node of every host (mix: Elixir, relx: Erlang); print it."""
    expr = check_text(expr, "expression", "inv eval 'EXPR' (Elixir for mix, Erlang for rebar3)")
    settings, st, builder = target(c, stage, host)
    return for_each_host("eval", settings, st.name, st.hosts, lambda hc: eval_on(hc, builder, expr),
                         json_path=json_path)


# ---- remote console -------------------------------------------------------------------------

def remote_console(c: Ctx, exec_: bool = False, stage: str | None = None,
                   host: str | None = None) -> RunResult:
    """Print, per host, the ssh command that opens a shell on its node; with exec_, replace this
    process by that ssh (exactly one host must be selected). The env reaches the node from the
    host's env file (written here first), so no line holds a secret."""
    settings, st, builder = target(c, stage, host)
    if exec_ and len(st.hosts) != 1:
        names = ", ".join(h.name for h in st.hosts)
        raise InvalidInput(f"--exec opens one console: pick its host with --host "
                           f"(stage {st.name} has {len(st.hosts)}: {names})")
    argvs = [cmds.console_argv(h, settings.ssh, settings.release, builder) for h in st.hosts]
    shown = [shlex.join(argv) for argv in argvs]
    for h in st.hosts:  # the printed line works as printed: the env file holds today's env
        HostContext(h, settings, dry_run=False).write_env()
    if exec_:
        h = st.hosts[0]
        say(f"[{h.name}] {shown[0]}")
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execvp(argvs[0][0], argvs[0])
        except OSError as exc:  # only returns on failure
            raise Exit(f"cannot run {argvs[0][0]}: {exc} (is the OpenSSH client installed?)",
                       code=1) from exc
    for h, line in zip(st.hosts, shown, strict=True):
        say(f"[{h.name}] {line}")
    return RunResult("remote-console", st.name, [HostResult(h.name, True, line, 0.0,
                                                            data={"command": line})
                                                 for h, line in zip(st.hosts, shown, strict=True)])
