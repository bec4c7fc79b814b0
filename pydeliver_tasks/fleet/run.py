"""Run one step on many hosts: bounded parallelism, host-prefixed live output, a result per
host, a summary, and dry-run built in.

Steps hand `for_each_host` a function `fn(hc: HostContext)` returning the success message (or
`(message, data)` for --json) that raises `HostFailure` (or anything) on failure; a failure on one
host never hides the others.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import lazy
from ..config import Settings
from ..model import Host
from .host import HostContext, HostFailure
from .output import say
from .results import HostResult, RunResult, StepFailed

# errors of a broken SSH connection (SFTP or channel), said in one line, never as a traceback
paramiko = lazy.module("paramiko")

HostStep = Callable[[HostContext], "str | tuple[str, dict[str, Any]] | None"]


def for_each_host(
    step: str,
    settings: Settings,
    stage: str,
    hosts: Iterable[Host],
    fn: HostStep,
    *,
    dry_run: bool = False,
    json_path: str | None = None,
    local: bool = False,
    raise_on_failure: bool = True,
    keep_going: bool = True,
    quiet: bool = False,
) -> RunResult:
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
        except (TimeoutError, EOFError, ConnectionError, paramiko.SSHException) as exc:
            # the connection broke inside a library call
            text = (f"the connection to {host.address} was lost ({type(exc).__name__}: {exc}); "
                    f"what the host did since is unknown — next: inv doctor --host {host.name}")
            result = HostResult(host.name, False, hc.redact(text), time.monotonic() - start)
        except Exception as exc:  # an unexpected error still becomes this host's result
            text = f"{type(exc).__name__}: {exc}"
            result = HostResult(host.name, False, hc.redact(text), time.monotonic() - start,
                                hc.redact(traceback.format_exc(limit=3)))
        hc.say(f"{step} FAILED: {result.message}")
        if result.detail:
            hc.say(result.detail)
        return result

    lazy.load_all()  # before the threads: see lazy.load_all
    with ThreadPoolExecutor(max_workers=max(1, min(settings.parallel, len(hosts) or 1))) as pool:
        result = RunResult(step, stage, list(pool.map(one, hosts)), dry_run)
    if not quiet:  # quiet: no summary table (a helper step such as taking the deploy lock)
        say(result.table())
    if json_path:
        result.write_json(json_path)
    if raise_on_failure and not result.ok:
        raise StepFailed(step, result)
    return result
