"""Run one step on many hosts: bounded parallelism, one SSH connection per host per run,
host-prefixed live output, a result per host, a summary, and dry-run built in.

Steps hand `for_each_host` a function `fn(hc: HostContext)` returning the success message (or
`(message, data)` for --json) that raises `HostFailure` (or anything) on failure; a failure on one
host never hides the others.
"""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection
from invoke import Context
from invoke.exceptions import Exit

from . import ssh
from .config import Settings, SshSettings
from .model import Host

_pool: dict[tuple[str, str | None, int | None, str], Connection] = {}
_pool_lock = threading.Lock()
_print_lock = threading.Lock()


def _connection(host: Host, settings: SshSettings) -> Connection:
    """The run's connection to `host`, opened once and reused by every step of this process."""
    key = (host.address, host.user, host.port, repr(settings))
    with _pool_lock:
        conn = _pool.get(key)
        if conn is None or (conn.transport is not None and not conn.transport.is_active()):
            conn = ssh.connection(host, settings)
            _pool[key] = conn
    return conn


def close_connections() -> None:
    with _pool_lock:
        for conn in _pool.values():
            conn.close()
        _pool.clear()


atexit.register(close_connections)


class HostFailure(Exception):
    """A step failed on a host: what was checked, what was seen, what to try next."""

    def __init__(self, message: str, detail: str = "", hint: str = "",
                 data: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        self.data = data or {}


# Results of hosts a run did not touch (a strategy stopped first, or left an unreachable one out).
NOT_STARTED = ("not started", "skipped")


class StepFailed(Exit):
    """Raised after the summary when any host failed; exits non-zero when it reaches Invoke."""

    def __init__(self, step: str, results: Sequence[HostResult]):
        self.results = list(results)
        waiting = [r.host for r in results if not r.ok and r.message.startswith(NOT_STARTED)]
        failed = [r.host for r in results if not r.ok and r.host not in waiting]
        if failed:
            text = f"{step} failed on {len(failed)} of {len(results)} host(s): {', '.join(failed)}"
            text += f"; not started: {', '.join(waiting)}" if waiting else ""
        else:
            text = f"{step} did not run on {len(waiting)} of {len(results)} host(s): " + \
                ", ".join(waiting)
        super().__init__(text, code=1)

    def __str__(self) -> str:
        return str(self.message)


@dataclass
class HostResult:
    host: str
    ok: bool
    message: str
    seconds: float
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """What a remote (or local) command returned."""

    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0

    def tail(self, lines: int = 15) -> str:
        text = (self.stdout + ("\n" + self.stderr if self.stderr else "")).strip()
        return "\n".join(text.splitlines()[-lines:])


class PrefixedWriter:
    """A stream that writes complete lines prefixed with the host name (for live output)."""

    def __init__(self, prefix: str, redact: Callable[[str], str], target: Any = None):
        self.prefix = prefix
        self.redact = redact
        self.target = target or sys.stdout
        self.buf = ""

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            say(f"{self.prefix}{self.redact(line)}", self.target)
        return len(text)

    def flush(self) -> None:
        if self.buf:
            say(f"{self.prefix}{self.redact(self.buf)}", self.target)
            self.buf = ""


def say(line: str, target: Any = None) -> None:
    with _print_lock:
        print(line, file=target or sys.stdout, flush=True)


class HostContext:
    """Everything a step needs for one host: run/put/get over the run's connection, dry-run aware.

    `local=True` runs on this machine instead (the `build.host: local` case) with the same API.
    """

    def __init__(self, host: Host, settings: Settings, dry_run: bool, local: bool = False):
        self.host = host
        self.settings = settings
        self.dry_run = dry_run
        self.local = local
        self.prefix = f"[{host.name}] "

    @property
    def conn(self) -> Connection:
        return _connection(self.host, self.settings.ssh)

    def redact(self, text: str) -> str:
        for secret in self.host.secrets:
            text = text.replace(secret, "***")
        return text

    def say(self, message: str) -> None:
        for line in message.splitlines() or [""]:
            say(f"{self.prefix}{self.redact(line)}")

    def run(
        self, command: str, *, changes: bool = True, stream: bool = False,
        timeout: float | None = None, env: dict[str, str] | None = None,
    ) -> RunResult:
        """Run a command built in `commands`/`builders`; in dry-run only print it.

        Read-only commands (changes=False) are printed too: a dry run opens no connection.
        """
        if self.dry_run:
            self.say(("would run: " if changes else "would check: ") + command)
            return RunResult("", "", 0)
        kwargs: dict[str, Any] = {"warn": True, "hide": True, "in_stream": False}
        if stream:
            out = PrefixedWriter(self.prefix, self.redact)
            kwargs.update(hide=False, out_stream=out, err_stream=out)
        if timeout:
            kwargs["timeout"] = timeout
        if env:
            kwargs["env"] = env
        runner = Context() if self.local else self.conn
        try:
            res = runner.run(command, **kwargs)
        except (paramiko.SSHException, OSError) as exc:
            if stream:
                out.flush()
            where = "locally" if self.local else f"over SSH to {self.host.address}"
            raise HostFailure(f"cannot run commands {where}: {exc}", hint=_ssh_hint(exc)) from exc
        except Exception as exc:  # e.g. invoke's CommandTimedOut: its text carries the reason
            if stream:
                out.flush()
            raise HostFailure(f"command failed to complete: {exc}") from exc
        if stream:
            out.flush()
        return RunResult(res.stdout, res.stderr, res.exited)

    def put(self, local: Path, remote: str) -> None:
        if self.dry_run:
            self.say(f"would upload: {local} -> {remote}")
            return
        if self.local:
            shutil.copyfile(local, Path(remote).expanduser())
            return
        self.conn.put(str(local), remote)

    def get(self, remote: str, local: Path) -> None:
        if self.dry_run:
            self.say(f"would download: {remote} -> {local}")
            return
        if self.local:
            shutil.copyfile(Path(remote).expanduser(), local)
            return
        self.conn.get(remote, str(local))


def _ssh_hint(exc: BaseException) -> str:
    if isinstance(exc, ssh.UnknownHostKey):
        return ""  # its message already says what to do
    if isinstance(exc, paramiko.BadHostKeyException):
        return ("the host's key changed: if that is expected (reinstall), remove the old line "
                "from known_hosts (ssh-keygen -R); otherwise treat it as an attack")
    if isinstance(exc, paramiko.AuthenticationException):
        return "check the SSH user and deliver.ssh.identity_file (or your agent / ssh_config)"
    return "check that the host is up, its sshd listens on that port, and the address is right"


def _render(step: str, stage: str, results: Sequence[HostResult], dry_run: bool) -> str:
    width = max([len(r.host) for r in results] + [4])
    title = f"{step} — stage {stage}" + (" (dry run: nothing was changed)" if dry_run else "")
    lines = [title, f"  {'host':<{width}}  result  time    message"]
    for r in results:
        verdict = "ok" if r.ok else "FAILED"
        lines.append(f"  {r.host:<{width}}  {verdict:<6}  {r.seconds:5.1f}s  {r.message}")
    return "\n".join(lines)


def write_json(path: str, step: str, stage: str, results: Sequence[HostResult]) -> None:
    payload = {
        "step": step,
        "stage": stage,
        "ok": all(r.ok for r in results),
        "hosts": [asdict(r) for r in results],
    }
    text = json.dumps(payload, indent=2, default=str)
    if path == "-":
        say(text)
    else:
        Path(path).write_text(text + "\n")


def for_each_host(
    step: str,
    settings: Settings,
    stage: str,
    hosts: Iterable[Host],
    fn: Callable[[HostContext], str | tuple[str, dict[str, Any]]],
    *,
    dry_run: bool = False,
    json_path: str | None = None,
    local: bool = False,
    raise_on_failure: bool = True,
    keep_going: bool = True,
    quiet: bool = False,
) -> list[HostResult]:
    """Run fn on each host (at most settings.parallel at once), print a summary, raise on failure.

    keep_going=False: once a host fails, hosts not started yet are not started (reported so).
    """
    hosts = list(hosts)
    failed = threading.Event()

    def one(host: Host) -> HostResult:
        if failed.is_set() and not keep_going:
            return HostResult(host.name, False, "not started: an earlier host failed "
                              "(--keep-going continues past failures)", 0.0)
        result = attempt(host)
        if not result.ok:
            failed.set()
        return result

    def attempt(host: Host) -> HostResult:
        hc = HostContext(host, settings, dry_run, local=local)
        start = time.monotonic()
        try:
            outcome = fn(hc) or "done"
            message, data = outcome if isinstance(outcome, tuple) else (outcome, {})
            return HostResult(host.name, True, hc.redact(message), time.monotonic() - start,
                              data=data)
        except HostFailure as exc:
            text = exc.message + (f" — next: {exc.hint}" if exc.hint else "")
            result = HostResult(host.name, False, hc.redact(text), time.monotonic() - start,
                                hc.redact(exc.detail), exc.data)
        except Exception as exc:  # an unexpected error still becomes this host's result
            text = f"{type(exc).__name__}: {exc}"
            result = HostResult(host.name, False, hc.redact(text), time.monotonic() - start,
                                hc.redact(traceback.format_exc(limit=3)))
        hc.say(f"{step} FAILED: {result.message}")
        if result.detail:
            hc.say(result.detail)
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(settings.parallel, len(hosts) or 1))) as pool:
        results = list(pool.map(one, hosts))
    if not quiet:  # quiet: no summary table (a helper step such as taking the deploy lock)
        say(_render(step, stage, results, dry_run))
    if json_path:
        write_json(json_path, step, stage, results)
    if raise_on_failure and not all(r.ok for r in results):
        raise StepFailed(step, results)
    return results
